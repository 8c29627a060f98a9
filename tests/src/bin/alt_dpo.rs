//! `alt-dpo`: a stand-in DPO stage for the pipeline test's swap. It honours the stage contract
//! (`train --config FILE --run-dir DIR [--set K=V]...`): the "trained" policy is a copy of
//! `<run>/sft/final` in `<run>/dpo/final` (moved into place when complete), and it writes
//! `<run>/dpo/metrics.parquet`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use rlhf_data::{write_records, Metric};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let run_dir = args
        .iter()
        .position(|a| a == "--run-dir")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .context("usage: alt-dpo train --config FILE --run-dir DIR")?;
    let (sft, stage) = (run_dir.join("sft").join("final"), run_dir.join("dpo"));
    let partial = stage.join("final.partial");
    std::fs::create_dir_all(&partial)?;
    for entry in std::fs::read_dir(&sft).with_context(|| format!("reading {}", sft.display()))? {
        let entry = entry?;
        std::fs::copy(entry.path(), partial.join(entry.file_name()))?;
    }
    let metric = Metric { stage: "dpo".into(), step: 0, name: "loss".into(), value: 0.0, wall_time: 0.0 };
    write_records(stage.join("metrics.parquet"), &[metric])?;
    std::fs::rename(&partial, stage.join("final"))?;
    Ok(())
}
