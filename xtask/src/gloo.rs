//! The Gloo headers `rlhf-dist` compiles its c10d shim against. libtorch_cpu already contains Gloo
//! and c10d's `ProcessGroupGloo` (symbols exported), and the torch wheel ships c10d's headers but not
//! Gloo's, which `ProcessGroupGloo.hpp` includes. Debian's `libgloo-dev` has them; only its headers
//! are used (the shim touches Gloo's types through pointers only), fetched with `apt-get download`
//! (no root needed). Without them `rlhf-dist` builds single-process only and says so.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

const PACKAGE: &str = "libgloo-dev";

/// `.libtorch/gloo/include` (git-ignored), where `rlhf-dist`'s build script looks.
pub fn include_dir(root: &Path) -> PathBuf {
    root.join(".libtorch").join("gloo").join("include")
}

/// Fetches the headers when missing; a machine without apt gets a warning, not an error.
pub fn ensure(root: &Path) -> Result<()> {
    let dest = include_dir(root);
    if dest.join("gloo/algorithm.h").is_file() {
        return Ok(());
    }
    if let Err(err) = install(&dest) {
        eprintln!("xtask: warning: no Gloo headers ({err:#}); multi-process training will be unavailable");
    }
    Ok(())
}

fn install(dest: &Path) -> Result<()> {
    let work = dest.with_extension("partial");
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;
    eprintln!("xtask: downloading {PACKAGE} (Gloo's headers) with apt-get");
    let status =
        Command::new("apt-get").args(["download", PACKAGE]).current_dir(&work).status().context("running apt-get")?;
    if !status.success() {
        bail!("`apt-get download {PACKAGE}` failed ({status})");
    }
    let deb = fs::read_dir(&work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get left no .deb in {}", work.display()))?;
    let unpacked = work.join("root");
    let status = Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked).status().context("running dpkg-deb")?;
    if !status.success() {
        bail!("`dpkg-deb -x {}` failed ({status})", deb.display());
    }
    let headers = unpacked.join("usr/include");
    if !headers.join("gloo/algorithm.h").is_file() {
        bail!("{} has no usr/include/gloo/algorithm.h", deb.display());
    }
    if dest.exists() {
        fs::remove_dir_all(dest)?;
    }
    fs::rename(&headers, dest).with_context(|| format!("moving the headers into {}", dest.display()))?;
    fs::remove_dir_all(&work)?;
    eprintln!("xtask: Gloo headers in {}", dest.display());
    Ok(())
}
