//! Keys and certificates for the cluster: the CAs (OS, Kubernetes, etcd,
//! aggregator), the service-account key, client certificates whose
//! Organization carries the API role, and server certificates with SANs.
//!
//! The OS CA uses Ed25519 (only our own Rust components read it). The
//! Kubernetes, etcd and aggregator CAs and the service-account key use ECDSA
//! P-256, which Kubernetes 1.20's Go components accept. Keys are PKCS#8 PEM.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use ring::rand::SecureRandom as _;
use sha2::Digest as _;

use crate::constants::role;
use crate::types::{PemCertificate, PemPrivateKey, StrScalar, SubjectAltName};

/// How long a CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long an issued (leaf) certificate is valid by default.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Certificates start this long in the past, so a peer whose clock runs a
/// little behind still accepts them.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("the CA key does not sign with a supported algorithm")]
    UnsupportedKey,
    #[error("the system random number generator failed")]
    Random,
    #[error("generated {what} did not validate: {why}")]
    Generated { what: &'static str, why: String },
}

/// Key algorithms Cairn generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Ed25519,
    EcdsaP256,
}

impl KeyAlgorithm {
    pub(crate) fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }
}

/// API roles carried in a client certificate's Organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything, including reset and upgrade.
    Admin,
    /// Day-to-day operations (reboot, service restarts) but no secrets.
    Operator,
    /// Read-only.
    Reader,
}

impl Role {
    /// The Organization value (`os:admin`, `os:operator`, `os:reader`).
    pub fn organization(self) -> &'static str {
        match self {
            Role::Admin => role::ADMIN,
            Role::Operator => role::OPERATOR,
            Role::Reader => role::READER,
        }
    }
    /// Parse an Organization value back into a role.
    pub fn from_organization(o: &str) -> Option<Role> {
        [Role::Admin, Role::Operator, Role::Reader]
            .into_iter()
            .find(|r| r.organization() == o)
    }
}

/// A certificate with its private key.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct CertifiedKey {
    /// The certificate, PEM.
    pub crt: PemCertificate,
    /// Its private key, PEM (PKCS#8).
    pub key: PemPrivateKey,
}

/// What an issued certificate may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    ServerAndClient,
}

/// A request for a certificate signed by a CA.
#[derive(Debug, Clone)]
pub struct LeafRequest {
    pub common_name: String,
    /// Subject Organization values (for client certificates: the role or
    /// Kubernetes groups such as `system:masters`).
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub usage: Usage,
    pub validity: Duration,
    /// Key type of the new certificate; `None` uses the CA's.
    pub key_algorithm: Option<KeyAlgorithm>,
}

impl LeafRequest {
    pub fn new(common_name: impl Into<String>, usage: Usage) -> Self {
        LeafRequest {
            common_name: common_name.into(),
            organizations: Vec::new(),
            dns_names: Vec::new(),
            ips: Vec::new(),
            usage,
            validity: LEAF_VALIDITY,
            key_algorithm: None,
        }
    }
}

/// Random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], PkiError> {
    let mut buf = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| PkiError::Random)?;
    Ok(buf)
}

/// A new private key.
pub fn generate_key(alg: KeyAlgorithm) -> Result<PemPrivateKey, PkiError> {
    let key = KeyPair::generate_for(alg.rcgen())?;
    to_pem_key(&key)
}

pub(crate) fn to_pem_key(key: &KeyPair) -> Result<PemPrivateKey, PkiError> {
    PemPrivateKey::parse_text(&key.serialize_pem())
        .map_err(|why| PkiError::Generated { what: "key", why })
}

pub(crate) fn to_pem_cert(cert: &rcgen::Certificate) -> Result<PemCertificate, PkiError> {
    PemCertificate::parse_text(&cert.pem()).map_err(|why| PkiError::Generated {
        what: "certificate",
        why,
    })
}

pub(crate) fn validity(params: &mut CertificateParams, validity: Duration) -> Result<(), PkiError> {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + validity;
    // RFC 5280: positive, at most 20 octets.
    let mut serial = random_bytes::<16>()?;
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok(())
}

