//! Hugging Face chat templates (Jinja), rendered with `minijinja` exactly as `transformers`'
//! `apply_chat_template(..., tokenize=False)` renders them.
//!
//! The environment mirrors `transformers`: `trim_blocks` and `lstrip_blocks`, loop controls,
//! Python string/dict methods (`.strip()`, `.items()`, ...), the globals `raise_exception` and
//! `strftime_now`, a `tojson` filter formatting like Python's `json.dumps`, Python's printing of
//! `True`/`False`/`None`, the special tokens (`bos_token`, `eos_token`, ...) as variables, and
//! `{% generation %}` blocks rendered as plain text.

use crate::error::{Error, Result};
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, ErrorKind, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

const TEMPLATE_NAME: &str = "chat_template";

/// One turn of a conversation (the contracts' type, from `rlhf-data`).
pub use rlhf_data::ChatMessage;

/// A compiled chat template together with the special tokens it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    special_tokens: BTreeMap<String, String>,
}

impl ChatTemplate {
    /// Compiles `source`. `special_tokens` maps variable names (`bos_token`, `eos_token`, ...) to
    /// token strings, as `transformers` passes its `special_tokens_map`.
    pub fn new(source: impl Into<String>, special_tokens: BTreeMap<String, String>) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", python_tojson);
        env.set_formatter(python_formatter);
        env.add_template_owned(TEMPLATE_NAME, generation_blocks_as_plain(&source.into()))
            .map_err(|err| Error::ChatTemplate(format!("cannot compile the chat template: {err:#}")))?;
        Ok(ChatTemplate { env, special_tokens })
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends with the assistant header.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let template = self.env.get_template(TEMPLATE_NAME).map_err(|err| Error::ChatTemplate(err.to_string()))?;
        let context = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            tools => (),
            documents => (),
            ..Value::from_serialize(&self.special_tokens)
        };
        template.render(context).map_err(|err| Error::ChatTemplate(format!("rendering failed: {}", describe(&err))))
    }
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("special_tokens", &self.special_tokens).finish_non_exhaustive()
    }
}

