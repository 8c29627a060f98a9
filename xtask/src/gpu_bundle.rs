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
use std::path::Path;
use std::process::Command;

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

/// Packs `release` (the freshly built binaries) into `<target>/gpu-bundle.tar.xz`.
pub fn make(target: &Path, release: &Path) -> Result<()> {
    let bundle = target.join("gpu-bundle");
    if bundle.exists() {
        fs::remove_dir_all(&bundle)?;
    }
    let bin = bundle.join("bin");
    fs::create_dir_all(&bin)?;
    for name in BINARIES {
        let file = bin.join(name);
        fs::copy(release.join(name), &file).with_context(|| format!("copying {name} from {}", release.display()))?;
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
