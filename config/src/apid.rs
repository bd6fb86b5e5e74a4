//! apid's settings, as machined hands them over: one YAML file
//! ([`SETTINGS_FILE`]) in [`crate::constants::APID_SECRETS_DIR`], written
//! atomically by machined and watched by apid. One file, so apid never sees
//! a new certificate with an old key, or secure mode without its CA.

use serde::{Deserialize, Serialize};

use crate::pki::CertifiedKey;
use crate::types::PemCertificate;

/// The settings file's name inside apid's secrets directory.
pub const SETTINGS_FILE: &str = "apid.yaml";

#[derive(Debug, thiserror::Error)]
pub enum ApidSettingsError {
    #[error("apid settings: {0}")]
    Parse(String),
    #[error(
        "apid settings: secure mode needs `ca` (the OS CA that client certificates must chain to)"
    )]
    SecureWithoutCa,
}

/// How apid serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApidMode {
    /// No machine config yet: TLS without client certificates, only
    /// Version, ApplyConfiguration and Disks.
    Maintenance,
    /// Mutual TLS: every call needs a client certificate from the OS CA;
    /// its Organization is the caller's role.
    Secure,
}

/// Everything apid needs from machined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApidSettings {
    pub mode: ApidMode,
    /// The certificate and key apid presents to clients.
    pub server: CertifiedKey,
    /// The OS CA: client certificates must be signed by it (secure mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PemCertificate>,
    /// apid's client certificate (Organization `os:impersonator`) for
    /// forwarding calls to other nodes' apid; none means apid cannot forward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarding: Option<CertifiedKey>,
    /// Enforce the roles in client certificates (`machine.features.rbac`);
    /// when false every client with a certificate from the OS CA is an
    /// admin.
    #[serde(default = "yes")]
    pub rbac: bool,
    /// Serve `cairn.security.v1` on the join port: this node signs the
    /// apid certificates of joining machines (a control plane).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub join: bool,
    /// The other nodes of the cluster (host or host:port) apid may forward
    /// calls to, as machined knows them: the control-plane endpoint and the
    /// addresses of the Kubernetes Nodes. The node's own names are always
    /// members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

fn yes() -> bool {
    true
}

impl ApidSettings {
    pub fn parse(bytes: &[u8]) -> Result<ApidSettings, ApidSettingsError> {
        let s: ApidSettings =
            serde_yaml::from_slice(bytes).map_err(|e| ApidSettingsError::Parse(e.to_string()))?;
        if s.mode == ApidMode::Secure && s.ca.is_none() {
            return Err(ApidSettingsError::SecureWithoutCa);
        }
        Ok(s)
    }

    pub fn render(&self) -> String {
        crate::document::to_yaml(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki;

    #[test]
    fn round_trips_and_requires_a_ca_in_secure_mode() {
        let ca = pki::create_os_ca().unwrap();
        let server = pki::issue_server_cert(&ca, "n", &[], pki::LEAF_VALIDITY).unwrap();
        let mut s = ApidSettings {
            mode: ApidMode::Secure,
            server,
            ca: Some(ca.crt.clone()),
            forwarding: None,
            rbac: true,
            join: false,
            members: vec!["10.5.0.3".into(), "cp.example:50000".into()],
        };
        assert_eq!(ApidSettings::parse(s.render().as_bytes()).unwrap(), s);
        assert!(s.render().starts_with("mode: secure\n"));
        s.ca = None;
        assert!(matches!(
            ApidSettings::parse(s.render().as_bytes()),
            Err(ApidSettingsError::SecureWithoutCa)
        ));
        assert!(ApidSettings::parse(b"mode: sideways\n").is_err());
    }
}
