//! One log record: the JSON object a producer sends on one line, checked
//! field by field, and the JSON the store keeps and queries return.
//!
//! Producers are the per-node collector (container lines: `node`,
//! `namespace`, `pod`, `container`, `stream`) and machined (its services and
//! the kernel log: `node`, `service`). Both send the same shape:
//!
//! ```json
//! {"time":"2026-12-05T07:15:04.123456789Z","node":"cp1","namespace":"kube-system",
//!  "pod":"cairn-dns-5d9","container":"cairn-dns","stream":"stderr","message":"listening"}
//! ```
//!
//! `message` is required; `time` (RFC 3339) defaults to the time of arrival;
//! every other key is a label whose value must be a string, number or bool
//! (kept as a string). A record is checked whole before anything is stored,
//! so one bad line names its field instead of half a batch being indexed.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Longest message kept, in bytes; longer ones are cut at a character
/// boundary and labelled `truncated: "true"`.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Longest label name or value, in bytes.
pub const MAX_LABEL_BYTES: usize = 1024;
/// Most labels on one record.
pub const MAX_LABELS: usize = 32;

/// The fields every record may carry besides its labels.
pub const KNOWN_FIELDS: [&str; 8] = [
    "time",
    "node",
    "namespace",
    "pod",
    "container",
    "stream",
    "service",
    "message",
];

/// Why a record was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("field `message` is missing")]
    MissingMessage,
    #[error("field `{field}`: {problem}")]
    Field { field: String, problem: String },
    #[error("more than {MAX_LABELS} labels")]
    TooManyLabels,
}

fn field_error(field: &str, problem: impl Into<String>) -> RecordError {
    RecordError::Field {
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// Which output stream of a container a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    pub fn parse(s: &str) -> Option<Stream> {
        match s {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// A checked record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Nanoseconds since the Unix epoch.
    pub time: i64,
    pub node: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub stream: Option<Stream>,
    pub service: Option<String>,
    pub message: String,
    pub labels: BTreeMap<String, String>,
}

/// The stored and returned form of a record (also what `cairnctl logs
/// --cluster -o json` prints).
#[derive(Debug, Serialize)]
pub struct StoredRecord<'a> {
    /// The store's sequence number: unique, increasing in arrival order.
    pub seq: u64,
    /// RFC 3339, UTC, nanoseconds.
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<Stream>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<&'a str>,
    pub message: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: &'a BTreeMap<String, String>,
}

/// Formats nanoseconds since the epoch as RFC 3339 in UTC.
pub fn format_time(nanos: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| nanos.to_string())
}

/// Parses an RFC 3339 time into nanoseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time ({e})"))?;
    i64::try_from(t.unix_timestamp_nanos()).map_err(|_| format!("{s:?} is out of range"))
}

/// Now, in nanoseconds since the epoch.
pub fn now_nanos() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

