//! The running machine config as a resource (type `machineconfig`, id
//! `running`), and the redaction of its secrets for callers that are not
//! `os:admin`.
//!
//! Redaction works on the rendered YAML rather than on the typed config:
//! the typed fields are validated (a key must be PEM), so they cannot hold
//! a placeholder, and a walk over the YAML also catches a secret in a place
//! the rules below did not foresee (any string holding a PEM private key).

use serde_yaml::Value;

use super::{kind, Kind, Secrets, Spec, REDACTED};

#[derive(Debug, Clone, PartialEq)]
pub struct MachineConfigSpec(pub config::MachineConfig);

impl MachineConfigSpec {
    /// The id of the config the node runs with.
    pub const RUNNING: &'static str = "running";

    /// The running machine config in `store`, if the node has one.
    pub fn running(store: &super::Store) -> Option<config::MachineConfig> {
        store.spec::<Self>(Self::RUNNING).map(|s| s.0)
    }
}

impl Spec for MachineConfigSpec {
    const KIND: &'static Kind = kind::MACHINE_CONFIG;

    /// The config file as multi-document YAML, as `apply-config` takes it.
    fn to_yaml(&self, secrets: Secrets) -> String {
        let text = self.0.render();
        match secrets {
            Secrets::Show => text,
            Secrets::Redact => redact_yaml(&text),
        }
    }
}

/// Mapping keys whose string values are secrets wherever they appear:
/// CA and service-account private keys (`key`), the machine and bootstrap
/// tokens, and the Secrets encryption key.
const SECRET_KEYS: &[&str] = &["key", "token", "secretboxEncryptionSecret"];
/// Mappings whose every value is hidden: extra arguments carry whatever an
/// admin passed a component (passwords, tokens, webhook URLs).
const SECRET_MAPS: &[&str] = &["extraArgs"];
/// Lists whose items' `content` is hidden: `machine.files` holds what an
/// admin writes to the node, often credentials, whatever its mode.
const SECRET_CONTENT_LISTS: &[&str] = &["files"];

/// Redacts every document of a multi-document YAML text. A document that
/// does not parse is replaced whole: it cannot be shown safely.
pub fn redact_yaml(text: &str) -> String {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let rendered = Value::deserialize(doc).ok().and_then(|mut v| {
            redact_value(&mut v);
            serde_yaml::to_string(&v).ok()
        });
        match rendered {
            Some(r) => out.push(r),
            // The parser cannot go on after an error (it would repeat it).
            None => {
                out.push(format!(
                    "# {REDACTED} (could not be parsed for redaction)\n"
                ));
                break;
            }
        }
    }
    out.join("---\n")
}

fn hide_all(v: &mut Value) {
    if let Value::Mapping(m) = v {
        for (_, val) in m.iter_mut() {
            *val = Value::String(REDACTED.to_string());
        }
    }
}

fn hide_contents(v: &mut Value) {
    if let Value::Sequence(items) = v {
        for item in items {
            if let Value::Mapping(m) = item {
                if let Some(c) = m.get_mut("content") {
                    *c = Value::String(REDACTED.to_string());
                }
            }
        }
    }
}

