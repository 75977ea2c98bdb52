//! Shared reading of outside JSON objects field by field, for the phone
//! codecs: every problem is recorded with the field's wire name.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::validate::Problems;

/// Parses `bytes` as one JSON object, bounded by `max_bytes` and
/// [`crate::validate::MAX_JSON_DEPTH`].
pub(crate) fn object(bytes: &[u8], max_bytes: usize) -> Result<Map<String, Value>, Problems> {
    let mut p = Problems::default();
    if bytes.len() > max_bytes {
        p.push("too_large", "", format!("message is {} bytes, the limit is {max_bytes}", bytes.len()));
        return Err(p);
    }
    crate::validate::check_json_depth(bytes)?;
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(other) => {
            p.push("invalid_type", "", format!("expected a json object, got {}", kind(&other)));
            Err(p)
        }
        Err(e) => {
            p.push("invalid_json", "", e.to_string());
            Err(p)
        }
    }
}

/// The JSON kind of a value, for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Fields of one object, read with their paths.
pub(crate) struct Fields<'a> {
    pub(crate) obj: &'a Map<String, Value>,
    /// Path of the object, with a trailing dot (`location.coords.`), or empty.
    pub(crate) prefix: &'a str,
    pub(crate) problems: &'a mut Problems,
}

impl Fields<'_> {
    fn path(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The value of `key`; `null` counts as absent.
    pub(crate) fn get(&mut self, key: &str, required: bool) -> Option<&Value> {
        match self.obj.get(key) {
            Some(Value::Null) | None => {
                if required {
                    let path = self.path(key);
                    self.problems.push("required", path.clone(), format!("{path} is required"));
                }
                None
            }
            Some(v) => Some(v),
        }
    }

    fn wrong(&mut self, key: &str, expected: &str, got: &Value) {
        let path = self.path(key);
        self.problems.push(
            "invalid_type",
            path.clone(),
            format!("{path} must be {expected}, got {}", kind(got)),
        );
    }

    /// A finite number.
    pub(crate) fn number(&mut self, key: &str, required: bool) -> Option<f64> {
        let v = self.get(key, required)?.clone();
        match v.as_f64() {
            Some(x) if x.is_finite() => Some(x),
            _ => {
                self.wrong(key, "a number", &v);
                None
            }
        }
    }

    /// A boolean.
    pub(crate) fn boolean(&mut self, key: &str) -> Option<bool> {
        let v = self.get(key, false)?.clone();
        match v {
            Value::Bool(b) => Some(b),
            other => {
                self.wrong(key, "true or false", &other);
                None
            }
        }
    }

    /// A string, truncated to [`crate::owntracks::MAX_TEXT_CHARS`].
    pub(crate) fn string(&mut self, key: &str, required: bool) -> Option<String> {
        let v = self.get(key, required)?.clone();
        match v {
            Value::String(s) => Some(s.chars().take(crate::owntracks::MAX_TEXT_CHARS).collect()),
            other => {
                self.wrong(key, "a string", &other);
                None
            }
        }
    }

    /// A list of strings (at most 64 kept).
    pub(crate) fn strings(&mut self, key: &str) -> Vec<String> {
        let Some(v) = self.get(key, false).cloned() else { return Vec::new() };
        match v {
            Value::Array(items) if items.iter().all(Value::is_string) => items
                .iter()
                .filter_map(Value::as_str)
                .take(64)
                .map(|s| s.chars().take(crate::owntracks::MAX_TEXT_CHARS).collect())
                .collect(),
            other => {
                self.wrong(key, "a list of strings", &other);
                Vec::new()
            }
        }
    }

    /// Epoch seconds as a time.
    pub(crate) fn epoch_s(&mut self, key: &str, required: bool) -> Option<DateTime<Utc>> {
        let v = self.get(key, required)?.clone();
        let path = self.path(key);
        match v
            .as_i64()
            .or_else(|| v.as_f64().filter(|x| x.fract() == 0.0 && x.abs() < 1e15).map(|x| x as i64))
        {
            Some(s) => match DateTime::<Utc>::from_timestamp(s, 0) {
                Some(t) => Some(t),
                None => {
                    self.problems.push(
                        "out_of_range",
                        path.clone(),
                        format!("{path} {s} is not a valid epoch time"),
                    );
                    None
                }
            },
            None => {
                self.wrong(key, "whole epoch seconds", &v);
                None
            }
        }
    }
}
