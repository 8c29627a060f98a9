//! Parquet tables: round-trips of every record kind, schema snapshots, schema checks on read,
//! atomic writes, extra columns kept, and directories of parts read as one table.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use rlhf_data::{
    append_column, inspect, read_records, read_table, render_schema, validate_table, write_records, ChatMessage,
    Comparison, Demonstration, Kind, Metric, Prompt, Ranking, Record, RecordReader, Revision, Rollout, TableWriter,
    Verdict, SCHEMA_KEY,
};
use tempfile::TempDir;

/// The names in `dir`, sorted: what a failed write must not leave behind.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn round_trip<R: Record + PartialEq + std::fmt::Debug>(records: Vec<R>) {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("nested/table.parquet");
    assert_eq!(write_records(&path, &records).unwrap(), records.len() as u64);
    assert_eq!(read_records::<R>(&path).unwrap(), records);
    assert_eq!(validate_table(&path, R::KIND).unwrap(), records.len() as u64);
    assert_eq!(entries(&dir.path().join("nested")), ["table.parquet"]);
}

fn comparison(index: usize) -> Comparison {
    Comparison {
        id: format!("c-{index}"),
        prompt: format!("prompt {index} \u{e9}\u{4e2d}\n"),
        chosen: format!("chosen {index}"),
        rejected: format!("rejected {index}"),
        margin: index.is_multiple_of(2).then_some(index as f32 / 4.0),
        annotator: index.is_multiple_of(3).then(|| format!("annotator-{}", index % 5)),
        source: index.is_multiple_of(4).then(|| "hh".to_string()),
        prompt_messages: index.is_multiple_of(5).then(|| {
            vec![ChatMessage::new("system", "Be brief."), ChatMessage::new("user", format!("prompt {index}"))]
        }),
        objective: index.is_multiple_of(6).then(|| "harmless".to_string()),
    }
}

const CONVERSATION: &str = "List<Struct<role: Utf8, content: Utf8>>";

/// A multi-turn conversation before the final assistant turn.
fn conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", "Be kind."),
        ChatMessage::new("user", "Hi"),
        ChatMessage::new("assistant", "Hello!"),
        ChatMessage::new("user", "Say bye \u{e9}."),
    ]
}

#[test]
fn every_kind_round_trips() {
    round_trip((0..20_000).map(comparison).collect());
    round_trip(Vec::<Comparison>::new());
    round_trip(
        (0..3)
            .map(|i| Prompt {
                id: format!("p{i}"),
                prompt: format!("prompt {i}"),
                prompt_messages: (i == 1).then(conversation),
            })
            .collect(),
    );
    round_trip(vec![
        Demonstration { id: "d".into(), prompt: "Say hi.".into(), response: " Hi!".into(), prompt_messages: None },
        Demonstration {
            id: "m".into(),
            prompt: rlhf_data::conversation::plain_text(&conversation()),
            response: "Bye.".into(),
            prompt_messages: Some(conversation()),
        },
    ]);
    round_trip(vec![
        Ranking {
            id: "r0".into(),
            prompt: "p".into(),
            responses: vec!["a".into(), "b".into(), "c".into()],
            ranking: vec![2, 0, 1],
            prompt_messages: Some(conversation()),
            annotator: Some("human:ada".into()),
        },
        Ranking {
            id: "r1".into(),
            prompt: "q".into(),
            responses: vec!["only".into()],
            ranking: vec![0],
            prompt_messages: None,
            annotator: None,
        },
    ]);
    round_trip(vec![
        Rollout {
            id: "o".into(),
            prompt: "p".into(),
            response: "r".into(),
            prompt_tokens: vec![1, 2, 3],
            response_tokens: vec![4, 5],
            logprobs: vec![-0.5, -1.25],
            ref_logprobs: vec![-0.75, -1.0],
            values: vec![0.1, 0.2],
            reward: 1.5,
            kl: 0.01,
            step: 7,
        },
        Rollout::default(),
    ]);
    round_trip(vec![Metric {
        stage: "ppo".into(),
        step: 3,
        name: "reward/mean".into(),
        value: 0.25,
        wall_time: 1_700_000_000.5,
    }]);
    round_trip(vec![
        revision(),
        Revision { id: "none".into(), principles: vec![], critiques: vec![], revisions: vec![], ..revision() },
    ]);
    round_trip(vec![verdict(), Verdict { p_ab: None, ..verdict() }]);
}

