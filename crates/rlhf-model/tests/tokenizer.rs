//! Tokenizer: BPE training, the tokenization rule, loading/saving checkpoint directories, and
//! agreement with `transformers.AutoTokenizer` on a tokenizer trained and saved by this crate.
//!
//! `tests/fixtures/tokenizer/trained/` is what `Tokenizer::train_bpe` + `save` produce from
//! `corpus.txt` (rewrite it with `RLHF_UPDATE_FIXTURES=1 cargo test -p rlhf-model --test tokenizer`);
//! `expected.json` holds the ids `transformers` gives for sample texts (`make_fixtures.py`).

use anyhow::Result;
use rlhf_model::{Error, SpecialTokens, Tokenizer};
use serde::Deserialize;
use std::path::{Path, PathBuf};

const VOCAB_SIZE: usize = 400;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer")
}

fn corpus() -> Vec<String> {
    std::fs::read_to_string(fixtures().join("corpus.txt")).unwrap().lines().map(str::to_owned).collect()
}

fn trained() -> Tokenizer {
    Tokenizer::train_bpe(&corpus(), VOCAB_SIZE, &SpecialTokens::default()).unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

#[test]
fn training_is_deterministic_and_saves_the_committed_fixture() -> Result<()> {
    let saved = tempfile::tempdir()?;
    trained().save(saved.path())?;
    let again = tempfile::tempdir()?;
    trained().save(again.path())?;
    let fixture_dir = fixtures().join("trained");
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        let produced = read(&saved.path().join(file));
        assert_eq!(produced, read(&again.path().join(file)), "{file} differs between two trainings");
        if std::env::var_os("RLHF_UPDATE_FIXTURES").is_some() {
            std::fs::create_dir_all(&fixture_dir)?;
            std::fs::write(fixture_dir.join(file), &produced)?;
        }
        assert_eq!(produced, read(&fixture_dir.join(file)), "{file} differs from the committed fixture");
    }
    Ok(())
}

#[derive(Deserialize)]
struct Expected {
    eos_token_id: i64,
    pad_token_id: i64,
    vocab_size: usize,
    samples: Vec<Sample>,
}

#[derive(Deserialize)]
struct Sample {
    text: String,
    ids: Vec<i64>,
    decoded: String,
}

