//! Splits a file into YAML documents and checks each one's `apiVersion`
//! and `kind`, before any typed parsing. Catches what serde cannot explain
//! well: bytes that are not text, tabs in indentation, syntax errors (with
//! line and column), empty files, unknown or duplicate kinds.

use serde_yaml::Value;

use crate::constants::CONFIG_API_VERSION;
use crate::error::{Location, ParseError, ParseErrors};

/// Files larger than this are refused outright; real configs are a few KiB.
pub const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;
/// At most this many documents are read.
const MAX_DOCUMENTS: usize = 64;

/// One non-empty document with a known kind.
pub(crate) struct RawDocument {
    /// 1-based position in the file.
    pub index: usize,
    pub kind: &'static str,
    pub value: Value,
}

/// Read every document of `bytes`. `kinds` lists the kinds this file may
/// hold, each at most once; `required` those it must hold.
pub(crate) fn read_documents<'t>(
    bytes: &'t [u8],
    kinds: &[&'static str],
    required: &[&'static str],
) -> Result<(&'t str, Vec<RawDocument>), ParseErrors> {
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(ParseErrors::single(ParseError::file(format!(
            "the file is {} bytes; a config is at most {MAX_CONFIG_BYTES} bytes",
            bytes.len()
        ))));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ParseErrors::single(ParseError::file(format!(
            "not UTF-8 text (invalid byte at offset {}): a config file is YAML text",
            e.valid_up_to()
        )))
    })?;

    if let Some(alias) = first_alias(text) {
        return Err(ParseErrors::single(ParseError {
            document: None,
            kind: None,
            path: String::new(),
            location: Some(alias),
            message:
                "YAML aliases (*name) are not allowed in a machine config: write the value out"
                    .into(),
        }));
    }

    let mut errors = Vec::new();
    let mut docs: Vec<RawDocument> = Vec::new();
    let mut seen_kinds: Vec<(&'static str, usize)> = Vec::new();
    let mut any_document = false;
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        if index > MAX_DOCUMENTS {
            errors.push(ParseError::file(format!(
                "more than {MAX_DOCUMENTS} YAML documents"
            )));
            break;
        }
        let value = match <Value as serde::Deserialize>::deserialize(de) {
            Ok(v) => v,
            Err(e) => {
                // After a syntax error the document iterator repeats the
                // same error forever: stop here.
                errors.push(syntax_error(text, index, &e));
                break;
            }
        };
        if value.is_null() {
            continue; // an empty document, e.g. after a trailing `---`
        }
        any_document = true;
        match check_header(&value, kinds) {
            Err(e) => errors.push(ParseError {
                document: Some(index),
                kind: e.kind.map(str::to_string),
                path: e.path.to_string(),
                location: None,
                message: e.message,
            }),
            Ok(kind) => {
                if let Some((_, first)) = seen_kinds.iter().find(|(k, _)| *k == kind) {
                    errors.push(ParseError {
                        document: Some(index),
                        kind: Some(kind.into()),
                        path: String::new(),
                        location: None,
                        message: format!(
                            "duplicate {kind} document (document {first} is one already)"
                        ),
                    });
                } else {
                    seen_kinds.push((kind, index));
                    docs.push(RawDocument { index, kind, value });
                }
            }
        }
    }
    if errors.is_empty() && !any_document {
        errors.push(ParseError::file(format!(
            "no YAML documents (the file is empty or only comments); expected {}",
            describe(required)
        )));
    } else if errors.is_empty() {
        for kind in required {
            if !seen_kinds.iter().any(|(k, _)| k == kind) {
                errors.push(ParseError::file(format!(
                    "no {kind} document; expected {}",
                    describe(required)
                )));
            }
        }
    }
    if errors.is_empty() {
        Ok((text, docs))
    } else {
        Err(ParseErrors(errors))
    }
}

fn describe(kinds: &[&str]) -> String {
    match kinds {
        [one] => format!("a {one} document"),
        _ => format!("one document of each kind {}", kinds.join(", ")),
    }
}

/// A problem with a document's `apiVersion` or `kind`.
struct HeaderProblem {
    /// The kind, when it was readable (labels the error).
    kind: Option<&'static str>,
    path: &'static str,
    message: String,
}