/// Prints booleans and none as Python does (`True`, `False`, `None`).
fn python_formatter(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &Value,
) -> std::result::Result<(), minijinja::Error> {
    match value.kind() {
        ValueKind::Bool => Ok(out.write_str(if value.is_true() { "True" } else { "False" })?),
        ValueKind::None => Ok(out.write_str("None")?),
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// The message a template passed to `raise_exception`, or minijinja's description otherwise.
fn describe(err: &minijinja::Error) -> String {
    match (err.kind(), err.detail()) {
        (ErrorKind::InvalidOperation, Some(detail)) => detail.to_owned(),
        _ => format!("{err:#}"),
    }
}

fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// `datetime.now().strftime(format)`, local time.
fn strftime_now(format: String) -> std::result::Result<String, minijinja::Error> {
    let mut out = String::new();
    write!(out, "{}", chrono::Local::now().format(&format)).map_err(|_| {
        minijinja::Error::new(ErrorKind::InvalidOperation, format!("strftime_now: invalid format {format:?}"))
    })?;
    Ok(out)
}

/// `transformers` registers a `{% generation %}...{% endgeneration %}` tag that only records where
/// assistant text is; for plain rendering it is transparent. Rewriting it to `{% if true %}...
/// {% endif %}` keeps its whitespace-control markers and so renders identically.
fn generation_blocks_as_plain(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        let Some(len) = rest[start..].find("%}").map(|end| end + 2) else {
            break;
        };
        let tag = &rest[start..start + len];
        let keyword = tag[2..len - 2].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        let replacement = match keyword {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        out.push_str(&rest[..start]);
        match replacement {
            Some(replacement) => out.push_str(&tag.replacen(keyword, replacement, 1)),
            None => out.push_str(tag),
        }
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

/// `transformers`' `tojson`: `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`, with Python's spacing, no HTML escaping, and keys in insertion order.
fn python_tojson(value: Value, options: Kwargs) -> std::result::Result<String, minijinja::Error> {
    let ensure_ascii = options.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let indent = options.get::<Option<usize>>("indent")?;
    let separators = match options.get::<Option<Vec<String>>>("separators")? {
        None => None,
        Some(pair) => match <[String; 2]>::try_from(pair) {
            Ok([item, key]) => Some((item, key)),
            Err(_) => {
                return Err(minijinja::Error::new(ErrorKind::InvalidOperation, "tojson: separators must be a pair"))
            }
        },
    };
    let sort_keys = options.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    options.assert_all_used()?;
    let (item_separator, key_separator) = separators.unwrap_or_else(|| {
        let item = if indent.is_some() { "," } else { ", " };
        (item.to_owned(), ": ".to_owned())
    });
    let dumper = PythonJson { ensure_ascii, indent, item_separator, key_separator, sort_keys };
    let mut out = String::new();
    dumper.write(&mut out, &value, 0)?;
    Ok(out)
}

struct PythonJson {
    ensure_ascii: bool,
    indent: Option<usize>,
    item_separator: String,
    key_separator: String,
    sort_keys: bool,
}

impl PythonJson {
    fn write(&self, out: &mut String, value: &Value, depth: usize) -> std::result::Result<(), minijinja::Error> {
        match value.kind() {
            ValueKind::Undefined | ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number if value.is_integer() => out.push_str(&value.to_string()),
            ValueKind::Number => out.push_str(&python_float_repr(f64::try_from(value.clone())?)),
            ValueKind::String => self.write_string(out, value.as_str().unwrap_or_default()),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                self.write_container(out, ('[', ']'), &items, depth, |out, item| self.write(out, item, depth + 1))?;
            }
            ValueKind::Map => {
                let mut keys: Vec<Value> = value.try_iter()?.collect();
                if self.sort_keys {
                    keys.sort();
                }
                self.write_container(out, ('{', '}'), &keys, depth, |out, key| {
                    self.write_string(out, &key.to_string());
                    out.push_str(&self.key_separator);
                    self.write(out, &value.get_item(key)?, depth + 1)
                })?;
            }
            _ => self.write_string(out, &value.to_string()),
        }
        Ok(())
    }

    fn write_container<T>(
        &self,
        out: &mut String,
        (open, close): (char, char),
        items: &[T],
        depth: usize,
        mut write_item: impl FnMut(&mut String, &T) -> std::result::Result<(), minijinja::Error>,
    ) -> std::result::Result<(), minijinja::Error> {
        out.push(open);
        if items.is_empty() {
            out.push(close);
            return Ok(());
        }
        let newline = |out: &mut String, level: usize| {
            if let Some(width) = self.indent {
                out.push('\n');
                out.push_str(&" ".repeat(width * level));
            }
        };
        for (index, item) in items.iter().enumerate() {
            if index > 0 {
                out.push_str(&self.item_separator);
            }
            newline(out, depth + 1);
            write_item(out, item)?;
        }
        newline(out, depth);
        out.push(close);
        Ok(())
    }

    fn write_string(&self, out: &mut String, text: &str) {
        out.push('"');
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && !c.is_ascii()) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        let _ = write!(out, "\\u{unit:04x}");
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// Python's `repr(float)` for the values chat templates meet: `1.0`, `0.5`, `1e-05`, `inf` as JSON's
/// `Infinity`.
fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if x != 0.0 && (x.abs() >= 1e16 || x.abs() < 1e-4) {
        let formatted = format!("{x:e}");
        let (mantissa, exponent) = formatted.split_once('e').unwrap_or((&formatted, "0"));
        let exponent: i32 = exponent.parse().unwrap_or(0);
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    } else if x.fract() == 0.0 {
        format!("{x:.1}")
    } else {
        x.to_string()
    }
}