fn revision() -> Revision {
    Revision {
        id: "cai-0".into(),
        prompt: "Tell me about the cat.".into(),
        initial: "Whatever.".into(),
        principles: vec!["polite".into(), "helpful".into()],
        critiques: vec!["It is rude.".into(), "It says nothing.".into()],
        revisions: vec!["Sure.".into(), "Sure! The cat is lovely.".into()],
        prompt_messages: Some(vec![ChatMessage::new("user", "Tell me about the cat.")]),
        annotator: Some("ai:smollm2".into()),
    }
}

fn verdict() -> Verdict {
    Verdict {
        model: "smollm2".into(),
        principle: "polite".into(),
        prompt: "q".into(),
        first: "a".into(),
        second: "b".into(),
        p_ab: Some(0.75),
        p_ba: Some(0.5),
    }
}

#[test]
fn revisions_need_one_critique_and_revision_per_round_and_verdicts_probabilities() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("revisions.parquet");
    assert_eq!(revision().latest(), "Sure! The cat is lovely.");
    let cases = [
        (
            Revision { critiques: vec!["one".into()], ..revision() },
            "\"critiques\" has 1 entries, expected 2 (one per round, as \"principles\")",
        ),
        (Revision { revisions: vec!["a".into(), " ".into()], ..revision() }, "\"revisions[1]\" is empty"),
        (Revision { initial: "".into(), ..revision() }, "\"initial\" is empty"),
    ];
    for (bad, message) in cases {
        write_records(&path, &[revision(), bad]).unwrap();
        let error = validate_table(&path, Kind::Revisions).unwrap_err();
        assert_eq!(error.to_string(), format!("{} row 1: {message}", path.display()));
    }
    // A judge's cache is a JSON Lines journal of verdicts; `validate` reads it line by line.
    let cache = dir.path().join("cache.jsonl");
    let line = |v: &Verdict| serde_json::to_string(v).unwrap() + "\n";
    std::fs::write(&cache, line(&verdict()) + &line(&Verdict { p_ba: None, ..verdict() })).unwrap();
    assert_eq!(validate_table(&cache, Kind::Verdicts).unwrap(), 2);
    std::fs::write(&cache, line(&verdict()) + &line(&Verdict { p_ab: Some(1.5), ..verdict() })).unwrap();
    let error = validate_table(&cache, Kind::Verdicts).unwrap_err().to_string();
    assert_eq!(error, format!("{} line 2: \"p_ab\" is 1.5, expected a probability in [0, 1]", cache.display()));
    std::fs::write(&cache, line(&verdict()) + "{\"model\": 3}\n").unwrap();
    let error = validate_table(&cache, Kind::Verdicts).unwrap_err().to_string();
    assert!(error.starts_with(&format!("{} line 2: invalid JSON", cache.display())), "{error}");
}

#[test]
fn schemas() {
    for kind in Kind::ALL {
        insta::assert_snapshot!(kind.name(), render_schema(&kind.schema()));
    }
}

/// Named columns and whether each is nullable.
type Columns<'a> = Vec<(&'a str, ArrayRef, bool)>;

/// Writes one batch of the given columns, with no schema metadata.
fn write_columns(path: &Path, columns: Columns) {
    let fields: Vec<Field> =
        columns.iter().map(|(name, array, nullable)| Field::new(*name, array.data_type().clone(), *nullable)).collect();
    let schema = Arc::new(Schema::new(fields));
    let arrays = columns.into_iter().map(|(_, array, _)| array).collect();
    let mut writer = TableWriter::create(path, schema.clone()).unwrap();
    writer.write(&RecordBatch::try_new(schema, arrays).unwrap()).unwrap();
    writer.finish().unwrap();
}

fn strings(values: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(values.to_vec()))
}

fn text(value: &str) -> ArrayRef {
    strings(&[Some(value), Some(value)])
}

