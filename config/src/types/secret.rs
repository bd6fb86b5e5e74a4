//! Secret-bearing scalars: PEM certificates and keys, tokens, encryption
//! keys. Keys, tokens and encryption keys never print in Debug output.

use std::borrow::Cow;

use base64::Engine as _;

use super::{str_scalar, StrScalar};

/// Decode the PEM blocks of `s`, failing on any malformed block.
fn pem_blocks(s: &str) -> Result<Vec<x509_parser::pem::Pem>, String> {
    x509_parser::pem::Pem::iter_from_buffer(s.as_bytes())
        .map(|r| r.map_err(|e| format!("malformed PEM block: {e}")))
        .collect()
}

/// One X.509 certificate in PEM form (`-----BEGIN CERTIFICATE-----`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PemCertificate {
    pem: String,
    der: Vec<u8>,
}

impl PemCertificate {
    /// The PEM text as written.
    pub fn pem(&self) -> &str {
        &self.pem
    }
    /// The certificate's DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }
}

impl std::fmt::Debug for PemCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "PemCertificate({})", crate::pki::fingerprint(&self.der))
    }
}

impl StrScalar for PemCertificate {
    const EXPECTING: &'static str = "a PEM certificate";
    fn parse_text(s: &str) -> Result<Self, String> {
        let bad = |why: String| format!("not a PEM certificate: {why}");
        let blocks = pem_blocks(s).map_err(bad)?;
        let [block] = &blocks[..] else {
            return Err(bad(match blocks.len() {
                0 => "no -----BEGIN CERTIFICATE----- block found".into(),
                n => format!("expected one PEM block, found {n}"),
            }));
        };
        if block.label != "CERTIFICATE" {
            return Err(bad(format!(
                "the PEM block is a {:?}, not a CERTIFICATE",
                block.label
            )));
        }
        x509_parser::parse_x509_certificate(&block.contents)
            .map_err(|e| bad(format!("the DER inside does not parse as X.509: {e}")))?;
        Ok(PemCertificate {
            pem: s.to_string(),
            der: block.contents.clone(),
        })
    }
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.pem)
    }
}
str_scalar!(PemCertificate, {
    "description": "An X.509 certificate in PEM form.",
    "pattern": "-----BEGIN CERTIFICATE-----"
});

/// A private key in unencrypted PKCS#8 PEM form (`-----BEGIN PRIVATE
/// KEY-----`): Ed25519, ECDSA P-256/P-384 or RSA.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PemPrivateKey(String);

impl PemPrivateKey {
    pub fn pem(&self) -> &str {
        &self.0
    }
    /// The key as an rcgen key pair, for signing.
    pub fn key_pair(&self) -> Result<rcgen::KeyPair, rcgen::Error> {
        rcgen::KeyPair::from_pem(&self.0)
    }
}

impl std::fmt::Debug for PemPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("PemPrivateKey(<redacted>)")
    }
}

impl StrScalar for PemPrivateKey {
    const EXPECTING: &'static str = "a PEM private key";
    fn parse_text(s: &str) -> Result<Self, String> {
        let bad = |why: String| format!("not a PEM private key: {why}");
        let blocks = pem_blocks(s).map_err(bad)?;
        let [block] = &blocks[..] else {
            return Err(bad(match blocks.len() {
                0 => "no -----BEGIN PRIVATE KEY----- block found".into(),
                n => format!("expected one PEM block, found {n}"),
            }));
        };
        match block.label.as_str() {
            "PRIVATE KEY" => {}
            "EC PRIVATE KEY" | "RSA PRIVATE KEY" => {
                return Err(bad(format!(
                    "{:?} keys are not supported; convert to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt`",
                    block.label
                )))
            }
            "ENCRYPTED PRIVATE KEY" => return Err(bad("the key is encrypted; store it unencrypted".into())),
            other => return Err(bad(format!("the PEM block is a {other:?}, not a PRIVATE KEY"))),
        }
        rcgen::KeyPair::try_from(block.contents.as_slice())
            .map_err(|e| bad(format!("unsupported or corrupt PKCS#8 key: {e}")))?;
        Ok(PemPrivateKey(s.to_string()))
    }
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.0)
    }
}
str_scalar!(PemPrivateKey, {
    "description": "An unencrypted PKCS#8 private key in PEM form.",
    "pattern": "-----BEGIN PRIVATE KEY-----"
});

