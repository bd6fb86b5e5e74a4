//! Signed upgrades: Ed25519 keys, detached signatures over an upgrade
//! asset's sha256, and the check a node makes against the keys its config
//! trusts (`machine.install.trustedKeys`).
//!
//! Why: the Upgrade RPC checks each asset against a sha256 that the same
//! client sends, which proves only that the bytes arrived whole. A node
//! that lists trusted keys also wants to know who built them: an admin
//! certificate alone (stolen, or handed to a script) should not be enough
//! to put an arbitrary kernel on the node.
//!
//! Formats, chosen so that `openssl` can make and check them too
//! (`images/sign-upgrade.sh` signs with it at image build time):
//! - private key: PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), Ed25519;
//! - public key: SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`);
//! - key id: the first 16 hex digits of the sha256 of the raw 32-byte key;
//! - signed message: the ASCII text `cairn upgrade sha256:<64 hex digits>`
//!   (the asset's digest, tagged so that a signature made for anything
//!   else never passes as one for an upgrade);
//! - signature file (`<asset>.sig`, next to the asset): one line,
//!   `cairn-signature-v1 ed25519 <key id> <base64 of the 64-byte signature>`.

use std::borrow::Cow;

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use sha2::Digest as _;

use crate::types::{str_scalar, StrScalar};

/// The first word of a signature file.
pub const SIGNATURE_TAG: &str = "cairn-signature-v1";
/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the raw
/// 32-byte key follows.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// A signature file is one short line; anything longer is not one.
const MAX_SIGNATURE_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    #[error("the image is not signed, and this node accepts only images signed by a key it trusts (machine.install.trustedKeys)")]
    NotSigned,
    #[error("the image is signed by a key this node does not trust (key id {key_id}); add its public key to machine.install.trustedKeys to accept it")]
    Untrusted { key_id: String },
    #[error("bad signature: the image does not match its signature by key {key_id} (altered, or signed for other bytes)")]
    BadSignature { key_id: String },
    #[error("the signature is not a Cairn upgrade signature: {0}")]
    Malformed(String),
    #[error("the signing key: {0}")]
    Key(String),
}

/// A short, stable name of a public key: 16 hex digits of its sha256.
pub fn key_id(raw: &[u8; 32]) -> String {
    hex::encode(&sha2::Sha256::digest(raw)[..8])
}

/// The bytes a signature covers for an asset with this sha256.
pub fn message(image_sha256: &[u8; 32]) -> Vec<u8> {
    format!("cairn upgrade sha256:{}", hex::encode(image_sha256)).into_bytes()
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The one PEM block of `text` with `label`, as DER.
fn pem_der(text: &str, label: &str) -> Result<Vec<u8>, String> {
    let blocks: Vec<_> = x509_parser::pem::Pem::iter_from_buffer(text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("malformed PEM: {e}"))?;
    match &blocks[..] {
        [] => Err(format!("no -----BEGIN {label}----- block found")),
        [b] if b.label == label => Ok(b.contents.clone()),
        [b] => Err(format!("the PEM block is a {:?}, not a {label}", b.label)),
        more => Err(format!("expected one PEM block, found {}", more.len())),
    }
}

/// An Ed25519 public key that signs upgrades (`machine.install.trustedKeys`
/// entries), in SubjectPublicKeyInfo PEM form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TrustedKey {
    pem: String,
    raw: [u8; 32],
}

impl TrustedKey {
    /// From the raw 32-byte key.
    pub fn from_raw(raw: [u8; 32]) -> TrustedKey {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&raw);
        TrustedKey {
            pem: pem("PUBLIC KEY", &der),
            raw,
        }
    }

    pub fn raw(&self) -> &[u8; 32] {
        &self.raw
    }

    pub fn id(&self) -> String {
        key_id(&self.raw)
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "TrustedKey({})", self.id())
    }
}

impl StrScalar for TrustedKey {
    const EXPECTING: &'static str = "an Ed25519 public key in PEM form";
    fn parse_text(s: &str) -> Result<Self, String> {
        let bad = |why: String| format!("not an Ed25519 public key: {why}");
        let der = pem_der(s, "PUBLIC KEY").map_err(bad)?;
        let raw = der
            .strip_prefix(&SPKI_PREFIX[..])
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or_else(|| {
                bad("the key inside is not Ed25519 (cairnctl gen upgrade-key makes one)".into())
            })?;
        Ok(TrustedKey {
            pem: s.to_string(),
            raw,
        })
    }
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.pem)
    }
}
str_scalar!(TrustedKey, {
    "description": "An Ed25519 public key in PEM form (-----BEGIN PUBLIC KEY-----), as `cairnctl gen upgrade-key` writes it.",
    "pattern": "-----BEGIN PUBLIC KEY-----"
});