#[test]
fn reading_checks_the_schema() {
    let dir = TempDir::new().unwrap();
    let cases: Vec<(&str, Columns, &str)> = vec![
        (
            "missing.parquet",
            vec![("id", text("a"), false), ("prompt", text("p"), false), ("chosen", text("c"), false)],
            "missing column \"rejected\", expected Utf8",
        ),
        (
            "wrong_type.parquet",
            vec![
                ("id", text("a"), false),
                ("prompt", text("p"), false),
                ("chosen", Arc::new(Int64Array::from(vec![1, 2])), false),
                ("rejected", text("r"), false),
            ],
            "column \"chosen\" has type Int64, expected Utf8",
        ),
        (
            "optional_wrong_type.parquet",
            vec![
                ("id", text("a"), false),
                ("prompt", text("p"), false),
                ("chosen", text("c"), false),
                ("rejected", text("r"), false),
                ("margin", text("big"), true),
            ],
            "column \"margin\" has type Utf8, expected Float32",
        ),
        (
            "null.parquet",
            vec![
                ("id", text("a"), false),
                ("prompt", strings(&[Some("p"), None]), true),
                ("chosen", text("c"), false),
                ("rejected", text("r"), false),
            ],
            "column \"prompt\" has a null at row 1, expected a non-null Utf8",
        ),
    ];
    for (name, columns, message) in cases {
        let path = dir.path().join(name);
        write_columns(&path, columns);
        let error = read_records::<Comparison>(&path).unwrap_err();
        assert_eq!(error.to_string(), format!("{}: {message}", path.display()), "{name}");
    }
}

#[test]
fn nullable_columns_without_nulls_and_absent_optional_columns_are_accepted() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("external.parquet");
    write_columns(
        &path,
        vec![
            ("id", text("a"), true),
            ("prompt", text("p"), true),
            ("chosen", text("c"), true),
            ("rejected", text("r"), true),
        ],
    );
    let records = read_records::<Comparison>(&path).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!((records[0].margin, &records[0].annotator), (None, &None));
}

#[test]
fn unreadable_files_are_named() {
    let dir = TempDir::new().unwrap();
    let good = dir.path().join("good.parquet");
    write_records(&good, &(0..100).map(comparison).collect::<Vec<_>>()).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.parquet");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let text = dir.path().join("text.parquet");
    std::fs::write(&text, "{\"prompt\": \"not parquet\"}\n").unwrap();
    let missing = dir.path().join("missing.parquet");
    let empty = dir.path().join("empty.parquet");
    std::fs::create_dir(&empty).unwrap();
    let cases: [(&PathBuf, &str); 4] = [
        (&truncated, "not a readable Parquet file: "),
        (&text, "not a readable Parquet file: "),
        (&missing, "cannot open: No such file or directory"),
        (&empty, "is a directory without part files (*.parquet), expected a table"),
    ];
    for (path, message) in cases {
        let error = read_records::<Comparison>(path).unwrap_err().to_string();
        let prefix = format!("{}: {message}", path.display());
        assert!(error.starts_with(&prefix), "{error:?} should start with {prefix:?}");
        assert_eq!(error.lines().count(), 1);
    }
}

/// Writes `columns` tagged `tag`.
fn write_tagged(path: &Path, tag: &str, columns: Columns) {
    let fields: Vec<Field> =
        columns.iter().map(|(name, array, nullable)| Field::new(*name, array.data_type().clone(), *nullable)).collect();
    let metadata = [(SCHEMA_KEY.to_string(), tag.to_string())].into();
    let schema = Arc::new(Schema::new(fields).with_metadata(metadata));
    let arrays = columns.into_iter().map(|(_, array, _)| array).collect();
    let mut writer = TableWriter::create(path, schema.clone()).unwrap();
    writer.write(&RecordBatch::try_new(schema, arrays).unwrap()).unwrap();
    writer.finish().unwrap();
}

#[test]
fn a_newer_schema_version_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("v3.parquet");
    write_tagged(&path, "prompts/v3", vec![("id", text("id"), false), ("prompt", text("p"), false)]);
    let error = read_records::<Prompt>(&path).unwrap_err();
    assert_eq!(error.to_string(), format!("{}: schema is \"prompts/v3\", expected \"prompts/v2\"", path.display()));
}