fn redact_value(v: &mut Value) {
    match v {
        Value::Mapping(m) => {
            for (k, val) in m.iter_mut() {
                let name = k.as_str().unwrap_or_default();
                if SECRET_KEYS.contains(&name) && matches!(val, Value::String(_)) {
                    *val = Value::String(REDACTED.to_string());
                    continue;
                }
                if SECRET_MAPS.contains(&name) {
                    hide_all(val);
                } else if SECRET_CONTENT_LISTS.contains(&name) {
                    hide_contents(val);
                }
                redact_value(val);
            }
        }
        Value::Sequence(s) => s.iter_mut().for_each(redact_value),
        Value::String(s) if s.contains("PRIVATE KEY") => *s = REDACTED.to_string(),
        Value::Tagged(t) => redact_value(&mut t.value),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::generate::{generate_configs, GenerateInput};

    fn generated() -> (config::MachineConfig, config::MachineConfig) {
        let secrets = config::SecretsBundle::generate().unwrap();
        let input = GenerateInput::new(
            "demo".parse().unwrap(),
            "https://10.5.0.2:6443".parse().unwrap(),
            secrets,
        );
        let (cp, worker, _) = generate_configs(&input).unwrap();
        (cp, worker)
    }

    #[test]
    fn a_non_admin_never_sees_a_private_key_token_or_encryption_secret() {
        let (cp, worker) = generated();
        for cfg in [cp, worker] {
            let spec = MachineConfigSpec(cfg.clone());
            let full = Spec::to_yaml(&spec, Secrets::Show);
            assert_eq!(full, cfg.render());
            assert!(full.contains("PRIVATE KEY") || cfg.cluster.ca.key.is_none());

            let shown = Spec::to_yaml(&spec, Secrets::Redact);
            assert!(!shown.contains("PRIVATE KEY"), "{shown}");
            for secret in [cfg.machine.token.as_str(), cfg.cluster.token.as_str()] {
                assert!(!shown.contains(secret), "token leaked:\n{shown}");
                assert!(full.contains(secret));
            }
            assert!(!shown.contains(cfg.machine.token.secret()));
            if let Some(k) = &cfg.cluster.secretbox_encryption_secret {
                assert!(!shown.contains(k.as_str()), "encryption secret leaked");
            }
            // Everything else is still there: certificates, names, and
            // the same documents.
            assert!(shown.contains("BEGIN CERTIFICATE"));
            assert!(shown.contains("clusterName: demo"));
            assert!(shown.contains(REDACTED));
            // The redacted text is still two YAML documents of the same kinds.
            let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&shown)
                .map(|d| serde::Deserialize::deserialize(d).unwrap())
                .collect();
            assert_eq!(docs.len(), 2);
            assert_eq!(docs[0]["kind"], Value::from("MachineConfig"));
            assert_eq!(docs[1]["kind"], Value::from("ClusterConfig"));
        }
    }

    #[test]
    fn keys_anywhere_and_unforeseen_pem_keys_are_redacted() {
        let text = "a:\n  key: hunter2\n  list:\n  - token: abc\n  - note: \"-----BEGIN PRIVATE KEY-----\\nxyz\"\n  key2: visible\n---\nb: 1\n";
        let out = redact_yaml(text);
        assert!(
            !out.contains("hunter2") && !out.contains("abc") && !out.contains("xyz"),
            "{out}"
        );
        assert!(out.contains("visible"));
        assert!(out.contains("b: 1"));
        assert!(redact_yaml(": : :\n").contains(REDACTED));
    }

    /// Hole 2 of the hardening issue: readers and operators saw the files
    /// an admin writes and the components' extra arguments.
    #[test]
    fn file_contents_and_extra_args_are_redacted() {
        let (mut cp, _) = generated();
        cp.machine.files.push(config::spec::File {
            path: "/var/etc/registry-password".parse().unwrap(),
            content: "s3cret-file".into(),
            permissions: "0600".parse().unwrap(),
            op: config::spec::FileOp::Create,
        });
        cp.machine.kubelet.extra_args.insert(
            "cloud-token".parse().unwrap(),
            config::types::ScalarString::new("s3cret-arg"),
        );
        let spec = MachineConfigSpec(cp);
        let shown = Spec::to_yaml(&spec, Secrets::Redact);
        assert!(!shown.contains("s3cret-file"), "{shown}");
        assert!(!shown.contains("s3cret-arg"), "{shown}");
        // What is there stays visible: the path, the mode, the flag's name.
        assert!(shown.contains("/var/etc/registry-password"), "{shown}");
        assert!(shown.contains("cloud-token"), "{shown}");
        let full = Spec::to_yaml(&spec, Secrets::Show);
        assert!(full.contains("s3cret-file") && full.contains("s3cret-arg"));
    }
}
