//! `cargo xtask gpu-bundle`: the stage binaries ready for a CUDA machine that has PyTorch (the same
//! torch 2.11.0 wheel, CUDA build) but no Rust toolchain or registry (docs/gpu.md).
//!
//! The CPU build links `libtorch_cpu`, `libtorch` and `libc10` from that same wheel, so the binaries
//! run against the GPU machine's copies unchanged once `libtorch_cuda` is loaded too (its static
//! initialisers register the CUDA backend, as `-Wl,--no-as-needed -ltorch_cuda` does in a CUDA
//! build). So each binary is stripped, its rpath removed (the GPU machine's `LD_LIBRARY_PATH`
//! decides) and `libc10_cuda.so` and `libtorch_cuda.so` added as needed libraries (`patchelf`); this
//! runner goes along to drive the presets (`pipeline --bin-dir`). Compressed, the bundle is a few
//! tens of MB: small enough to carry.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// What the presets and the GPU checks run.
const BINARIES: &[&str] = &["rlhf-task", "rlhf-data", "rlhf-sft", "rlhf-reward", "rlhf-ppo", "rlhf-dpo", "rlhf-eval"];
const CUDA_LIBRARIES: &[&str] = &["libc10_cuda.so", "libtorch_cuda.so"];

fn tool(program: &str, args: &[&str], file: &Path) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .arg(file)
        .output()
        .with_context(|| format!("running {program} (apt-get install patchelf binutils)"))?;
    if !out.status.success() {
        bail!("{program} {args:?} {} failed: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cargo` (given `--message-format=json...`) and returns the executable it built for the
/// target `name`.
pub fn built_executable(mut cargo: Command, name: &str) -> Result<PathBuf> {
    eprintln!("xtask: running {cargo:?}");
    let out = cargo.stderr(Stdio::inherit()).output().context("running cargo")?;
    if !out.status.success() {
        bail!("{cargo:?} failed ({})", out.status);
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|message| message["target"]["name"] == name && message["executable"].is_string())
        .and_then(|message| message["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo built no executable for `{name}`"))
}

/// Packs `release` (the freshly built binaries) and the `extra` (name, file) executables into
/// `<target>/gpu-bundle.tar.xz`.
pub fn make(target: &Path, release: &Path, extra: &[(&str, PathBuf)]) -> Result<()> {
    let bundle = target.join("gpu-bundle");
    if bundle.exists() {
        fs::remove_dir_all(&bundle)?;
    }
    let bin = bundle.join("bin");
    fs::create_dir_all(&bin)?;
    let sources = BINARIES.iter().map(|name| (*name, release.join(name)));
    for (name, source) in sources.chain(extra.iter().map(|(name, file)| (*name, file.clone()))) {
        let file = bin.join(name);
        fs::copy(&source, &file).with_context(|| format!("copying {}", source.display()))?;
        tool("strip", &[], &file)?;
        tool("patchelf", &["--remove-rpath"], &file)?;
        if tool("patchelf", &["--print-needed"], &file)?.lines().any(|l| l == "libtorch_cpu.so") {
            for library in CUDA_LIBRARIES {
                tool("patchelf", &["--add-needed", library], &file)?;
            }
        }
    }
    let runner = std::env::current_exe()?;
    fs::copy(&runner, bin.join("xtask")).with_context(|| format!("copying {}", runner.display()))?;
    tool("strip", &[], &bin.join("xtask"))?;
    let archive = target.join("gpu-bundle.tar.xz");
    let status = Command::new("tar")
        .env("XZ_OPT", "-6 -T0")
        .arg("-cJf")
        .arg(&archive)
        .arg("-C")
        .arg(target)
        .arg("gpu-bundle")
        .status()
        .context("running tar")?;
    if !status.success() {
        bail!("tar failed ({status})");
    }
    let size = fs::metadata(&archive)?.len() as f64 / (1 << 20) as f64;
    eprintln!("xtask: wrote {} ({size:.1} MiB); on the GPU machine: bash scripts/gpu-check.sh", archive.display());
    Ok(())
}
