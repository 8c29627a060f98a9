//! The language-model training loop behind both pretraining and SFT (pretraining is SFT with
//! nothing masked): the masked next-token loss of each step and held-out loss/perplexity, run by
//! `rlhf_train`'s [`Trainer`] (accumulation, clipping, schedule, checkpoints, resume, metrics).
//!
//! [`train`] continues from the newest checkpoint of the stage directory when there is one and
//! saves the model to its `final/`; on the CPU, the same seed, config and thread count give
//! bit-identical weights, interrupted or not.

use rlhf_model::{build_batch, sequence_logprobs, CausalLm, LogprobOptions, PaddingSide};
use rlhf_train::MetricsLog;
use rlhf_train::{StageDir, StepBatches, StepWork, TrainSpec, TrainStep, Trainer};
use tch::{Kind, Tensor};

use crate::config::TrainConfig;
use crate::data::Example;
use crate::{Error, Result};

/// Name of the trainable tensors' file in a checkpoint.
const CHECKPOINT_MODEL: &str = "model";

/// One training run of a model on examples.
pub struct TrainJob<'a> {
    /// Stage name written into the metrics (`base`, `sft`).
    pub stage: &'a str,
    /// The stage directory.
    pub dir: &'a StageDir,
    pub config: &'a TrainConfig,
    /// Seeds the data order and libtorch's generator.
    pub seed: u64,
    /// Fingerprint of the resolved config; checkpoints written under another are refused.
    pub config_hash: String,
    pub train: &'a [Example],
    /// Held-out examples for the eval loss (may be empty).
    pub eval: &'a [Example],
    /// Padding token id.
    pub pad_id: i64,
    /// Draw a progress bar (on a terminal).
    pub progress: bool,
}

/// What a run did: the last interval's mean loss, held-out loss before and after.
pub type TrainSummary = rlhf_train::TrainSummary<f64, Evaluation>;

/// Held-out loss: mean negative log-likelihood per target token, and its perplexity.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub ppl: f64,
    pub tokens: usize,
}

/// Sum of the target tokens' negative log-likelihood of `examples` (a graph for backward).
pub fn nll_sum(model: &CausalLm, examples: &[&Example], pad_id: i64) -> Result<Tensor> {
    let pairs: Vec<(&[i64], &[i64])> = examples.iter().map(|e| (e.prompt.as_slice(), e.target.as_slice())).collect();
    let mut batch = build_batch(&pairs, None, pad_id, PaddingSide::Right, model.device())?;
    let prompt_targets: Vec<&[std::ops::Range<usize>]> = examples.iter().map(|e| e.prompt_targets.as_slice()).collect();
    batch.score_spans(&prompt_targets)?;
    let logprobs = sequence_logprobs(model, &batch, LogprobOptions::default())?;
    Ok(-logprobs.sum.sum(Kind::Float))
}

/// Held-out loss and perplexity of `model` on `examples`, without gradients or dropout.
pub fn evaluate(model: &CausalLm, examples: &[Example], batch_size: usize, pad_id: i64) -> Result<Evaluation> {
    let was_training = model.is_training();
    model.set_training(false);
    let mut order: Vec<&Example> = examples.iter().collect();
    order.sort_by_key(|e| e.len());
    let result = tch::no_grad(|| -> Result<f64> {
        let mut total = 0.0;
        for chunk in order.chunks(batch_size.max(1)) {
            total += nll_sum(model, chunk, pad_id)?.double_value(&[]);
        }
        Ok(total)
    });
    model.set_training(was_training);
    let tokens: usize = examples.iter().map(Example::scored).sum();
    let loss = result? / tokens.max(1) as f64;
    Ok(Evaluation { loss, ppl: loss.exp(), tokens })
}

/// The language-model step: loss = summed target-token NLL over the step's target tokens.
struct LmStep<'a> {
    model: &'a CausalLm,
    job: &'a TrainJob<'a>,
}

impl TrainStep for LmStep<'_> {
    type Error = Error;
    /// Σ step losses.
    type Interval = f64;
    /// Mean training loss of the interval.
    type Train = f64;
    type Eval = Evaluation;
    const EXAMPLES: &'static str = "samples";

    fn backward(&mut self, step: &StepBatches<'_>, interval: &mut f64) -> Result<StepWork> {
        self.model.set_training(true);
        let scored: usize = rlhf_train::gather(self.job.train, step.all).iter().flatten().map(|e| e.scored()).sum();
        let micro = rlhf_train::gather(self.job.train, step.mine);
        let mut loss = 0.0;
        for batch in micro.iter().filter(|b| !b.is_empty()) {
            let part = nll_sum(self.model, batch, self.job.pad_id)? / scored.max(1) as f64;
            part.backward();
            loss += part.double_value(&[]);
        }
        *interval += loss;
        let examples = micro.iter().map(Vec::len).sum();
        Ok(StepWork { loss, examples, tokens: micro.iter().flatten().map(|e| e.len()).sum() })
    }

    fn summarize(&self, interval: &f64, steps: u64) -> f64 {
        interval / steps.max(1) as f64
    }

    fn train_metrics(&self, loss: &f64) -> Vec<(String, f64)> {
        vec![("loss".into(), *loss)]
    }

    fn evaluate(&mut self) -> Result<Option<Evaluation>> {
        if self.job.eval.is_empty() {
            return Ok(None);
        }
        evaluate(self.model, self.job.eval, self.job.config.eval_batch_size, self.job.pad_id).map(Some)
    }

    fn eval_metrics(&self, eval: &Evaluation) -> Vec<(String, f64)> {
        vec![("eval_loss".into(), eval.loss), ("eval_ppl".into(), eval.ppl)]
    }
}

/// Trains `model` (its trainable variables: all weights, or the LoRA adapters) on `job.train`
/// and saves it to the stage directory's `final/`. See the module doc for the resume rules.
pub fn train(model: &CausalLm, job: &TrainJob<'_>) -> Result<TrainSummary> {
    let cfg = job.config;
    if job.train.iter().all(|e| e.scored() == 0) {
        return Err(Error::Invalid("no training example has a token to learn from".into()));
    }
    let store = model.lora().map_or_else(|| model.var_store(), |lora| &lora.var_store);
    let spec = TrainSpec::for_stage(job.stage, cfg, job.dir, job.config_hash.clone(), job.seed, job.progress);
    let mut step = LmStep { model, job };
    let metrics = MetricsLog::open(job.dir.metrics(), job.stage)?;
    let lengths: Vec<usize> = job.train.iter().map(Example::len).collect();
    let (summary, _) = Trainer::train_bucketed(spec, vec![(CHECKPOINT_MODEL, store)], metrics, &mut step, lengths)?;
    model.set_training(false);
    if rlhf_train::is_writer() {
        model.save_pretrained(job.dir.final_dir())?;
    }
    Ok(summary)
}
