//! The training loop of one reward model: the Bradley–Terry loss over preference batches and
//! held-out metrics, run by `rlhf_train`'s [`Trainer`] (accumulation, clipping, schedule,
//! checkpoints, resume, metrics). On the CPU, the same seed, config and thread count give the same
//! weights whether or not the run was interrupted.

use std::path::Path;

use rlhf_model::reward::score_rows;
use rlhf_model::SequenceClassifier;
use rlhf_train::MetricsLog;
use rlhf_train::{IntervalSums, StepBatches, StepWork, TrainSpec, TrainStep, Trainer};
use tch::{Device, Tensor};

use crate::config::{LossConfig, TrainConfig};
use crate::data::TokenizedPreference;
use crate::loss::{accuracy_and_margin, preference_loss, PairIndex, PreferenceBatch};
use crate::{Error, Result};

/// Name of the weights' file in a training checkpoint.
const CHECKPOINT_MODEL: &str = "model";

/// Held-out preferences, laid out once for scoring.
pub struct HeldOut {
    rows: Vec<Vec<i64>>,
    pairs: PairIndex,
    /// Per pair: whether the gold judge prefers the better-labelled response (`None`: a tie).
    gold: Option<Vec<Option<bool>>>,
}

impl HeldOut {
    /// `gold` (when given) has one entry per pair, in the order of `preferences`' pairs.
    pub fn new(preferences: &[TokenizedPreference], gold: Option<Vec<Option<bool>>>) -> Self {
        let refs: Vec<&TokenizedPreference> = preferences.iter().collect();
        HeldOut {
            rows: preferences.iter().flat_map(|p| p.rows.iter().cloned()).collect(),
            pairs: PairIndex::new(&refs, refs.len(), Device::Cpu),
            gold,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn pair_count(&self) -> usize {
        self.pairs.better.size()[0] as usize
    }
}

/// Held-out metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Evaluation {
    /// Mean preference loss.
    pub loss: f64,
    /// Share of pairs whose labelled-better response gets the higher reward.
    pub accuracy: f64,
    /// Mean `r_better − r_worse`.
    pub margin: f64,
    /// Share of pairs (gold ties excluded) where the reward model agrees with the gold judge.
    pub gold_accuracy: Option<f64>,
}

/// Scores the held-out set (no gradients, dropout off).
pub fn evaluate(
    model: &SequenceClassifier,
    heldout: &HeldOut,
    loss: &LossConfig,
    batch_size: usize,
) -> Result<Evaluation> {
    model.set_training(false);
    let scores = score_rows(model, &heldout.rows, batch_size)?;
    let d = heldout.pairs.differences(&Tensor::from_slice(&scores));
    let (accuracy, margin) = accuracy_and_margin(&d);
    let gold_accuracy = heldout.gold.as_ref().map(|gold| {
        let d = Vec::<f32>::try_from(&d).unwrap_or_default();
        let decided: Vec<bool> = d.iter().zip(gold).filter_map(|(&d, g)| g.map(|g| (d > 0.0) == g)).collect();
        decided.iter().filter(|&&agree| agree).count() as f64 / decided.len().max(1) as f64
    });
    Ok(Evaluation {
        loss: preference_loss(&d, &heldout.pairs, loss).double_value(&[]),
        accuracy,
        margin,
        gold_accuracy,
    })
}

/// Whether a metric belongs to a namespace: `ns/` holds the names starting with it, the empty one
/// the names without a `/` (an ensemble member logs under `member-<i>/`).
pub fn in_namespace(namespace: &str, name: &str) -> bool {
    if namespace.is_empty() {
        !name.contains('/')
    } else {
        name.starts_with(namespace)
    }
}

/// One reward model's training run.
pub struct TrainJob<'a> {
    /// Where its `step-N/` checkpoints go.
    pub checkpoints: &'a Path,
    /// The stage's resolved config (named when a checkpoint belongs to another).
    pub config_file: &'a Path,
    /// Prefix of its metric names (`""`, or `member-<i>/` in an ensemble).
    pub metric_prefix: &'a str,
    pub train_config: &'a TrainConfig,
    pub loss: &'a LossConfig,
    /// Seeds the data order and libtorch's generator.
    pub seed: u64,
    /// Fingerprint of the resolved config; checkpoints written under another are refused.
    pub config_hash: &'a str,
    pub train: &'a [TokenizedPreference],
    pub heldout: &'a HeldOut,
    pub pad_id: i64,
    pub progress: bool,
}

/// Training loss, accuracy and margin of a logging interval.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TrainStats {
    pub loss: f64,
    pub accuracy: f64,
    pub margin: f64,
}

/// What a training run did.
pub type TrainSummary = rlhf_train::TrainSummary<TrainStats, Evaluation>;

