//! Whether a certificate already on disk still answers a request: issued by
//! the same CA key, for the same subject, names and usages, with its key,
//! and not close to expiry. Re-issuing anyway would change every file at
//! every reconcile and restart every component reading them.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use config::pki::{CertifiedKey, LeafRequest, Usage};
use config::types::{PemCertificate, PemPrivateKey};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate with less validity left than this is re-issued.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

fn subject_key_id(c: &X509Certificate<'_>) -> Option<Vec<u8>> {
    c.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
}

fn authority_key_id(c: &X509Certificate<'_>) -> Option<Vec<u8>> {
    c.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(k) => {
                k.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
}

/// The names and usages of a certificate, comparable with a request.
#[derive(Debug, PartialEq, Eq)]
pub struct Identity {
    pub common_name: String,
    pub organizations: BTreeSet<String>,
    pub dns_names: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
    pub server: bool,
    pub client: bool,
}

impl Identity {
    pub fn of_request(req: &LeafRequest) -> Identity {
        Identity {
            common_name: req.common_name.clone(),
            organizations: req.organizations.iter().cloned().collect(),
            dns_names: req.dns_names.iter().cloned().collect(),
            ips: req.ips.iter().copied().collect(),
            server: matches!(req.usage, Usage::Server | Usage::ServerAndClient),
            client: matches!(req.usage, Usage::Client | Usage::ServerAndClient),
        }
    }

    pub fn of_cert(c: &X509Certificate<'_>) -> Identity {
        let text =
            |a: &x509_parser::x509::AttributeTypeAndValue<'_>| a.as_str().ok().map(str::to_string);
        let mut id = Identity {
            common_name: c
                .subject()
                .iter_common_name()
                .find_map(text)
                .unwrap_or_default(),
            organizations: c.subject().iter_organization().filter_map(text).collect(),
            dns_names: BTreeSet::new(),
            ips: BTreeSet::new(),
            server: false,
            client: false,
        };
        if let Ok(Some(san)) = c.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::DNSName(d) => {
                        id.dns_names.insert(d.to_string());
                    }
                    GeneralName::IPAddress(b) => {
                        if let Ok(a) = <[u8; 4]>::try_from(*b) {
                            id.ips.insert(IpAddr::from(a));
                        } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                            id.ips.insert(IpAddr::from(a));
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Ok(Some(eku)) = c.extended_key_usage() {
            id.server = eku.value.server_auth;
            id.client = eku.value.client_auth;
        }
        id
    }
}

/// The certificate and key in `crt`/`key` (PEM text) if they still answer
/// `req` from `ca`.
pub fn reusable(
    ca: &CertifiedKey,
    req: &LeafRequest,
    crt: &str,
    key: &str,
) -> Option<CertifiedKey> {
    let crt = crt.parse::<PemCertificate>().ok()?;
    let key = key.parse::<PemPrivateKey>().ok()?;
    let (_, ca_cert) = X509Certificate::from_der(ca.crt.der()).ok()?;
    let (_, leaf) = X509Certificate::from_der(crt.der()).ok()?;
    if leaf.issuer().as_raw() != ca_cert.subject().as_raw() {
        return None;
    }
    // Same CA name but a new CA key: the key identifiers differ.
    if subject_key_id(&ca_cert)? != authority_key_id(&leaf)? {
        return None;
    }
    if Identity::of_cert(&leaf) != Identity::of_request(req) {
        return None;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    let not_after = u64::try_from(leaf.validity().not_after.timestamp()).ok()?;
    if not_after < now + RENEW_BEFORE.as_secs() {
        return None;
    }
    config::pki::key_matches(&crt, &key).then_some(CertifiedKey { crt, key })
}
