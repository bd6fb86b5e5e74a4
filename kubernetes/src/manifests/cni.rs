//! The node's CNI config: the reference `bridge` plugin on `cni0` with
//! host-local IPAM over the Node's podCIDR, and `portmap`, written to
//! `/system/cni/net.d/10-cairn.conflist` atomically by `crate::podnet` once
//! the controller-manager has given the Node a podCIDR (and again if it
//! changes). containerd's CRI plugin runs the `loopback` plugin for every
//! pod by itself.

use std::path::Path;

use k8s_openapi::api::core::v1::Node;
use serde_json::json;

/// The file machined writes; containerd takes the first file in the
/// directory, so the name sorts early.
pub const CONFLIST: &str = "10-cairn.conflist";
/// The bridge on each node.
pub const BRIDGE: &str = "cni0";

/// The conflist for `pod_cidrs` (one per IP family).
pub fn conflist(pod_cidrs: &[String]) -> String {
    let ranges: Vec<_> = pod_cidrs.iter().map(|c| json!([{"subnet": c}])).collect();
    let routes: Vec<_> = pod_cidrs
        .iter()
        .map(|c| {
            if c.contains(':') {
                json!({"dst": "::/0"})
            } else {
                json!({"dst": "0.0.0.0/0"})
            }
        })
        .collect();
    let doc = json!({
        "cniVersion": "0.4.0",
        "name": "cairn",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                // Masquerading is podnet's, for traffic leaving the Pod
                // networks only (Pod to Pod across nodes keeps its source).
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {"type": "host-local", "ranges": ranges, "routes": routes},
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ],
    });
    serde_json::to_string_pretty(&doc).expect("JSON values render") + "\n"
}

/// Writes the conflist into `dir` when it differs; returns whether it did.
pub fn write(dir: &Path, pod_cidrs: &[String]) -> std::io::Result<bool> {
    let text = conflist(pod_cidrs);
    let path = dir.join(CONFLIST);
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)?;
    config::fsutil::write_private(&path, text.as_bytes(), true).map_err(std::io::Error::other)?;
    Ok(true)
}

/// The podCIDRs of a Node (`spec.podCIDRs`, else `spec.podCIDR`).
pub fn pod_cidrs(node: &Node) -> Vec<String> {
    let Some(spec) = &node.spec else {
        return Vec::new();
    };
    match &spec.pod_cidrs {
        Some(list) if !list.is_empty() => list.clone(),
        _ => spec.pod_cidr.iter().cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_matches_golden_file() {
        crate::testutil::golden(
            "cni/10-cairn.conflist",
            &conflist(&["10.244.0.0/24".to_string()]),
        );
    }

    #[test]
    fn written_once_and_again_when_the_cidr_changes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("net.d");
        assert!(write(&d, &["10.244.0.0/24".into()]).unwrap());
        assert!(!write(&d, &["10.244.0.0/24".into()]).unwrap());
        assert!(write(&d, &["10.244.1.0/24".into(), "fd00:1::/64".into()]).unwrap());
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join(CONFLIST)).unwrap()).unwrap();
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][1][0]["subnet"],
            "fd00:1::/64"
        );
        assert_eq!(v["plugins"][0]["ipam"]["routes"][1]["dst"], "::/0");
        assert_eq!(v["plugins"][0]["isGateway"], true);
    }

    #[test]
    fn pod_cidrs_from_the_node() {
        let mut n = Node::default();
        assert!(pod_cidrs(&n).is_empty());
        n.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            pod_cidr: Some("10.244.0.0/24".into()),
            ..Default::default()
        });
        assert_eq!(pod_cidrs(&n), vec!["10.244.0.0/24"]);
    }
}
