//! The soak's short version (`cargo xtask soak --kills 3`): every stage (base pretraining, SFT, reward model, PPO,
//! offline and online DPO, evaluation) of the tiny preset SIGKILLed three times, at random moments
//! and at the kill points inside file, checkpoint and final-model writes, resumes to exactly the
//! files of an uninterrupted run (`rlhf-eval diff-runs`).

use std::path::Path;

use anyhow::{ensure, Result};
use xtask::soak::{run, SoakOptions};

#[test]
fn every_stage_survives_kills_bit_for_bit() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_alt-dpo")).parent().unwrap().to_path_buf();
    let tmp = tempfile::tempdir()?;
    let options =
        SoakOptions { root, bin_dir, work_dir: tmp.path().join("soak"), kills: 3, seed: 7, stages: Vec::new() };
    let report = run(&options)?;
    let names: Vec<&str> = report.stages.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(names, ["base", "sft", "reward", "ppo", "dpo", "online-dpo", "eval"]);
    for stage in &report.stages {
        ensure!(stage.differences.is_empty(), "{}: {:?}", stage.stage, stage.differences);
        ensure!(stage.kills >= 3, "{} was killed only {} times", stage.stage, stage.kills);
    }
    let kills_inside_writes: usize = report
        .stages
        .iter()
        .flat_map(|s| &s.kills_by_moment)
        .filter(|(moment, _)| moment.starts_with("kill point"))
        .map(|(_, n)| n)
        .sum();
    ensure!(kills_inside_writes > 0, "no kill landed inside a write: {report:?}");
    assert!(report.passed());
    Ok(())
}
