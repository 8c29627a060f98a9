//! Chat templates render exactly as `transformers` renders them.
//!
//! Each directory under `tests/fixtures/chat/` is a tokenizer directory with a real model's chat
//! template; `expected.json` holds `apply_chat_template(..., tokenize=False)` outputs produced by
//! `make_fixtures.py` with `transformers`.

use anyhow::{Context, Result};
use rlhf_data::conversation::plain_text;
use rlhf_data::PromptText;
use rlhf_model::{ChatMessage, ChatTemplate, Tokenizer};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    messages: Vec<ChatMessage>,
    add_generation_prompt: bool,
    expected: Option<String>,
    error: Option<String>,
}

fn fixture_dirs() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat");
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(&root).unwrap().map(|entry| entry.unwrap().path()).filter(|path| path.is_dir()).collect();
    dirs.sort();
    dirs
}

#[test]
fn templates_render_like_transformers() -> Result<()> {
    let dirs = fixture_dirs();
    assert_eq!(dirs.len(), 6, "one directory per fixture template");
    for dir in dirs {
        let template_name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let tokenizer = Tokenizer::from_dir(&dir)?;
        let fixture: Fixture = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json"))?)?;
        for case in fixture.cases {
            let label = format!("{template_name}/{}", case.name);
            let rendered = tokenizer.apply_chat_template(&case.messages, case.add_generation_prompt);
            match (&case.expected, &case.error) {
                (Some(expected), None) => {
                    assert_eq!(&rendered.with_context(|| label.clone())?, expected, "{label}")
                }
                (None, Some(error)) => {
                    let message = rendered.expect_err(&label).to_string();
                    assert!(message.contains(error.as_str()), "{label}: got {message:?}");
                }
                _ => panic!("{label}: a case has either `expected` or `error`"),
            }
        }
    }
    Ok(())
}

#[test]
fn special_tokens_are_template_variables() -> Result<()> {
    let tokens = BTreeMap::from([("bos_token".to_owned(), "<s>".to_owned())]);
    let template = ChatTemplate::new(
        "{{ bos_token }}{% for m in messages %}{{ m.role }}={{ m.content }};{% endfor %}{{ eos_token is defined }}",
        tokens,
    )?;
    let rendered = template.render(&[ChatMessage::new("user", "hi")], false)?;
    assert_eq!(rendered, "<s>user=hi;False");
    Ok(())
}

#[test]
fn a_template_with_a_syntax_error_is_rejected_when_loaded() {
    let error = ChatTemplate::new("{% for m in messages %}", BTreeMap::new()).unwrap_err();
    assert!(error.to_string().starts_with("chat template: cannot compile"), "{error}");
}

#[test]
fn a_tokenizer_without_template_says_so() -> Result<()> {
    let tokenizer = Tokenizer::train_bpe(&["some text"], 300, &Default::default())?;
    let error = tokenizer.apply_chat_template(&[ChatMessage::new("user", "hi")], true).unwrap_err();
    assert!(error.to_string().contains("no chat_template"), "{error}");
    Ok(())
}

#[test]
fn generation_prompts_use_the_template_when_there_is_one() -> Result<()> {
    use rlhf_model::ChatMode;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat/smollm2");
    let tokenizer = Tokenizer::from_dir(&dir)?;
    let rendered = tokenizer.apply_chat_template(&[ChatMessage::new("user", "Hi")], true)?;
    assert!(rendered.starts_with("<|im_start|>system\n") && rendered.ends_with("<|im_start|>assistant\n"));
    let ids = tokenizer.encode_generation_prompt("Hi")?;
    assert_eq!(
        ids,
        tokenizer.encode(&rendered)?,
        "apply_chat_template(tokenize=True): the rendered text, nothing added"
    );
    let start = tokenizer.encode("<|im_start|>")?;
    assert_eq!((start.len(), ids[0]), (1, start[0]), "special tokens in the text are single tokens");
    let tokenizer = tokenizer.with_chat_mode(ChatMode::None);
    assert_eq!(tokenizer.encode_generation_prompt("Hi")?, tokenizer.encode("Hi")?);

    let plain = Tokenizer::train_bpe(&["some text"], 300, &Default::default())?;
    assert_eq!(plain.encode_generation_prompt("some")?, plain.encode("some")?, "no template: plain");
    Ok(())
}

#[derive(Deserialize)]
struct IdsFixture {
    eos_id: i64,
    cases: Vec<IdsCase>,
    multi_turn: MultiTurnCase,
}

/// A conversation with earlier assistant turns, as transformers tokenizes it.
#[derive(Deserialize)]
struct MultiTurnCase {
    messages: Vec<ChatMessage>,
    conversation_ids: Vec<i64>,
    prompt_ids: Vec<i64>,
    assistant_spans: Vec<[usize; 2]>,
}

