//! Small HTML helpers: escaping, the page frame, tables, forms. Every
//! string that came from the cluster goes through [`esc`].

use std::fmt::Write;

/// `s` escaped for HTML text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` for a path segment in a link (names are DNS labels, but be safe).
pub fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// What every page around its body knows.
pub struct Frame<'a> {
    pub title: &'a str,
    /// Signed-in user and CSRF token; None on the sign-in page.
    pub user: Option<(&'a str, &'a str)>,
    pub namespaces: &'a [String],
    pub namespace: Option<&'a str>,
    /// A message from the last action: (ok, text).
    pub flash: Option<(bool, String)>,
}

/// The whole page.
pub fn page(f: &Frame, body: &str) -> String {
    let mut nav = String::new();
    if let Some((user, csrf)) = f.user {
        let _ = write!(
            nav,
            r#"<nav><a href="/" class="brand">Cairn</a><a href="/">Overview</a>"#
        );
        if !f.namespaces.is_empty() {
            nav.push_str(r#"<span class="ns">Namespace: "#);
            for ns in f.namespaces {
                let class = if Some(ns.as_str()) == f.namespace {
                    " class=\"current\""
                } else {
                    ""
                };
                let _ = write!(nav, r#"<a href="/ns/{}"{class}>{}</a> "#, seg(ns), esc(ns));
            }
            nav.push_str("</span>");
        }
        let _ = write!(
            nav,
            r#"<span class="user">{}</span><form method="post" action="/logout" class="inline">{}<button>Sign out</button></form></nav>"#,
            esc(user),
            csrf_field(csrf)
        );
    }
    let flash = match &f.flash {
        Some((ok, text)) => format!(
            r#"<div class="flash {}" id="flash">{}</div>"#,
            if *ok { "ok" } else { "error" },
            esc(text)
        ),
        None => String::new(),
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} · Cairn</title><link rel="stylesheet" href="/static/app.css">
<script src="/static/app.js" defer></script></head>
<body>{nav}<main>{flash}{body}</main></body></html>
"#,
        esc(f.title)
    )
}

pub fn csrf_field(csrf: &str) -> String {
    format!(r#"<input type="hidden" name="csrf" value="{}">"#, esc(csrf))
}

/// A table with `head` columns and pre-rendered cells.
pub fn table(id: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(r#"<div class="scroll"><table id="{}"><thead><tr>"#, esc(id));
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(
            out,
            r#"<tr><td colspan="{}" class="muted">none</td></tr>"#,
            head.len()
        );
    }
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

/// A status word with its colour: ok, warn or bad.
pub fn badge(text: &str, level: &str) -> String {
    format!(r#"<span class="badge {level}">{}</span>"#, esc(text))
}

/// A button in its own POST form; disabled, with the reason as its title,
/// when RBAC says no.
pub fn action(
    url: &str,
    label: &str,
    csrf: &str,
    allowed: Result<(), &str>,
    extra: &str,
) -> String {
    let disabled = match allowed {
        Ok(()) => String::new(),
        Err(why) => format!(r#" disabled title="{}""#, esc(why)),
    };
    format!(
        r#"<form method="post" action="{}" class="inline">{}{extra}<button{disabled}>{}</button></form>"#,
        esc(url),
        csrf_field(csrf),
        esc(label)
    )
}

/// "3d", "5h", "12m", "40s" since `then` (seconds since the epoch).
pub fn age(then: Option<i64>, now: i64) -> String {
    let Some(then) = then else {
        return "-".into();
    };
    let d = (now - then).max(0);
    match d {
        0..=119 => format!("{d}s"),
        120..=7199 => format!("{}m", d / 60),
        7200..=172_799 => format!("{}h", d / 3600),
        _ => format!("{}d", d / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_segments() {
        assert_eq!(
            esc(r#"<a href="x">'&"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
        assert_eq!(seg("kube-system"), "kube-system");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn ages() {
        assert_eq!(age(Some(100), 130), "30s");
        assert_eq!(age(Some(0), 600), "10m");
        assert_eq!(age(Some(0), 3 * 86400), "3d");
        assert_eq!(age(None, 5), "-");
    }

    #[test]
    fn a_refused_action_is_a_disabled_button_with_the_reason() {
        let b = action("/x", "Scale", "tok", Err("you may not <patch>"), "");
        assert!(
            b.contains(r#"disabled title="you may not &lt;patch&gt;""#),
            "{b}"
        );
        assert!(b.contains(r#"name="csrf" value="tok""#));
        assert!(!action("/x", "Scale", "tok", Ok(()), "").contains("disabled"));
    }
}
