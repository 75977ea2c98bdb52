//! Validation: every problem of a message, each with its field path and reason.
//!
//! [`parse`] is the one entry point the server's edges use: bounded size,
//! JSON syntax and types (with the path of the failing field), then the
//! semantic rules of [`Validate`].

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Largest accepted message body, in bytes. An alert with a detailed
/// polygon is the largest legitimate message; 256 KiB holds about 10,000
/// positions.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// One problem: which field, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FieldError {
    /// Machine-readable code, e.g. `out_of_range`, `required`, `invalid_json`.
    pub code: String,
    /// JSON path of the field, e.g. `area.coordinates[0][3]`; empty for the
    /// whole message.
    pub field: String,
    /// Human-readable reason, lowercase, without a trailing period.
    pub message: String,
}

/// All problems of one message. Never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Problems {
    /// The problems, in field order.
    pub errors: Vec<FieldError>,
}

impl Problems {
    /// Records a problem.
    pub fn push(&mut self, code: &str, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError { code: code.to_owned(), field: field.into(), message: message.into() });
    }

    /// Whether no problem was recorded.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Ok(())` if empty, else `Err(self)`.
    pub fn into_result(self) -> Result<(), Problems> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            if e.field.is_empty() {
                write!(f, "{}", e.message)?;
            } else {
                write!(f, "{}: {}", e.field, e.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Semantic rules of a message, checked after it parsed.
pub trait Validate {
    /// Records every problem of `self` into `problems`. `now` is the server's
    /// clock, used to refuse timestamps absurdly in the future.
    fn validate(&self, now: DateTime<Utc>, problems: &mut Problems);
}

/// Parses and validates one message: size bound, JSON with the path of a
/// type error, then every semantic problem.
pub fn parse<T: DeserializeOwned + Validate>(bytes: &[u8], now: DateTime<Utc>) -> Result<T, Problems> {
    let mut problems = Problems::default();
    if bytes.len() > MAX_MESSAGE_BYTES {
        problems.push(
            "too_large",
            "",
            format!("message is {} bytes, the limit is {MAX_MESSAGE_BYTES}", bytes.len()),
        );
        return Err(problems);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => v,
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let code = if inner.is_syntax() || inner.is_eof() { "invalid_json" } else { "invalid_type" };
            let field = if path == "." { String::new() } else { path };
            problems.push(code, field, inner.to_string());
            return Err(problems);
        }
    };
    if let Err(err) = de.end() {
        problems.push("invalid_json", "", err.to_string());
        return Err(problems);
    }
    value.validate(now, &mut problems);
    problems.into_result().map(|()| value)
}
