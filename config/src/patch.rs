//! Config patches (`cairnctl machineconfig patch`, `gen config
//! --config-patch`): strategic-merge YAML patches and RFC 6902 JSON patches.
//!
//! Both work on one combined view of the config, `{machine: ..., cluster:
//! ...}`, so paths read like field paths: a JSON patch addresses
//! `/cluster/network/podSubnets/0`, a merge patch is a partial config:
//!
//! ```yaml
//! machine:
//!   network:
//!     hostname: cp-1
//!     interfaces:
//!       - interface: eth1      # merged with the eth1 entry, if any
//!         dhcp: true
//!       - interface: eth2
//!         $patch: delete       # removes the eth2 entry
//! ```
//!
//! Merge rules: mappings merge key by key; lists of named items merge item
//! by item on their key (`machine.network.interfaces` by `interface` or
//! `deviceSelector`, their `vlans` by `vlanId` and `routes` by `network`,
//! `machine.files` by `path`); every other list and every scalar is
//! replaced. `$patch: delete` in a mapping removes that mapping (or that
//! list item). `apiVersion` and `kind` may appear in a merge patch and are
//! ignored. Several patch documents apply in order.

use serde_json::{Map, Value};

use crate::document::{CLUSTER_KIND, MACHINE_KIND};
use crate::error::ParseErrors;
use crate::MachineConfig;

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("cannot read patch {name}: {source}")]
    Read {
        name: String,
        source: std::io::Error,
    },
    #[error("patch {name}: {message}")]
    Parse { name: String, message: String },
    #[error("patch {name}: {message}")]
    Apply { name: String, message: String },
    #[error("patch {name} makes the config invalid:\n{errors}")]
    Invalid { name: String, errors: ParseErrors },
}

#[derive(Debug, Clone, PartialEq)]
enum Body {
    /// Strategic-merge documents, applied in order.
    Merge(Vec<Value>),
    /// RFC 6902 operations.
    Json(json_patch::Patch),
}

/// A parsed patch and the name its errors carry (usually the file name).
#[derive(Debug, Clone, PartialEq)]
pub struct Patch {
    name: String,
    body: Body,
}

impl Patch {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Parse patch text: a YAML or JSON list of RFC 6902 operations, or one
    /// or more YAML mappings (strategic merge).
    pub fn parse(text: &[u8], name: &str) -> Result<Patch, PatchError> {
        let perr = |message: String| PatchError::Parse {
            name: name.to_string(),
            message,
        };
        let text = std::str::from_utf8(text).map_err(|_| perr("not UTF-8 text".into()))?;
        let mut docs = Vec::new();
        for de in serde_yaml::Deserializer::from_str(text) {
            let doc: serde_yaml::Value = serde::Deserialize::deserialize(de)
                .map_err(|e| perr(format!("invalid YAML: {e}")))?;
            if doc.is_null() {
                continue;
            }
            let json = serde_json::to_value(&doc).map_err(|e| {
                perr(format!(
                    "cannot be represented as JSON (are all keys strings?): {e}"
                ))
            })?;
            docs.push(json);
            if docs.len() > 64 {
                return Err(perr("more than 64 documents".into()));
            }
        }
        let body = match docs.as_slice() {
            [] => return Err(perr("the patch is empty".into())),
            [Value::Array(_)] => {
                let ops = docs.pop().unwrap_or_default();
                Body::Json(
                    serde_json::from_value(ops)
                        .map_err(|e| perr(format!("not an RFC 6902 JSON patch: {e}")))?,
                )
            }
            _ => {
                for (i, d) in docs.iter().enumerate() {
                    check_merge_document(d)
                        .map_err(|m| perr(format!("document {}: {m}", i + 1)))?;
                }
                Body::Merge(docs)
            }
        };
        Ok(Patch {
            name: name.to_string(),
            body,
        })
    }

