//! Certificates for machines that join a cluster without its CA keys.
//!
//! A worker's config carries the OS CA certificate but not its key, so it
//! cannot issue apid's serving certificate itself. It makes a key that never
//! leaves the node and sends a certificate signing request ([`server_csr`])
//! with the join token (`machine.token`) to a control plane, which checks the
//! token ([`token_matches`], in constant time) and signs the request with
//! [`sign_server_csr`]: a server certificate only (never a client
//! certificate, so never a role), for names the control plane allows, with
//! its own validity; everything else in the request (Organization,
//! extensions, CA flags) is ignored. Talos's trustd is the model.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use subtle::ConstantTimeEq;

use crate::pki::{CertifiedKey, KeyAlgorithm, PkiError};
use crate::types::{PemCertificate, PemPrivateKey, SubjectAltName};

/// How long a joined machine's apid certificate lives; it is renewed when
/// two thirds of that have passed.
pub const JOIN_CERT_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the certificate request is not a valid PKCS#10 request: {0}")]
    BadRequest(String),
    #[error("the certificate request names {0}, which is not this machine's")]
    NameNotAllowed(String),
    #[error("the certificate request names nothing to certify")]
    NoNames,
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("cannot sign: {0}")]
    Sign(#[from] rcgen::Error),
}

/// Whether `presented` is `expected`, compared in constant time (the time
/// taken does not tell how many leading bytes matched).
pub fn token_matches(presented: &str, expected: &str) -> bool {
    presented.len() == expected.len() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

/// A new key and a PEM certificate signing request for a server
/// certificate with `common_name` and `sans`.
pub fn server_csr(
    common_name: &str,
    sans: &[SubjectAltName],
) -> Result<(PemPrivateKey, String), JoinError> {
    let key = KeyPair::generate_for(KeyAlgorithm::EcdsaP256.rcgen()).map_err(PkiError::from)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    for san in sans {
        params.subject_alt_names.push(match san {
            SubjectAltName::Ip(ip) => SanType::IpAddress(*ip),
            SubjectAltName::Dns(d) => SanType::DnsName(d.clone().try_into()?),
        });
    }
    let csr = params.serialize_request(&key)?;
    let pem = crate::pki::to_pem_key(&key)?;
    Ok((pem, csr.pem()?))
}

/// The names a certificate request asks for.
pub fn requested_names(csr_pem: &str) -> Result<Vec<SubjectAltName>, JoinError> {
    let csr = parse(csr_pem)?;
    sans_of(&csr.params)
}

fn parse(csr_pem: &str) -> Result<CertificateSigningRequestParams, JoinError> {
    CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| JoinError::BadRequest(e.to_string()))
}

fn sans_of(params: &CertificateParams) -> Result<Vec<SubjectAltName>, JoinError> {
    params
        .subject_alt_names
        .iter()
        .map(|s| match s {
            SanType::IpAddress(ip) => Ok(SubjectAltName::Ip(*ip)),
            SanType::DnsName(d) => Ok(SubjectAltName::Dns(d.to_string())),
            other => Err(JoinError::NameNotAllowed(format!("{other:?}"))),
        })
        .collect()
}