#[derive(Deserialize)]
struct IdsCase {
    prompt: String,
    response: String,
    prompt_ids: Vec<i64>,
    conversation_ids: Vec<i64>,
    plain_prompt_ids: Vec<i64>,
    plain_response_ids: Vec<i64>,
}

/// `tests/fixtures/chat_ids/<family>`: byte-level BPE tokenizers with five families' templates and
/// post-processors; `ids.json` holds transformers' token ids (`make_fixtures.py` there).
#[test]
fn prompt_and_response_ids_match_transformers_in_both_modes() -> Result<()> {
    use rlhf_model::ChatMode;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat_ids");
    let families = ["llama2", "llama3", "qwen2_5", "smollm2", "zephyr"];
    for family in families {
        let dir = root.join(family);
        let fixture: IdsFixture = serde_json::from_str(&std::fs::read_to_string(dir.join("ids.json"))?)?;
        let chat = Tokenizer::from_dir(&dir)?;
        assert_eq!(chat.eos_id(), fixture.eos_id, "{family}");
        assert!(chat.uses_chat_template(), "{family}");
        for case in &fixture.cases {
            let ids = chat.encode_prompt_response(&case.prompt, &case.response)?;
            assert_eq!(ids.prompt, case.prompt_ids, "{family}: apply_chat_template(add_generation_prompt=True)");
            let completion = case.conversation_ids.strip_prefix(case.prompt_ids.as_slice()).context(family)?;
            // TRL's completion is the conversation after the prompt; ours stops at its last eos.
            let end = completion.iter().rposition(|&id| id == fixture.eos_id).context(family)?;
            assert_eq!(ids.response, completion[..=end], "{family}: the assistant turn up to its end token");

            let plain = Tokenizer::from_dir(&dir)?.with_chat_mode(ChatMode::None);
            let ids = plain.encode_prompt_response(&case.prompt, &case.response)?;
            assert_eq!(ids.prompt, case.plain_prompt_ids, "{family}: tokenizer(prompt), post-processor included");
            let expected = [case.plain_response_ids.as_slice(), &[fixture.eos_id]].concat();
            assert_eq!(ids.response, expected, "{family}: tokens(response) ++ [eos]");
        }

        let case = &fixture.multi_turn;
        let (last, turns) = case.messages.split_last().context(family)?;
        let prompt = PromptText { text: plain_text(turns), messages: Some(turns.to_vec()) };
        let ids = chat.encode_prompt_response(&prompt, &last.content)?;
        assert_eq!(ids.prompt, case.prompt_ids, "{family}: the earlier turns with the generation prompt");
        let completion = case.conversation_ids.strip_prefix(case.prompt_ids.as_slice()).context(family)?;
        let end = completion.iter().rposition(|&id| id == fixture.eos_id).context(family)?;
        assert_eq!(ids.response, completion[..=end], "{family}: the final assistant turn");
        let spans: Vec<[usize; 2]> = ids.earlier_assistant_turns.iter().map(|span| [span.start, span.end]).collect();
        assert_eq!(spans, case.assistant_spans, "{family}: the earlier assistant turns' token ranges");
        for span in &ids.earlier_assistant_turns {
            let text = chat.decode(&ids.prompt[span.clone()], true)?;
            assert!(
                turns.iter().any(|turn| turn.role == "assistant" && text.trim() == turn.content),
                "{family}: {text:?}"
            );
        }
        let plain = Tokenizer::from_dir(&dir)?.with_chat_mode(ChatMode::None);
        let ids = plain.encode_prompt_response(&prompt, &last.content)?;
        assert_eq!(ids.prompt, plain.encode_generation_prompt(plain_text(turns))?, "{family}: plain text");
        assert!(ids.earlier_assistant_turns.is_empty(), "{family}: no turns without a template");
    }
    Ok(())
}

/// A template that drops earlier assistant turns' content from longer conversations (as
/// reasoning templates do with their thoughts) cannot be split into trained turns: one clear error.
#[test]
fn a_template_that_rewrites_earlier_turns_is_refused_for_multi_turn_prompts() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat_ids/smollm2");
    for name in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(dir.join(name), tmp.path().join(name))?;
    }
    let template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'assistant' and not loop.last \
                    %}...{% else %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt \
                    %}<|im_start|>assistant\n{% endif %}";
    std::fs::write(tmp.path().join("chat_template.jinja"), template)?;
    let tokenizer = Tokenizer::from_dir(tmp.path())?;
    let turns =
        vec![ChatMessage::new("user", "Hi"), ChatMessage::new("assistant", "Hello"), ChatMessage::new("user", "Bye")];
    let prompt = PromptText { text: plain_text(&turns), messages: Some(turns) };
    let error = tokenizer.encode_prompt_response(&prompt, "Goodbye").unwrap_err().to_string();
    assert!(error.contains("turn 1 (assistant) renders differently inside the longer conversation"), "{error}");
    assert!(tokenizer.encode_prompt_response("Hi", "Hello").is_ok(), "single turns still work");
    Ok(())
}