    /// A patch from a command-line argument: `@file` reads the file, any
    /// other text is the patch itself.
    pub fn from_arg(arg: &str) -> Result<Patch, PatchError> {
        match arg.strip_prefix('@') {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|source| PatchError::Read {
                    name: path.to_string(),
                    source,
                })?;
                Patch::parse(&bytes, path)
            }
            None => Patch::parse(arg.as_bytes(), "(inline)"),
        }
    }

    /// Apply to `config`. The result is parsed again, so a patch cannot
    /// produce a config that would not load.
    pub fn apply(&self, config: &MachineConfig) -> Result<MachineConfig, PatchError> {
        let mut view = combined(config);
        match &self.body {
            Body::Merge(docs) => {
                for doc in docs {
                    let mut doc = doc.clone();
                    if let Value::Object(m) = &mut doc {
                        m.remove("apiVersion");
                        m.remove("kind");
                    }
                    merge(&mut view, &doc, "");
                }
            }
            Body::Json(ops) => {
                json_patch::patch(&mut view, ops).map_err(|e| PatchError::Apply {
                    name: self.name.clone(),
                    message: e.to_string(),
                })?
            }
        }
        from_combined(&view).map_err(|errors| PatchError::Invalid {
            name: self.name.clone(),
            errors,
        })
    }
}

/// Apply patches in order.
pub fn apply_all(config: &MachineConfig, patches: &[Patch]) -> Result<MachineConfig, PatchError> {
    patches.iter().try_fold(config.clone(), |c, p| p.apply(&c))
}

fn check_merge_document(doc: &Value) -> Result<(), String> {
    let Value::Object(m) = doc else {
        return Err(
            "a merge patch must be a mapping (or use a list of RFC 6902 operations)".into(),
        );
    };
    for key in m.keys() {
        if !matches!(key.as_str(), "machine" | "cluster" | "apiVersion" | "kind") {
            return Err(format!(
                "unknown top-level key {key:?} (a patch holds machine: and/or cluster:)"
            ));
        }
    }
    Ok(())
}

fn combined(config: &MachineConfig) -> Value {
    let mut m = Map::new();
    m.insert(
        "machine".into(),
        serde_json::to_value(&config.machine).expect("config types are JSON"),
    );
    m.insert(
        "cluster".into(),
        serde_json::to_value(&config.cluster).expect("config types are JSON"),
    );
    Value::Object(m)
}

fn from_combined(view: &Value) -> Result<MachineConfig, ParseErrors> {
    let mut text = String::new();
    for (kind, key) in [(MACHINE_KIND, "machine"), (CLUSTER_KIND, "cluster")] {
        let mut doc = Map::new();
        doc.insert(
            "apiVersion".into(),
            crate::constants::CONFIG_API_VERSION.into(),
        );
        doc.insert("kind".into(), kind.into());
        if let Some(body) = view.get(key) {
            doc.insert(key.into(), body.clone());
        }
        text.push_str("---\n");
        text.push_str(&serde_yaml::to_string(&Value::Object(doc)).expect("JSON values are YAML"));
    }
    if let Value::Object(m) = view {
        if let Some(extra) = m.keys().find(|k| *k != "machine" && *k != "cluster") {
            return Err(ParseErrors::single(crate::ParseError::file(format!(
                "unknown top-level key {extra:?} (the config has machine and cluster)"
            ))));
        }
    }
    // Line numbers would point into this generated text, not the user's
    // files: drop them.
    MachineConfig::parse(text.as_bytes()).map_err(|e| {
        ParseErrors(
            e.into_iter()
                .map(|e| crate::ParseError {
                    location: None,
                    ..e
                })
                .collect(),
        )
    })
}

/// The key that identifies items of a named list at `path` (a field path
/// with list indices written as `[]`).
fn list_key(path: &str) -> Option<&'static [&'static str]> {
    match path {
        "machine.network.interfaces" => Some(&["interface", "deviceSelector"]),
        "machine.network.interfaces[].vlans" => Some(&["vlanId"]),
        "machine.network.interfaces[].routes" | "machine.network.interfaces[].vlans[].routes" => {
            Some(&["network"])
        }
        "machine.files" => Some(&["path"]),
        _ => None,
    }
}

