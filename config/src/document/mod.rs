//! The machine config file: a `MachineConfig` document and a
//! `ClusterConfig` document in one multi-document YAML file.
//!
//! ```yaml
//! apiVersion: cairn.dev/v1alpha1
//! kind: MachineConfig
//! machine:
//!   type: controlplane
//!   ...
//! ---
//! apiVersion: cairn.dev/v1alpha1
//! kind: ClusterConfig
//! cluster:
//!   clusterName: demo
//!   ...
//! ```
//!
//! Each document's body sits under a key named after it (`machine:`,
//! `cluster:`), so field paths in errors read the same as in Talos:
//! `cluster.network.podSubnets[0]`.

mod collect;
mod locate;
pub(crate) mod read;

use schemars::JsonSchema;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{ParseError, ParseErrors};
use crate::spec::{ClusterSpec, MachineSpec};

pub use read::MAX_CONFIG_BYTES;

/// The document kind of the machine document.
pub const MACHINE_KIND: &str = "MachineConfig";
/// The document kind of the cluster document.
pub const CLUSTER_KIND: &str = "ClusterConfig";

/// The only apiVersion so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    #[serde(rename = "cairn.dev/v1alpha1")]
    V1Alpha1,
}

/// Marker for `kind: MachineConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MachineKind {
    MachineConfig,
}

/// Marker for `kind: ClusterConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ClusterKind {
    ClusterConfig,
}

/// The machine document: this node's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MachineDocument {
    /// Always `cairn.dev/v1alpha1`.
    pub api_version: ApiVersion,
    /// Always `MachineConfig`.
    pub kind: MachineKind,
    /// The machine's settings.
    pub machine: MachineSpec,
}

/// The cluster document: what all nodes of the cluster share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterDocument {
    /// Always `cairn.dev/v1alpha1`.
    pub api_version: ApiVersion,
    /// Always `ClusterConfig`.
    pub kind: ClusterKind,
    /// The cluster's settings.
    pub cluster: ClusterSpec,
}

/// A complete machine config: the machine and cluster documents.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineConfig {
    pub machine: MachineSpec,
    pub cluster: ClusterSpec,
}

impl MachineConfig {
    /// Parse a machine config file. Every problem found is returned, each
    /// with its document, field path and, where known, line and column.
    /// Semantic checks across fields are in [`crate::validate`].
    pub fn parse(bytes: &[u8]) -> Result<MachineConfig, ParseErrors> {
        let (text, docs) = read::read_documents(
            bytes,
            &[MACHINE_KIND, CLUSTER_KIND],
            &[MACHINE_KIND, CLUSTER_KIND],
        )?;
        let mut errors = Vec::new();
        let mut machine = None;
        let mut cluster = None;
        for doc in &docs {
            match doc.kind {
                MACHINE_KIND => {
                    machine = typed::<MachineDocument>(doc, text, &mut errors).map(|d| d.machine)
                }
                _ => cluster = typed::<ClusterDocument>(doc, text, &mut errors).map(|d| d.cluster),
            }
        }
        match (machine, cluster) {
            (Some(machine), Some(cluster)) if errors.is_empty() => {
                Ok(MachineConfig { machine, cluster })
            }
            _ => Err(ParseErrors(errors)),
        }
    }

    /// The config as multi-document YAML (machine document first).
    pub fn render(&self) -> String {
        let machine = MachineDocument {
            api_version: ApiVersion::V1Alpha1,
            kind: MachineKind::MachineConfig,
            machine: self.machine.clone(),
        };
        let cluster = ClusterDocument {
            api_version: ApiVersion::V1Alpha1,
            kind: ClusterKind::ClusterConfig,
            cluster: self.cluster.clone(),
        };
        format!("{}---\n{}", to_yaml(&machine), to_yaml(&cluster))
    }
}

/// Where the field `path` (as errors print it, e.g.
/// `cluster.network.podSubnets[0]`) of the `kind` document sits in
/// `source`: the 1-based document number and the line and column of the
/// field, or of its closest present parent when it is missing.
pub fn locate_field(
    source: &[u8],
    kind: &str,
    path: &str,
) -> (Option<usize>, Option<crate::error::Location>) {
    let Ok((text, docs)) = read::read_documents(source, &[MACHINE_KIND, CLUSTER_KIND], &[]) else {
        return (None, None);
    };
    let Some(doc) = docs.iter().find(|d| d.kind == kind) else {
        return (None, None);
    };
    let location =
        collect::FieldPath::parse(path).and_then(|p| locate::locate(text, doc.index - 1, &p.0));
    (Some(doc.index), location)
}

/// Serialize a config type. Our types hold only strings, numbers, lists and
/// string-keyed maps, which YAML always represents.
pub(crate) fn to_yaml<T: Serialize>(v: &T) -> String {
    serde_yaml::to_string(v).expect("config types always serialize to YAML")
}

/// Deserialize one raw document, adding its errors to `errors`.
pub(crate) fn typed<T: DeserializeOwned>(
    doc: &read::RawDocument,
    text: &str,
    errors: &mut Vec<ParseError>,
) -> Option<T> {
    match collect::deserialize::<T>(&doc.value, text, doc.index - 1) {
        Ok(t) => Some(t),
        Err(field_errors) => {
            errors.extend(field_errors.into_iter().map(|e| ParseError {
                document: Some(doc.index),
                kind: Some(doc.kind.to_string()),
                path: e.path.to_string(),
                location: e.location,
                message: e.message,
            }));
            None
        }
    }
}