/// Sums over a logging interval.
#[derive(Default)]
struct Interval {
    loss: f64,
    correct: f64,
    margin: f64,
    pairs: usize,
}

impl IntervalSums for Interval {
    fn sums(&self) -> Vec<f64> {
        vec![self.loss, self.correct, self.margin, self.pairs as f64]
    }
    fn set_sums(&mut self, sums: &[f64]) {
        (self.loss, self.correct, self.margin, self.pairs) = (sums[0], sums[1], sums[2], sums[3] as usize);
    }
}

/// The Bradley–Terry step over a batch of preferences.
struct RewardStep<'a> {
    model: &'a SequenceClassifier,
    job: &'a TrainJob<'a>,
}

impl TrainStep for RewardStep<'_> {
    type Error = Error;
    type Interval = Interval;
    type Train = TrainStats;
    type Eval = Evaluation;
    const EXAMPLES: &'static str = "pairs";

    fn backward(&mut self, step: &StepBatches<'_>, interval: &mut Interval) -> Result<StepWork> {
        self.model.set_training(true);
        let in_step: usize = step.all.iter().map(|b| b.len()).sum();
        let micro = rlhf_train::gather(self.job.train, step.mine);
        let mut loss_sum = 0.0;
        for preferences in micro.iter().filter(|b| !b.is_empty()) {
            let batch = PreferenceBatch::new(preferences, in_step, self.job.pad_id, self.model.device())?;
            let d = batch.pairs.differences(&batch.rewards(self.model)?);
            let loss = preference_loss(&d, &batch.pairs, self.job.loss);
            loss.backward();
            let (accuracy, margin) = accuracy_and_margin(&d);
            let pairs = batch.pairs.better.size()[0] as usize;
            let value = loss.double_value(&[]);
            loss_sum += value;
            interval.loss += value;
            interval.correct += accuracy * pairs as f64;
            interval.margin += margin * pairs as f64;
            interval.pairs += pairs;
        }
        let examples = micro.iter().flatten().map(|p| p.pairs.len()).sum();
        let tokens = micro.iter().flatten().map(|p| p.tokens()).sum();
        Ok(StepWork { loss: loss_sum, examples, tokens })
    }

    fn summarize(&self, interval: &Interval, steps: u64) -> TrainStats {
        let pairs = interval.pairs.max(1) as f64;
        TrainStats {
            loss: interval.loss / steps.max(1) as f64,
            accuracy: interval.correct / pairs,
            margin: interval.margin / pairs,
        }
    }

    fn train_metrics(&self, stats: &TrainStats) -> Vec<(String, f64)> {
        vec![("loss".into(), stats.loss), ("accuracy".into(), stats.accuracy), ("margin".into(), stats.margin)]
    }

    fn evaluate(&mut self) -> Result<Option<Evaluation>> {
        if self.job.heldout.is_empty() {
            return Ok(None);
        }
        evaluate(self.model, self.job.heldout, self.job.loss, self.job.train_config.eval_batch_size).map(Some)
    }

    fn eval_metrics(&self, eval: &Evaluation) -> Vec<(String, f64)> {
        let named = [
            ("eval_loss", Some(eval.loss)),
            ("eval_accuracy", Some(eval.accuracy)),
            ("eval_margin", Some(eval.margin)),
        ];
        named
            .into_iter()
            .chain([("eval_gold_accuracy", eval.gold_accuracy)])
            .filter_map(|(name, value)| value.map(|v| (name.to_string(), v)))
            .collect()
    }
}

/// Trains every weight of `model` on `job.train` (continuing from the newest checkpoint in
/// `job.checkpoints`), logging into `metrics`, which it hands back. Leaves the model in eval mode;
/// saving is the caller's.
pub fn train(
    model: &SequenceClassifier,
    job: &TrainJob<'_>,
    metrics: MetricsLog,
) -> Result<(TrainSummary, MetricsLog)> {
    let cfg = job.train_config;
    if job.train.is_empty() {
        return Err(Error::Invalid("no training preferences (every pair was dropped or held out)".into()));
    }
    let spec = TrainSpec {
        name: format!("reward {}", job.metric_prefix),
        config: cfg,
        checkpoints: job.checkpoints.to_path_buf(),
        config_file: job.config_file.to_path_buf(),
        config_hash: job.config_hash.to_string(),
        seed: job.seed,
        metric_prefix: job.metric_prefix.to_string(),
        owns_metric: in_namespace,
        progress: job.progress,
    };
    let mut step = RewardStep { model, job };
    let lengths: Vec<usize> = job.train.iter().map(TokenizedPreference::tokens).collect();
    let finished =
        Trainer::train_bucketed(spec, vec![(CHECKPOINT_MODEL, model.var_store())], metrics, &mut step, lengths);
    model.set_training(false);
    finished
}