/// Validate `apiVersion` and `kind` and return the kind.
fn check_header(value: &Value, kinds: &[&'static str]) -> Result<&'static str, HeaderProblem> {
    let err = |path: &'static str, message: String| HeaderProblem {
        kind: None,
        path,
        message,
    };
    let Value::Mapping(map) = value else {
        return Err(err(
            "",
            format!(
                "a document must be a mapping with apiVersion and kind, not {}",
                value_kind(value)
            ),
        ));
    };
    let kind = match map.get("kind") {
        None => Err(err(
            "kind",
            format!("required field is missing (one of: {})", kinds.join(", ")),
        )),
        Some(Value::String(k)) => match kinds.iter().find(|known| *known == k) {
            Some(known) => Ok(*known),
            None => Err(err(
                "kind",
                format!("unknown kind {k:?} (expected one of: {})", kinds.join(", ")),
            )),
        },
        Some(other) => Err(err(
            "kind",
            format!("must be a string, not {}", value_kind(other)),
        )),
    };
    let api = match map.get("apiVersion") {
        None => Err(err(
            "apiVersion",
            format!("required field is missing (use {CONFIG_API_VERSION})"),
        )),
        Some(Value::String(v)) if v == CONFIG_API_VERSION => Ok(()),
        Some(Value::String(v)) => Err(err(
            "apiVersion",
            format!("unsupported apiVersion {v:?} (expected {CONFIG_API_VERSION})"),
        )),
        Some(other) => Err(err(
            "apiVersion",
            format!("must be a string, not {}", value_kind(other)),
        )),
    };
    match (kind, api) {
        (Ok(k), Ok(())) => Ok(k),
        (Ok(k), Err(e)) => Err(HeaderProblem { kind: Some(k), ..e }),
        (Err(e), _) => Err(e),
    }
}

pub(crate) fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Where the first YAML alias of `text` is, if it has one.
///
/// Aliases are refused before anything expands them: serde's loader
/// bounds only the number of expansions, so one 1 MiB string aliased 3,000
/// times (a 1 MB file) would grow to 3 GiB while parsing, in PID 1, from an
/// unauthenticated caller in maintenance mode. A machine config has no use
/// for aliases. This pass only scans events (no values are built), and a
/// syntax error ends it: the parse that follows reports that one.
pub(crate) fn first_alias(text: &str) -> Option<Location> {
    use yaml_rust2::parser::{Event, Parser};
    let mut parser = Parser::new_from_str(text);
    loop {
        match parser.next_token() {
            Ok((Event::Alias(_), mark)) => {
                return Some(Location {
                    line: mark.line(),
                    column: mark.col() + 1,
                })
            }
            Ok((Event::StreamEnd, _)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// A YAML syntax error with its location and, for tabs in indentation, a
/// plain explanation.
fn syntax_error(text: &str, index: usize, e: &serde_yaml::Error) -> ParseError {
    let location = e.location().map(|l| Location {
        line: l.line(),
        column: l.column(),
    });
    let mut message = e.to_string();
    if let Some(loc) = location {
        message = message.replace(&format!(" at line {} column {}", loc.line, loc.column), "");
        let line = text.lines().nth(loc.line.saturating_sub(1)).unwrap_or("");
        let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
        if indent.contains('\t') {
            message = "tab character in indentation: YAML indentation must use spaces".into();
        }
    }
    if message.starts_with("recursion limit exceeded") {
        message.push_str(" (nested too deeply)");
    } else if message.starts_with("repetition limit exceeded") {
        message.push_str(" (too many alias expansions)");
    }
    ParseError {
        document: Some(index),
        kind: None,
        path: String::new(),
        location,
        message: format!("invalid YAML: {message}"),
    }
}

#[cfg(test)]
mod alias_tests {
    use super::*;

    /// Hole 1 of the hardening issue: a linear fan-out (one 1 MiB string,
    /// 3,000 aliases to it) would expand to ~3 GiB. It is refused before
    /// anything expands, naming the first alias's line.
    #[test]
    fn a_linear_alias_fan_out_is_refused_before_it_expands() {
        let mut text =
            String::from("apiVersion: cairn.dev/v1alpha1\nkind: MachineConfig\nbig: &big \"");
        text.push_str(&"x".repeat(1 << 20));
        text.push_str("\"\ncopies:\n");
        for _ in 0..3000 {
            text.push_str("  - *big\n");
        }
        let started = std::time::Instant::now();
        let err = match read_documents(text.as_bytes(), &["MachineConfig"], &[]) {
            Err(e) => e,
            Ok(_) => panic!("a config with aliases was accepted"),
        };
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        let e = &err.errors()[0];
        assert!(
            e.message
                .starts_with("YAML aliases (*name) are not allowed"),
            "{e}"
        );
        assert_eq!(e.location.map(|l| l.line), Some(5));
    }

    #[test]
    fn quoted_stars_and_ampersands_are_not_aliases() {
        let text = "a: \"*x\"\nb: '&y'\nc: x*y\n";
        assert_eq!(first_alias(text), None);
        assert_eq!(first_alias("a: &x 1\nb: *x\n").map(|l| l.line), Some(2));
    }
}