fn name(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for o in organizations {
        dn.push(DnType::OrganizationName, *o);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A new self-signed CA.
pub fn create_ca(
    common_name: &str,
    organization: Option<&str>,
    alg: KeyAlgorithm,
    valid_for: Duration,
) -> Result<CertifiedKey, PkiError> {
    let key = KeyPair::generate_for(alg.rcgen())?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name, organization.as_slice());
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, valid_for)?;
    let cert = params.self_signed(&key)?;
    Ok(CertifiedKey {
        crt: to_pem_cert(&cert)?,
        key: to_pem_key(&key)?,
    })
}

/// The OS CA: signs apid server certificates and cairnctl client
/// certificates. Ed25519.
pub fn create_os_ca() -> Result<CertifiedKey, PkiError> {
    create_ca("cairn", Some("cairn"), KeyAlgorithm::Ed25519, CA_VALIDITY)
}

/// The Kubernetes cluster CA. ECDSA P-256.
pub fn create_kubernetes_ca() -> Result<CertifiedKey, PkiError> {
    create_ca(
        "kubernetes",
        Some("kubernetes"),
        KeyAlgorithm::EcdsaP256,
        CA_VALIDITY,
    )
}

/// The etcd CA (peer, server and client certificates of etcd). ECDSA P-256.
pub fn create_etcd_ca() -> Result<CertifiedKey, PkiError> {
    create_ca("etcd", Some("etcd"), KeyAlgorithm::EcdsaP256, CA_VALIDITY)
}

/// The front-proxy (aggregation layer) CA. ECDSA P-256.
pub fn create_aggregator_ca() -> Result<CertifiedKey, PkiError> {
    create_ca("front-proxy", None, KeyAlgorithm::EcdsaP256, CA_VALIDITY)
}

/// The key that signs service-account tokens. ECDSA P-256.
pub fn create_service_account_key() -> Result<PemPrivateKey, PkiError> {
    generate_key(KeyAlgorithm::EcdsaP256)
}

fn algorithm_of(key: &KeyPair) -> Result<KeyAlgorithm, PkiError> {
    if key.algorithm() == &rcgen::PKCS_ED25519 {
        Ok(KeyAlgorithm::Ed25519)
    } else if key.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256 {
        Ok(KeyAlgorithm::EcdsaP256)
    } else {
        Err(PkiError::UnsupportedKey)
    }
}

/// Issue a certificate signed by `ca`.
pub fn issue(ca: &CertifiedKey, req: &LeafRequest) -> Result<CertifiedKey, PkiError> {
    let ca_key = ca.key.key_pair()?;
    let alg = match req.key_algorithm {
        Some(a) => a,
        None => algorithm_of(&ca_key)?,
    };
    let issuer = Issuer::from_ca_cert_der(&ca.crt.der().to_vec().into(), ca_key)?;
    let key = KeyPair::generate_for(alg.rcgen())?;

    let mut params = CertificateParams::default();
    let orgs: Vec<&str> = req.organizations.iter().map(String::as_str).collect();
    params.distinguished_name = name(&req.common_name, &orgs);
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = match alg {
        KeyAlgorithm::Ed25519 => vec![KeyUsagePurpose::DigitalSignature],
        KeyAlgorithm::EcdsaP256 => vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ],
    };
    params.extended_key_usages = match req.usage {
        Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::ServerAndClient => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    for dns in &req.dns_names {
        params
            .subject_alt_names
            .push(SanType::DnsName(dns.clone().try_into()?));
    }
    params
        .subject_alt_names
        .extend(req.ips.iter().copied().map(SanType::IpAddress));
    validity(&mut params, req.validity)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertifiedKey {
        crt: to_pem_cert(&cert)?,
        key: to_pem_key(&key)?,
    })
}

/// A client certificate for the Cairn API whose Organization is the role.
pub fn issue_client_cert(
    ca: &CertifiedKey,
    common_name: &str,
    role: Role,
    valid_for: Duration,
) -> Result<CertifiedKey, PkiError> {
    let mut req = LeafRequest::new(common_name, Usage::Client);
    req.organizations = vec![role.organization().to_string()];
    req.validity = valid_for;
    issue(ca, &req)
}

