//! Checks the PKI with independent implementations: `openssl verify` for the
//! chains, x509-parser for key usages, EKU, SANs and Organization.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use config::pki::{self, CertifiedKey, Role};
use config::types::SubjectAltName;
use x509_parser::prelude::*;

fn write(dir: &Path, name: &str, pem: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, pem).unwrap();
    p
}

/// Runs `openssl verify -CAfile ca leaf` and returns its stdout.
fn openssl_verify(dir: &Path, ca: &CertifiedKey, leaf: &CertifiedKey, purpose: &str) -> String {
    let ca_path = write(dir, "ca.crt", ca.crt.pem());
    let leaf_path = write(dir, "leaf.crt", leaf.crt.pem());
    let out = Command::new("openssl")
        .args(["verify", "-purpose", purpose, "-CAfile"])
        .arg(&ca_path)
        .arg(&leaf_path)
        .output()
        .expect("openssl must be installed (images/install-deps.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "openssl verify failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn parse(c: &CertifiedKey) -> X509Certificate<'_> {
    X509Certificate::from_der(c.crt.der()).unwrap().1
}

fn organizations(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject()
        .iter_organization()
        .map(|o| o.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn chains_verify_with_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let os_ca = pki::create_os_ca().unwrap();
    for role in [Role::Admin, Role::Operator, Role::Reader] {
        let client = pki::issue_client_cert(&os_ca, "cli", role, pki::LEAF_VALIDITY).unwrap();
        let out = openssl_verify(dir.path(), &os_ca, &client, "sslclient");
        assert!(out.trim_end().ends_with(": OK"), "{out}");
        let cert = parse(&client);
        assert_eq!(organizations(&cert), vec![role.organization().to_string()]);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && !ku.key_cert_sign());
        assert!(!cert.is_ca());
    }

    for ca in [
        pki::create_kubernetes_ca().unwrap(),
        pki::create_etcd_ca().unwrap(),
        pki::create_aggregator_ca().unwrap(),
    ] {
        let ca_cert = parse(&ca);
        assert!(ca_cert.is_ca());
        assert!(ca_cert.key_usage().unwrap().unwrap().value.key_cert_sign());
        // ECDSA P-256 (id-ecPublicKey with prime256v1) for Kubernetes 1.20.
        let spki = ca_cert.public_key();
        assert_eq!(spki.algorithm.algorithm.to_id_string(), "1.2.840.10045.2.1");
        assert_eq!(
            spki.algorithm
                .parameters
                .as_ref()
                .unwrap()
                .as_oid()
                .unwrap()
                .to_id_string(),
            "1.2.840.10045.3.1.7"
        );

        let sans: Vec<SubjectAltName> = ["10.5.0.2", "cp.example.org", "fd00::2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let server =
            pki::issue_server_cert(&ca, "kube-apiserver", &sans, pki::LEAF_VALIDITY).unwrap();
        let out = openssl_verify(dir.path(), &ca, &server, "sslserver");
        assert!(out.trim_end().ends_with(": OK"), "{out}");
        let cert = parse(&server);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        let mut dns = Vec::new();
        let mut ips = Vec::new();
        for name in &san.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(b) => ips.push(match b.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()),
                    _ => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()),
                }),
                other => panic!("unexpected SAN {other:?}"),
            }
        }
        assert_eq!(dns, vec!["cp.example.org"]);
        assert_eq!(
            ips,
            vec![
                "10.5.0.2".parse::<IpAddr>().unwrap(),
                "fd00::2".parse().unwrap()
            ]
        );
        // A certificate from another CA must not verify.
        let other = pki::create_kubernetes_ca().unwrap();
        let ca_path = write(dir.path(), "other.crt", other.crt.pem());
        let leaf_path = write(dir.path(), "leaf.crt", server.crt.pem());
        let status = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(ca_path)
            .arg(leaf_path)
            .output()
            .unwrap();
        assert!(!status.status.success(), "a foreign CA must not verify");
    }
}

#[test]
fn service_account_key_is_p256_pkcs8() {
    let dir = tempfile::tempdir().unwrap();
    let key = pki::create_service_account_key().unwrap();
    let path = write(dir.path(), "sa.key", key.pem());
    let out = Command::new("openssl")
        .args(["pkey", "-noout", "-text", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("prime256v1") || text.contains("P-256"),
        "{text}"
    );
    assert!(key.pem().starts_with("-----BEGIN PRIVATE KEY-----"));
}
