//! Headless Chromium for the studio's browser tests: `$CHROMIUM`, else `chromium` on the `PATH`,
//! else installed from Debian's package (`apt-get install chromium`) when this is a Debian-family
//! system and we are root; anything else is one error saying what to install.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The browser the tests will drive, installed first if need be.
pub fn ensure() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Ok(PathBuf::from(path));
    }
    if let Some(found) = on_path("chromium") {
        return Ok(found);
    }
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").is_ok_and(|own| own.uid() == 0);
    if !root || on_path("apt-get").is_none() {
        bail!("the studio's browser tests need Chromium: install Debian's `chromium` package (or set CHROMIUM to a Chromium binary)");
    }
    eprintln!("xtask: installing chromium with apt-get (the studio's browser tests drive it)");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "chromium", "fonts-dejavu-core"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    if !install().context("running apt-get")?.success() {
        // A fresh image has no package lists yet.
        let updated = Command::new("apt-get").arg("update").status().context("running apt-get update")?;
        if !updated.success() || !install()?.success() {
            bail!("apt-get could not install chromium");
        }
    }
    on_path("chromium").context("apt-get installed chromium, but it is not on the PATH")
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|path| path.is_file())
}
