//! Import: every Hugging Face layout from the fixtures in `tests/data`, format detection,
//! Parquet inputs, and each kind of bad input (one clear error, no output left behind).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, LargeStringArray, ListBuilder, RecordBatch, StringBuilder, StructBuilder};
use arrow::datatypes::{DataType, Field, Fields, Schema};
use rlhf_data::{
    import, read_records, Comparison, Demonstration, Feedback, Format, ImportOptions, Kind, Prompt, Ranking, Record,
    TableWriter,
};
use tempfile::TempDir;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn options(kind: Kind) -> ImportOptions {
    ImportOptions { kind, format: Format::Auto }
}

/// Imports `input` with auto-detection, checks the detected format, returns the records.
fn import_auto<R: Record>(input: &Path, kind: Kind, expected: Format) -> Vec<R> {
    let dir = TempDir::new().unwrap();
    let output = dir.path().join("out.parquet");
    let summary = import(input, &output, &options(kind)).unwrap();
    assert_eq!(summary.format, expected, "{}", input.display());
    let records = read_records::<R>(&output).unwrap();
    assert_eq!(summary.rows, records.len() as u64);
    records
}

#[test]
fn comparison_layouts() {
    let cases = [
        ("pairs.jsonl", Format::PromptChosenRejected),
        ("pairs_conversational.jsonl", Format::PromptChosenRejected),
        ("hh.jsonl", Format::ChosenRejected),
        ("implicit_conversational.jsonl", Format::ChosenRejected),
    ];
    for (name, format) in cases {
        let records = import_auto::<Comparison>(&fixture(name), Kind::Comparisons, format);
        insta::assert_yaml_snapshot!(name, records);
    }
}

#[test]
fn demonstration_layouts() {
    let cases = [
        ("sft_completion.jsonl", Format::PromptCompletion),
        ("sft_response.jsonl", Format::PromptResponse),
        ("sft_messages.jsonl", Format::Messages),
    ];
    for (name, format) in cases {
        let records = import_auto::<Demonstration>(&fixture(name), Kind::Demonstrations, format);
        insta::assert_yaml_snapshot!(name, records);
    }
}

#[test]
fn prompt_and_ranking_layouts() {
    let prompts = import_auto::<Prompt>(&fixture("prompts.jsonl"), Kind::Prompts, Format::Prompt);
    insta::assert_yaml_snapshot!("prompts.jsonl", prompts);
    let rankings = import_auto::<Ranking>(&fixture("rankings.jsonl"), Kind::Rankings, Format::PromptResponsesRanking);
    insta::assert_yaml_snapshot!("rankings.jsonl", rankings);
}

#[test]
fn unpaired_labels_import_as_feedback_and_a_label_must_be_a_boolean() {
    let labels = import_auto::<Feedback>(&fixture("feedback.jsonl"), Kind::Feedback, Format::PromptCompletionLabel);
    let summary: Vec<(&str, &str, bool)> =
        labels.iter().map(|l| (l.id.as_str(), l.completion.as_str(), l.label)).collect();
    assert_eq!(
        summary,
        [
            ("feedback-0", "The river is calm and bright.", true),
            ("feedback-1", "Whatever. Rivers are dull.", false),
            ("12", "The hill is green.", true)
        ]
    );
    assert_eq!(labels[1].annotator.as_deref(), Some("human:7"));
    assert_eq!(labels[2].prompt, "user: Tell me about the hill.");
    assert!(labels[2].prompt_messages.is_some());

    let dir = TempDir::new().unwrap();
    let input = dir.path().join("bad.jsonl");
    std::fs::write(&input, r#"{"prompt": "p", "completion": "c", "label": "yes"}"#).unwrap();
    let output = dir.path().join("out.parquet");
    let err = import(&input, &output, &options(Kind::Feedback)).unwrap_err().to_string();
    assert!(err.contains("bad.jsonl") && err.contains("label") && err.contains("a boolean"), "{err}");
    assert!(!output.exists());
}

#[test]
fn an_explicit_format_overrides_detection() {
    // A row with prompt, completion and messages: auto picks prompt-completion.
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("both.jsonl");
    std::fs::write(
        &input,
        r#"{"prompt": "p", "completion": "c", "messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}"#,
    )
    .unwrap();
    let output = dir.path().join("out.parquet");
    for (format, expected) in [(Format::Auto, ("p", "c")), (Format::Messages, ("user: u", "a"))] {
        let options = ImportOptions { kind: Kind::Demonstrations, format };
        import(&input, &output, &options).unwrap();
        let record = read_records::<Demonstration>(&output).unwrap().remove(0);
        assert_eq!((record.prompt.as_str(), record.response.as_str()), expected);
    }
}

#[test]
fn a_byte_order_mark_and_windows_line_ends_are_accepted() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("windows.jsonl");
    std::fs::write(&input, "\u{feff}{\"prompt\": \"a\"}\r\n\r\n{\"prompt\": \"b\"}\r\n").unwrap();
    let prompts = import_auto::<Prompt>(&input, Kind::Prompts, Format::Prompt);
    let found: Vec<(&str, &str)> = prompts.iter().map(|p| (p.id.as_str(), p.prompt.as_str())).collect();
    assert_eq!(found, [("windows-0", "a"), ("windows-2", "b")]);
}

