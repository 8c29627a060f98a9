//! `generate`: K samples per prompt from a tiny random policy, reproducible, readable as a
//! demonstrations table with its `sample` column; greedy decoding at temperature 0 (what
//! `rlhf_model::generate` gives), `generation_config.json`'s end tokens and defaults, and prompts
//! through the tokenizer's chat template.

mod common;

use anyhow::Result;
use arrow::array::AsArray;
use arrow::datatypes::UInt32Type;
use rlhf_data::{read_records, write_records, Demonstration, Prompt, TableReader};
use rlhf_eval::generate::{generate_file, sample_tokens, SampleConfig, SampleSettings};
use rlhf_model::{
    generate_from_tokens, CausalLm, ChatMessage, ChatMode, DType, DeviceArgs, DeviceChoice, GenerationConfig,
    GenerationDefaults, Tokenizer,
};

#[test]
fn samples_k_responses_per_prompt_reproducibly() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = tmp.path().join("policy");
    common::tiny_policy(&model);
    let prompts: Vec<Prompt> = (0..5)
        .map(|i| Prompt {
            id: format!("p{i}"),
            prompt: format!("User: Tell me about the cat {i}.\nAssistant:"),
            prompt_messages: None,
        })
        .collect();
    let prompts_path = tmp.path().join("prompts.parquet");
    write_records(&prompts_path, &prompts)?;
    let config = SampleConfig { samples_per_prompt: 3, batch_size: 4, ..SampleConfig::default() };
    let placement = DeviceArgs { device: DeviceChoice::Cpu, dtype: DType::F32 }.resolve()?;
    let (a, b) = (tmp.path().join("a.parquet"), tmp.path().join("b.parquet"));
    let settings = SampleSettings { max_new_tokens: Some(8), ..SampleSettings::default() };
    let summary = generate_file(&model, &prompts_path, &a, config.clone(), &settings, 0, placement)?;
    generate_file(&model, &prompts_path, &b, config, &settings, 0, placement)?;
    assert_eq!(summary.prompts, 5);
    assert_eq!(summary.rows as usize + summary.empty, 15);

    let rows: Vec<Demonstration> = read_records(&a)?;
    assert_eq!(rows, read_records::<Demonstration>(&b)?, "the same seed gives the same samples");
    let batch = TableReader::open(&a)?.next().unwrap()?;
    let samples = batch.column_by_name("sample").unwrap().as_primitive::<UInt32Type>().values().to_vec();
    for (row, k) in rows.iter().zip(&samples) {
        let prompt = prompts.iter().find(|p| p.id == row.id).expect("ids are prompt ids");
        assert_eq!(row.prompt, prompt.prompt);
        assert!(*k < 3 && !row.response.trim().is_empty());
    }
    Ok(())
}

fn prompts(n: usize) -> Vec<Prompt> {
    (0..n)
        .map(|i| Prompt { id: format!("p{i}"), prompt: format!("Tell me about the cat {i}."), prompt_messages: None })
        .collect()
}

#[test]
fn temperature_zero_is_greedy_decoding_with_every_end_token() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("policy");
    common::tiny_policy(&dir);
    let (model, tokenizer) =
        (CausalLm::from_pretrained(&dir, tch::Device::Cpu, tch::Kind::Float)?, Tokenizer::from_dir(&dir)?);
    let prompts = prompts(4);
    let config = SampleConfig {
        samples_per_prompt: 2,
        temperature: 0.0,
        max_new_tokens: 12,
        batch_size: 3,
        ..SampleConfig::default()
    };
    let rows = sample_tokens(&model, &tokenizer, &prompts, &config)?;
    let ids: Vec<Vec<i64>> = prompts.iter().map(|p| tokenizer.encode(&p.prompt)).collect::<rlhf_model::Result<_>>()?;
    let greedy = generate_from_tokens(&model, &ids, &GenerationConfig::greedy_for(&model, 12))?.rows()?;
    for row in &rows {
        assert_eq!(row.tokens, greedy[row.prompt_index], "prompt {} sample {}", row.prompt_index, row.sample);
    }

    // A token the greedy rows produce becomes an end token through generation_config.json.
    let stop = rows[0].tokens[0];
    std::fs::write(
        dir.join("generation_config.json"),
        format!(r#"{{"eos_token_id": [{stop}, 999], "do_sample": false}}"#),
    )?;
    let defaults = GenerationDefaults::from_dir(&dir)?;
    assert_eq!((defaults.eos_token_ids(), defaults.temperature()), (vec![stop, 999], Some(0.0)));
    let from_file = SampleConfig { samples_per_prompt: 1, max_new_tokens: 12, ..SampleConfig::default() }
        .with_settings(&SampleSettings::default(), &defaults);
    assert_eq!((from_file.temperature, from_file.extra_eos_token_ids.clone()), (0.0, vec![stop, 999]));
    let first = sample_tokens(&model, &tokenizer, &prompts[..1], &from_file)?;
    assert_eq!((first[0].tokens.clone(), first[0].eos), (vec![stop], true), "stops at the listed end token");
    let sampled = SampleConfig::default()
        .with_settings(&SampleSettings { temperature: Some(0.7), ..Default::default() }, &defaults);
    assert_eq!(sampled.temperature, 0.7, "the command line wins over generation_config.json");

    std::fs::write(dir.join("generation_config.json"), "{ not json")?;
    let err = GenerationDefaults::from_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("generation_config.json"), "{err}");
    let bad = SampleConfig { temperature: -1.0, ..config };
    let err = sample_tokens(&model, &tokenizer, &prompts, &bad).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("temperature must be >= 0"), "{err}");
    Ok(())
}

