//! The NaN guard of the loop SFT, the reward model and DPO share: a stage whose loss is NaN on
//! chosen steps (the injected fault) has those steps skipped, with no update and a count in the
//! metrics, under `on_nonfinite = "skip"`, and stops with one error naming the step under
//! `"abort"`. (PPO's own loop has its guard tested in `rlhf-ppo/tests/stage.rs`.)

use anyhow::Result;
use rlhf_train::{MetricsLog, OnNonFinite, StageDir, StepWork, TrainConfig, TrainSpec, TrainStep, Trainer};
use tch::nn::{self, VarStore};
use tch::{Device, Kind, Tensor};

/// A one-parameter "model" pulled towards 3 by a squared loss; `poisoned` steps get a NaN loss.
struct Poisoned<'a> {
    weight: &'a Tensor,
    poisoned: Vec<u64>,
    steps: u64,
    /// The weight before each step.
    seen: Vec<f64>,
}

impl TrainStep for Poisoned<'_> {
    type Error = rlhf_train::Error;
    type Interval = ();
    type Train = ();
    type Eval = ();
    const EXAMPLES: &'static str = "examples";

    fn backward(&mut self, step: &rlhf_train::StepBatches<'_>, _: &mut ()) -> rlhf_train::Result<StepWork> {
        self.steps += 1;
        self.seen.push(self.weight.double_value(&[0]));
        let target = if self.poisoned.contains(&self.steps) { f64::NAN } else { 3.0 };
        let loss = (self.weight - target).square().sum(Kind::Float);
        loss.backward();
        Ok(StepWork { loss: loss.double_value(&[]), examples: step.mine.iter().map(|b| b.len()).sum(), tokens: 1 })
    }
    fn summarize(&self, _: &(), _: u64) {}
    fn train_metrics(&self, _: &()) -> Vec<(String, f64)> {
        Vec::new()
    }
    fn evaluate(&mut self) -> rlhf_train::Result<Option<()>> {
        Ok(None)
    }
    fn eval_metrics(&self, _: &()) -> Vec<(String, f64)> {
        Vec::new()
    }
}

/// Trains 6 steps with NaN losses on steps 2 and 4; returns the weights seen and the run's result.
fn train(mode: OnNonFinite, dir: &std::path::Path) -> (Vec<f64>, rlhf_train::Result<u64>) {
    let store = VarStore::new(Device::Cpu);
    let weight = store.root().var("w", &[1], nn::Init::Const(0.0));
    let config = TrainConfig {
        max_steps: 6,
        batch_size: 1,
        lr: 0.1,
        warmup_steps: 0,
        log_every: 1,
        eval_every: 0,
        checkpoint_every: 0,
        threads: 1,
        on_nonfinite: mode,
        ..TrainConfig::default()
    };
    let stage_dir = StageDir::new(dir, "toy");
    let spec = TrainSpec::for_stage("toy", &config, &stage_dir, "hash".into(), 1, false);
    let metrics = MetricsLog::open(stage_dir.metrics(), "toy").unwrap();
    let mut stage = Poisoned { weight: &weight, poisoned: vec![2, 4], steps: 0, seen: Vec::new() };
    let result = Trainer::train_bucketed(spec, vec![("model", &store)], metrics, &mut stage, vec![1; 4])
        .map(|(summary, _)| summary.skipped);
    (stage.seen, result)
}

#[test]
fn nan_steps_are_skipped_or_abort_the_run() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (seen, skipped) = train(OnNonFinite::Skip, &tmp.path().join("skip"));
    assert_eq!(skipped?, 2);
    assert_eq!(seen.len(), 6);
    // No update after a poisoned step: the weight before steps 3 and 5 is the one before 2 and 4.
    assert_eq!((seen[2], seen[4]), (seen[1], seen[3]));
    assert!(seen[1] > seen[0] && seen[3] > seen[2] && seen[5] > seen[4], "healthy steps update: {seen:?}");
    let rows: Vec<rlhf_data::Metric> = rlhf_data::read_records(tmp.path().join("skip/toy/metrics.parquet"))?;
    let counted: Vec<f64> = rows.iter().filter(|m| m.name == "skipped_steps").map(|m| m.value).collect();
    assert_eq!(counted, [1.0, 1.0, 2.0, 2.0, 2.0], "skipped steps are counted in the metrics");

    let (seen, aborted) = train(OnNonFinite::Abort, &tmp.path().join("abort"));
    let error = aborted.unwrap_err().to_string();
    assert_eq!(
        error,
        "non-finite loss at step 2; stopped without saving it (lower train.lr, or set on_nonfinite = \"skip\")"
    );
    assert_eq!(seen.len(), 2, "the run stopped at the poisoned step");
    Ok(())
}