/// An HF-style Parquet file: large strings, conversations as lists of structs, extra columns.
fn write_hf_parquet(path: &Path, null_rejected_at: Option<usize>) {
    let turn =
        Fields::from(vec![Field::new("content", DataType::Utf8, true), Field::new("role", DataType::Utf8, true)]);
    let turns = || {
        ListBuilder::new(StructBuilder::from_fields(turn.clone(), 0)).with_field(Arc::new(Field::new(
            "element",
            DataType::Struct(turn.clone()),
            true,
        )))
    };
    let append = |builder: &mut ListBuilder<StructBuilder>, row: usize, answer: &str| {
        let values = builder.values();
        for (role, text) in [("user", format!("question {row}")), ("assistant", answer.into())] {
            values.field_builder::<StringBuilder>(0).unwrap().append_value(text);
            values.field_builder::<StringBuilder>(1).unwrap().append_value(role);
            values.append(true);
        }
        builder.append(true);
    };
    let (mut chosen, mut rejected) = (turns(), turns());
    for row in 0..3 {
        append(&mut chosen, row, "yes");
        match Some(row) == null_rejected_at {
            true => rejected.append(false),
            false => append(&mut rejected, row, "no"),
        }
    }
    let prompt: ArrayRef = Arc::new(LargeStringArray::from(vec!["question 0", "question 1", "question 2"]));
    let score: ArrayRef = Arc::new(Float64Array::from(vec![9.0, 8.0, 7.0]));
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("prompt", prompt),
        ("chosen", Arc::new(chosen.finish())),
        ("rejected", Arc::new(rejected.finish())),
        ("score_chosen", score),
    ];
    let schema = Arc::new(Schema::new(
        columns.iter().map(|(name, array)| Field::new(*name, array.data_type().clone(), true)).collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|(_, a)| a).collect()).unwrap();
    let mut writer = TableWriter::create(path, schema).unwrap();
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
}

#[test]
fn parquet_inputs_in_hf_layouts() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("ultrafeedback.parquet");
    write_hf_parquet(&input, None);
    let records = import_auto::<Comparison>(&input, Kind::Comparisons, Format::PromptChosenRejected);
    insta::assert_yaml_snapshot!("ultrafeedback.parquet", records);
}

/// Tables written by pyarrow, pandas, polars and DuckDB with their defaults (snappy; zstd for
/// polars) and by pyarrow with every other codec: all import to the same demonstrations.
#[test]
fn parquet_from_the_ecosystem_in_every_default_codec() {
    let defaults = ["pyarrow_default", "pandas_default", "polars_default", "duckdb_default"];
    let codecs = ["pyarrow_gzip", "pyarrow_lz4", "pyarrow_brotli", "pyarrow_zstd", "pyarrow_none"];
    for name in defaults.into_iter().chain(codecs) {
        let input = fixture(&format!("parquet/{name}.parquet"));
        let records = import_auto::<Demonstration>(&input, Kind::Demonstrations, Format::PromptResponse);
        let pairs: Vec<(&str, &str)> = records.iter().map(|r| (r.prompt.as_str(), r.response.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("What is the capital of France?", " The capital of France is Paris."),
                ("Name a colour.", " Blue."),
                ("Say hello in Spanish. ¿Sí?", " Hola."),
            ],
            "{name}"
        );
    }
}

