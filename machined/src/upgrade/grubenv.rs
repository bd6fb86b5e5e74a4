//! GRUB's environment block (`/grub/grubenv` on BOOT): 1024 bytes,
//! `# GRUB Environment Block\n`, `name=value\n` lines, `#` padding. The
//! boot menu (images/grub.sh `grub_menu_ab`) reads `cairn_default` (the
//! slot that boots) and `cairn_next` (a slot to boot once; GRUB clears it
//! with `save_env` before booting it).
//!
//! Hand-written: the format is a fixed block of text (grub-core/lib/envblk.c).

use std::collections::BTreeMap;

pub const SIZE: usize = 1024;
const SIGNATURE: &str = "# GRUB Environment Block\n";

pub const DEFAULT: &str = "cairn_default";
pub const NEXT: &str = "cairn_next";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrubEnvError {
    #[error("not a GRUB environment block (no signature)")]
    NoSignature,
    #[error("the GRUB environment does not fit in {SIZE} bytes")]
    TooLarge,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrubEnv {
    pub vars: BTreeMap<String, String>,
}

/// GRUB escapes `\`, newline is never written by us; values are slot names.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn unescape(v: &str) -> String {
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl GrubEnv {
    pub fn parse(bytes: &[u8]) -> Result<GrubEnv, GrubEnvError> {
        let text = String::from_utf8_lossy(bytes);
        let body = text
            .strip_prefix(SIGNATURE)
            .ok_or(GrubEnvError::NoSignature)?;
        let mut vars = BTreeMap::new();
        for line in body.split('\n') {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                vars.insert(k.to_string(), unescape(v));
            }
        }
        Ok(GrubEnv { vars })
    }

    pub fn render(&self) -> Result<Vec<u8>, GrubEnvError> {
        let mut text = String::from(SIGNATURE);
        for (k, v) in &self.vars {
            text.push_str(&format!("{k}={}\n", escape(v)));
        }
        if text.len() > SIZE {
            return Err(GrubEnvError::TooLarge);
        }
        let mut bytes = text.into_bytes();
        bytes.resize(SIZE, b'#');
        Ok(bytes)
    }

    pub fn get(&self, k: &str) -> &str {
        self.vars.get(k).map(String::as_str).unwrap_or("")
    }

    pub fn set(&mut self, k: &str, v: &str) {
        self.vars.insert(k.to_string(), v.to_string());
    }

    /// The slot that boots when nothing is tried (GRUB: not B means A).
    pub fn default_slot(&self) -> &'static str {
        if self.get(DEFAULT) == "B" {
            "B"
        } else {
            "A"
        }
    }

    /// The one-shot slot, if one is set.
    pub fn next_slot(&self) -> Option<&'static str> {
        match self.get(NEXT) {
            "A" => Some("A"),
            "B" => Some("B"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pads_like_grub_editenv() {
        let mut e = GrubEnv::default();
        e.set(DEFAULT, "A");
        e.set(NEXT, "");
        let bytes = e.render().unwrap();
        assert_eq!(bytes.len(), SIZE);
        assert!(bytes.starts_with(b"# GRUB Environment Block\ncairn_default=A\ncairn_next=\n#"));
        assert_eq!(GrubEnv::parse(&bytes).unwrap(), e);
        assert_eq!(e.default_slot(), "A");
        assert_eq!(e.next_slot(), None);
        e.set(NEXT, "B");
        assert_eq!(
            GrubEnv::parse(&e.render().unwrap()).unwrap().next_slot(),
            Some("B")
        );
        assert_eq!(GrubEnv::parse(b"junk"), Err(GrubEnvError::NoSignature));
        e.set("x", &"y".repeat(2000));
        assert_eq!(e.render(), Err(GrubEnvError::TooLarge));
    }

    /// What images/grub.sh `grub_env` and grub-editenv write parses.
    #[test]
    fn reads_grub_editenv_output() {
        use runtime::exec::output_blocking;
        use std::process::Command;
        if output_blocking(Command::new("grub-editenv").arg("--version")).is_err() {
            eprintln!("skipping: grub-editenv is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("grubenv");
        let set = output_blocking(Command::new("grub-editenv").arg(&f).args([
            "set",
            "cairn_default=B",
            "cairn_next=A",
        ]))
        .unwrap();
        assert!(
            set.status.success(),
            "{}",
            String::from_utf8_lossy(&set.stderr)
        );
        let bytes = std::fs::read(&f).unwrap();
        let e = GrubEnv::parse(&bytes).unwrap();
        assert_eq!((e.default_slot(), e.next_slot()), ("B", Some("A")));
        // And grub-editenv reads what we write.
        std::fs::write(&f, e.render().unwrap()).unwrap();
        let out = output_blocking(Command::new("grub-editenv").arg(&f).arg("list")).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "cairn_default=B\ncairn_next=A\n"
        );
    }
}
