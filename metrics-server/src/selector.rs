//! Label selectors as clients send them in `?labelSelector=` (kubectl's
//! `-l`, the autoscaler's scale selector): `k=v`, `k==v`, `k!=v`,
//! `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, joined by commas. Parsed into
//! kube-rs's own [`Selector`], which does the matching.

use std::collections::BTreeSet;

use kube::core::{Expression, Selector};

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("labelSelector {selector:?}: {why}")]
pub struct SelectorError {
    pub selector: String,
    pub why: String,
}

/// Splits at commas that are not inside parentheses.
fn requirements(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced ')'".into());
                }
            }
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".into());
    }
    out.push(&s[start..]);
    Ok(out)
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn set(s: &str) -> Result<BTreeSet<String>, String> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a (value,...) set, found {s:?}"))?;
    inner
        .split(',')
        .map(|v| {
            let v = v.trim();
            if valid_value(v) {
                Ok(v.to_string())
            } else {
                Err(format!("bad value {v:?}"))
            }
        })
        .collect()
}

fn expression(r: &str) -> Result<Expression, String> {
    let r = r.trim();
    if let Some(k) = r.strip_prefix('!') {
        let k = k.trim();
        return valid_key(k)
            .then(|| Expression::DoesNotExist(k.to_string()))
            .ok_or_else(|| format!("bad key {k:?}"));
    }
    let pair = |op: &str| -> Option<Result<(String, String), String>> {
        let (k, v) = r.split_once(op)?;
        let (k, v) = (k.trim(), v.trim());
        Some(if !valid_key(k) {
            Err(format!("bad key {k:?}"))
        } else if !valid_value(v) {
            Err(format!("bad value {v:?}"))
        } else {
            Ok((k.to_string(), v.to_string()))
        })
    };
    if let Some(p) = pair("!=") {
        let (k, v) = p?;
        return Ok(Expression::NotEqual(k, v));
    }
    if let Some(p) = pair("==").or_else(|| pair("=")) {
        let (k, v) = p?;
        return Ok(Expression::Equal(k, v));
    }
    let words: Vec<&str> = r.splitn(3, char::is_whitespace).collect();
    match words.as_slice() {
        [k] if valid_key(k) => Ok(Expression::Exists(k.to_string())),
        [k, op, rest] if valid_key(k) && *op == "in" => {
            Ok(Expression::In(k.to_string(), set(rest)?))
        }
        [k, op, rest] if valid_key(k) && *op == "notin" => {
            Ok(Expression::NotIn(k.to_string(), set(rest)?))
        }
        _ => Err(format!("cannot read {r:?}")),
    }
}

/// The selector `s`; empty selects everything.
pub fn parse(s: &str) -> Result<Selector, SelectorError> {
    let err = |why: String| SelectorError {
        selector: s.to_string(),
        why,
    };
    let mut selector = Selector::default();
    if s.trim().is_empty() {
        return Ok(selector);
    }
    for r in requirements(s).map_err(err)? {
        selector.extend(expression(r).map_err(err)?);
    }
    Ok(selector)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::SelectorExt as _;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_form_matches_like_the_api_server() {
        let web = labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("app.kubernetes.io/name", "x"),
        ]);
        let db = labels(&[("app", "db")]);
        for (sel, want_web, want_db) in [
            ("", true, true),
            ("app=web", true, false),
            ("app==web", true, false),
            ("app!=web", false, true),
            ("app in (web, db)", true, true),
            ("app notin (web)", false, true),
            ("tier", true, false),
            ("!tier", false, true),
            ("app=web,tier in (front,back)", true, false),
            ("app.kubernetes.io/name=x", true, false),
            ("app in (db),tier", false, false),
        ] {
            let s = parse(sel).unwrap();
            assert_eq!(s.matches(&web), want_web, "{sel} on web");
            assert_eq!(s.matches(&db), want_db, "{sel} on db");
        }
    }

    #[test]
    fn bad_selectors_say_why() {
        for (sel, why) in [
            ("app in (web", "unbalanced"),
            ("app)", "unbalanced"),
            ("app=we b", "bad value"),
            ("=web", "bad key"),
            ("app in web", "set"),
            ("app like web", "cannot read"),
            ("!", "bad key"),
        ] {
            let e = parse(sel).unwrap_err();
            assert!(e.to_string().contains(why), "{sel}: {e}");
        }
    }
}