fn string_field(field: &str, v: Value, max: usize) -> Result<String, RecordError> {
    match v {
        Value::String(s) if s.len() <= max => Ok(s),
        Value::String(s) => Err(field_error(
            field,
            format!("{} bytes, at most {max} allowed", s.len()),
        )),
        other => Err(field_error(
            field,
            format!("expected a string, found {}", kind(&other)),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
fn truncate(mut s: String, max: usize) -> (String, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    (s, true)
}

impl Record {
    /// Parses one JSON line; `arrival` is used when it has no `time`.
    pub fn parse(line: &str, arrival: i64) -> Result<Record, RecordError> {
        let object: Map<String, Value> =
            serde_json::from_str(line).map_err(|e| RecordError::NotJson(e.to_string()))?;
        Record::from_object(object, arrival)
    }

    pub fn from_object(object: Map<String, Value>, arrival: i64) -> Result<Record, RecordError> {
        let mut r = Record {
            time: arrival,
            node: None,
            namespace: None,
            pod: None,
            container: None,
            stream: None,
            service: None,
            message: String::new(),
            labels: BTreeMap::new(),
        };
        let mut has_message = false;
        for (key, value) in object {
            match key.as_str() {
                "time" => {
                    let s = string_field("time", value, 64)?;
                    r.time = parse_time(&s).map_err(|p| field_error("time", p))?;
                }
                "message" => {
                    let s = match value {
                        Value::String(s) => s,
                        other => {
                            return Err(field_error(
                                "message",
                                format!("expected a string, found {}", kind(&other)),
                            ))
                        }
                    };
                    let (s, cut) = truncate(s, MAX_MESSAGE_BYTES);
                    if cut {
                        r.labels.insert("truncated".into(), "true".into());
                    }
                    r.message = s;
                    has_message = true;
                }
                "stream" => {
                    let s = string_field("stream", value, 16)?;
                    r.stream = Some(Stream::parse(&s).ok_or_else(|| {
                        field_error("stream", format!("{s:?} is neither stdout nor stderr"))
                    })?);
                }
                "node" | "namespace" | "pod" | "container" | "service" => {
                    let s = string_field(&key, value, MAX_LABEL_BYTES)?;
                    let slot = match key.as_str() {
                        "node" => &mut r.node,
                        "namespace" => &mut r.namespace,
                        "pod" => &mut r.pod,
                        "container" => &mut r.container,
                        _ => &mut r.service,
                    };
                    *slot = Some(s);
                }
                _ => {
                    if key.is_empty() || key.len() > MAX_LABEL_BYTES {
                        return Err(field_error(&key, "label names must have 1 to 1024 bytes"));
                    }
                    let value = match value {
                        Value::String(s) if s.len() <= MAX_LABEL_BYTES => s,
                        Value::Bool(b) => b.to_string(),
                        Value::Number(n) => n.to_string(),
                        Value::String(s) => {
                            return Err(field_error(
                                &key,
                                format!("{} bytes, at most {MAX_LABEL_BYTES} allowed", s.len()),
                            ))
                        }
                        other => {
                            return Err(field_error(
                                &key,
                                format!(
                                    "labels must be strings, numbers or bools, found {}",
                                    kind(&other)
                                ),
                            ))
                        }
                    };
                    r.labels.insert(key, value);
                    if r.labels.len() > MAX_LABELS {
                        return Err(RecordError::TooManyLabels);
                    }
                }
            }
        }
        if !has_message {
            return Err(RecordError::MissingMessage);
        }
        Ok(r)
    }

    /// The stored JSON of this record under sequence number `seq`.
    pub fn to_stored_json(&self, seq: u64) -> String {
        let stored = StoredRecord {
            seq,
            time: format_time(self.time),
            node: self.node.as_deref(),
            namespace: self.namespace.as_deref(),
            pod: self.pod.as_deref(),
            container: self.container.as_deref(),
            stream: self.stream,
            service: self.service.as_deref(),
            message: &self.message,
            labels: &self.labels,
        };
        // Serializing strings and maps of strings cannot fail.
        serde_json::to_string(&stored).unwrap_or_default()
    }

    /// Rough memory and disk weight of the record, for batching.
    pub fn weight(&self) -> usize {
        64 + self.message.len()
            + self
                .labels
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// Parses a body of JSON lines (blank lines are skipped). The first bad
/// line fails the whole body, named by its 1-based number.
pub fn parse_lines(body: &str, arrival: i64) -> Result<Vec<Record>, (usize, RecordError)> {
    body.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| Record::parse(l, arrival).map_err(|e| (i + 1, e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_line_parses_with_its_labels() {
        let r = Record::parse(
            r#"{"time":"2026-12-05T07:15:04.123456789Z","node":"cp1","namespace":"kube-system","pod":"p","container":"c","stream":"stderr","message":"hello","level":"info","n":3,"ok":true}"#,
            0,
        )
        .unwrap();
        assert_eq!(r.time % 1_000_000_000, 123_456_789);
        assert_eq!(format_time(r.time), "2026-12-05T07:15:04.123456789Z");
        assert_eq!(r.stream, Some(Stream::Stderr));
        assert_eq!(r.labels["level"], "info");
        assert_eq!(r.labels["n"], "3");
        assert_eq!(r.labels["ok"], "true");
        let stored: Value = serde_json::from_str(&r.to_stored_json(7)).unwrap();
        assert_eq!(stored["seq"], 7);
        assert_eq!(stored["time"], "2026-12-05T07:15:04.123456789Z");
        assert_eq!(stored["labels"]["level"], "info");
        assert!(stored.get("service").is_none());
    }

    #[test]
    fn time_defaults_to_arrival_and_offsets_are_normalised() {
        let r = Record::parse(r#"{"message":"m","service":"kubelet"}"#, 42).unwrap();
        assert_eq!(r.time, 42);
        let r = Record::parse(r#"{"message":"m","time":"2026-12-05T09:15:04+02:00"}"#, 0).unwrap();
        assert_eq!(format_time(r.time), "2026-12-05T07:15:04Z");
    }

    #[test]
    fn bad_records_name_their_field() {
        let err = |l: &str| Record::parse(l, 0).unwrap_err().to_string();
        assert_eq!(
            err(r#"{"time":"x"}"#).split(':').next(),
            Some("field `time`")
        );
        assert!(err(r#"{"node":"a"}"#).contains("`message` is missing"));
        assert!(err(r#"{"message":"m","stream":"stdin"}"#).contains("neither stdout nor stderr"));
        assert!(err(r#"{"message":"m","pod":3}"#).contains("field `pod`: expected a string"));
        assert!(err(r#"{"message":"m","x":{"a":1}}"#).contains("field `x`: labels must be"));
        assert!(err(r#"{"message":1}"#).contains("field `message`"));
        assert!(err("[1,2]").starts_with("not a JSON object"));
        assert!(err("{").starts_with("not a JSON object"));
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary_and_labelled() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let r = Record::parse(&serde_json::json!({"message": long}).to_string(), 0).unwrap();
        assert!(r.message.len() <= MAX_MESSAGE_BYTES);
        assert_eq!(r.labels["truncated"], "true");
    }

    #[test]
    fn a_body_fails_on_its_first_bad_line_by_number() {
        let body = "{\"message\":\"a\"}\n\n{\"message\":\"b\",\"time\":5}\n";
        let (line, e) = parse_lines(body, 0).unwrap_err();
        assert_eq!(line, 3);
        assert!(e.to_string().contains("field `time`"));
        assert_eq!(parse_lines("{\"message\":\"a\"}\n\n", 0).unwrap().len(), 1);
    }
}
