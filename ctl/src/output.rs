//! How verbs print: aligned tables for people, JSON and YAML for scripts,
//! sizes and times in a readable form, and per-node prefixes for streams
//! that interleave several nodes.

use std::fmt::Write as _;
use std::io::Write;

use serde::Serialize;

/// `-o` for verbs that print records.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns with a header.
    #[default]
    Table,
    /// JSON (an array; one object per line when following).
    Json,
    /// YAML (one document per record).
    Yaml,
}

/// Rows under a header, printed with every column padded to its widest
/// cell and three spaces between columns; the last column is not padded.
/// Hand-written: the table crates draw borders or need a writer per row,
/// and this is all we need.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    pub fn render(&self) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 < row.len() {
                    let pad = widths[i] - cell.chars().count();
                    let _ = write!(line, "{cell}{}   ", " ".repeat(pad));
                } else {
                    line.push_str(cell);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Prints records in `format`: the table for people (nothing when there
/// are no rows, e.g. every node failed), else the records themselves (a
/// JSON array, or YAML documents).
pub fn print_records<T: Serialize>(
    format: Format,
    table: impl FnOnce() -> Table,
    records: &[T],
) -> anyhow::Result<()> {
    let text = match format {
        Format::Table if records.is_empty() => String::new(),
        Format::Table => table().render(),
        Format::Json => serde_json::to_string_pretty(records)? + "\n",
        Format::Yaml => yaml_documents(records)?,
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Each record as its own YAML document.
pub fn yaml_documents<T: Serialize>(records: &[T]) -> anyhow::Result<String> {
    let mut out = String::new();
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml::to_string(r)?);
    }
    Ok(out)
}

/// Bytes in binary units with one decimal: `512 B`, `1.5 KiB`, `2.0 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Whole MiB, for the memory table.
pub fn mib(n: u64) -> String {
    (n / (1024 * 1024)).to_string()
}

/// A protobuf timestamp as RFC 3339 UTC to the second; empty when unset.
pub fn timestamp(t: Option<&prost_types::Timestamp>) -> String {
    match t {
        Some(t) => unix_time(t.seconds),
        None => String::new(),
    }
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn unix_time(seconds: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(seconds) {
        Ok(t) => {
            let format =
                time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
            t.format(&format).unwrap_or_else(|_| seconds.to_string())
        }
        Err(_) => seconds.to_string(),
    }
}

/// How long ago `seconds` (since the epoch) was, coarsely: `5s`, `3m`,
/// `2h`, `4d`.
pub fn age(seconds: i64, now: i64) -> String {
    let d = (now - seconds).max(0);
    match d {
        0..=119 => format!("{d}s"),
        120..=7199 => format!("{}m", d / 60),
        7200..=172_799 => format!("{}h", d / 3600),
        _ => format!("{}d", d / 86_400),
    }
}

/// Splits byte chunks from one node into lines and prefixes each with
/// `node: ` when several nodes stream at once; passes bytes through
/// untouched otherwise.
pub struct NodeLines {
    prefix: Option<String>,
    pending: Vec<u8>,
}

impl NodeLines {
    pub fn new(node: &str, prefixed: bool) -> Self {
        NodeLines {
            prefix: prefixed.then(|| format!("{node}: ")),
            pending: Vec::new(),
        }
    }

    /// The complete output for `chunk` (whole lines only when prefixing).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let Some(prefix) = &self.prefix else {
            return chunk.to_vec();
        };
        self.pending.extend_from_slice(chunk);
        let Some(last_newline) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let rest = self.pending.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut self.pending, rest);
        let mut out = Vec::with_capacity(complete.len() + prefix.len() * 4);
        for line in complete.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(line);
        }
        out
    }

    /// What is left at the end of the stream, newline-terminated.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let mut rest = std::mem::take(&mut self.pending);
        rest.push(b'\n');
        match &self.prefix {
            Some(p) => [p.as_bytes(), &rest].concat(),
            None => rest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_leave_the_last_unpadded() {
        let mut t = Table::new(["NODE", "SERVICE", "STATE"]);
        t.row(["10.0.0.1:50000", "apid", "Running"]);
        t.row(["10.0.0.22:50000", "machined-api", "Failed"]);
        assert_eq!(
            t.render(),
            "NODE              SERVICE        STATE\n\
             10.0.0.1:50000    apid           Running\n\
             10.0.0.22:50000   machined-api   Failed\n"
        );
    }

    #[test]
    fn empty_trailing_cells_leave_no_trailing_spaces() {
        let mut t = Table::new(["A", "B"]);
        t.row(["x", ""]);
        assert_eq!(t.render(), "A   B\nx\n");
    }

    #[test]
    fn width_counts_characters_not_bytes() {
        let mut t = Table::new(["N", "X"]);
        t.row(["é", "1"]);
        assert_eq!(t.render(), "N   X\né   1\n");
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(2 * 1024 * 1024 * 1024), "2.0 GiB");
        assert_eq!(mib(3 * 1024 * 1024 + 5), "3");
    }

    #[test]
    fn times_are_utc_rfc3339_and_ages_coarse() {
        assert_eq!(unix_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(unix_time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(age(100, 105), "5s");
        assert_eq!(age(0, 180), "3m");
        assert_eq!(age(0, 3 * 3600), "3h");
        assert_eq!(age(0, 5 * 86_400), "5d");
        assert_eq!(age(10, 0), "0s");
    }

    #[test]
    fn yaml_records_are_separate_documents() {
        #[derive(Serialize)]
        struct R {
            node: &'static str,
        }
        let text = yaml_documents(&[R { node: "a" }, R { node: "b" }]).unwrap();
        assert_eq!(text, "node: a\n---\nnode: b\n");
    }

    #[test]
    fn node_lines_prefix_whole_lines_only_when_asked() {
        let mut plain = NodeLines::new("n1", false);
        assert_eq!(plain.push(b"par"), b"par");
        assert_eq!(plain.finish(), b"");

        let mut p = NodeLines::new("n1", true);
        assert_eq!(p.push(b"one\ntw"), b"n1: one\n");
        assert_eq!(p.push(b"o\nthree\nfo"), b"n1: two\nn1: three\n");
        assert_eq!(p.finish(), b"n1: fo\n");
        assert_eq!(p.finish(), b"");
    }
}