/// The longest a certificate minted for a person may live
/// ([`issue_role_certificate`]).
pub const MAX_ROLE_CERT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// The shortest: less would expire before it is used.
pub const MIN_ROLE_CERT_TTL: Duration = Duration::from_secs(60);
/// The lifetime when none is asked for (`cairnctl config new` without
/// `--crt-ttl`, or a request without `crt_ttl`).
pub const DEFAULT_ROLE_CERT_TTL: Duration = Duration::from_secs(24 * 3600);

/// Why a role certificate was not issued.
#[derive(Debug, thiserror::Error)]
pub enum RoleCertError {
    #[error("name at least one role (os:admin, os:operator or os:reader)")]
    NoRoles,
    #[error("unknown role {0:?}: the roles are os:admin, os:operator and os:reader")]
    UnknownRole(String),
    #[error("a certificate may live at most {} days; {:.1} days were asked for", MAX_ROLE_CERT_TTL.as_secs() / 86400, .0.as_secs_f64() / 86400.0)]
    TtlTooLong(Duration),
    #[error("a certificate must live at least {} s; {} s were asked for", MIN_ROLE_CERT_TTL.as_secs(), .0.as_secs())]
    TtlTooShort(Duration),
    #[error("the certificate's name {0:?} must be 1 to 64 printable characters")]
    BadName(String),
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// A client certificate for a person, signed by the OS CA `ca`: its
/// Organization is the strongest of `roles` (validated: the three API
/// roles only, never `os:impersonator`), its Common Name `name`, valid for
/// `ttl`
/// ([`MIN_ROLE_CERT_TTL`] to [`MAX_ROLE_CERT_TTL`]). Used by the node to
/// answer `cairnctl config new --roles ... --crt-ttl ...`, so an admin can
/// hand out (short-lived, read-only) access without handing out the CA.
pub fn issue_role_certificate(
    ca: &CertifiedKey,
    name: &str,
    roles: &[String],
    ttl: Duration,
) -> Result<CertifiedKey, RoleCertError> {
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(RoleCertError::BadName(name.to_string()));
    }
    if roles.is_empty() {
        return Err(RoleCertError::NoRoles);
    }
    // Roles nest (an admin may do all an operator may, an operator all a
    // reader may), and apid grants a certificate its strongest role: the
    // certificate names that one.
    let rank = |r: Role| match r {
        Role::Reader => 0,
        Role::Operator => 1,
        Role::Admin => 2,
    };
    let mut strongest = Role::Reader;
    for r in roles {
        let role =
            Role::from_organization(r).ok_or_else(|| RoleCertError::UnknownRole(r.clone()))?;
        if rank(role) > rank(strongest) {
            strongest = role;
        }
    }
    if ttl > MAX_ROLE_CERT_TTL {
        return Err(RoleCertError::TtlTooLong(ttl));
    }
    if ttl < MIN_ROLE_CERT_TTL {
        return Err(RoleCertError::TtlTooShort(ttl));
    }
    let mut req = LeafRequest::new(name, Usage::Client);
    req.organizations = vec![strongest.organization().to_string()];
    req.validity = ttl;
    Ok(issue(ca, &req)?)
}

/// A server certificate for `sans` (DNS names and IP addresses).
pub fn issue_server_cert(
    ca: &CertifiedKey,
    common_name: &str,
    sans: &[SubjectAltName],
    valid_for: Duration,
) -> Result<CertifiedKey, PkiError> {
    let mut req = LeafRequest::new(common_name, Usage::Server);
    for san in sans {
        match san {
            SubjectAltName::Ip(ip) => req.ips.push(*ip),
            SubjectAltName::Dns(d) => req.dns_names.push(d.clone()),
        }
    }
    req.validity = valid_for;
    issue(ca, &req)
}

/// SHA-256 of a certificate's DER, lowercase hex (64 characters). Print it
/// as `sha256:<hex>`.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(der))
}

