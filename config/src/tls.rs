//! TLS pieces shared by the client, the tests and apid's tests.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Accepts any server certificate, for maintenance mode only: the node has
/// no identity yet that we could check. The handshake signatures are still
/// verified, so the session is encrypted to whoever holds the key. With a
/// pin (the fingerprint the node's console shows), only that certificate is
/// accepted, so a man in the middle cannot read the first config.
#[derive(Debug)]
pub struct AcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
    /// Lowercase hex SHA-256 of the one certificate to accept.
    pinned: Option<String>,
}

impl AcceptAnyServerCert {
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        Self {
            provider,
            pinned: None,
        }
    }

    /// Accepts only the certificate whose SHA-256 is `fingerprint`
    /// (`sha256:<hex>`, or the hex alone; colons and case do not matter).
    pub fn pinned(provider: Arc<CryptoProvider>, fingerprint: &str) -> Self {
        Self {
            provider,
            pinned: Some(normalize_fingerprint(fingerprint)),
        }
    }
}

/// `sha256:AB:cd...` or `abcd...` as lowercase hex without separators.
pub fn normalize_fingerprint(fingerprint: &str) -> String {
    let hex = fingerprint.trim();
    let hex = hex
        .strip_prefix("sha256:")
        .or_else(|| hex.strip_prefix("SHA256:"))
        .unwrap_or(hex);
    hex.chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Whether `fingerprint` is a SHA-256 written as 64 hex digits.
pub fn is_fingerprint(fingerprint: &str) -> bool {
    let hex = normalize_fingerprint(fingerprint);
    hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use sha2::{Digest, Sha256};
        if let Some(want) = &self.pinned {
            let got = hex::encode(Sha256::digest(end_entity.as_ref()));
            if &got != want {
                return Err(rustls::Error::General(format!(
                    "the node's certificate is sha256:{got}, not the pinned sha256:{want}; \
                     check the fingerprint on the node's console (someone may be in the middle)"
                )));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
