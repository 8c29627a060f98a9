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
