//! The binary and the shipped config: a run killed with SIGKILL mid-training resumes to
//! bit-identical weights, rollouts and metrics; configs/ppo.toml is the built-in default
//! (snapshot); bad input gets one `error:` line, a non-zero exit and no stage directory.

mod common;

use std::path::Path;
use std::process::Command;

use anyhow::Result;
use rlhf_data::config::load_config;
use rlhf_data::Rollout;
use rlhf_ppo::PpoConfig;
use rlhf_train::testing::assert_kill_resume_identical;

fn ppo(config: &Path, run_dir: &Path) -> Command {
    rlhf_train::testing::stage_command(env!("CARGO_BIN_EXE_rlhf-ppo"), config, run_dir, &[])
}

#[test]
fn a_killed_run_resumes_to_the_same_weights() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let fixture = common::fixture(tmp.path(), false);
    let mut config = common::config(&fixture);
    config.ppo.iterations = 16;
    config.train.checkpoint_every = 3;
    let (whole, killed) = assert_kill_resume_identical(tmp.path(), "ppo", &config, ppo)?;
    let rollouts = |dir: &Path| -> Result<Vec<(String, String, u32, i64)>> {
        let rows: Vec<Rollout> = rlhf_data::read_records(dir.join("ppo/rollouts.parquet"))?;
        Ok(rows.into_iter().map(|r| (r.id, r.response, r.step, (r.reward as f64 * 1e6).round() as i64)).collect())
    };
    assert_eq!(rollouts(&whole)?, rollouts(&killed)?, "rollouts after resume");
    Ok(())
}

fn workspace_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

#[test]
fn the_shipped_config_is_the_default() {
    let shipped: PpoConfig = load_config(Some(&workspace_file("configs/ppo.toml")), &[]).unwrap();
    assert_eq!(shipped.gold_judge, "gold", "the shipped config is for the embedded task");
    assert_eq!(PpoConfig { gold_judge: String::new(), ..shipped.clone() }, PpoConfig::default());
    insta::assert_snapshot!("default_config", toml::to_string_pretty(&shipped).unwrap());
}

#[test]
fn overrides_and_unknown_keys() {
    let config: PpoConfig = load_config(None, &["advantage=\"rloo\"".into(), "ppo.group_size=4".into()]).unwrap();
    assert_eq!((config.advantage, config.ppo.group_size), (rlhf_ppo::config::AdvantageKind::Rloo, 4));
    let err = load_config::<PpoConfig>(None, &["ppo.epochz=1".into()]).unwrap_err().to_string();
    assert!(err.contains("unknown field `epochz`"), "{err}");
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rlhf-ppo")).args(args).env("RUST_LOG", "error").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_input_is_one_error_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    let run_dir = run_dir.to_str().unwrap();
    let cases: [(&[&str], &str); 3] = [
        (
            &["--run-dir", run_dir, "--device", "cpu"],
            "model.policy: checkpoint directory not found (run `rlhf-sft` first)",
        ),
        (&["train", "--run-dir", run_dir, "--set", "advantage=\"grpo\""], "need ppo.group_size >= 2"),
        (&["--run-dir", run_dir, "--set", "kl.estimator=\"k9\""], "unknown variant `k9`"),
    ];
    for (args, expected) in cases {
        let (code, stderr) = run(args);
        assert_ne!(code, 0, "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert!(!tmp.path().join("run").exists());
}
