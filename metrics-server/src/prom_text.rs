//! The Prometheus text exposition format (version 0.0.4), as the kubelet's
//! `/metrics/resource` serves it: one sample per line,
//! `name{label="value",...} value [timestamp_ms]`, comments and `# HELP` /
//! `# TYPE` lines ignored. Only what the metrics server reads is kept; a
//! malformed line is an error naming its line number, so a kubelet that
//! serves something else is reported rather than half-read.

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// Labels in the order they appear.
    pub labels: Labels,
    pub value: f64,
    /// Milliseconds since the Unix epoch, when the line carries one.
    pub timestamp_ms: Option<i64>,
}

impl Sample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("metrics text line {line}: {why}")]
pub struct ParseError {
    pub line: usize,
    pub why: String,
}

/// Every sample of `text`.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_line(line).map_err(|why| ParseError { line: i + 1, why })?);
    }
    Ok(out)
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0))
        .map(|(i, _)| i)
        .unwrap_or(line.len());
    if name_end == 0 {
        return Err(format!("no metric name in {line:?}"));
    }
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(r)?;
        labels = parsed;
        rest = after;
    }
    let mut fields = rest.split_whitespace();
    let value = fields
        .next()
        .ok_or_else(|| format!("{name}: no value"))
        .and_then(|v| parse_value(v).ok_or_else(|| format!("{name}: bad value {v:?}")))?;
    let timestamp_ms = match fields.next() {
        None => None,
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| format!("{name}: bad timestamp {t:?}"))?,
        ),
    };
    if let Some(extra) = fields.next() {
        return Err(format!("{name}: unexpected {extra:?} after the timestamp"));
    }
    Ok(Sample {
        name,
        labels,
        value,
        timestamp_ms,
    })
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => v.parse().ok(),
    }
}

/// Labels after the opening brace, up to and including the closing one.
/// Label pairs in order.
type Labels = Vec<(String, String)>;

fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(r) = s.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = s.find('=').ok_or("a label without '='")?;
        let key = s[..eq].trim();
        if key.is_empty()
            || !key
                .chars()
                .enumerate()
                .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()))
        {
            return Err(format!("bad label name {key:?}"));
        }
        s = s[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or_else(|| format!("label {key}: value not quoted"))?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("label {key}: unterminated value")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => {
                        return Err(format!(
                            "label {key}: bad escape \\{}",
                            other.map(|(_, c)| c).unwrap_or(' ')
                        ))
                    }
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        s = s[end + 1..].trim_start();
        if let Some(r) = s.strip_prefix(',') {
            s = r;
        } else if !s.starts_with('}') {
            return Err(format!("label {key}: expected ',' or '}}'"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a v1.20 kubelet's /metrics/resource looks like.
    const KUBELET: &str = r#"# HELP container_cpu_usage_seconds_total [ALPHA] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="coredns",namespace="kube-system",pod="coredns-74ff55c5b-8pdm8"} 7.224152348 1611657720953
# HELP node_memory_working_set_bytes [ALPHA] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1.053978624e+09 1611657723224
# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE scrape_error gauge
scrape_error 0
"#;

    #[test]
    fn reads_the_kubelets_resource_metrics() {
        let s = parse(KUBELET).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "container_cpu_usage_seconds_total");
        assert_eq!(s[0].label("pod"), Some("coredns-74ff55c5b-8pdm8"));
        assert_eq!(s[0].label("container"), Some("coredns"));
        assert_eq!(s[0].value, 7.224152348);
        assert_eq!(s[0].timestamp_ms, Some(1611657720953));
        assert_eq!(s[1].value, 1.053978624e9);
        assert!(s[1].labels.is_empty());
        assert_eq!(s[2].timestamp_ms, None);
    }

    #[test]
    fn escapes_and_special_values() {
        let s = parse("m{a=\"x\\\"y\\\\z\\n\", b = \"\" ,} +Inf\nn NaN\no{} -Inf 5\np -1.5e-3")
            .unwrap();
        assert_eq!(s[0].labels[0], ("a".into(), "x\"y\\z\n".into()));
        assert_eq!(s[0].labels[1], ("b".into(), String::new()));
        assert_eq!(s[0].value, f64::INFINITY);
        assert!(s[1].value.is_nan());
        assert_eq!(
            (s[2].value, s[2].timestamp_ms),
            (f64::NEG_INFINITY, Some(5))
        );
        assert_eq!(s[3].value, -0.0015);
    }

    #[test]
    fn malformed_lines_name_their_line() {
        for (text, line, why) in [
            ("ok 1\n{a=\"b\"} 1", 2, "no metric name"),
            ("m{a=b} 1", 1, "not quoted"),
            ("m{a=\"b} 1", 1, "unterminated"),
            ("m{a=\"b\" c=\"d\"} 1", 1, "expected ','"),
            ("m", 1, "no value"),
            ("m one", 1, "bad value"),
            ("m 1 2 3", 1, "unexpected"),
            ("m 1 soon", 1, "bad timestamp"),
            ("m{1a=\"x\"} 1", 1, "bad label name"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text}");
            assert!(e.why.contains(why), "{text}: {e}");
        }
    }
}
