//! Input: DynamoDB stream records, as Lambda delivers them, to [`Change`]s.
//!
//! Accepted file shapes (detected automatically):
//! - one Lambda DynamoDB event: `{"Records": [ … ]}`;
//! - JSON Lines, each line a stream record or a whole event.
//!
//! A record that cannot be converted does not stop the others: it becomes an
//! [`InputError`] naming where it is and what is wrong, with its raw text so
//! it can be parked and replayed.

pub mod attr;
pub mod number;
pub mod record;

#[cfg(test)]
mod props;

use serde_json::Value;

use crate::change::Change;

/// One record that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct InputError {
    /// Where: file, line, record index, event id.
    pub location: String,
    /// What is wrong.
    pub message: String,
    /// The record's raw text (for the dead-letter file).
    pub raw: String,
}

/// The result of reading an input: the good changes, in order, and the bad records.
#[derive(Debug, Default)]
pub struct Input {
    /// Changes in stream order.
    pub changes: Vec<Change>,
    /// Records that could not be read.
    pub errors: Vec<InputError>,
}

/// Parse input text; `origin` (e.g. the file name) prefixes error locations.
pub fn parse(text: &str, origin: &str) -> Input {
    let p = parse_with(text, origin, record::to_change);
    Input {
        changes: p.items,
        errors: p.errors,
    }
}

/// Records converted by some function, and those it could not convert.
#[derive(Debug)]
pub struct Parsed<T> {
    /// Converted records, in order.
    pub items: Vec<T>,
    /// Records that could not be read.
    pub errors: Vec<InputError>,
}

/// Parse input text of either shape, converting each record with `convert`
/// (e.g. to a model [`Change`], or to a shadow change).
pub fn parse_with<T>(
    text: &str,
    origin: &str,
    convert: impl Fn(&Value) -> Result<T, String>,
) -> Parsed<T> {
    let mut out = Parsed {
        items: Vec::new(),
        errors: Vec::new(),
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with('{')
        && let Ok(whole) = serde_json::from_str::<Value>(text)
        && whole.get("Records").is_some()
    {
        read_event(&whole, origin, &convert, &mut out);
        return out;
    }
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let here = format!("{origin} line {}", i + 1);
        match serde_json::from_str::<Value>(line) {
            Ok(v) if v.get("Records").is_some() => read_event(&v, &here, &convert, &mut out),
            Ok(v) => read_record(&v, &here, &convert, &mut out),
            Err(e) => out.errors.push(InputError {
                location: here,
                message: format!("not valid JSON: {e}"),
                raw: line.to_owned(),
            }),
        }
    }
    out
}

/// Read a Lambda DynamoDB event (`{"Records": [...]}`).
pub fn read_event<T>(
    event: &Value,
    origin: &str,
    convert: &impl Fn(&Value) -> Result<T, String>,
    out: &mut Parsed<T>,
) {
    match event.get("Records").and_then(Value::as_array) {
        Some(records) => {
            for (i, r) in records.iter().enumerate() {
                read_record(r, &format!("{origin} record {i}"), convert, out);
            }
        }
        None => out.errors.push(InputError {
            location: origin.to_owned(),
            message: "\"Records\" must be an array of stream records".into(),
            raw: event.to_string(),
        }),
    }
}

fn read_record<T>(
    v: &Value,
    location: &str,
    convert: &impl Fn(&Value) -> Result<T, String>,
    out: &mut Parsed<T>,
) {
    match convert(v) {
        Ok(c) => out.items.push(c),
        Err(message) => {
            let id = v.get("eventID").and_then(Value::as_str);
            let location = match id {
                Some(id) => format!("{location} (eventID {id})"),
                None => location.to_owned(),
            };
            out.errors.push(InputError {
                location,
                message,
                raw: v.to_string(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"eventID":"a","eventName":"INSERT","dynamodb":{"Keys":{"pk":{"S":"P-1"}},"NewImage":{"pk":{"S":"P-1"}},"SequenceNumber":"1"}}"#;

    #[test]
    fn reads_a_lambda_event() {
        let text = format!("{{\"Records\": [{GOOD}, {GOOD}]}}");
        let input = parse(&text, "ev.json");
        assert_eq!(input.changes.len(), 2);
        assert!(input.errors.is_empty());
    }

    #[test]
    fn reads_json_lines_and_isolates_bad_lines() {
        let bad_type = GOOD.replace(r#"{"S":"P-1"}},"Seq"#, r#"{"Q":"P-1"}},"Seq"#);
        let text = format!("{GOOD}\n{{not json\n\n{bad_type}\n{GOOD}\n");
        let input = parse(&text, "s.jsonl");
        assert_eq!(input.changes.len(), 2);
        assert_eq!(input.errors.len(), 2);
        assert!(
            input.errors[0].location == "s.jsonl line 2"
                && input.errors[0].message.contains("not valid JSON")
        );
        assert_eq!(input.errors[1].location, "s.jsonl line 4 (eventID a)");
        assert!(
            input.errors[1]
                .message
                .contains("unknown DynamoDB type \"Q\""),
            "{}",
            input.errors[1].message
        );
    }

    #[test]
    fn records_must_be_an_array() {
        let input = parse(r#"{"Records": 5}"#, "e.json");
        assert_eq!(
            input.errors[0].message,
            "\"Records\" must be an array of stream records"
        );
    }
}
