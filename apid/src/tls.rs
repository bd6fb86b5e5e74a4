//! TLS for apid with rustls (ring): the server configuration for each mode,
//! the client configuration for forwarding to other nodes, and who a
//! verified client certificate says the caller is.
//!
//! The OS CA is Ed25519: the ring provider's verification algorithms
//! include ED25519, and a test below runs a real handshake with such
//! certificates.

use std::sync::Arc;

use config::apid::{ApidMode, ApidSettings};
use config::constants::role;
use config::pki::{CertifiedKey, Role};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("apid's private key: {0}")]
    Key(String),
    #[error("the OS CA certificate: {0}")]
    Ca(String),
    #[error("TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The ring provider, shared by every configuration apid builds.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn chain_and_key(
    ck: &CertifiedKey,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let key = PrivateKeyDer::from_pem_slice(ck.key.pem().as_bytes())
        .map_err(|e| TlsError::Key(e.to_string()))?;
    Ok((vec![CertificateDer::from(ck.crt.der().to_vec())], key))
}

fn roots(ca: &config::types::PemCertificate) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.der().to_vec()))
        .map_err(|e| TlsError::Ca(e.to_string()))?;
    Ok(roots)
}

/// The server side: no client certificates in maintenance mode; in secure
/// mode a client certificate signed by the OS CA is required at the
/// handshake (none, or one from another CA, ends the handshake).
pub fn server_config(settings: &ApidSettings) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let (chain, key) = chain_and_key(&settings.server)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = match (settings.mode, &settings.ca) {
        (ApidMode::Secure, Some(ca)) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider)
                    .build()?;
            builder
                .with_client_cert_verifier(Arc::new(OsCaVerifier(verifier)))
                .with_single_cert(chain, key)?
        }
        (ApidMode::Secure, None) => return Err(TlsError::Ca("secure mode without a CA".into())),
        (ApidMode::Maintenance, _) => builder.with_no_client_auth().with_single_cert(chain, key)?,
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The join port's server side: the node's certificate, no client
/// certificates (joining machines have none yet). `None` unless the
/// settings say this node signs joins.
pub fn join_config(settings: &ApidSettings) -> Result<Option<ServerConfig>, TlsError> {
    if !settings.join || settings.mode != ApidMode::Secure {
        return Ok(None);
    }
    let (chain, key) = chain_and_key(&settings.server)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(config))
}

/// The client side of forwarding: trusts only the OS CA and presents
/// apid's `os:impersonator` certificate. `None` when the settings have no
/// such certificate (maintenance mode, or a node that cannot forward).
pub fn forwarding_config(settings: &ApidSettings) -> Result<Option<ClientConfig>, TlsError> {
    let (Some(ca), Some(cert)) = (&settings.ca, &settings.forwarding) else {
        return Ok(None);
    };
    let (chain, key) = chain_and_key(cert)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(config))
}

/// The webpki client verifier, with one change in what the client is
/// told: every OS CA is named `cairn`, so a certificate from another
/// cluster's CA names our CA as its issuer and fails on its signature,
/// which TLS reports as `decrypt_error`. It is refused as what it is, a
/// certificate from an unknown CA (`unknown_ca`), so clients can say so.
#[derive(Debug)]
struct OsCaVerifier(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for OsCaVerifier {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(|e| match e {
                rustls::Error::InvalidCertificate(CertificateError::BadSignature) => {
                    rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
                }
                other => other,
            })
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Who is calling, as the TLS handshake established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// No client certificate (maintenance mode).
    Anonymous,
    /// A client certificate from the OS CA; `role` is `None` when its
    /// Organization names no Cairn role.
    Client { name: String, role: Option<Role> },
    /// Another node's apid forwarding a call (Organization
    /// `os:impersonator`): it names the original caller's role in metadata.
    Impersonator { name: String },
}

impl Peer {
    /// Reads the verified end-entity certificate rustls kept for the
    /// connection.
    pub fn from_certificates(certs: Option<&[CertificateDer<'_>]>) -> Peer {
        let Some(leaf) = certs.and_then(|c| c.first()) else {
            return Peer::Anonymous;
        };
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
            // rustls verified it, so this does not happen; never grant a
            // role to what we cannot read.
            return Peer::Client {
                name: "(unreadable certificate)".into(),
                role: None,
            };
        };
        let name = cert
            .subject()
            .iter_common_name()
            .find_map(|cn| cn.as_str().ok())
            .unwrap_or("")
            .to_string();
        let orgs: Vec<&str> = cert
            .subject()
            .iter_organization()
            .filter_map(|o| o.as_str().ok())
            .collect();
        if orgs.contains(&role::IMPERSONATOR) {
            return Peer::Impersonator { name };
        }
        let role = crate::authz::strongest(orgs.iter().filter_map(|o| Role::from_organization(o)));
        Peer::Client { name, role }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::pki;

    #[test]
    fn identifies_roles_and_impersonators() {
        let ca = pki::create_os_ca().unwrap();
        let der = |c: &CertifiedKey| vec![CertificateDer::from(c.crt.der().to_vec())];
        let admin = pki::issue_client_cert(&ca, "alice", Role::Admin, pki::LEAF_VALIDITY).unwrap();
        assert_eq!(
            Peer::from_certificates(Some(&der(&admin))),
            Peer::Client {
                name: "alice".into(),
                role: Some(Role::Admin)
            }
        );
        let mut req = pki::LeafRequest::new("node-1", pki::Usage::Client);
        req.organizations = vec![role::IMPERSONATOR.into()];
        let imp = pki::issue(&ca, &req).unwrap();
        assert_eq!(
            Peer::from_certificates(Some(&der(&imp))),
            Peer::Impersonator {
                name: "node-1".into()
            }
        );
        let mut req = pki::LeafRequest::new("nobody", pki::Usage::Client);
        req.organizations = vec!["system:masters".into()];
        let none = pki::issue(&ca, &req).unwrap();
        assert_eq!(
            Peer::from_certificates(Some(&der(&none))),
            Peer::Client {
                name: "nobody".into(),
                role: None
            }
        );
        assert_eq!(Peer::from_certificates(None), Peer::Anonymous);
    }
}