fn is_delete(v: &Value) -> bool {
    v.get("$patch").and_then(Value::as_str) == Some("delete")
}

/// Remove `$patch` directives from a value being inserted as a whole.
fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "$patch")
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|v| !is_delete(v))
                .map(strip_directives)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn merge(base: &mut Value, patch: &Value, path: &str) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, pv) in p {
                if k == "$patch" {
                    continue;
                }
                if is_delete(pv) {
                    b.remove(k);
                } else if let Some(bv) = b.get_mut(k) {
                    merge(bv, pv, &join(path, k));
                } else {
                    b.insert(k.clone(), strip_directives(pv));
                }
            }
        }
        (Value::Array(b), Value::Array(p)) if list_key(path).is_some() => {
            let keys = list_key(path).unwrap_or(&[]);
            let item_path = format!("{path}[]");
            for item in p {
                let id = keys
                    .iter()
                    .find_map(|k| item.get(*k).map(|v| (*k, v.clone())));
                let found = id
                    .as_ref()
                    .and_then(|(k, v)| b.iter().position(|bi| bi.get(*k) == Some(v)));
                match (found, is_delete(item)) {
                    (Some(i), true) => {
                        b.remove(i);
                    }
                    (Some(i), false) => merge(&mut b[i], item, &item_path),
                    (None, true) => {} // deleting what is not there
                    (None, false) => b.push(strip_directives(item)),
                }
            }
        }
        (b, p) => *b = strip_directives(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_rules() {
        let mut base = json!({"machine": {
            "network": {"hostname": "a", "nameservers": ["1.1.1.1"], "interfaces": [
                {"interface": "eth0", "dhcp": true},
                {"interface": "eth1", "mtu": 1500}
            ]},
            "files": [{"path": "/var/a", "content": "x"}]
        }});
        let patch = json!({"machine": {
            "network": {"nameservers": ["8.8.8.8"], "interfaces": [
                {"interface": "eth1", "mtu": 9000},
                {"interface": "eth0", "$patch": "delete"},
                {"interface": "eth2", "dhcp": true}
            ]},
            "files": [{"path": "/var/b", "content": "y"}],
            "kubelet": {"$patch": "delete"}
        }});
        merge(&mut base, &patch, "");
        assert_eq!(
            base,
            json!({"machine": {
                "network": {"hostname": "a", "nameservers": ["8.8.8.8"], "interfaces": [
                    {"interface": "eth1", "mtu": 9000},
                    {"interface": "eth2", "dhcp": true}
                ]},
                "files": [{"path": "/var/a", "content": "x"}, {"path": "/var/b", "content": "y"}]
            }})
        );
        let mut base = json!({"machine": {"network": {"hostname": "a"}}});
        merge(
            &mut base,
            &json!({"machine": {"network": {"$patch": "delete"}}}),
            "",
        );
        assert_eq!(base, json!({"machine": {}}));
    }

    #[test]
    fn detects_the_patch_kind() {
        let p = Patch::parse(
            b"[{\"op\": \"remove\", \"path\": \"/machine/install\"}]",
            "p.json",
        )
        .unwrap();
        assert!(matches!(p.body, Body::Json(_)));
        let p = Patch::parse(
            b"- op: add\n  path: /machine/network/hostname\n  value: x\n",
            "p.yaml",
        )
        .unwrap();
        assert!(matches!(p.body, Body::Json(_)));
        let p = Patch::parse(b"machine:\n  network:\n    hostname: x\n", "p.yaml").unwrap();
        assert!(matches!(p.body, Body::Merge(_)));
        let e = Patch::parse(b"machin:\n  x: 1\n", "typo.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("typo.yaml") && e.contains("\"machin\""), "{e}");
        assert!(Patch::parse(b"", "empty.yaml").is_err());
        assert!(Patch::parse(b"[{\"op\": \"frobnicate\"}]", "bad.json").is_err());
    }
}
