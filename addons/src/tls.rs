//! Serving certificates of the add-ons that speak TLS (the Web UI, the
//! metrics API), issued from the cluster CA that a control plane's machine
//! config carries with its key, as `kubernetes.io/tls` Secrets.
//!
//! Why here and not in [`crate::objects`]: minting makes a new key every
//! time, so these Secrets are not a pure function of the config (the other
//! objects are, and are checked against a golden file), and minting can
//! fail. machined creates each Secret when it is absent, and replaces it
//! only when [`is_current`] says it no longer fits (another CA, other
//! names, or less than [`RENEW_BEFORE`] left): re-applying on every boot
//! would hand every control plane's own key to the Pods in turn. Both
//! servers re-read their certificate files, so a replaced Secret takes
//! effect without a restart.

use std::time::Duration;

use config::pki::{self, CertifiedKey};
use config::types::SubjectAltName;
use config::MachineConfig;
use serde_json::{json, Value};

/// How long an issued serving certificate is valid.
pub const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A certificate with less than this left is replaced.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cluster.ca has no key in this machine config (only a control plane's has): cannot issue the {secret} certificate")]
    NoCaKey { secret: String },
    #[error("issuing the {secret} certificate from cluster.ca: {source}")]
    Issue {
        secret: String,
        #[source]
        source: pki::PkiError,
    },
}

/// A serving certificate the add-ons need: the Secret's name and the
/// names (DNS, IP) the certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingCert {
    pub secret: &'static str,
    pub common_name: &'static str,
    pub names: Vec<String>,
}

/// The DNS names of Service `svc` in `ns`: `svc`, `svc.ns`, `svc.ns.svc`,
/// `svc.ns.svc.<cluster domain>`.
pub fn service_names(cfg: &MachineConfig, svc: &str, ns: &str) -> Vec<String> {
    let domain = cfg.cluster.network.dns_domain.to_string();
    vec![
        svc.to_string(),
        format!("{svc}.{ns}"),
        format!("{svc}.{ns}.svc"),
        format!("{svc}.{ns}.svc.{domain}"),
    ]
}

fn sans(c: &ServingCert) -> Vec<SubjectAltName> {
    c.names
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(ip) => SubjectAltName::Ip(ip),
            Err(_) => SubjectAltName::Dns(n.clone()),
        })
        .collect()
}

/// The Secret holding a fresh certificate for `c`, with the CA beside it.
pub fn secret(cfg: &MachineConfig, c: &ServingCert) -> Result<Value, TlsError> {
    let ca: CertifiedKey = cfg
        .cluster
        .ca
        .certified_key()
        .ok_or_else(|| TlsError::NoCaKey {
            secret: c.secret.to_string(),
        })?;
    let issued =
        pki::issue_server_cert(&ca, c.common_name, &sans(c), VALIDITY).map_err(|source| {
            TlsError::Issue {
                secret: c.secret.to_string(),
                source,
            }
        })?;
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": c.secret, "namespace": crate::NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "cairn"}},
        "type": "kubernetes.io/tls",
        "stringData": {
            "tls.crt": issued.crt.pem(),
            "tls.key": issued.key.pem(),
            "ca.crt": ca.crt.pem(),
        },
    }))
}

fn decode(v: &Value) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str()?)
        .ok()
}

/// Whether the Secret `existing` (as the API server returns it, `data`
/// base64) still fits `c`: its certificate was signed by the config's
/// cluster CA, carries every name, and is valid for more than
/// [`RENEW_BEFORE`] from `now` (Unix seconds).
pub fn is_current(cfg: &MachineConfig, c: &ServingCert, existing: &Value, now: i64) -> bool {
    let Some(crt_pem) = decode(&existing["data"]["tls.crt"]) else {
        return false;
    };
    if decode(&existing["data"]["tls.key"]).is_none() {
        return false;
    }
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(&crt_pem) else {
        return false;
    };
    let Ok(cert) = pem.parse_x509() else {
        return false;
    };
    let Ok((_, ca)) = x509_parser::parse_x509_certificate(cfg.cluster.ca.crt.der()) else {
        return false;
    };
    if cert.verify_signature(Some(ca.public_key())).is_err() {
        return false;
    }
    if cert.validity().not_after.timestamp() - now < RENEW_BEFORE.as_secs() as i64 {
        return false;
    }
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    use x509_parser::extensions::GeneralName;
    let have: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|g| match g {
            GeneralName::DNSName(d) => Some(d.to_string()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(*b)
                    .ok()
                    .map(|a| std::net::IpAddr::from(a).to_string()),
                16 => <[u8; 16]>::try_from(*b)
                    .ok()
                    .map(|a| std::net::IpAddr::from(a).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    c.names.iter().all(|n| have.contains(n))
}
