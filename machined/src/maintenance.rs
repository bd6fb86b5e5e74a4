//! Maintenance mode: a node without a machine config. machined makes a
//! fresh self-signed certificate for apid, supervises apid (which serves
//! the API on :50000 without client certificates), and prints a banner
//! with the node's addresses and the certificate's fingerprint.

use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use config::constants::{APID_PORT, MACHINED_SOCKET, SECRETS_DIR};
use sha2::{Digest, Sha256};

use crate::supervisor::process::ProcessRunner;
use crate::supervisor::restart::{RestartPolicy, RestartRunner};
use crate::supervisor::{HealthCheck, Service, ServiceHandle};

/// apid runs as this unprivileged uid/gid; the machined socket is group
/// accessible to it.
pub const APID_UID: u32 = 50;
pub const APID_GID: u32 = 50;
/// Where apid's binary lives in the rootfs.
pub const APID_BIN: &str = "/sbin/apid";
/// Descriptor numbers apid finds its certificate and key on.
pub const CERT_FD: i32 = 3;
pub const KEY_FD: i32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("cannot generate apid's certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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

fn write_private(path: &Path, contents: &str) -> Result<(), MaintenanceError> {
    use std::io::Write;
    let err = |source| MaintenanceError::Write {
        path: path.to_path_buf(),
        source,
    };
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(contents.as_bytes()).map_err(err)
}

/// Paths of apid's certificate and key.
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Writes the certificate and key (0600, root) under
/// /system/secrets/apid. machined opens them for apid at each start (see
/// [`apid_service`]): apid never needs to be able to open them itself.
pub fn install_certificate(
    cert: &Certificate,
    dir: &Path,
) -> Result<CertificateFiles, MaintenanceError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MaintenanceError::Write { path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err(dir))?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    write_private(&cert_path, &cert.cert_pem)?;
    write_private(&key_path, &cert.key_pem)?;
    Ok(CertificateFiles {
        cert: cert_path,
        key: key_path,
    })
}

/// The apid service for maintenance mode: restarted with backoff, healthy
/// once it accepts TCP connections on its port.
pub fn apid_service(files: &CertificateFiles) -> Service {
    let mut runner = ProcessRunner::new(APID_BIN).args([
        "--maintenance".to_string(),
        "--listen".to_string(),
        format!("0.0.0.0:{APID_PORT}"),
        "--machined-socket".to_string(),
        MACHINED_SOCKET.to_string(),
        "--cert-fd".to_string(),
        CERT_FD.to_string(),
        "--key-fd".to_string(),
        KEY_FD.to_string(),
    ]);
    runner.uid = Some(APID_UID);
    runner.gid = Some(APID_GID);
    runner.no_new_privs = true;
    runner.pass_files = vec![(files.cert.clone(), CERT_FD), (files.key.clone(), KEY_FD)];
    runner.stop_timeout = Duration::from_secs(5);
    Service::new("apid", RestartRunner::new(runner, RestartPolicy::Always)).health(
        HealthCheck::tcp_connect(([127, 0, 0, 1], APID_PORT).into(), Duration::from_secs(5)),
    )
}

/// Where the certificate and key are written.
pub fn secrets_dir() -> PathBuf {
    Path::new(SECRETS_DIR).join("apid")
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
        .wait_for(|s| s.health == crate::supervisor::Health::Ok)
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
    crate::console!("{rule}");
    crate::console!("maintenance mode: no machine config yet; waiting for one over the API");
    crate::console!("node addresses: {addrs}");
    crate::console!("hostname: {hostname}");
    crate::console!("apid certificate sha256:{fingerprint}");
    crate::console!("maintenance mode: apid listening on :{APID_PORT}");
    crate::console!("{rule}");
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
    fn installs_private_files() {
        use std::io::Read;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let c = generate_certificate("n", &[]).unwrap();
        let d = dir.path().join("apid");
        let files = install_certificate(&c, &d).unwrap();
        for f in ["cert.pem", "key.pem"] {
            let mode = std::fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let mut s = String::new();
        std::fs::File::open(&files.key)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, c.key_pem);
        assert_eq!(std::fs::read_to_string(&files.cert).unwrap(), c.cert_pem);
        // A second boot-time install (apid restart path) replaces the files.
        let c2 = generate_certificate("n", &[]).unwrap();
        install_certificate(&c2, &d).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("cert.pem")).unwrap(),
            c2.cert_pem
        );
    }
}