/// The DER prefix of an Ed25519 private key in PKCS#8 v1 form (RFC 8410:
/// version 0, the Ed25519 algorithm, the 32-byte seed as an OCTET STRING);
/// the seed follows. v1 because openssl 3.0 does not read the v2 form
/// (with the public key) that ring generates.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A new key pair: the private key as PKCS#8 PEM, and its public key.
pub fn generate() -> Result<(String, TrustedKey), SigningError> {
    let seed = crate::pki::random_bytes::<32>()
        .map_err(|_| SigningError::Key("the system random number generator failed".into()))?;
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
        .map_err(|e| SigningError::Key(format!("the generated key does not load: {e}")))?;
    let raw = <[u8; 32]>::try_from(pair.public_key().as_ref())
        .map_err(|_| SigningError::Key("the generated public key is not 32 bytes".into()))?;
    let mut der = PKCS8_V1_PREFIX.to_vec();
    der.extend_from_slice(&seed);
    Ok((pem("PRIVATE KEY", &der), TrustedKey::from_raw(raw)))
}

/// The signature file's line for an asset with this sha256, signed with
/// `private_key` (PKCS#8 PEM, as [`generate`] or openssl makes it).
pub fn sign(private_key: &str, image_sha256: &[u8; 32]) -> Result<String, SigningError> {
    let der = pem_der(private_key, "PRIVATE KEY").map_err(SigningError::Key)?;
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
        .map_err(|e| SigningError::Key(format!("not an Ed25519 private key: {e}")))?;
    let raw = <[u8; 32]>::try_from(pair.public_key().as_ref())
        .map_err(|_| SigningError::Key("the public key is not 32 bytes".into()))?;
    let sig = pair.sign(&message(image_sha256));
    Ok(format!(
        "{SIGNATURE_TAG} ed25519 {} {}\n",
        key_id(&raw),
        base64::engine::general_purpose::STANDARD.encode(sig.as_ref())
    ))
}

/// A parsed signature file: who signed, and the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub key_id: String,
    pub bytes: [u8; 64],
}

impl Signature {
    pub fn parse(file: &[u8]) -> Result<Signature, SigningError> {
        let bad = |why: &str| SigningError::Malformed(why.to_string());
        if file.len() > MAX_SIGNATURE_LEN {
            return Err(bad("longer than a signature line"));
        }
        let text = std::str::from_utf8(file).map_err(|_| bad("not text"))?;
        let words: Vec<&str> = text.split_ascii_whitespace().collect();
        let [tag, alg, id, sig] = words[..] else {
            return Err(bad(
                "expected one line: cairn-signature-v1 ed25519 <key id> <signature>",
            ));
        };
        if tag != SIGNATURE_TAG {
            return Err(bad("it does not start with cairn-signature-v1"));
        }
        if alg != "ed25519" {
            return Err(bad("only ed25519 signatures are known"));
        }
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the key id is not 16 hex digits"));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sig)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .ok_or_else(|| bad("the signature is not 64 bytes of base64"))?;
        Ok(Signature {
            key_id: id.to_ascii_lowercase(),
            bytes,
        })
    }
}

