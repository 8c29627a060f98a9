//! A reward-model directory is one Hugging Face `*ForSequenceClassification` checkpoint
//! (`config.json` with `num_labels = 1`, `pad_token_id` and our `reward_normalization`,
//! `model.safetensors`, tokenizer files) or an ensemble: `ensemble.json` naming member checkpoint
//! directories inside it (`member-0/`, ...) and how their normalised rewards combine. Scoring is
//! rlhf-model's [`RewardModel`] (tokenizer, truncation, batching, normalisation, combination);
//! this writes the ensemble manifest.

use std::path::Path;

use rlhf_model::reward::EnsembleManifest;
pub use rlhf_model::reward::{RewardModel, DEFAULT_BATCH_SIZE};

/// Writes an ensemble manifest (`ensemble.json`) to `path`.
pub fn write_manifest(path: &Path, manifest: &EnsembleManifest) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(manifest).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}