#[test]
fn version_1_tables_without_conversations_still_read() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("v1.parquet");
    let columns = vec![("id", text("d"), false), ("prompt", text("Say hi."), false), ("response", text("Hi!"), false)];
    write_tagged(&path, "demonstrations/v1", columns);
    let records = read_records::<Demonstration>(&path).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!((records[0].prompt.as_str(), &records[0].prompt_messages), ("Say hi.", &None));
}

/// `(role, content)` turns; a `None` content is a null.
type Turns<'a> = &'a [(&'a str, Option<&'a str>)];

/// A conversation column as pyarrow writes it: nullable list elements and struct fields.
fn pyarrow_conversations(rows: &[Option<Turns>]) -> ArrayRef {
    use arrow::array::{ListArray, StructArray};
    use arrow::buffer::{NullBuffer, OffsetBuffer};
    let fields: arrow::datatypes::Fields =
        vec![Field::new("role", DataType::Utf8, true), Field::new("content", DataType::Utf8, true)].into();
    let turns: Vec<(&str, Option<&str>)> = rows.iter().flatten().flat_map(|row| row.iter().copied()).collect();
    let roles = strings(&turns.iter().map(|(role, _)| Some(*role)).collect::<Vec<_>>());
    let contents = strings(&turns.iter().map(|(_, content)| *content).collect::<Vec<_>>());
    let values = Arc::new(StructArray::new(fields.clone(), vec![roles, contents], None));
    let offsets = OffsetBuffer::from_lengths(rows.iter().map(|row| row.map_or(0, <[_]>::len)));
    let nulls = NullBuffer::from(rows.iter().map(Option::is_some).collect::<Vec<_>>());
    let element = Arc::new(Field::new("element", DataType::Struct(fields), true));
    Arc::new(ListArray::new(element, offsets, values, Some(nulls)))
}

#[test]
fn conversations_written_by_other_tools_read_and_bad_ones_are_named() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("prompts.parquet");
    let turns: Turns = &[("system", Some("Be brief.")), ("user", Some("Hi"))];
    let messages = pyarrow_conversations(&[Some(turns), None]);
    write_columns(
        &path,
        vec![("id", text("p"), true), ("prompt", text("Hi"), true), ("prompt_messages", messages, true)],
    );
    let records = read_records::<Prompt>(&path).unwrap();
    assert_eq!(
        records[0].prompt_messages,
        Some(vec![ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi")])
    );
    assert_eq!(records[1].prompt_messages, None);
    let cases: [(Turns, &str); 3] = [
        (&[], "prompt_messages holds no turns (write null for a prompt without turns)"),
        (&[("user", Some("Hi")), ("", Some("x"))], "prompt_messages[1] has an empty role"),
        (&[("user", Some("Hi")), ("assistant", Some("Hello"))], "prompt_messages ends with an assistant turn"),
    ];
    for (turns, message) in cases {
        let path = dir.path().join("bad.parquet");
        let messages = pyarrow_conversations(&[None, Some(turns)]);
        write_columns(
            &path,
            vec![("id", text("p"), true), ("prompt", text("Hi"), true), ("prompt_messages", messages, true)],
        );
        let error = validate_table(&path, Kind::Prompts).unwrap_err().to_string();
        assert!(error.starts_with(&format!("{} row 1: {message}", path.display())), "{error}");
    }
    let path = dir.path().join("wrong.parquet");
    write_columns(
        &path,
        vec![("id", text("p"), true), ("prompt", text("Hi"), true), ("prompt_messages", text("Hi"), true)],
    );
    let error = read_records::<Prompt>(&path).unwrap_err().to_string();
    assert!(
        error.ends_with("column \"prompt_messages\" has type Utf8, expected List<Struct<role: Utf8, content: Utf8>>"),
        "{error}"
    );
}

#[test]
fn validation_names_the_row() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("c.parquet");
    let mut records: Vec<Comparison> = (0..10_000).map(comparison).collect();
    records[9_000].rejected = " \n".into();
    write_records(&path, &records).unwrap();
    let error = validate_table(&path, Kind::Comparisons).unwrap_err();
    assert_eq!(error.to_string(), format!("{} row 9000: \"rejected\" is empty", path.display()));
}