/// Checks that `signature` (a signature file's bytes; `None` or empty:
/// unsigned) signs `image_sha256` with one of `trusted_keys`. Returns the
/// signing key's id.
///
/// A node that lists no trusted keys does not call this (it accepts
/// unsigned images, as before keys existed).
pub fn verify(
    image_sha256: &[u8; 32],
    signature: Option<&[u8]>,
    trusted_keys: &[TrustedKey],
) -> Result<String, SigningError> {
    let file = signature
        .filter(|s| !s.is_empty())
        .ok_or(SigningError::NotSigned)?;
    let sig = Signature::parse(file)?;
    let key = trusted_keys
        .iter()
        .find(|k| k.id() == sig.key_id)
        .ok_or_else(|| SigningError::Untrusted {
            key_id: sig.key_id.clone(),
        })?;
    UnparsedPublicKey::new(&ED25519, key.raw())
        .verify(&message(image_sha256), &sig.bytes)
        .map_err(|_| SigningError::BadSignature {
            key_id: sig.key_id.clone(),
        })?;
    Ok(sig.key_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(b: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(b).into()
    }

    #[test]
    fn signs_and_verifies_with_the_trusted_key_only() {
        let (private, public) = generate().unwrap();
        let (_, other) = generate().unwrap();
        let image = digest(b"kernel bytes");
        let sig = sign(&private, &image).unwrap();
        assert!(sig.starts_with(&format!("cairn-signature-v1 ed25519 {} ", public.id())));
        assert_eq!(
            verify(
                &image,
                Some(sig.as_bytes()),
                &[other.clone(), public.clone()]
            ),
            Ok(public.id())
        );
        // The three refusals.
        assert_eq!(
            verify(&image, None, std::slice::from_ref(&public)),
            Err(SigningError::NotSigned)
        );
        assert_eq!(
            verify(&image, Some(b""), std::slice::from_ref(&public)),
            Err(SigningError::NotSigned)
        );
        let e = verify(&image, Some(sig.as_bytes()), std::slice::from_ref(&other)).unwrap_err();
        assert_eq!(
            e,
            SigningError::Untrusted {
                key_id: public.id()
            }
        );
        assert!(e
            .to_string()
            .starts_with("the image is signed by a key this node does not trust (key id "));
        let e = verify(
            &digest(b"kernel bytes, altered"),
            Some(sig.as_bytes()),
            std::slice::from_ref(&public),
        )
        .unwrap_err();
        assert_eq!(
            e,
            SigningError::BadSignature {
                key_id: public.id()
            }
        );
        assert!(e.to_string().starts_with("bad signature"));
        assert!(SigningError::NotSigned
            .to_string()
            .starts_with("the image is not signed"));
    }

    #[test]
    fn a_forged_line_naming_a_trusted_key_is_a_bad_signature() {
        let (_, public) = generate().unwrap();
        let forged = format!(
            "cairn-signature-v1 ed25519 {} {}",
            public.id(),
            base64::engine::general_purpose::STANDARD.encode([7u8; 64])
        );
        assert!(matches!(
            verify(&digest(b"x"), Some(forged.as_bytes()), &[public]),
            Err(SigningError::BadSignature { .. })
        ));
    }

    #[test]
    fn malformed_signatures_say_why() {
        let (_, public) = generate().unwrap();
        let keys = [public.clone()];
        let b64 = base64::engine::general_purpose::STANDARD.encode([0u8; 64]);
        for (file, why) in [
            ("garbage".to_string(), "expected one line"),
            (
                format!("minisign ed25519 {} {b64}", public.id()),
                "cairn-signature-v1",
            ),
            (
                format!("cairn-signature-v1 rsa {} {b64}", public.id()),
                "only ed25519",
            ),
            (format!("cairn-signature-v1 ed25519 xyz {b64}"), "16 hex"),
            (
                format!("cairn-signature-v1 ed25519 {} AAAA", public.id()),
                "64 bytes",
            ),
            ("x".repeat(1000), "longer"),
        ] {
            let e = verify(&digest(b"x"), Some(file.as_bytes()), &keys).unwrap_err();
            assert!(
                matches!(&e, SigningError::Malformed(m) if m.contains(why)),
                "{file}: {e}"
            );
        }
        assert!(matches!(
            verify(&digest(b"x"), Some(&[0xff, 0xfe][..]), &keys),
            Err(SigningError::Malformed(_))
        ));
    }

    #[test]
    fn public_keys_parse_from_pem_and_nothing_else() {
        let (private, public) = generate().unwrap();
        let again: TrustedKey = public.pem().parse().unwrap();
        assert_eq!(again, public);
        assert_eq!(again.id().len(), 16);
        for (text, why) in [
            ("", "no -----BEGIN PUBLIC KEY-----"),
            (private.as_str(), "not a PUBLIC KEY"),
            (
                "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n",
                "not Ed25519",
            ),
        ] {
            let e = text.parse::<TrustedKey>().unwrap_err();
            assert!(e.contains(why), "{e}");
            assert!(e.starts_with("not an Ed25519 public key"), "{e}");
        }
        // An ECDSA key is refused as not Ed25519.
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let e = ec.public_key_pem().parse::<TrustedKey>().unwrap_err();
        assert!(e.contains("not Ed25519"), "{e}");
    }

    #[test]
    fn signing_needs_an_ed25519_private_key() {
        let ec = crate::pki::generate_key(crate::pki::KeyAlgorithm::EcdsaP256).unwrap();
        assert!(matches!(
            sign(ec.pem(), &[0; 32]),
            Err(SigningError::Key(_))
        ));
        assert!(matches!(sign("nope", &[0; 32]), Err(SigningError::Key(_))));
    }
}
