//! `cargo xtask launch --nproc N -- <command>`: N copies of a stage command on this machine, as
//! torchrun starts them: `RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `MASTER_ADDR=127.0.0.1` and a free
//! `MASTER_PORT` in each one's environment. When one fails, the others' next collective fails too
//! (rlhf-dist); those still running after [`GRACE`] are killed, and the launch fails with the first
//! failure.

use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long the other ranks get to stop by themselves after one failed.
pub const GRACE: Duration = Duration::from_secs(30);

/// A free TCP port on the loopback interface (for the store rank 0 hosts).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `nproc` ranks of `program args`, with `envs` and the launch variables.
pub fn spawn(nproc: usize, port: u16, program: &str, args: &[String], envs: &[(String, String)]) -> Result<Vec<Child>> {
    (0..nproc)
        .map(|rank| {
            Command::new(program)
                .args(args)
                .envs(envs.iter().map(|(k, v)| (k, v)))
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", nproc.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .spawn()
                .with_context(|| format!("starting rank {rank}: {program}"))
        })
        .collect()
}

/// Waits for every rank; after the first failure the rest get [`GRACE`], then are killed.
/// Returns each rank's exit status.
pub fn wait_all(children: &mut [Child]) -> Result<Vec<ExitStatus>> {
    let mut statuses: Vec<Option<ExitStatus>> = vec![None; children.len()];
    let mut failed_at: Option<Instant> = None;
    while statuses.iter().any(Option::is_none) {
        for (child, status) in children.iter_mut().zip(statuses.iter_mut()) {
            if status.is_none() {
                if let Some(done) = child.try_wait()? {
                    if !done.success() && failed_at.is_none() {
                        failed_at = Some(Instant::now());
                    }
                    *status = Some(done);
                }
            }
        }
        if failed_at.is_some_and(|t| t.elapsed() > GRACE) {
            for (child, status) in children.iter_mut().zip(statuses.iter_mut()) {
                if status.is_none() {
                    let _ = child.kill();
                    *status = Some(child.wait()?);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(statuses.into_iter().map(|s| s.expect("every rank waited for")).collect())
}

/// The whole launch: spawns, waits, and fails naming the first rank that did.
pub fn run(nproc: usize, command: &[String]) -> Result<()> {
    let Some((program, args)) = command.split_first() else { bail!("launch: no command given after --") };
    if nproc == 0 {
        bail!("launch: --nproc must be at least 1");
    }
    let port = free_port()?;
    eprintln!("xtask: launching {nproc} ranks of {program} (store on 127.0.0.1:{port})");
    let mut children = spawn(nproc, port, program, args, &[])?;
    let statuses = wait_all(&mut children)?;
    if let Some((rank, status)) = statuses.iter().enumerate().find(|(_, s)| !s.success()) {
        bail!("rank {rank} of {nproc} failed ({status})");
    }
    Ok(())
}
