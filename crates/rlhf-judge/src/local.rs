//! A local checkpoint as the judge: each judging conversation goes through its chat template (or,
//! without one, is written out as `role: content` lines ending in "assistant: The better response
//! is"), one forward step gives the next-token distribution, and P(A) is the mass of the tokens
//! spelling `A` against those spelling `B` (with and without a leading space).

use std::path::Path;

use rlhf_data::conversation::plain_text;
use rlhf_data::{ChatMessage, PromptText};
use rlhf_model::{generate_streaming, CausalLm, GenerationConfig, Placement, Tokenizer};
use tch::{Kind, Tensor};

use crate::ai::Letters;
use crate::{Error, Result};

/// A policy checkpoint answering judging questions.
pub struct LocalModel {
    model: CausalLm,
    tokenizer: Tokenizer,
    name: String,
    letters: [Vec<i64>; 2],
    /// Conversations per forward pass.
    pub batch_size: usize,
}

impl LocalModel {
    /// Loads the checkpoint in `dir`; its name is the directory's.
    pub fn load(dir: &Path, placement: Placement) -> Result<LocalModel> {
        let tokenizer = Tokenizer::from_dir(dir)?;
        let model = CausalLm::from_pretrained(dir, placement.device, placement.kind)?;
        tokenizer.check_fits_embedding(model.config().vocab_size())?;
        let mut letters = [Vec::new(), Vec::new()];
        for (slot, letter) in ["A", "B"].iter().enumerate() {
            for spelling in [letter.to_string(), format!(" {letter}")] {
                if let [id] = tokenizer.encode(&spelling)?.as_slice() {
                    if !letters[slot].contains(id) {
                        letters[slot].push(*id);
                    }
                }
            }
            if letters[slot].is_empty() {
                return Err(Error::Input {
                    path: dir.into(),
                    message: format!("the tokenizer has no single token for `{letter}`: it cannot answer A or B"),
                });
            }
        }
        Ok(LocalModel { model, tokenizer, name: checkpoint_name(dir), letters, batch_size: 8 })
    }

    /// The same judge under another name (`""`: unchanged).
    pub fn named(mut self, name: &str) -> LocalModel {
        if !name.is_empty() {
            self.name = name.to_string();
        }
        self
    }
}

/// Each conversation as a prompt for the assistant's next turn: its turns (for a chat template) and
/// its plain text ending in `assistant:` then `cue` (for a model without one).
pub(crate) fn assistant_prompts(conversations: &[Vec<ChatMessage>], cue: &str) -> Vec<PromptText> {
    conversations
        .iter()
        .map(|turns| PromptText {
            text: format!("{}\nassistant:{cue}", plain_text(turns)),
            messages: Some(turns.clone()),
        })
        .collect()
}

/// A checkpoint's default name: its directory's.
pub(crate) fn checkpoint_name(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
}

impl Letters for LocalModel {
    fn model(&self) -> String {
        self.name.clone()
    }

    fn p_a(&self, conversations: &[Vec<ChatMessage>]) -> Result<Vec<Option<f64>>> {
        let prompts = assistant_prompts(conversations, " The better response is");
        let mut encoded = self.tokenizer.encode_generation_prompts(&prompts)?;
        let cut = rlhf_model::keep_last_tokens(&mut encoded, (self.model.config().max_positions() - 1).max(1) as usize);
        if cut > 0 {
            tracing::warn!(cut, "judging prompts longer than the judge's positions keep their last tokens");
        }
        let config = GenerationConfig {
            max_new_tokens: 1,
            do_sample: false,
            pad_token_id: self.tokenizer.pad_id(),
            ..GenerationConfig::default()
        };
        let mut out = Vec::with_capacity(encoded.len());
        for chunk in encoded.chunks(self.batch_size.max(1)) {
            let mut step = None;
            generate_streaming(&self.model, chunk, &config, |_, logits| {
                step = Some(logits.log_softmax(-1, Kind::Float));
                false
            })?;
            let log_probs = step.expect("one step ran");
            let mass = |ids: &[i64]| log_probs.index_select(1, &Tensor::from_slice(ids)).logsumexp([1], false);
            let margin = Vec::<f64>::try_from((mass(&self.letters[0]) - mass(&self.letters[1])).to_kind(Kind::Double))?;
            out.extend(margin.into_iter().map(|m| Some(1.0 / (1.0 + (-m).exp()))));
        }
        Ok(out)
    }
}
