//! What the tests share: a tiny random policy with its tokenizer.

use std::path::Path;

use rlhf_model::config::{LlamaConfig, ModelConfig, TokenIds};
use rlhf_model::{CausalLm, SpecialTokens, Tokenizer};

/// Writes a one-layer random Llama with a BPE tokenizer trained on "Tell me about the cat" chats to `dir`.
pub fn tiny_policy(dir: &Path) {
    let texts: Vec<String> =
        (0..50).map(|i| format!("User: Tell me about the cat {i}.\nAssistant: The cat is nice.")).collect();
    let tokenizer = Tokenizer::train_bpe(&texts, 300, &SpecialTokens::default()).unwrap();
    let mut config = ModelConfig::llama(LlamaConfig::new(tokenizer.vocab_size() as i64, 32, 64, 1, 2, 1));
    config.eos_token_id = Some(TokenIds::One(tokenizer.eos_id()));
    config.pad_token_id = Some(tokenizer.pad_id());
    tch::manual_seed(1);
    CausalLm::new(config, tch::Device::Cpu, tch::Kind::Float).unwrap().save_pretrained(dir).unwrap();
    tokenizer.save(dir).unwrap();
}
