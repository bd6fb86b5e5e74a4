//! Typed deserialization of one document that reports as many field errors
//! as it can, not only the first.
//!
//! serde stops at the first error. To find the next one we remove the
//! offending node from the YAML value and try again, translating list
//! indices back to the positions in the original document. A "missing
//! field" error caused by such a removal is not reported, and ends the
//! search (there is no value we could put back).

use std::collections::HashMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::error::Location;

/// At most this many field errors are reported per document.
const MAX_ERRORS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A field path, displayed as `cluster.network.podSubnets[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct FieldPath(pub Vec<Seg>);

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                // Map keys such as sysctl names contain dots: quote them.
                Seg::Key(k)
                    if !k
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
                {
                    write!(f, "[{k:?}]")?
                }
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl FieldPath {
    /// Parse the display form back (`a.b[0]["x.y"]`); `None` when malformed.
    pub(crate) fn parse(s: &str) -> Option<FieldPath> {
        let mut segs = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("[\"") {
                // A quoted key, as Debug wrote it; keys with escapes are not located.
                let end = r.find("\"]")?;
                segs.push(Seg::Key(r[..end].to_string()));
                rest = &r[end + 2..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']')?;
                segs.push(Seg::Index(r[..end].parse().ok()?));
                rest = &r[end + 1..];
            } else {
                let r = rest.strip_prefix('.').unwrap_or(rest);
                let end = r.find(['.', '[']).unwrap_or(r.len());
                if end == 0 {
                    return None;
                }
                segs.push(Seg::Key(r[..end].to_string()));
                rest = &r[end..];
            }
        }
        Some(FieldPath(segs))
    }

    fn from_serde(p: &serde_path_to_error::Path) -> Option<FieldPath> {
        use serde_path_to_error::Segment;
        p.iter()
            .map(|s| match s {
                Segment::Seq { index } => Some(Seg::Index(*index)),
                Segment::Map { key } => Some(Seg::Key(key.clone())),
                Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
                Segment::Unknown => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(FieldPath)
    }

    fn child(&self, key: &str) -> FieldPath {
        let mut v = self.0.clone();
        v.push(Seg::Key(key.to_string()));
        FieldPath(v)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct FieldError {
    pub path: FieldPath,
    pub location: Option<Location>,
    pub message: String,
}

/// Deserialize `value` into `T`, or return every error found. `text` and
/// `doc` (0-based) locate the first error in the source.
pub(crate) fn deserialize<T: DeserializeOwned>(
    value: &Value,
    text: &str,
    doc: usize,
) -> Result<T, Vec<FieldError>> {
    let mut work = value.clone();
    let mut errors: Vec<FieldError> = Vec::new();
    // Original paths of removed nodes; removed list indices per list.
    let mut removed: Vec<FieldPath> = Vec::new();
    let mut removed_indices: HashMap<FieldPath, Vec<usize>> = HashMap::new();

    while errors.len() < MAX_ERRORS {
        let err = match serde_path_to_error::deserialize::<_, T>(&work) {
            Ok(t) if errors.is_empty() => return Ok(t),
            Ok(_) => break,
            Err(e) => e,
        };
        let Some(current) = FieldPath::from_serde(err.path()) else {
            errors.push(FieldError {
                path: FieldPath::default(),
                location: None,
                message: err.inner().to_string(),
            });
            break;
        };
        let original = translate(&current, &removed_indices);
        let message = err.inner().to_string();

        if let Some(field) = backticked(&message, "missing field `") {
            let full = original.child(field);
            if !removed.contains(&full) {
                errors.push(FieldError {
                    path: full,
                    location: None,
                    message: "required field is missing".into(),
                });
            }
            break;
        }
        let (path, message, remove_at) = match backticked(&message, "unknown field `") {
            Some(field) => {
                let mut cur = current.clone();
                let mut orig = original.clone();
                if cur.0.last() != Some(&Seg::Key(field.to_string())) {
                    cur = cur.child(field);
                    orig = orig.child(field);
                }
                (orig, unknown_field_message(&message), cur)
            }
            None => (original, message, current),
        };
        errors.push(FieldError {
            path: path.clone(),
            location: None,
            message,
        });
        if remove_at.0.is_empty() || !remove(&mut work, &remove_at.0) {
            break;
        }
        if let Some(Seg::Index(i)) = path.0.last() {
            let list = FieldPath(path.0[..path.0.len() - 1].to_vec());
            let entry = removed_indices.entry(list).or_default();
            entry.push(*i);
            entry.sort_unstable();
        }
        removed.push(path);
    }

    for e in &mut errors {
        e.location = super::locate::locate(text, doc, &e.path.0);
    }
    Err(errors)
}