#[test]
fn encodes_and_decodes_like_transformers() -> Result<()> {
    let tokenizer = Tokenizer::from_dir(fixtures().join("trained"))?;
    let expected: Expected = serde_json::from_str(&read(&fixtures().join("expected.json")))?;
    assert_eq!(tokenizer.eos_id(), expected.eos_token_id);
    assert_eq!(tokenizer.pad_id(), expected.pad_token_id);
    assert_eq!(tokenizer.vocab_size(), expected.vocab_size);
    for sample in &expected.samples {
        assert_eq!(tokenizer.encode(&sample.text)?, sample.ids, "{:?}", sample.text);
        assert_eq!(sample.decoded, sample.text, "transformers round-trips {:?}", sample.text);
        assert_eq!(tokenizer.decode(&sample.ids, false)?, sample.text);
    }
    let texts: Vec<&str> = expected.samples.iter().map(|sample| sample.text.as_str()).collect();
    let batch = tokenizer.encode_batch(&texts)?;
    assert_eq!(batch, expected.samples.iter().map(|sample| sample.ids.clone()).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn any_text_round_trips() -> Result<()> {
    let tokenizer = trained();
    for text in ["", " ", "unseen wörds ∑ 漢字 🦀\r\n\ttail  ", "<|endoftext|> inside", "\u{0}\u{7f}"] {
        assert_eq!(tokenizer.decode(&tokenizer.encode(text)?, false)?, text, "{text:?}");
    }
    Ok(())
}

#[test]
fn special_tokens_take_the_first_ids() -> Result<()> {
    let tokenizer = trained();
    assert_eq!((tokenizer.eos_id(), tokenizer.pad_id(), tokenizer.bos_id()), (0, 1, None));
    assert_eq!(tokenizer.encode("a<|endoftext|>")?.last(), Some(&0), "special tokens in text are matched");
    assert_eq!(tokenizer.decode(&[0, 1], true)?, "");
    let no_pad = SpecialTokens { pad: None, bos: Some("<|bos|>".into()), ..SpecialTokens::default() };
    let tokenizer = Tokenizer::train_bpe(&corpus(), VOCAB_SIZE, &no_pad)?;
    assert_eq!((tokenizer.eos_id(), tokenizer.pad_id(), tokenizer.bos_id()), (0, 0, Some(1)));
    Ok(())
}

#[test]
fn prompt_and_response_are_tokenized_separately_with_eos_after_the_response() -> Result<()> {
    let tokenizer = trained();
    let pairs = [("The cat sat", " on the mat."), ("Hello", "world"), ("", "")];
    let batch = tokenizer.encode_prompt_response_batch(&pairs)?;
    assert_eq!(batch.len(), pairs.len());
    for ((prompt, response), ids) in pairs.iter().zip(&batch) {
        assert_eq!(ids, &tokenizer.encode_prompt_response(prompt, response)?);
        assert_eq!(ids.prompt, tokenizer.encode(prompt)?);
        let mut expected_response = tokenizer.encode(response)?;
        expected_response.push(tokenizer.eos_id());
        assert_eq!(ids.response, expected_response);
        assert_eq!(ids.concatenated(), [ids.prompt.clone(), ids.response.clone()].concat());
    }
    Ok(())
}

#[test]
fn saved_tokenizer_loads_back_identically() -> Result<()> {
    let tokenizer = trained();
    let dir = tempfile::tempdir()?;
    tokenizer.save(dir.path())?;
    let loaded = Tokenizer::from_dir(dir.path())?;
    let text = "Please summarize the story, naïvely: 42!";
    assert_eq!(loaded.encode(text)?, tokenizer.encode(text)?);
    assert_eq!(
        (loaded.eos_id(), loaded.pad_id(), loaded.bos_id(), loaded.vocab_size()),
        (tokenizer.eos_id(), tokenizer.pad_id(), tokenizer.bos_id(), tokenizer.vocab_size())
    );
    Ok(())
}

#[test]
fn vocab_must_fit_the_model_embedding() -> Result<()> {
    let tokenizer = trained();
    let vocab = tokenizer.vocab_size() as i64;
    tokenizer.check_fits_embedding(vocab)?;
    tokenizer.check_fits_embedding(vocab + 64)?;
    let error = tokenizer.check_fits_embedding(vocab - 1).unwrap_err();
    assert!(matches!(error, Error::VocabMismatch { .. }));
    assert!(error.to_string().starts_with("tokenizer mismatch: the tokenizer has"), "{error}");
    Ok(())
}

#[test]
fn broken_or_missing_files_are_named_in_the_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let message = |dir: &Path| Tokenizer::from_dir(dir).unwrap_err().to_string();

    let missing = message(dir.path());
    assert!(missing.contains("tokenizer.json") && missing.contains("not found"), "{missing}");

    std::fs::write(dir.path().join("tokenizer.json"), "{ not json")?;
    let broken = message(dir.path());
    assert!(broken.contains("tokenizer.json") && broken.contains("not a valid"), "{broken}");

    trained().save(dir.path())?;
    std::fs::write(dir.path().join("tokenizer_config.json"), r#"{"eos_token": "</s>"}"#)?;
    let unknown_eos = message(dir.path());
    assert!(unknown_eos.contains("tokenizer_config.json") && unknown_eos.contains("`</s>`"), "{unknown_eos}");

    std::fs::write(dir.path().join("tokenizer_config.json"), "[1, 2]")?;
    let not_object = message(dir.path());
    assert!(not_object.contains("tokenizer_config.json"), "{not_object}");
    Ok(())
}

#[test]
fn too_small_a_vocabulary_is_rejected() {
    let error = Tokenizer::train_bpe(&corpus(), 100, &SpecialTokens::default()).unwrap_err();
    assert!(error.to_string().contains("vocab_size 100 is too small"), "{error}");
}
