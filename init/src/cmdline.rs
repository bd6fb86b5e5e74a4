//! Parsing of the kernel command line (`/proc/cmdline`).
//!
//! The kernel splits parameters on whitespace outside double quotes and
//! strips the quotes around a value (`key="a b"`); everything after a bare
//! `--` belongs to init's argv, not to us.

/// Parsed kernel parameters in command-line order. A later duplicate wins on
/// lookup, as it does for the kernel's own parameters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cmdline {
    params: Vec<(String, Option<String>)>,
}

impl Cmdline {
    pub fn parse(text: &str) -> Self {
        let mut params = Vec::new();
        for word in split_words(text) {
            if word == "--" {
                break;
            }
            // `"key=a b"` quotes the whole parameter, as the kernel allows.
            let word = match word.strip_prefix('"') {
                Some(rest) => rest.strip_suffix('"').unwrap_or(rest),
                None => &word,
            };
            match word.split_once('=') {
                Some((key, value)) => {
                    params.push((key.to_string(), Some(strip_quotes(value).to_string())))
                }
                None => params.push((word.to_string(), None)),
            }
        }
        Cmdline { params }
    }

    /// The value of the last `key=value`; `Some("")` for a bare `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    /// What to do when boot fails, from the kernel's own `panic=` parameter.
    pub fn on_failure(&self) -> OnFailure {
        match self.get("panic").map(str::parse::<i64>) {
            Some(Ok(0)) => OnFailure::Hang,
            Some(Ok(n)) if n < 0 => OnFailure::RebootAfterSecs(0),
            Some(Ok(n)) => OnFailure::RebootAfterSecs(n.unsigned_abs()),
            // Absent or unparsable: reboot after a pause long enough to read
            // the message on a console.
            _ => OnFailure::RebootAfterSecs(DEFAULT_REBOOT_DELAY_SECS),
        }
    }
}

/// Seconds to show a failure on the console before rebooting.
pub const DEFAULT_REBOOT_DELAY_SECS: u64 = 10;

/// What init does after printing a failure. Mirrors the kernel's `panic=`:
/// 0 waits forever (someone wants to read the console), a positive value is
/// the pause before rebooting, a negative one reboots at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    Hang,
    RebootAfterSecs(u64),
}

fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    for c in text.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                current.push(c);
            }
            c if c.is_whitespace() && !in_quotes => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

fn strip_quotes(value: &str) -> &str {
    let value = value.strip_prefix('"').unwrap_or(value);
    value.strip_suffix('"').unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_values_and_flags() {
        let c = Cmdline::parse("console=tty0 console=ttyS0,115200 slab_nomerge pti=on\n");
        assert_eq!(
            c.get("console"),
            Some("ttyS0,115200"),
            "last duplicate wins"
        );
        assert_eq!(c.get("slab_nomerge"), Some(""));
        assert_eq!(c.get("pti"), Some("on"));
        assert_eq!(c.get("quiet"), None);
    }

    #[test]
    fn quoted_values_keep_spaces() {
        let c = Cmdline::parse(r#"a=1 dyndbg="file foo.c +p" "b=x y" c"#);
        assert_eq!(c.get("dyndbg"), Some("file foo.c +p"));
        assert_eq!(c.get("b"), Some("x y"));
        assert_eq!(c.get("c"), Some(""));
    }

    #[test]
    fn values_may_contain_equals() {
        let c = Cmdline::parse("cairn.config=http://10.0.2.2:8080/c.yaml?x=1");
        assert_eq!(
            c.get("cairn.config"),
            Some("http://10.0.2.2:8080/c.yaml?x=1")
        );
    }

    #[test]
    fn arguments_after_double_dash_are_not_parameters() {
        let c = Cmdline::parse("panic=0 -- panic=5 single");
        assert_eq!(c.get("panic"), Some("0"));
        assert_eq!(c.get("single"), None);
    }

    #[test]
    fn failure_policy_follows_panic_parameter() {
        assert_eq!(Cmdline::parse("panic=0").on_failure(), OnFailure::Hang);
        assert_eq!(
            Cmdline::parse("panic=3").on_failure(),
            OnFailure::RebootAfterSecs(3)
        );
        assert_eq!(
            Cmdline::parse("panic=-1").on_failure(),
            OnFailure::RebootAfterSecs(0)
        );
        assert_eq!(
            Cmdline::parse("quiet").on_failure(),
            OnFailure::RebootAfterSecs(DEFAULT_REBOOT_DELAY_SECS)
        );
        assert_eq!(
            Cmdline::parse("panic=soon").on_failure(),
            OnFailure::RebootAfterSecs(DEFAULT_REBOOT_DELAY_SECS)
        );
        assert_eq!(
            Cmdline::parse("").on_failure(),
            OnFailure::RebootAfterSecs(10)
        );
    }
}
