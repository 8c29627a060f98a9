//! Two real processes (this test binary, started again as rank 0 and rank 1) meet over the Gloo
//! group: the gradient all-reduce sums exactly, broadcast and barrier work, and a rank that exits
//! makes the other's next collective fail with an error rather than hang.

use std::process::Command;

use rlhf_dist::{Launch, World};
use tch::{Kind, Tensor};

const CHILD: &str = "RLHF_DIST_TEST_CHILD";

fn join() -> World {
    let launch = Launch::from_vars(|n| std::env::var(n).ok()).unwrap().expect("launched as a rank");
    World::join(&launch).unwrap()
}

/// What each rank runs (a no-op unless started by the parent test).
#[test]
fn child() {
    let Ok(role) = std::env::var(CHILD) else { return };
    let world = join();
    let rank = world.rank() as f64;
    match role.as_str() {
        "collectives" => {
            // Two parameters with gradients rank-dependent, one without on rank 1.
            let a = Tensor::zeros([3, 2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
            let b = Tensor::zeros([5], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
            let loss = (&a * (rank + 1.0)).sum(Kind::Float)
                + if rank == 0.0 { (&b * 2.0).sum(Kind::Float) } else { a.sum(Kind::Float) * 0.0 };
            loss.backward();
            world.all_reduce_gradients(&[a.shallow_clone(), b.shallow_clone()]).unwrap();
            assert_eq!(Vec::<f32>::try_from(a.grad().reshape(-1)).unwrap(), vec![3.0; 6]);
            assert_eq!(Vec::<f32>::try_from(b.grad()).unwrap(), vec![2.0; 5]);
            let t = Tensor::from_slice(&[rank as f32 + 10.0]);
            world.broadcast(&t, 1).unwrap();
            assert_eq!(t.double_value(&[0]), 11.0);
            let mut sums = [rank, 1.0];
            world.sum_f64(&mut sums).unwrap();
            assert_eq!(sums, [1.0, 2.0]);
            world.barrier().unwrap();
        }
        "peer-exits" => {
            if world.rank() == 1 {
                std::process::exit(0);
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
            let err = world.barrier().and_then(|_| world.barrier()).unwrap_err().to_string();
            assert!(err.starts_with("rank 0 of 2: barrier failed:"), "{err}");
        }
        other => panic!("unknown role {other}"),
    }
}

fn run_two(role: &str) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let children: Vec<_> = (0..2)
        .map(|rank| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "child", "--nocapture"])
                .env(CHILD, role)
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("MASTER_PORT", port.to_string())
                .env("RLHF_DIST_TIMEOUT_S", "30")
                .output_async()
        })
        .collect();
    for (rank, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "rank {rank}: {}", String::from_utf8_lossy(&out.stdout));
    }
}

trait OutputAsync {
    fn output_async(&mut self) -> std::process::Child;
}

impl OutputAsync for Command {
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
    }
}

#[test]
fn gradients_sum_over_two_processes() {
    run_two("collectives");
}

#[test]
fn a_peer_that_exits_fails_the_next_collective() {
    run_two("peer-exits");
}