/// Whether `key` is the private key of `crt`.
pub fn key_matches(crt: &PemCertificate, key: &PemPrivateKey) -> bool {
    let (Ok(key), Ok((_, cert))) = (
        key.key_pair(),
        x509_parser::parse_x509_certificate(crt.der()),
    ) else {
        return false;
    };
    cert.public_key().raw == key.subject_public_key_info().as_slice()
}

/// Whether `crt` is a CA certificate (basicConstraints CA:TRUE).
pub fn is_ca(crt: &PemCertificate) -> bool {
    x509_parser::parse_x509_certificate(crt.der()).is_ok_and(|(_, c)| c.is_ca())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_and_leaves() {
        let ca = create_os_ca().unwrap();
        assert!(is_ca(&ca.crt));
        assert!(key_matches(&ca.crt, &ca.key));
        let client = issue_client_cert(&ca, "admin", Role::Admin, LEAF_VALIDITY).unwrap();
        assert!(!is_ca(&client.crt));
        assert!(key_matches(&client.crt, &client.key));
        assert!(!key_matches(&ca.crt, &client.key));
        assert_eq!(fingerprint(ca.crt.der()).len(), 64);
        assert_eq!(Role::from_organization("os:reader"), Some(Role::Reader));
    }

    fn organizations(c: &CertifiedKey) -> Vec<String> {
        let (_, cert) = x509_parser::parse_x509_certificate(c.crt.der()).unwrap();
        cert.subject()
            .iter_organization()
            .map(|o| o.as_str().unwrap().to_string())
            .collect()
    }

    /// Hole 10 of the hardening issue: certificates for people, with the
    /// roles and lifetime the admin chose.
    #[test]
    fn role_certificates_carry_known_roles_for_a_bounded_time() {
        let ca = create_os_ca().unwrap();
        let day = Duration::from_secs(24 * 3600);
        let c = issue_role_certificate(&ca, "alice", &["os:reader".into()], day).unwrap();
        assert_eq!(organizations(&c), ["os:reader"]);
        assert!(key_matches(&c.crt, &c.key));
        assert!(!is_ca(&c.crt));
        let (_, cert) = x509_parser::parse_x509_certificate(c.crt.der()).unwrap();
        let lifetime =
            cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        // The clock-skew allowance is added before now.
        assert_eq!(lifetime as u64, day.as_secs() + CLOCK_SKEW.as_secs());
        assert_eq!(
            cert.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "alice"
        );
        // Only client authentication.
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);

        let c = issue_role_certificate(
            &ca,
            "ops",
            &[
                "os:operator".into(),
                "os:reader".into(),
                "os:operator".into(),
            ],
            day,
        )
        .unwrap();
        assert_eq!(organizations(&c), ["os:operator"]);

        let refused = |roles: &[&str], ttl: Duration, name: &str| {
            let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
            issue_role_certificate(&ca, name, &roles, ttl)
                .unwrap_err()
                .to_string()
        };
        assert!(refused(&[], day, "x").starts_with("name at least one role"));
        // The forwarding role is apid's alone.
        assert_eq!(
            refused(&["os:impersonator"], day, "x"),
            "unknown role \"os:impersonator\": the roles are os:admin, os:operator and os:reader"
        );
        assert!(refused(&["system:masters"], day, "x").starts_with("unknown role"));
        assert_eq!(
            refused(&["os:reader"], Duration::from_secs(400 * 24 * 3600), "x"),
            "a certificate may live at most 365 days; 400.0 days were asked for"
        );
        assert!(refused(&["os:reader"], Duration::from_secs(5), "x")
            .starts_with("a certificate must live at least 60 s"));
        assert!(refused(&["os:reader"], day, "").contains("1 to 64 printable"));
        assert!(refused(&["os:reader"], day, "a\nb").contains("1 to 64 printable"));
        // The longest allowed works.
        issue_role_certificate(&ca, "x", &["os:admin".into()], MAX_ROLE_CERT_TTL).unwrap();
    }
}