#[test]
fn prompts_go_through_the_chat_template_when_the_tokenizer_has_one() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("policy");
    common::tiny_policy(&dir);
    let template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
    let config_file = dir.join("tokenizer_config.json");
    let mut tokenizer_config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_file)?)?;
    tokenizer_config["chat_template"] = template.into();
    std::fs::write(&config_file, tokenizer_config.to_string())?;
    let (model, tokenizer) =
        (CausalLm::from_pretrained(&dir, tch::Device::Cpu, tch::Kind::Float)?, Tokenizer::from_dir(&dir)?);
    let plain_tokenizer = Tokenizer::from_dir(&dir)?.with_chat_mode(ChatMode::None);

    let prompts = prompts(2);
    let config = SampleConfig { samples_per_prompt: 1, max_new_tokens: 4, ..SampleConfig::default() };
    let chat = sample_tokens(&model, &tokenizer, &prompts, &config)?;
    let plain = sample_tokens(&model, &plain_tokenizer, &prompts, &config)?;
    for ((row, plain), prompt) in chat.iter().zip(&plain).zip(&prompts) {
        let rendered = tokenizer.apply_chat_template(&[ChatMessage::new("user", &prompt.prompt)], true)?;
        assert!(rendered.ends_with("<|assistant|>") && rendered.contains(&prompt.prompt), "{rendered}");
        assert_eq!(row.prompt_tokens, tokenizer.encode(&rendered)?);
        assert_eq!(plain.prompt_tokens, tokenizer.encode(&prompt.prompt)?);
        assert_ne!(row.prompt_tokens, plain.prompt_tokens);
    }
    Ok(())
}

#[test]
fn a_prompt_longer_than_the_model_allows_keeps_its_last_tokens() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("policy");
    common::tiny_policy(&dir);
    let config_file = dir.join("config.json");
    let text = std::fs::read_to_string(&config_file)?;
    let mut json: serde_json::Value = serde_json::from_str(&text)?;
    json["max_position_embeddings"] = 32.into();
    std::fs::write(&config_file, json.to_string())?;
    let (model, tokenizer) =
        (CausalLm::from_pretrained(&dir, tch::Device::Cpu, tch::Kind::Float)?, Tokenizer::from_dir(&dir)?);
    let long = Prompt { id: "long".into(), prompt: "Tell me about the cat 7. ".repeat(20), prompt_messages: None };
    let ids = tokenizer.encode(&long.prompt)?;
    assert!(ids.len() > 32, "the prompt must not fit: {} tokens", ids.len());
    let config = SampleConfig { samples_per_prompt: 1, temperature: 0.0, max_new_tokens: 8, ..SampleConfig::default() };
    let rows = sample_tokens(&model, &tokenizer, std::slice::from_ref(&long), &config)?;
    let last = vec![ids[ids.len() - 24..].to_vec()];
    let greedy = generate_from_tokens(&model, &last, &GenerationConfig::greedy_for(&model, 8))?.rows()?;
    assert_eq!(rows[0].tokens, greedy[0], "generated from the prompt's last 32 - 8 tokens");
    let no_room = SampleConfig { max_new_tokens: 32, ..config };
    let err = sample_tokens(&model, &tokenizer, &[long], &no_room).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("leaves no room for a prompt in the model's 32 positions"), "{err}");
    Ok(())
}

#[test]
fn a_table_of_many_chunks_streams_to_the_samples_of_one_pass() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("policy");
    common::tiny_policy(&dir);
    // More prompts than one chunk holds (8100 at batch 100), so the stream crosses chunk borders.
    let prompts = prompts(8_400);
    let path = tmp.path().join("prompts.parquet");
    write_records(&path, &prompts)?;
    let config = SampleConfig { samples_per_prompt: 2, batch_size: 100, max_new_tokens: 2, ..SampleConfig::default() };
    let settings = SampleSettings { max_new_tokens: Some(2), ..SampleSettings::default() };
    let placement = DeviceArgs { device: DeviceChoice::Cpu, dtype: DType::F32 }.resolve()?;
    let streamed = tmp.path().join("streamed.parquet");
    let summary = generate_file(&dir, &path, &streamed, config.clone(), &settings, 8_300, placement)?;
    assert_eq!(summary.prompts, 8_300, "max_prompts stops the stream");

    let (model, tokenizer) =
        (CausalLm::from_pretrained(&dir, tch::Device::Cpu, tch::Kind::Float)?, Tokenizer::from_dir(&dir)?);
    let (samples, empty) = rlhf_eval::generate::sample_responses(&model, &tokenizer, &prompts[..8_300], &config)?;
    let whole = tmp.path().join("whole.parquet");
    rlhf_eval::generate::write_samples(&whole, &samples)?;
    assert_eq!(summary.empty, empty);
    assert_eq!(read_records::<Demonstration>(&streamed)?, read_records::<Demonstration>(&whole)?);
    Ok(())
}