/// A token in the Kubernetes bootstrap-token format `[a-z0-9]{6}.[a-z0-9]{16}`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Token(String);

impl Token {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The public part before the dot (the token ID).
    pub fn id(&self) -> &str {
        &self.0[..6]
    }
    /// The secret part after the dot.
    pub fn secret(&self) -> &str {
        &self.0[7..]
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "Token({}.<redacted>)", self.id())
    }
}

impl StrScalar for Token {
    const EXPECTING: &'static str = "a token such as abcdef.0123456789abcdef";
    fn parse_text(s: &str) -> Result<Self, String> {
        let part_ok = |p: &str, n: usize| {
            p.len() == n
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        match s.split_once('.') {
            Some((id, secret)) if part_ok(id, 6) && part_ok(secret, 16) => Ok(Token(s.to_string())),
            // The value is a secret: do not echo it.
            _ => Err("not a token: expected 6 and 16 characters of a-z0-9 joined by a dot (abcdef.0123456789abcdef)".into()),
        }
    }
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.0)
    }
}
str_scalar!(Token, {
    "description": "A token: 6 and 16 characters of a-z0-9 joined by a dot.",
    "pattern": "^[a-z0-9]{6}\\.[a-z0-9]{16}$"
});

/// A 32-byte key in standard base64 (for etcd-at-rest secretbox encryption).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EncryptionKey(String);

impl EncryptionKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The raw 32 bytes.
    pub fn bytes(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.0)
            .unwrap_or_default()
    }
    /// Encode 32 raw bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        EncryptionKey(base64::engine::general_purpose::STANDARD.encode(bytes))
    }
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("EncryptionKey(<redacted>)")
    }
}

impl StrScalar for EncryptionKey {
    const EXPECTING: &'static str = "32 bytes in base64";
    fn parse_text(s: &str) -> Result<Self, String> {
        match base64::engine::general_purpose::STANDARD.decode(s) {
            Ok(b) if b.len() == 32 => Ok(EncryptionKey(s.to_string())),
            Ok(b) => Err(format!(
                "not an encryption key: it decodes to {} bytes, expected 32",
                b.len()
            )),
            Err(_) => Err("not an encryption key: not standard base64".into()),
        }
    }
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.0)
    }
}
str_scalar!(EncryptionKey, {
    "description": "32 random bytes in standard base64.",
    "pattern": "^[A-Za-z0-9+/]{43}=$"
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let t = Token::parse_text("abcdef.0123456789abcdef").unwrap();
        assert_eq!((t.id(), t.secret()), ("abcdef", "0123456789abcdef"));
        assert!(!format!("{t:?}").contains("0123456789abcdef"));
        assert!(Token::parse_text("abcdef.0123").is_err());
        assert!(Token::parse_text("ABCDEF.0123456789abcdef").is_err());
    }

    #[test]
    fn encryption_keys() {
        let k = EncryptionKey::from_bytes(&[7; 32]);
        assert_eq!(
            EncryptionKey::parse_text(k.as_str()).unwrap().bytes(),
            vec![7; 32]
        );
        assert!(EncryptionKey::parse_text("aGVsbG8=")
            .unwrap_err()
            .contains("5 bytes"));
        assert!(EncryptionKey::parse_text("!!!").is_err());
    }

    #[test]
    fn pem_errors() {
        assert!(PemCertificate::parse_text("hello")
            .unwrap_err()
            .contains("no -----BEGIN CERTIFICATE"));
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(PemCertificate::parse_text(garbage)
            .unwrap_err()
            .contains("X.509"));
        assert!(PemPrivateKey::parse_text(
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"
        )
        .unwrap_err()
        .contains("PKCS#8"));
    }
}