/// Chat datasets as pandas writes them (`list<struct<role, content>>` columns, snappy): conversations
/// stay conversations (`make_conversation_fixtures.py`).
#[test]
fn conversations_from_pandas_parquet_stay_conversations() {
    let sft = import_auto::<Demonstration>(
        &fixture("parquet/pandas_messages.parquet"),
        Kind::Demonstrations,
        Format::Messages,
    );
    insta::assert_yaml_snapshot!("pandas_messages.parquet", sft);
    let preferences = import_auto::<Comparison>(
        &fixture("parquet/pandas_preferences.parquet"),
        Kind::Comparisons,
        Format::PromptChosenRejected,
    );
    insta::assert_yaml_snapshot!("pandas_preferences.parquet", preferences);
}

#[test]
fn a_large_file_keeps_line_numbers_and_ids_across_blocks() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("big.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    let filler = "x".repeat(300);
    let rows = 40_000;
    for row in 0..rows {
        writeln!(file, r#"{{"prompt": "prompt {row} {filler}", "completion": "answer {row}"}}"#).unwrap();
    }
    drop(file);
    let records = import_auto::<Demonstration>(&input, Kind::Demonstrations, Format::PromptCompletion);
    assert_eq!(records.len(), rows);
    for (row, record) in records.iter().enumerate() {
        assert_eq!(record.id, format!("big-{row}"));
        assert_eq!(record.response, format!("answer {row}"));
    }

    // The same file with one bad line far past the first block.
    let mut text = std::fs::read_to_string(&input).unwrap();
    text = text.replacen("\"answer 31000\"", "\"  \"", 1);
    std::fs::write(&input, text).unwrap();
    let output = dir.path().join("out.parquet");
    let error = import(&input, &output, &options(Kind::Demonstrations)).unwrap_err();
    assert_eq!(error.to_string(), format!("{} line 31001: \"response\" is empty", input.display()));
    assert!(!output.exists());
}

#[test]
fn repeated_ids_are_counted_across_blocks_and_the_first_is_named() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("twice.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    let filler = "x".repeat(300);
    // 30k distinct ids (about 10 MB: several blocks, converted in parallel), then 3 of them again.
    for row in (0..30_000).chain([7, 29_999, 7]) {
        writeln!(file, r#"{{"id": "pair-{row}", "prompt": "p {filler}", "chosen": "c", "rejected": "r"}}"#).unwrap();
    }
    drop(file);
    let summary = import(&input, dir.path().join("out.parquet"), &options(Kind::Comparisons)).unwrap();
    assert_eq!((summary.rows, summary.repeated_ids), (30_003, 3));
    assert_eq!(summary.first_repeated_id.as_deref(), Some("pair-7"));
    let once = dir.path().join("once.jsonl");
    std::fs::write(&once, format!("{PAIR}\n{PAIR}\n")).unwrap();
    let summary = import(&once, dir.path().join("once.parquet"), &options(Kind::Comparisons)).unwrap();
    assert_eq!((summary.repeated_ids, summary.first_repeated_id), (0, None), "generated ids never repeat");
}

/// One bad input: its bytes, the kind imported, and the error after `<path>`.
struct BadInput {
    name: &'static str,
    kind: Kind,
    contents: &'static [u8],
    error: &'static str,
}

const PAIR: &str = r#"{"prompt": "p", "chosen": "c", "rejected": "r"}"#;

fn bad_inputs() -> Vec<BadInput> {
    let bad = |name, kind, contents, error| BadInput { name, kind, contents, error };
    use Kind::*;
    vec![
        bad(
            "broken_json.jsonl",
            Comparisons,
            b"{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"r\"}\n\n{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"r\"}\n{\"prompt\": \"p\", \"chosen\": \n",
            " line 4 column 26: invalid JSON (EOF while parsing a value)",
        ),
        bad(
            "trailing_comma.jsonl",
            Comparisons,
            b"{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"r\",}\n",
            " line 1 column 48: invalid JSON (trailing comma)",
        ),
        bad(
            "missing_key.jsonl",
            Comparisons,
            b"{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"r\"}\n{\"prompt\": \"p\", \"chosen\": \"c\"}\n",
            " line 2: missing key \"rejected\"",
        ),
        bad(
            "wrong_type.jsonl",
            Comparisons,
            b"{\"prompt\": \"p\", \"chosen\": 5, \"rejected\": \"r\"}\n",
            " line 1: \"chosen\" is a number, expected a string or a list of {role, content} turns",
        ),
        bad(
            "null_prompt.jsonl",
            Prompts,
            b"{\"prompt\": \"a\"}\n{\"prompt\": null}\n",
            " line 2: \"prompt\" is null, expected a string or a list of {role, content} turns",
        ),
        bad(
            "bad_id.jsonl",
            Prompts,
            b"{\"id\": [1], \"prompt\": \"p\"}\n",
            " line 1: \"id\" is a list, expected a string or an integer",
        ),
        bad(
            "bad_turn.jsonl",
            Demonstrations,
            b"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\"}]}\n",
            " line 1: missing key \"messages[1].content\"",
        ),
        bad(
            "turn_not_object.jsonl",
            Demonstrations,
            b"{\"messages\": [\"hi\"]}\n",
            " line 1: \"messages[0]\" is a string, expected a {role, content} object",
        ),
        bad(
            "no_assistant.jsonl",
            Demonstrations,
            b"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n",
            " line 1: \"messages\" does not end with an assistant turn",
        ),
        bad(
            "empty_prompt.jsonl",
            Comparisons,
            b"{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"r\"}\n{\"prompt\": \" \\t\\n\", \"chosen\": \"c\", \"rejected\": \"r\"}\n",
            " line 2: \"prompt\" is empty",
        ),
        bad(
            "empty_response.jsonl",
            Demonstrations,
            b"{\"prompt\": \"p\", \"completion\": \"\"}\n",
            " line 1: \"response\" is empty",
        ),
        bad(
            "empty_rejected.jsonl",
            Comparisons,
            b"{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": [{\"role\": \"assistant\", \"content\": \"  \"}]}\n",
            " line 1: \"rejected\" is empty",
        ),
        bad(
            "invalid_utf8.jsonl",
            Prompts,
            b"{\"prompt\": \"ok\"}\n{\"prompt\": \"caf\xe9\"}\n",
            " line 2 column 16: invalid UTF-8",
        ),
        bad(
            "not_an_object.jsonl",
            Prompts,
            b"{\"prompt\": \"ok\"}\n42\n",
            " line 2: record is a number, expected a JSON object",
        ),
        bad(
            "array.json",
            Prompts,
            b"[{\"prompt\": \"p\"}]\n",
            ": is a JSON array, expected JSON Lines (one object per line)",
        ),
        bad("empty.jsonl", Prompts, b"\n  \n", ": has no records"),
        bad(
            "unknown_layout.jsonl",
            Comparisons,
            b"{\"text\": \"t\", \"label\": 1}\n",
            ": keys [\"label\", \"text\"] match no comparisons layout, expected prompt-chosen-rejected (prompt, chosen, rejected) or chosen-rejected (chosen, rejected)",
        ),
        bad(
            "hh_mismatch.jsonl",
            Comparisons,
            b"{\"chosen\": \"\\n\\nHuman: a\\n\\nAssistant: b\", \"rejected\": \"\\n\\nHuman: x\\n\\nAssistant: b\"}\n",
            " line 1: chosen and rejected have different prompts (everything before their last assistant turn must be equal)",
        ),
        bad(
            "hh_no_assistant.jsonl",
            Comparisons,
            b"{\"chosen\": \"\\n\\nHuman: a\", \"rejected\": \"\\n\\nHuman: a\\n\\nAssistant: b\"}\n",
            " line 1: \"chosen\" has no \"\\n\\nAssistant:\" turn",
        ),
        bad(
            "hh_mixed.jsonl",
            Comparisons,
            b"{\"chosen\": \"\\n\\nHuman: a\\n\\nAssistant: b\", \"rejected\": [{\"role\": \"assistant\", \"content\": \"b\"}]}\n",
            " line 1: \"rejected\" is a list, expected a string like \"chosen\"",
        ),
        bad(
            "bad_ranking.jsonl",
            Rankings,
            b"{\"prompt\": \"p\", \"responses\": [\"a\", \"b\"], \"ranking\": [1, 1]}\n",
            " line 1: ranking [1, 1] is not a permutation of the 2 response indices",
        ),
        bad(
            "negative_rank.jsonl",
            Rankings,
            b"{\"prompt\": \"p\", \"responses\": [\"a\", \"b\"], \"ranking\": [1, -1]}\n",
            " line 1: \"ranking[1]\" is a number, expected a non-negative integer",
        ),
    ]
}

#[test]
fn bad_inputs_fail_with_one_clear_error_and_no_output() {
    for case in bad_inputs() {
        let dir = TempDir::new().unwrap();
        let input = dir.path().join(case.name);
        std::fs::write(&input, case.contents).unwrap();
        let output = dir.path().join("out/table.parquet");
        let error = import(&input, &output, &options(case.kind)).unwrap_err().to_string();
        assert_eq!(error, format!("{}{}", input.display(), case.error), "{}", case.name);
        assert_eq!(error.lines().count(), 1, "{}", case.name);
        assert!(!output.exists(), "{}", case.name);
        let left: Vec<_> =
            std::fs::read_dir(dir.path().join("out")).map(|entries| entries.collect()).unwrap_or_default();
        assert!(left.is_empty(), "{}: left {left:?}", case.name);
    }
}

#[test]
fn a_null_in_a_parquet_input_names_the_row() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("hf.parquet");
    write_hf_parquet(&input, Some(2));
    let output = dir.path().join("out.parquet");
    let error = import(&input, &output, &options(Kind::Comparisons)).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{} row 2: \"rejected\" is null, expected a string or a list of {{role, content}} turns",
            input.display()
        )
    );
    assert!(!output.exists());
}

#[test]
fn unusable_inputs_and_options_are_refused() {
    let dir = TempDir::new().unwrap();
    let output = dir.path().join("out.parquet");
    let pairs = dir.path().join("pairs.jsonl");
    std::fs::write(&pairs, PAIR).unwrap();
    let cases = [
        (
            dir.path().to_path_buf(),
            options(Kind::Comparisons),
            format!("{}: is a directory, expected a file", dir.path().display()),
        ),
        (
            dir.path().join("missing.jsonl"),
            options(Kind::Comparisons),
            format!(
                "{}: cannot open: No such file or directory (os error 2)",
                dir.path().join("missing.jsonl").display()
            ),
        ),
        (
            pairs.clone(),
            options(Kind::Rollouts),
            "rollouts cannot be imported, only prompts, demonstrations, comparisons and rankings can"
                .to_string(),
        ),
        (
            pairs.clone(),
            ImportOptions {
                kind: Kind::Comparisons,
                format: Format::Messages,
            },
            "format messages is not a comparisons layout, expected prompt-chosen-rejected (prompt, chosen, rejected) or chosen-rejected (chosen, rejected)".to_string(),
        ),
        (
            pairs.clone(),
            ImportOptions {
                kind: Kind::Comparisons,
                format: Format::ChosenRejected,
            },
            format!("{} line 1: \"chosen\" has no \"\\n\\nAssistant:\" turn", pairs.display()),
        ),
    ];
    for (input, options, message) in cases {
        let error = import(&input, &output, &options).unwrap_err();
        assert_eq!(error.to_string(), message);
        assert!(!output.exists());
    }
}

#[test]
fn a_margin_that_is_not_a_finite_number_names_the_row() {
    let dir = TempDir::new().unwrap();
    for (value, shown) in [(f64::NAN, "NaN"), (f64::INFINITY, "inf"), (1e300, "1e+300 (beyond f32)")] {
        let input = dir.path().join("pairs.parquet");
        let text = |rows: [&str; 2]| -> ArrayRef { Arc::new(arrow::array::StringArray::from(rows.to_vec())) };
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("prompt", text(["a", "b"])),
            ("chosen", text(["yes", "yes"])),
            ("rejected", text(["no", "no"])),
            ("margin", Arc::new(Float64Array::from(vec![1.0, value]))),
        ];
        let schema = Arc::new(Schema::new(
            columns.iter().map(|(name, a)| Field::new(*name, a.data_type().clone(), false)).collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|(_, a)| a).collect()).unwrap();
        let mut writer = TableWriter::create(&input, schema).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        let output = dir.path().join("out.parquet");
        let error = import(&input, &output, &options(Kind::Comparisons)).unwrap_err().to_string();
        let expected = format!("{} row 1: \"margin\" is {shown}, expected a finite number", input.display());
        assert_eq!(error, expected);
        assert!(!output.exists());
    }
}