/// The text between `prefix` and the next backtick.
fn backticked<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

/// "unknown field `x`, expected one of `a`, `b`" -> "unknown field; expected one of: a, b".
fn unknown_field_message(message: &str) -> String {
    let expected = message
        .split_once(", expected ")
        .map(|(_, e)| e.replace('`', ""));
    match expected {
        Some(e) => format!(
            "unknown field (expected {})",
            e.replace("one of ", "one of: ")
        ),
        None => "unknown field (this mapping has no fields)".into(),
    }
}

/// Map a path in the (edited) working value to the original document.
fn translate(current: &FieldPath, removed_indices: &HashMap<FieldPath, Vec<usize>>) -> FieldPath {
    let mut out: Vec<Seg> = Vec::with_capacity(current.0.len());
    for seg in &current.0 {
        match seg {
            Seg::Index(i) => {
                let mut original = *i;
                if let Some(gone) = removed_indices.get(&FieldPath(out.clone())) {
                    for g in gone {
                        if *g <= original {
                            original += 1;
                        }
                    }
                }
                out.push(Seg::Index(original));
            }
            key => out.push(key.clone()),
        }
    }
    FieldPath(out)
}

/// Remove the node at `path` from `value`; false when it is not there.
fn remove(value: &mut Value, path: &[Seg]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = value;
    for seg in parents {
        node = match (seg, node) {
            (Seg::Key(k), Value::Mapping(m)) => match m.get_mut(k.as_str()) {
                Some(n) => n,
                None => return false,
            },
            (Seg::Index(i), Value::Sequence(s)) => match s.get_mut(*i) {
                Some(n) => n,
                None => return false,
            },
            (seg, Value::Tagged(t)) => match remove_step(&mut t.value, seg) {
                Some(n) => n,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Seg::Key(k), Value::Mapping(m)) => m.remove(k.as_str()).is_some(),
        (Seg::Index(i), Value::Sequence(s)) if *i < s.len() => {
            s.remove(*i);
            true
        }
        _ => false,
    }
}

fn remove_step<'v>(value: &'v mut Value, seg: &Seg) -> Option<&'v mut Value> {
    match (seg, value) {
        (Seg::Key(k), Value::Mapping(m)) => m.get_mut(k.as_str()),
        (Seg::Index(i), Value::Sequence(s)) => s.get_mut(*i),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_display_and_parse_back() {
        let p = FieldPath(vec![
            Seg::Key("machine".into()),
            Seg::Key("sysctls".into()),
            Seg::Key("net.ipv4.ip_forward".into()),
        ]);
        assert_eq!(p.to_string(), r#"machine.sysctls["net.ipv4.ip_forward"]"#);
        assert_eq!(FieldPath::parse(&p.to_string()), Some(p));
        let q = FieldPath::parse("cluster.network.podSubnets[0]").unwrap();
        assert_eq!(q.0.last(), Some(&Seg::Index(0)));
        assert_eq!(q.to_string(), "cluster.network.podSubnets[0]");
        assert_eq!(FieldPath::parse("a..b"), None);
    }

    #[test]
    fn translate_skips_removed_items() {
        let list = FieldPath(vec![Seg::Key("l".into())]);
        let removed = HashMap::from([(list, vec![1, 3])]);
        let cur = FieldPath(vec![Seg::Key("l".into()), Seg::Index(2)]);
        // Original [0, 1, 2, 3, 4] minus 1 and 3 leaves [0, 2, 4]: index 2 is 4.
        assert_eq!(translate(&cur, &removed).0[1], Seg::Index(4));
    }
}
