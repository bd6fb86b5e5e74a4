//! The secrets bundle (`cairnctl gen secrets`): every secret a cluster
//! needs, generated once and the input to config generation, so configs
//! can be regenerated (new nodes, new versions) for the same cluster.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::document::{read, to_yaml, typed, ApiVersion};
use crate::error::ParseErrors;
use crate::pki::{self, CertifiedKey, PkiError};
use crate::spec::ServiceAccount;
use crate::types::{EncryptionKey, Token};
use crate::MachineConfig;

/// Document kind of a secrets bundle.
pub const SECRETS_KIND: &str = "SecretsBundle";

/// Every secret of one cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretsBundle {
    pub secrets: Secrets,
    pub certs: Certs,
}

/// Tokens and keys that are not certificates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Secrets {
    /// The Kubernetes bootstrap token (`cluster.token`).
    pub bootstrap_token: Token,
    /// The machine token (`machine.token`).
    pub machine_token: Token,
    /// The etcd-at-rest encryption key (`cluster.secretboxEncryptionSecret`).
    pub secretbox_encryption_secret: EncryptionKey,
}

/// The CAs and the service-account key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Certs {
    /// The OS CA (`machine.ca`), Ed25519.
    pub os: CertifiedKey,
    /// The Kubernetes CA (`cluster.ca`), ECDSA P-256.
    pub kubernetes: CertifiedKey,
    /// The etcd CA (`cluster.etcd.ca`), ECDSA P-256.
    pub etcd: CertifiedKey,
    /// The front-proxy CA (`cluster.aggregatorCa`), ECDSA P-256.
    pub aggregator: CertifiedKey,
    /// The service-account signing key (`cluster.serviceAccount`), ECDSA P-256.
    pub service_account: ServiceAccount,
}

/// The bundle as a YAML document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretsBundleDocument {
    /// Always `cairn.dev/v1alpha1`.
    pub api_version: ApiVersion,
    /// Always `SecretsBundle`.
    pub kind: SecretsBundleKind,
    /// Tokens and keys.
    pub secrets: Secrets,
    /// CAs and the service-account key.
    pub certs: Certs,
}

/// Marker for `kind: SecretsBundle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SecretsBundleKind {
    SecretsBundle,
}

/// A random token `[a-z0-9]{6}.[a-z0-9]{16}`.
pub fn generate_token() -> Result<Token, PkiError> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut chars = String::with_capacity(23);
    while chars.len() < 23 {
        for b in pki::random_bytes::<32>()? {
            // 252 = 7 * 36: reject the rest so every character is equally likely.
            if b < 252 && chars.len() < 23 {
                if chars.len() == 6 {
                    chars.push('.');
                }
                chars.push(ALPHABET[usize::from(b) % 36] as char);
            }
        }
    }
    chars
        .parse()
        .map_err(|why| PkiError::Generated { what: "token", why })
}

impl SecretsBundle {
    /// Generate new keys, CAs and tokens.
    pub fn generate() -> Result<SecretsBundle, PkiError> {
        Ok(SecretsBundle {
            secrets: Secrets {
                bootstrap_token: generate_token()?,
                machine_token: generate_token()?,
                secretbox_encryption_secret: EncryptionKey::from_bytes(&pki::random_bytes::<32>()?),
            },
            certs: Certs {
                os: pki::create_os_ca()?,
                kubernetes: pki::create_kubernetes_ca()?,
                etcd: pki::create_etcd_ca()?,
                aggregator: pki::create_aggregator_ca()?,
                service_account: ServiceAccount {
                    key: pki::create_service_account_key()?,
                },
            },
        })
    }

    /// Parse a secrets bundle file.
    pub fn parse(bytes: &[u8]) -> Result<SecretsBundle, ParseErrors> {
        let (text, docs) = read::read_documents(bytes, &[SECRETS_KIND], &[SECRETS_KIND])?;
        let mut errors = Vec::new();
        let doc = docs
            .first()
            .and_then(|d| typed::<SecretsBundleDocument>(d, text, &mut errors));
        match doc {
            Some(d) if errors.is_empty() => Ok(SecretsBundle {
                secrets: d.secrets,
                certs: d.certs,
            }),
            _ => Err(ParseErrors(errors)),
        }
    }

    /// The bundle as YAML.
    pub fn render(&self) -> String {
        to_yaml(&SecretsBundleDocument {
            api_version: ApiVersion::V1Alpha1,
            kind: SecretsBundleKind::SecretsBundle,
            secrets: self.secrets.clone(),
            certs: self.certs.clone(),
        })
    }

    /// Recover the bundle from a control-plane config (which carries every
    /// secret); `None` when a key is missing, e.g. in a worker config.
    pub fn from_config(config: &MachineConfig) -> Option<SecretsBundle> {
        let c = &config.cluster;
        Some(SecretsBundle {
            secrets: Secrets {
                bootstrap_token: c.token.clone(),
                machine_token: config.machine.token.clone(),
                secretbox_encryption_secret: c.secretbox_encryption_secret.clone()?,
            },
            certs: Certs {
                os: config.machine.ca.certified_key()?,
                kubernetes: c.ca.certified_key()?,
                etcd: c.etcd.ca.as_ref()?.certified_key()?,
                aggregator: c.aggregator_ca.as_ref()?.certified_key()?,
                service_account: c.service_account.clone()?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_well_formed_and_differ() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 23);
    }

    #[test]
    fn bundle_round_trips() {
        let bundle = SecretsBundle::generate().unwrap();
        let text = bundle.render();
        assert!(text.starts_with("apiVersion: cairn.dev/v1alpha1\nkind: SecretsBundle\n"));
        assert_eq!(SecretsBundle::parse(text.as_bytes()).unwrap(), bundle);
    }

    #[test]
    fn bundle_errors_name_fields() {
        let text = SecretsBundle::generate()
            .unwrap()
            .render()
            .replace("bootstrapToken:", "bootstrapTokn:");
        let errs = SecretsBundle::parse(text.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            errs.contains("secrets.bootstrapTokn: unknown field"),
            "{errs}"
        );
    }
}
