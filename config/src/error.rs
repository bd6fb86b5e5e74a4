//! Problems found while parsing a config file, each naming where it is.

use std::fmt;

/// A line and column in the input, both counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Which YAML document (1-based), when the problem is inside one.
    pub document: Option<usize>,
    /// That document's kind, when known.
    pub kind: Option<String>,
    /// Field path such as `cluster.network.podSubnets[0]`; empty when the
    /// problem concerns a whole document or the whole file.
    pub path: String,
    /// Where in the input, when the YAML parser knows.
    pub location: Option<Location>,
    /// What is wrong, for a human.
    pub message: String,
}

impl ParseError {
    pub(crate) fn file(message: impl Into<String>) -> Self {
        ParseError {
            document: None,
            kind: None,
            path: String::new(),
            location: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut wrote = false;
        if let Some(n) = self.document {
            write!(f, "document {n}")?;
            if let Some(kind) = &self.kind {
                write!(f, " ({kind})")?;
            }
            wrote = true;
        }
        if let Some(loc) = self.location {
            if wrote {
                f.write_str(", ")?;
            }
            write!(f, "line {} column {}", loc.line, loc.column)?;
            wrote = true;
        }
        if wrote {
            f.write_str(": ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a config file (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseErrors(pub(crate) Vec<ParseError>);

impl ParseErrors {
    pub fn errors(&self) -> &[ParseError] {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub(crate) fn single(e: ParseError) -> Self {
        ParseErrors(vec![e])
    }
}

impl IntoIterator for ParseErrors {
    type Item = ParseError;
    type IntoIter = std::vec::IntoIter<ParseError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// One problem per line.
impl fmt::Display for ParseErrors {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseErrors {}
