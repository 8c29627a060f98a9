//! The loss covers response tokens only: checked against log-probs read off a plain forward pass,
//! for a hand-built example, for a padded batch, and for the tokenization rule.

mod common;

use anyhow::Result;
use rlhf_data::Demonstration;
use rlhf_model::config::{LlamaConfig, ModelConfig};
use rlhf_model::{CausalLm, Tokenizer};
use rlhf_sft::data::{tokenize_demonstrations, Example};
use rlhf_sft::trainer::nll_sum;
use tch::{Device, Kind, Tensor};

fn tiny_model() -> Result<CausalLm> {
    tch::manual_seed(7);
    let config = ModelConfig::llama(LlamaConfig::new(16, 16, 32, 2, 2, 2));
    Ok(CausalLm::new(config, Device::Cpu, Kind::Float)?)
}

/// `-log p(ids[j] | ids[..j])` for the listed positions `j`, from the full logits of `ids`.
fn nll_at(model: &CausalLm, ids: &[i64], positions: &[usize]) -> f64 {
    let input = Tensor::from_slice(ids).view([1, -1]);
    let logp = model.forward(&input, None).unwrap().log_softmax(-1, Kind::Float);
    positions.iter().map(|&j| -logp.double_value(&[0, j as i64 - 1, ids[j]])).sum()
}

fn loss(model: &CausalLm, examples: &[&Example]) -> f64 {
    tch::no_grad(|| nll_sum(model, examples, 15).unwrap().double_value(&[]))
}

#[test]
fn only_response_tokens_count() -> Result<()> {
    let model = tiny_model()?;
    // prompt [1 2 3], response [4 5] + eos 0: the loss is -log p(4|1 2 3) - log p(5|..4) - log p(0|..5).
    let example = Example { prompt: vec![1, 2, 3], target: vec![4, 5, 0], prompt_targets: Vec::new() };
    assert_eq!(example.scored(), 3);
    let expected = nll_at(&model, &[1, 2, 3, 4, 5, 0], &[3, 4, 5]);
    assert!((loss(&model, &[&example]) - expected).abs() < 1e-4);

    // Scoring the prompt tokens as well would give a clearly different number.
    let with_prompt = nll_at(&model, &[1, 2, 3, 4, 5, 0], &[1, 2, 3, 4, 5]);
    assert!((with_prompt - expected).abs() > 1e-2);

    // Pretraining rows (no prompt) score every token but the first.
    let row = Example { prompt: vec![], target: vec![7, 8, 9, 10], prompt_targets: Vec::new() };
    assert_eq!(row.scored(), 3);
    assert!((loss(&model, &[&row]) - nll_at(&model, &[7, 8, 9, 10], &[1, 2, 3])).abs() < 1e-4);
    Ok(())
}

#[test]
#[allow(clippy::single_range_in_vec_init)] // one span per row is the case under test
fn earlier_assistant_turns_in_the_prompt_count_too() -> Result<()> {
    let model = tiny_model()?;
    // prompt [1 2 3 4] whose tokens 1..3 are an earlier assistant turn, response [5] + eos 0.
    let example = Example { prompt: vec![1, 2, 3, 4], target: vec![5, 0], prompt_targets: vec![1..3] };
    assert_eq!(example.scored(), 4);
    let expected = nll_at(&model, &[1, 2, 3, 4, 5, 0], &[1, 2, 4, 5]);
    assert!((loss(&model, &[&example]) - expected).abs() < 1e-4);
    // In a padded batch beside a longer row, and a span from the row's first token (unscored).
    let long = Example { prompt: vec![6, 7, 8, 9, 10, 11], target: vec![12, 0], prompt_targets: vec![0..2] };
    assert_eq!(long.scored(), 3);
    let apart = loss(&model, &[&example]) + loss(&model, &[&long]);
    assert!((loss(&model, &[&example, &long]) - apart).abs() < 1e-4);
    assert!((loss(&model, &[&long]) - nll_at(&model, &[6, 7, 8, 9, 10, 11, 12, 0], &[1, 6, 7])).abs() < 1e-4);
    Ok(())
}

#[test]
fn padding_in_a_batch_changes_nothing() -> Result<()> {
    let model = tiny_model()?;
    let short = Example { prompt: vec![1, 2], target: vec![3, 0], prompt_targets: Vec::new() };
    let long = Example { prompt: vec![4, 5, 6, 7], target: vec![8, 9, 10, 11, 0], prompt_targets: Vec::new() };
    let apart = loss(&model, &[&short]) + loss(&model, &[&long]);
    assert!((loss(&model, &[&short, &long]) - apart).abs() < 1e-4);
    Ok(())
}

#[test]
fn demonstrations_tokenize_as_prompt_then_response_then_eos() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let tokenizer = Tokenizer::from_dir(common::tiny_base(tmp.path()))?;
    let demo = Demonstration {
        id: "a".into(),
        prompt: "User: Hi?\nAssistant:".into(),
        response: " Hello there.".into(),
        prompt_messages: None,
    };
    let (examples, cut) = tokenize_demonstrations(&tokenizer, std::slice::from_ref(&demo), 256)?;
    assert_eq!(cut, 0);
    let mut response = tokenizer.encode(&demo.response)?;
    response.push(tokenizer.eos_id());
    assert_eq!(
        examples[0],
        Example { prompt: tokenizer.encode(&demo.prompt)?, target: response, prompt_targets: Vec::new() }
    );

    let (cut_examples, cut) = tokenize_demonstrations(&tokenizer, &[demo], 5)?;
    assert_eq!((cut, cut_examples[0].len()), (1, 5));
    Ok(())
}
