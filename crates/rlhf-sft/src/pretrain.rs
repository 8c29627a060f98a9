//! The embedded task's base model: a byte-level BPE tokenizer trained on the task's web-text corpus
//! and a small Llama-style transformer pretrained on it with the causal LM loss on every token.
//!
//! The stage directory gets `tokenizer/` (kept for resume), `config.toml`, `metrics.parquet`,
//! `checkpoints/` and `final/`: the base model as a Hugging Face checkpoint directory.

use std::path::Path;

use rlhf_model::checkpoint::save_dir_atomically;
use rlhf_model::config::{LlamaConfig, ModelConfig, TokenIds};
use rlhf_model::device::seed_everything;
use rlhf_model::{CausalLm, Placement, SpecialTokens, Tokenizer};
use rlhf_train::StageDir;

use crate::config::{BaseConfig, BaseModelConfig};
use crate::data::{document_rows, Example};
use crate::trainer::{self, TrainJob};
use crate::{Error, Result};
use crate::{Outcome, RunOptions};

/// The trained tokenizer inside the stage directory.
const TOKENIZER_DIR: &str = "tokenizer";

/// The HF config of a base model of these sizes for a tokenizer's vocabulary and special tokens.
pub fn model_config(sizes: &BaseModelConfig, vocab_size: i64, eos_id: i64, pad_id: i64) -> ModelConfig {
    let mut arch = LlamaConfig::new(
        vocab_size,
        sizes.hidden_size,
        sizes.intermediate_size,
        sizes.num_layers,
        sizes.num_heads,
        sizes.num_kv_heads,
    );
    arch.max_position_embeddings = sizes.max_position_embeddings;
    arch.tie_word_embeddings = sizes.tie_word_embeddings;
    let mut config = ModelConfig::llama(arch);
    config.eos_token_id = Some(TokenIds::One(eos_id));
    config.pad_token_id = Some(pad_id);
    config
}

/// Pretrains the base model into the stage directory `dir` (the model lands in `dir/final/`).
pub fn pretrain(config: &BaseConfig, dir: &Path, options: &RunOptions) -> Result<Outcome> {
    let dir = &StageDir { root: dir.to_path_buf() };
    if let Some(done) = dir.already_done() {
        return Ok(done);
    }
    let corpus = &config.corpus;
    if corpus.heldout_documents >= corpus.documents || corpus.max_len < 2 {
        return Err(Error::Invalid(
            "corpus.documents must exceed corpus.heldout_documents, and corpus.max_len must be at least 2".into(),
        ));
    }
    config.train.check()?;
    let config_hash = dir.config_hash(config)?;
    let _writer = dir.begin(config)?;
    let tokenizer_dir = dir.root.join(TOKENIZER_DIR);
    let documents = rlhf_task::corpus(corpus.seed, corpus.documents);
    let tokenizer = if tokenizer_dir.is_dir() {
        Tokenizer::from_dir(&tokenizer_dir)?
    } else {
        let _span = tracing::info_span!("train_bpe", vocab_size = config.tokenizer.vocab_size).entered();
        let tokenizer = Tokenizer::train_bpe(&documents, config.tokenizer.vocab_size, &SpecialTokens::default())?;
        save_dir_atomically(&tokenizer_dir, |tmp| tokenizer.save(tmp))?;
        tokenizer
    };

    let mut ids = tokenizer.encode_batch(&documents)?;
    let heldout = ids.split_off(corpus.documents - corpus.heldout_documents);
    let train = document_rows(ids, tokenizer.eos_id(), corpus.max_len);
    let eval = document_rows(heldout, tokenizer.eos_id(), corpus.max_len);
    let tokens: usize = train.iter().map(Example::len).sum();
    tracing::info!(documents = train.len(), tokens, vocab = tokenizer.vocab_size(), "corpus");

    let Placement { device, kind } = options.placement;
    seed_everything(config.seed);
    let model_config =
        model_config(&config.model, tokenizer.vocab_size() as i64, tokenizer.eos_id(), tokenizer.pad_id());
    let mut model = CausalLm::new(model_config, device, kind)?;
    model.set_source_dir(Some(tokenizer_dir));
    let params: i64 = model.trainable_variables().iter().map(|(_, t)| t.numel() as i64).sum();
    tracing::info!(params, "base model");
    let summary = trainer::train(
        &model,
        &TrainJob {
            stage: "base",
            dir,
            config: &config.train,
            seed: config.seed,
            config_hash,
            train: &train,
            eval: &eval,
            pad_id: tokenizer.pad_id(),
            progress: options.progress,
        },
    )?;
    Ok(Outcome::Trained { dir: dir.final_dir(), summary })
}
