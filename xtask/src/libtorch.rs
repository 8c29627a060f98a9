//! Getting libtorch without a manual step.
//!
//! `tch` 0.24 needs PyTorch 2.11.0. The libtorch download host is unreachable from many machines, so
//! we take the PyTorch wheel from PyPI (a CUDA 13 build) and keep only what a CPU build links:
//! `libtorch_cpu`, `libtorch`, `libc10`, `libgomp`, `libshm`, plus the two CUDA runtime libraries
//! `libtorch_cpu` needs at load time (`libcudart`, `libcupti`, from their own small wheels).
//! `libtorch_cuda` is left out on purpose: torch-sys links it whenever present, and it drags in
//! gigabytes of cuBLAS/cuDNN. A user's own libtorch (`LIBTORCH`) or PyTorch
//! (`LIBTORCH_USE_PYTORCH=1`) always wins.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

pub const TORCH_VERSION: &str = "2.11.0";

/// Wheels fetched from PyPI: (distribution name, version, files kept: wheel path -> path under `lib/`).
const WHEELS: &[(&str, &str, &[&str])] = &[
    (
        "torch",
        TORCH_VERSION,
        &[
            "torch/lib/libtorch_cpu.so",
            "torch/lib/libtorch.so",
            "torch/lib/libc10.so",
            "torch/lib/libgomp.so.1",
            "torch/lib/libshm.so",
        ],
    ),
    ("nvidia-cuda-runtime", "13.0.96", &["nvidia/cu13/lib/libcudart.so.13"]),
    ("nvidia-cuda-cupti", "13.0.85", &["nvidia/cu13/lib/libcupti.so.13"]),
];

/// Which libtorch the build uses.
pub enum Libtorch {
    /// An unpacked libtorch directory (ours in `.libtorch/libtorch`, or the user's `LIBTORCH`).
    Dir(PathBuf),
    /// The PyTorch installed for `python3` (`LIBTORCH_USE_PYTORCH=1`).
    Python,
}

impl Libtorch {
    /// Puts this choice into a child `cargo`'s environment.
    pub fn apply(&self, cmd: &mut Command) {
        match self {
            Libtorch::Dir(dir) => {
                cmd.env("LIBTORCH", dir);
            }
            Libtorch::Python => {
                cmd.env("LIBTORCH_USE_PYTORCH", "1");
            }
        }
    }
}

/// The cache directory inside the repository (git-ignored).
pub fn cache_dir(root: &Path) -> PathBuf {
    root.join(".libtorch").join("libtorch")
}

/// Returns the libtorch to build with, fetching ours first when needed.
pub fn ensure(root: &Path) -> Result<Libtorch> {
    crate::gloo::ensure(root)?;
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        eprintln!("xtask: LIBTORCH_USE_PYTORCH is set: building against python3's PyTorch");
        return Ok(Libtorch::Python);
    }
    let ours = cache_dir(root);
    if let Some(theirs) = std::env::var_os("LIBTORCH").map(PathBuf::from) {
        if !same_path(&theirs, &ours) {
            if !theirs.join("lib").is_dir() {
                bail!(
                    "LIBTORCH={} has no lib/ directory; unset it to let `cargo xtask setup` fetch libtorch",
                    theirs.display()
                );
            }
            eprintln!("xtask: using LIBTORCH={}", theirs.display());
            return Ok(Libtorch::Dir(theirs));
        }
    }
    if is_ready(&ours) {
        eprintln!("xtask: libtorch {TORCH_VERSION} (CPU) ready in {}", ours.display());
    } else {
        install(root, &ours)?;
    }
    Ok(Libtorch::Dir(ours))
}

fn same_path(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

fn is_ready(dir: &Path) -> bool {
    let version = fs::read_to_string(dir.join("build-version")).unwrap_or_default();
    version.trim() == TORCH_VERSION
        && WHEELS.iter().flat_map(|(_, _, files)| *files).all(|f| dir.join("lib").join(file_name(f)).is_file())
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn install(root: &Path, dest: &Path) -> Result<()> {
    let wheels = root.join(".libtorch").join("wheels");
    fs::create_dir_all(&wheels).with_context(|| format!("creating {}", wheels.display()))?;
    let partial = dest.with_extension("partial");
    if partial.exists() {
        fs::remove_dir_all(&partial).with_context(|| format!("removing {}", partial.display()))?;
    }
    fs::create_dir_all(partial.join("lib"))?;
    for (name, version, files) in WHEELS {
        let wheel = crate::pypi::fetch_wheel(&wheels, name, version)?;
        eprintln!("xtask: unpacking {}", wheel.display());
        let include = (*name == "torch").then_some("torch/include/");
        unpack(&wheel, files, include, &partial)
            .with_context(|| format!("unpacking {} (delete it and run `cargo xtask setup` again)", wheel.display()))?;
    }
    fs::write(partial.join("build-version"), TORCH_VERSION)?;
    if dest.exists() {
        fs::remove_dir_all(dest).with_context(|| format!("removing stale {}", dest.display()))?;
    }
    fs::rename(&partial, dest).with_context(|| format!("moving libtorch into {}", dest.display()))?;
    fs::remove_dir_all(&wheels).with_context(|| format!("removing {}", wheels.display()))?;
    eprintln!("xtask: libtorch {TORCH_VERSION} (CPU) installed in {}", dest.display());
    Ok(())
}

/// Copies `files` (flattened into `lib/`) and, when asked, the `include` tree out of a wheel.
fn unpack(wheel: &Path, files: &[&str], include: Option<&str>, dest: &Path) -> Result<()> {
    let mut archive = zip::ZipArchive::new(File::open(wheel)?)?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let name = entry.name().to_string();
        let target = if files.contains(&name.as_str()) {
            dest.join("lib").join(file_name(&name))
        } else if let Some(rel) = include.and_then(|prefix| name.strip_prefix(prefix)) {
            if entry.is_dir() || rel.is_empty() {
                continue;
            }
            dest.join("include").join(rel)
        } else {
            continue;
        };
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        io::copy(&mut entry, &mut File::create(&target)?)?;
    }
    for file in files {
        if !dest.join("lib").join(file_name(file)).is_file() {
            bail!("{} has no {file}", wheel.display());
        }
    }
    Ok(())
}