#[test]
fn rollouts_need_one_logprob_ref_logprob_and_value_per_response_token() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("rollouts.parquet");
    let good = Rollout {
        response_tokens: vec![1, 2],
        logprobs: vec![-1.0, -2.0],
        ref_logprobs: vec![-1.0, -2.0],
        values: vec![0.0, 0.0],
        ..Rollout::default()
    };
    let cases = [
        ("logprobs", Rollout { logprobs: vec![-1.0], ..good.clone() }, 1),
        ("ref_logprobs", Rollout { ref_logprobs: vec![], ..good.clone() }, 0),
        ("values", Rollout { values: vec![0.0; 3], ..good.clone() }, 3),
    ];
    for (field, bad, found) in cases {
        write_records(&path, &[good.clone(), bad]).unwrap();
        let error = validate_table(&path, Kind::Rollouts).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("{} row 1: \"{field}\" has {found} values, expected 2 (one per response token)", path.display())
        );
    }
}

#[test]
fn failed_writes_leave_nothing_behind() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("out.parquet");

    let mut writer = TableWriter::create(&path, Prompt::schema()).unwrap();
    writer.write(&Prompt::to_batch(&[Prompt::default()]).unwrap()).unwrap();
    let wrong = Demonstration::to_batch(&[Demonstration::default()]).unwrap();
    assert!(writer.write(&wrong).is_err());
    drop(writer);
    assert!(entries(dir.path()).is_empty());

    std::fs::create_dir(&path).unwrap();
    let error = write_records(&path, &[Prompt::default()]).unwrap_err();
    assert_eq!(error.to_string(), format!("{}: is a directory, expected a file", path.display()));
    assert_eq!(entries(dir.path()), ["out.parquet"]);
}

#[test]
fn extra_columns_are_kept() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("in.parquet");
    write_columns(
        &input,
        vec![
            ("id", text("a"), false),
            ("score", Arc::new(Int64Array::from(vec![3, 4])), false),
            ("prompt", text("p"), false),
        ],
    );
    let table = read_table::<Prompt>(&input).unwrap();
    let extra: Vec<String> = table.extra_columns().iter().map(|f| f.name().clone()).collect();
    assert_eq!(extra, ["score"]);
    assert_eq!(table.batches[0].num_columns(), 3);

    let reader = RecordReader::<Prompt>::open(&input).unwrap();
    assert_eq!(reader.num_rows(), 2);

    let output = dir.path().join("out.parquet");
    let reward = Field::new("reward", DataType::Float32, false);
    let values: ArrayRef = Arc::new(Float32Array::from(vec![0.5, -0.5]));
    assert_eq!(append_column(&input, &output, reward, values).unwrap(), 2);
    let table = read_table::<Prompt>(&output).unwrap();
    insta::assert_snapshot!(render_schema(&table.schema), @r"
    id: Utf8 required
    score: Int64 required
    prompt: Utf8 required
    reward: Float32 required
    ");
    let rewards = table.batches[0].column_by_name("reward").unwrap();
    assert_eq!(rewards.as_ref(), &Float32Array::from(vec![0.5, -0.5]));
}

#[test]
fn append_column_keeps_the_schema_tag_and_can_replace_its_input() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("c.parquet");
    let records: Vec<Comparison> = (0..20_000).map(comparison).collect();
    write_records(&path, &records).unwrap();
    let rewards: Vec<f32> = (0..20_000).map(|i| i as f32).collect();
    let values: ArrayRef = Arc::new(Float32Array::from(rewards.clone()));
    let field = Field::new("reward", DataType::Float32, false);
    append_column(&path, &path, field, values).unwrap();
    let table = read_table::<Comparison>(&path).unwrap();
    assert_eq!(table.records, records);
    assert_eq!(table.schema.metadata().get(SCHEMA_KEY).map(String::as_str), Some("comparisons/v3"));
    let read: Vec<f32> = table
        .batches
        .iter()
        .flat_map(|batch| {
            let column = batch.column_by_name("reward").unwrap();
            let column = column.as_any().downcast_ref::<Float32Array>().unwrap();
            column.values().to_vec()
        })
        .collect();
    assert_eq!(read, rewards);
    assert_eq!(entries(dir.path()), ["c.parquet"]);
}

