//! JSON Schema generated from the config types (schemars), committed as
//! `config/schema/machineconfig.schema.json`. A YAML language server applies
//! it to each document of a machine config file.

use schemars::JsonSchema;
use serde_json::Value;

use crate::document::{ClusterDocument, MachineDocument};

/// A Cairn machine config document: either the MachineConfig document
/// (this machine) or the ClusterConfig document (the cluster it belongs
/// to). A machine config file holds one of each, separated by `---`.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only its schema is used
enum CairnConfigDocument {
    Machine(Box<MachineDocument>),
    Cluster(Box<ClusterDocument>),
}

/// The schema as JSON with keys sorted at every level, so the output does
/// not depend on serde_json's map ordering features.
pub fn machine_config_schema() -> Value {
    let schema = schemars::schema_for!(CairnConfigDocument);
    sort_keys(serde_json::to_value(schema).expect("a schema is JSON"))
}

/// Pretty-printed schema with a trailing newline, as committed.
pub fn machine_config_schema_text() -> String {
    let mut s =
        serde_json::to_string_pretty(&machine_config_schema()).expect("a schema serializes");
    s.push('\n');
    s
}

fn sort_keys(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}
