//! The binary and the shipped config: configs/ppo.toml is the built-in default (snapshot), and bad
//! input gets one `error:` line, a non-zero exit and no stage directory.

use std::process::Command;

use rlhf_data::config::load_config;
use rlhf_ppo::PpoConfig;

fn workspace_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

#[test]
fn the_shipped_config_is_the_default() {
    let shipped: PpoConfig = load_config(Some(&workspace_file("configs/ppo.toml")), &[]).unwrap();
    assert_eq!(shipped, PpoConfig::default());
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
        (&["--run-dir", run_dir, "--device", "cpu"], "model.policy: checkpoint directory not found (run `rlhf-sft` first)"),
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
