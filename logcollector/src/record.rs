//! The JSON line the collector sends for one container log line: the
//! store's record format (logstore/src/record.rs) with the node, the
//! labels of the file's place and the CRI fields.

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::layout::Labels;

#[derive(Serialize)]
struct Out<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<&'a str>,
    node: &'a str,
    namespace: &'a str,
    pod: &'a str,
    container: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<&'a str>,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncated: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unparsed: Option<&'a str>,
}

/// One line's fields.
pub struct Line<'a> {
    pub time: Option<&'a str>,
    pub stream: Option<&'a str>,
    pub message: &'a [u8],
    pub truncated: bool,
    /// Why the line was not CRI (it is sent whole as the message).
    pub unparsed: Option<&'a str>,
}

/// Appends the JSON line of `line` (with its newline) to `out`.
pub fn append(out: &mut Vec<u8>, node: &str, labels: &Labels, line: &Line<'_>) {
    // A time the store could not read would fail the whole batch: such a
    // line gets the time of arrival instead.
    let time = line
        .time
        .filter(|t| OffsetDateTime::parse(t, &Rfc3339).is_ok());
    let message = String::from_utf8_lossy(line.message);
    let o = Out {
        time,
        node,
        namespace: &labels.namespace,
        pod: &labels.pod,
        container: &labels.container,
        stream: line.stream,
        message: &message,
        truncated: line.truncated.then_some("true"),
        unparsed: line.unparsed,
    };
    // Strings only: serialisation cannot fail.
    if serde_json::to_writer(&mut *out, &o).is_ok() {
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_store_records() {
        let labels = crate::layout::labels("ns_pod_uid", "c").unwrap();
        let mut out = Vec::new();
        append(
            &mut out,
            "n1",
            &labels,
            &Line {
                time: Some("2026-12-05T07:15:04.123456789Z"),
                stream: Some("stdout"),
                message: "caf\u{e9} \"quoted\"".as_bytes(),
                truncated: false,
                unparsed: None,
            },
        );
        append(
            &mut out,
            "n1",
            &labels,
            &Line {
                time: Some("not a time"),
                stream: None,
                message: b"\xff raw",
                truncated: true,
                unparsed: Some("tag \"X\" is neither F nor P"),
            },
        );
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["message"], "caf\u{e9} \"quoted\"");
        assert_eq!(lines[0]["time"], "2026-12-05T07:15:04.123456789Z");
        assert_eq!(lines[0]["namespace"], "ns");
        assert!(lines[1].get("time").is_none());
        assert_eq!(lines[1]["truncated"], "true");
        assert_eq!(lines[1]["message"], "\u{fffd} raw");
    }
}