/// What a control plane lets a joining machine put in its apid certificate:
/// the address it connected from, loopback (clients reach apid through a
/// forwarded port on 127.0.0.1), `localhost` and one plain host name (no
/// dots, no wildcard; host names are not proven, so a name lets nobody
/// impersonate an address).
pub fn allowed_for_peer(peer: IpAddr, san: &SubjectAltName) -> bool {
    match san {
        SubjectAltName::Ip(ip) => *ip == peer || ip.is_loopback(),
        SubjectAltName::Dns(d) => {
            d == "localhost"
                || (!d.is_empty()
                    && d.len() <= 63
                    && !d.starts_with('-')
                    && d.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
        }
    }
}

/// Signs the server certificate a joining machine asked for with `ca`: only
/// when every name passes `allowed`; a server certificate for those names
/// and the request's common name, valid for `validity`, nothing else.
pub fn sign_server_csr(
    ca: &CertifiedKey,
    csr_pem: &str,
    allowed: impl Fn(&SubjectAltName) -> bool,
    validity: Duration,
) -> Result<PemCertificate, JoinError> {
    let mut csr = parse(csr_pem)?;
    let sans = sans_of(&csr.params)?;
    if sans.is_empty() {
        return Err(JoinError::NoNames);
    }
    if let Some(bad) = sans.iter().find(|s| !allowed(s)) {
        return Err(JoinError::NameNotAllowed(bad.to_string()));
    }
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, sans[0].to_string());
    params.distinguished_name = dn;
    params.subject_alt_names = std::mem::take(&mut csr.params.subject_alt_names);
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    crate::pki::validity(&mut params, validity)?;
    csr.params = params;
    let ca_key = ca.key.key_pair()?;
    let issuer = Issuer::from_ca_cert_der(&ca.crt.der().to_vec().into(), ca_key)?;
    let cert = csr.signed_by(&issuer)?;
    Ok(crate::pki::to_pem_cert(&cert)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn peer() -> IpAddr {
        "10.5.0.3".parse().unwrap()
    }

    fn names(list: &[&str]) -> Vec<SubjectAltName> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn tokens_compare_whole_and_exact() {
        assert!(token_matches(
            "abcdef.0123456789abcdef",
            "abcdef.0123456789abcdef"
        ));
        assert!(!token_matches(
            "abcdef.0123456789abcdeX",
            "abcdef.0123456789abcdef"
        ));
        assert!(!token_matches("abcdef", "abcdef.0123456789abcdef"));
        assert!(!token_matches("", "abcdef.0123456789abcdef"));
    }

    #[test]
    fn a_joining_machine_gets_a_server_certificate_for_its_own_names_only() {
        let ca = crate::pki::create_os_ca().unwrap();
        let (key, csr) =
            server_csr("worker-1", &names(&["10.5.0.3", "127.0.0.1", "worker-1"])).unwrap();
        assert_eq!(
            requested_names(&csr).unwrap(),
            names(&["10.5.0.3", "127.0.0.1", "worker-1"])
        );
        let crt = sign_server_csr(
            &ca,
            &csr,
            |s| allowed_for_peer(peer(), s),
            JOIN_CERT_VALIDITY,
        )
        .unwrap();
        assert!(
            crate::pki::key_matches(&crt, &key),
            "the worker's own key is certified"
        );
        let der = crt.der();
        let (_, cert) = X509Certificate::from_der(der).unwrap();
        // Signed by the OS CA.
        let ca_der = ca.crt.der();
        let (_, ca_cert) = X509Certificate::from_der(ca_der).unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        // A server certificate and nothing more: no role, no client use.
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        assert!(cert.subject().iter_organization().next().is_none());
        assert!(!cert.is_ca());
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
            / 86400;
        assert!((29..=31).contains(&days), "{days} days");
    }

    #[test]
    fn names_of_other_machines_are_refused() {
        let ca = crate::pki::create_os_ca().unwrap();
        for bad in [
            &["10.5.0.2"][..],                 // a control plane's address
            &["10.5.0.3", "cp-1.example.org"], // a dotted name
            &["*.cluster"],
        ] {
            let (_, csr) = server_csr("x", &names(bad)).unwrap();
            let e = sign_server_csr(
                &ca,
                &csr,
                |s| allowed_for_peer(peer(), s),
                JOIN_CERT_VALIDITY,
            )
            .unwrap_err();
            assert!(matches!(e, JoinError::NameNotAllowed(_)), "{bad:?}: {e}");
        }
        let (_, csr) = server_csr("x", &[]).unwrap();
        assert!(matches!(
            sign_server_csr(&ca, &csr, |_| true, JOIN_CERT_VALIDITY),
            Err(JoinError::NoNames)
        ));
        assert!(matches!(
            sign_server_csr(&ca, "not a request", |_| true, JOIN_CERT_VALIDITY),
            Err(JoinError::BadRequest(_))
        ));
    }

    #[test]
    fn loopback_and_localhost_are_always_allowed() {
        for ok in ["127.0.0.1", "::1", "localhost", "worker-7", "10.5.0.3"] {
            assert!(allowed_for_peer(peer(), &ok.parse().unwrap()), "{ok}");
        }
    }
}
