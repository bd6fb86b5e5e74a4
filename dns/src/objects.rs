//! `--from-file`: serve the Services and Endpoints of a JSON file instead of watching
//! the API server. The file is what `kubectl get services,endpoints -A -o json` prints
//! (a List of items). For load tests and for trying the server outside a cluster.

use std::path::Path;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: item {index} ({kind}) does not parse: {source}")]
    Item {
        path: String,
        index: usize,
        kind: String,
        source: serde_json::Error,
    },
    #[error("{path} has no \"items\" list (expected the output of kubectl get ... -o json)")]
    NotAList { path: String },
}

#[derive(Debug, Default)]
pub struct Objects {
    pub services: Vec<Service>,
    pub endpoints: Vec<Endpoints>,
}

/// Reads Services and Endpoints from a List; items of other kinds are ignored.
pub fn load(path: &Path) -> Result<Objects, ObjectsError> {
    let display = path.display().to_string();
    let text = std::fs::read(path).map_err(|source| ObjectsError::Read {
        path: display.clone(),
        source,
    })?;
    let list: Value = serde_json::from_slice(&text).map_err(|source| ObjectsError::Json {
        path: display.clone(),
        source,
    })?;
    let Some(items) = list.get("items").and_then(Value::as_array) else {
        return Err(ObjectsError::NotAList { path: display });
    };
    let mut objects = Objects::default();
    for (index, item) in items.iter().enumerate() {
        let kind = item
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let item_error = |source| ObjectsError::Item {
            path: display.clone(),
            index,
            kind: kind.clone(),
            source,
        };
        match kind.as_str() {
            "Service" => objects
                .services
                .push(serde_json::from_value(item.clone()).map_err(item_error)?),
            "Endpoints" => objects
                .endpoints
                .push(serde_json::from_value(item.clone()).map_err(item_error)?),
            _ => {}
        }
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_kubectl_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("objects.json");
        let list = serde_json::json!({
            "apiVersion": "v1", "kind": "List",
            "items": [
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                 "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]}},
                {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "default"},
                 "subsets": [{"addresses": [{"ip": "10.244.0.5"}]}]},
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
            ]
        });
        std::fs::write(&path, list.to_string()).unwrap();
        let objects = load(&path).unwrap();
        assert_eq!(objects.services.len(), 1);
        assert_eq!(objects.endpoints.len(), 1);

        std::fs::write(
            &path,
            r#"{"items": [{"kind": "Service", "spec": {"ports": "eighty"}}]}"#,
        )
        .unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("item 0 (Service)"), "{err}");
        std::fs::write(&path, "{}").unwrap();
        assert!(load(&path)
            .unwrap_err()
            .to_string()
            .contains("no \"items\""));
    }
}
