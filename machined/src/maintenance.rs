//! Maintenance mode: a node without a machine config. machined makes a
//! fresh self-signed certificate for apid, supervises apid (which serves
//! the API on :50000 without client certificates), and prints a banner
//! with the node's addresses and the certificate's fingerprint.

use std::net::IpAddr;
use std::sync::Arc;

use config::constants::APID_PORT;
use sha2::{Digest, Sha256};

use runtime::supervisor::ServiceHandle;

/// apid runs as this unprivileged uid/gid; the machined socket is group
/// accessible to it.
pub const APID_UID: u32 = 50;
pub const APID_GID: u32 = 50;
/// Where apid's binary lives in the rootfs.
pub const APID_BIN: &str = "/sbin/apid";

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("cannot generate apid's certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error(transparent)]
    Settings(crate::secure::SecureError),
}

/// A certificate and key in PEM, and the certificate's SHA-256.
pub struct Certificate {
    pub cert_pem: String,
    pub key_pem: String,
    /// Lowercase hex SHA-256 of the DER certificate (what
    /// `openssl x509 -noout -fingerprint -sha256` prints, without colons).
    pub fingerprint: String,
}

/// A fresh self-signed certificate for `hostname` and `addresses`.
pub fn generate_certificate(
    hostname: &str,
    addresses: &[IpAddr],
) -> Result<Certificate, MaintenanceError> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![hostname.to_string()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostname);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Cairn maintenance mode");
    for a in addresses {
        params.subject_alt_names.push(rcgen::SanType::IpAddress(*a));
    }
    // The default validity (1975 to 4096) is kept on purpose: the clock of a
    // freshly booted machine without time sync can be anywhere.
    let cert = params.self_signed(&key)?;
    Ok(Certificate {
        fingerprint: hex::encode(Sha256::digest(cert.der())),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes apid's maintenance-mode settings (the self-signed certificate,
/// no client certificates).
pub fn install_settings(
    cert: &Certificate,
    file: &crate::secure::ApidSettingsFile,
) -> Result<(), MaintenanceError> {
    let settings = crate::secure::maintenance_settings(cert).map_err(MaintenanceError::Settings)?;
    file.write(&settings).map_err(MaintenanceError::Settings)
}

/// Prints the maintenance banner once apid is healthy for the first time.
/// The last line is the one tests wait for, so everything else is on the
/// console by then.
pub async fn banner_when_ready(
    apid: Arc<ServiceHandle>,
    hostname: String,
    addresses: Vec<IpAddr>,
    fingerprint: String,
) {
    let mut rx = apid.status.subscribe();
    let _ = rx
        .wait_for(|s| s.health == runtime::supervisor::Health::Ok)
        .await;
    let addrs = if addresses.is_empty() {
        "none yet".to_string()
    } else {
        addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rule = "=".repeat(64);
    runtime::console!("{rule}");
    runtime::console!("maintenance mode: no machine config yet; waiting for one over the API");
    runtime::console!("node addresses: {addrs}");
    runtime::console!("hostname: {hostname}");
    runtime::console!("apid certificate sha256:{fingerprint}");
    runtime::console!("maintenance mode: apid listening on :{APID_PORT}");
    runtime::console!("{rule}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_has_sans_and_matching_fingerprint() {
        let addrs: Vec<IpAddr> = vec![
            "10.0.2.15".parse().unwrap(),
            "fec0::5054:ff:fe12:3456".parse().unwrap(),
        ];
        let c = generate_certificate("cairn-123456", &addrs).unwrap();
        assert_eq!(c.fingerprint.len(), 64);
        // Decode the PEM and check SANs and the fingerprint independently.
        let (_, pem) = x509_parser::pem::parse_x509_pem(c.cert_pem.as_bytes()).unwrap();
        let der = pem.contents;
        assert_eq!(hex::encode(Sha256::digest(&der)), c.fingerprint);
        let (_, x509) = x509_parser::parse_x509_certificate(&der).unwrap();
        let san = x509.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert!(
            names.iter().any(|n| n.contains("cairn-123456")),
            "{names:?}"
        );
        assert!(
            names.iter().any(|n| n == "IPAddress(0a:00:02:0f)"),
            "{names:?}"
        );
        assert!(c.key_pem.contains("PRIVATE KEY"));
    }

    #[test]
    fn maintenance_settings_hold_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let c = generate_certificate("n", &[]).unwrap();
        let d = dir.path().join("apid");
        install_settings(&c, &crate::secure::ApidSettingsFile::new(d.clone(), None)).unwrap();
        let s = config::apid::ApidSettings::parse(
            &std::fs::read(d.join(config::apid::SETTINGS_FILE)).unwrap(),
        )
        .unwrap();
        assert_eq!(s.mode, config::apid::ApidMode::Maintenance);
        assert_eq!(s.server.crt.pem(), c.cert_pem);
        assert_eq!(s.server.key.pem(), c.key_pem);
        assert!(s.ca.is_none() && s.forwarding.is_none());
    }
}
