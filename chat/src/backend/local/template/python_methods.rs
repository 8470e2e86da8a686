//! The Python methods chat templates call on strings and dicts. Templates are written for
//! Jinja2 in Python, where `content.startswith('<tool_response>')` or
//! `content.split('</think>')[-1].lstrip('\n')` just work (Qwen3's and DeepSeek-R1's do
//! that for every message); minijinja has no such methods and fails the render, so every
//! request to such a model would fail. These are the ones templates use.

use minijinja::value::{Value, ValueKind, from_args};
use minijinja::{Error, ErrorKind, State};

/// minijinja's unknown-method callback.
pub(super) fn call(
    state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    match (value.kind(), value.as_str()) {
        (ValueKind::String, Some(s)) => string_method(s, method, args),
        (ValueKind::Map, _) => map_method(state, value, method, args),
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

fn string_method(s: &str, method: &str, args: &[Value]) -> Result<Value, Error> {
    Ok(match method {
        "startswith" => {
            let (prefix,): (&str,) = from_args(args)?;
            Value::from(s.starts_with(prefix))
        }
        "endswith" => {
            let (suffix,): (&str,) = from_args(args)?;
            Value::from(s.ends_with(suffix))
        }
        "strip" | "lstrip" | "rstrip" => {
            // Python strips whitespace, or any of the given characters.
            let (chars,): (Option<&str>,) = from_args(args)?;
            let strip = |c: char| chars.map_or(c.is_whitespace(), |chars| chars.contains(c));
            Value::from(match method {
                "strip" => s.trim_matches(strip),
                "lstrip" => s.trim_start_matches(strip),
                _ => s.trim_end_matches(strip),
            })
        }
        "split" => {
            let (separator, max_splits): (Option<&str>, Option<i64>) = from_args(args)?;
            // Python's maxsplit: -1 (the default) for no limit.
            let limit = max_splits
                .filter(|&n| n >= 0)
                .map_or(usize::MAX, |n| n as usize + 1);
            let parts: Vec<Value> = match separator {
                Some("") => return Err(Error::new(ErrorKind::InvalidOperation, "empty separator")),
                Some(separator) => s.splitn(limit, separator).map(Value::from).collect(),
                // No separator: runs of whitespace, no empty parts.
                None => split_whitespace(s, limit)
                    .into_iter()
                    .map(Value::from)
                    .collect(),
            };
            Value::from(parts)
        }
        "replace" => {
            let (from, to): (&str, &str) = from_args(args)?;
            Value::from(s.replace(from, to))
        }
        "upper" => {
            let () = from_args(args)?;
            Value::from(s.to_uppercase())
        }
        "lower" => {
            let () = from_args(args)?;
            Value::from(s.to_lowercase())
        }
        _ => return Err(Error::from(ErrorKind::UnknownMethod)),
    })
}

/// `str.split()` with `limit` parts at most: the last one is the rest, its leading
/// whitespace removed.
fn split_whitespace(s: &str, limit: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        if parts.len() + 1 == limit {
            parts.push(rest);
            break;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        parts.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    parts
}

fn map_method(state: &State, map: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    match method {
        "items" => {
            let () = from_args(args)?;
            state.apply_filter("items", std::slice::from_ref(map))
        }
        "keys" => {
            let () = from_args(args)?;
            Ok(Value::from(map.try_iter()?.collect::<Vec<_>>()))
        }
        "values" => {
            let () = from_args(args)?;
            let values: Result<Vec<_>, _> = map.try_iter()?.map(|key| map.get_item(&key)).collect();
            Ok(Value::from(values?))
        }
        "get" => {
            let (key, default): (Value, Option<Value>) = from_args(args)?;
            let value = map.get_item(&key)?;
            Ok(if value.is_undefined() {
                default.unwrap_or(Value::from(()))
            } else {
                value
            })
        }
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}