#[test]
fn append_column_refuses_bad_columns() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("p.parquet");
    write_records(&input, &[Prompt::default(), Prompt::default()]).unwrap();
    let output = dir.path().join("out.parquet");
    let floats = |n: usize| -> ArrayRef { Arc::new(Float32Array::from(vec![0.0; n])) };
    let cases = [
        (
            Field::new("prompt", DataType::Float32, false),
            floats(2),
            format!("{}: already has a column \"prompt\"", input.display()),
        ),
        (
            Field::new("reward", DataType::Float32, false),
            floats(3),
            format!("{}: has 2 rows but the new column \"reward\" has 3 values", input.display()),
        ),
        (
            Field::new("reward", DataType::Float64, false),
            floats(2),
            format!("{}: column \"reward\" has type Float32, expected Float64", output.display()),
        ),
    ];
    for (field, values, message) in cases {
        let error = append_column(&input, &output, field, values).unwrap_err();
        assert_eq!(error.to_string(), message);
    }
    assert_eq!(entries(dir.path()), ["p.parquet"]);
}

#[test]
fn inspect_recognises_untagged_tables_by_their_columns() {
    let dir = TempDir::new().unwrap();
    let cases: Vec<(Columns, Option<Kind>)> = vec![
        (vec![("id", text("a"), false), ("prompt", text("p"), false)], Some(Kind::Prompts)),
        (
            vec![("prompt", text("p"), true), ("response", text("r"), true), ("id", text("a"), true)],
            Some(Kind::Demonstrations),
        ),
        (vec![("text", text("t"), false)], None),
    ];
    for (columns, kind) in cases {
        let path = dir.path().join("t.parquet");
        write_columns(&path, columns);
        let summary = inspect(&path, 1).unwrap();
        assert_eq!((summary.kind, summary.rows), (kind, 2));
        assert_eq!(summary.head.unwrap().num_rows(), 1);
    }
}

#[test]
fn a_directory_of_parts_reads_as_one_table_in_part_order() {
    let dir = TempDir::new().unwrap();
    let table = dir.path().join("prompts.parquet");
    let prompt = |i: usize| Prompt { id: format!("p{i}"), prompt: format!("prompt {i}"), prompt_messages: None };
    // Numbers compare as numbers; hidden and `_` files are not parts.
    for (name, index) in [("part-10.parquet", 2), ("part-2.parquet", 1), ("part-0.parquet", 0)] {
        write_records(table.join(name), &[prompt(index)]).unwrap();
    }
    std::fs::write(table.join("_SUCCESS"), "").unwrap();
    std::fs::write(table.join(".part-11.parquet.7.0.tmp"), "partial").unwrap();
    assert_eq!(read_records::<Prompt>(&table).unwrap(), (0..3).map(prompt).collect::<Vec<_>>());
    assert_eq!(validate_table(&table, Kind::Prompts).unwrap(), 3);
    let summary = inspect(&table, 1).unwrap();
    assert_eq!((summary.rows, summary.parts), (3, Some(3)));
    assert!(summary.to_string().contains("parts: 3\n"), "{summary}");
    // The rows shown run on across parts, up to the number asked for.
    for (asked, shown) in [(2, 2), (3, 3), (10, 3)] {
        assert_eq!(inspect(&table, asked).unwrap().head.unwrap().num_rows(), shown);
    }
    assert_eq!(inspect(table.join("part-0.parquet"), 1).unwrap().parts, None);

    // Every part must have the first part's columns.
    let other = table.join("part-20.parquet");
    write_records(&other, &[Demonstration::default()]).unwrap();
    let error = read_records::<Prompt>(&table).unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "{}: has columns (id: Utf8, prompt: Utf8, response: Utf8, prompt_messages: {CONVERSATION}), expected (id: \
             Utf8, prompt: Utf8, prompt_messages: {CONVERSATION}) like {}",
            other.display(),
            table.join("part-0.parquet").display()
        )
    );
}
