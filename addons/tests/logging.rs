//! The logging add-on's objects: each parses as its Kubernetes type and
//! survives a round trip unchanged (k8s-openapi drops what it does not
//! know, so a misspelt or misplaced field shows), the placement, volume and
//! security rules the add-on promises hold, the Service address is the one
//! machined and the collectors use, and the set matches
//! tests/golden/logging.json. Regenerate with `UPDATE_GOLDEN=1 cargo test
//! -p addons` and review the diff: it is what machined applies.

use std::path::Path;

use config::MachineConfig;
use serde_json::{json, Value};

fn cfg() -> MachineConfig {
    MachineConfig::parse(include_bytes!(
        "../../config/tests/golden/controlplane.yaml"
    ))
    .expect("config's golden control-plane config parses")
}

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{} {}: {e}", doc["kind"], doc["metadata"]["name"]));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, doc,
        "{} {} does not survive a round trip through its type",
        doc["kind"], doc["metadata"]["name"]
    );
}

fn by_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn objects_parse_as_their_types_and_match_the_golden_file() {
    use k8s_openapi::api::{apps::v1 as apps, core::v1 as core};
    let docs = addons::logging::objects(&cfg());
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ServiceAccount",
            "Service",
            "Deployment",
            "DaemonSet"
        ],
        "accounts first, the Service before the collectors that use it"
    );
    for d in &docs {
        match d["kind"].as_str().unwrap() {
            "ServiceAccount" => round_trip::<core::ServiceAccount>(d),
            "Service" => round_trip::<core::Service>(d),
            "Deployment" => round_trip::<apps::Deployment>(d),
            "DaemonSet" => round_trip::<apps::DaemonSet>(d),
            other => panic!("unexpected {other}"),
        }
        assert_eq!(d["metadata"]["namespace"], "kube-system");
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/logging.json");
    let text = serde_json::to_string_pretty(&docs).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, &text).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        want == text,
        "the logging objects differ from {}; if intended, UPDATE_GOLDEN=1 cargo test -p addons",
        path.display()
    );
}

/// Every container and init container: requests and limits (CPU and
/// memory), a payload image never pulled, no escalation, a read-only
/// root, every capability dropped; the only ones added are CHOWN for the
/// store's init container; only the collector and that init container run
/// as root.
#[test]
fn containers_are_locked_down_with_requests_and_limits() {
    let docs = addons::logging::objects(&cfg());
    for d in docs.iter().filter(|d| d["spec"]["template"].is_object()) {
        let spec = &d["spec"]["template"]["spec"];
        assert_eq!(
            spec["automountServiceAccountToken"], false,
            "no API token needed"
        );
        assert!(spec.get("hostNetwork").is_none());
        let all = spec["containers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(spec["initContainers"].as_array().into_iter().flatten());
        for c in all {
            let name = format!(
                "{}/{}",
                d["metadata"]["name"].as_str().unwrap(),
                c["name"].as_str().unwrap()
            );
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{name}");
            assert!(sc.get("privileged").is_none(), "{name}");
            let added = &sc["capabilities"]["add"];
            let root = sc["runAsUser"] == 0;
            match name.as_str() {
                "cairn-logstore/data-dir" => {
                    assert_eq!(added, &json!(["CHOWN"]), "{name}");
                    assert!(root);
                }
                "cairn-logcollector/logcollector" => {
                    assert!(added.is_null(), "{name}");
                    assert!(root);
                }
                _ => {
                    assert!(added.is_null(), "{name}");
                    assert_eq!(sc["runAsNonRoot"], true, "{name}");
                    assert!(!root, "{name}");
                }
            }
            for kind in ["requests", "limits"] {
                for r in ["cpu", "memory"] {
                    assert!(c["resources"][kind][r].is_string(), "{name}: {kind}.{r}");
                }
            }
            assert_eq!(c["imagePullPolicy"], "Never", "{name}");
            let image = c["image"].as_str().unwrap();
            assert!(
                config::constants::images::ALL.contains(&image),
                "{name}: {image} is not a payload image"
            );
        }
    }
}

#[test]
fn the_store_is_one_pinned_replica_with_its_data_on_the_host() {
    let docs = addons::logging::objects(&cfg());
    let d = by_kind(&docs, "Deployment");
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
    let spec = &d["spec"]["template"]["spec"];
    assert_eq!(
        spec["nodeSelector"]["node-role.kubernetes.io/control-plane"],
        ""
    );
    let tolerated: Vec<&str> = spec["tolerations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    for taint in [
        "node-role.kubernetes.io/control-plane",
        "node-role.kubernetes.io/master",
    ] {
        assert!(tolerated.contains(&taint), "{taint}");
    }
    assert_eq!(
        spec["volumes"][0]["hostPath"]["path"],
        "/var/lib/cairn-logstore"
    );
    let c = &spec["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    // The init container hands the directory to the store's user.
    let init = &spec["initContainers"][0];
    let uid = c["securityContext"]["runAsUser"].as_u64().unwrap();
    assert!(init["args"]
        .as_array()
        .unwrap()
        .contains(&json!(format!("--prepare-data-dir-for={uid}:{uid}"))));
}

#[test]
fn the_collector_runs_everywhere_reads_pod_logs_and_finds_the_store() {
    let cfg = cfg();
    let docs = addons::logging::objects(&cfg);
    let ds = by_kind(&docs, "DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["tolerations"], json!([{"operator": "Exists"}]));
    let c = &spec["containers"][0];
    assert_eq!(c["env"][0]["name"], "NODE_NAME");
    assert_eq!(
        c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    let mounts = c["volumeMounts"].as_array().unwrap();
    let logs = mounts
        .iter()
        .find(|m| m["mountPath"] == "/var/log/pods")
        .unwrap();
    assert_eq!(logs["readOnly"], true);
    assert!(mounts
        .iter()
        .any(|m| m["mountPath"] == "/var/lib/cairn-logcollector"));
    // The store's address: the Service's fixed ClusterIP.
    let svc = by_kind(&docs, "Service");
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.11");
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    let ports: Vec<(String, u64)> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["port"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [("http".to_string(), 8080), ("jsonlines".to_string(), 5170)]
    );
    assert!(c["args"]
        .as_array()
        .unwrap()
        .contains(&json!("--store=http://10.96.0.11:8080")));
    assert_eq!(
        addons::logging::jsonlines_destination(&cfg).as_deref(),
        Some("tcp://10.96.0.11:5170")
    );
}

#[test]
fn a_small_or_other_service_subnet_moves_or_drops_the_fixed_address() {
    let mut cfg = cfg();
    cfg.cluster.network.service_subnets = vec!["10.100.0.0/16".parse().unwrap()];
    assert_eq!(
        addons::logging::store_service_ip(&cfg)
            .map(|i| i.to_string())
            .as_deref(),
        Some("10.100.0.11")
    );
    cfg.cluster.network.service_subnets = vec!["fd00:10::/108".parse().unwrap()];
    assert_eq!(addons::logging::store_url(&cfg), "http://[fd00:10::b]:8080");
    cfg.cluster.network.service_subnets = vec!["10.100.0.0/29".parse().unwrap()];
    assert_eq!(addons::logging::store_service_ip(&cfg), None);
    let docs = addons::logging::objects(&cfg);
    assert!(by_kind(&docs, "Service")["spec"].get("clusterIP").is_none());
    let args = &by_kind(&docs, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]["args"];
    assert_eq!(
        args[0],
        "--store=http://$(CAIRN_LOGSTORE_SERVICE_HOST):$(CAIRN_LOGSTORE_SERVICE_PORT_HTTP)"
    );
}

#[test]
fn turned_off_it_contributes_nothing() {
    let mut cfg = cfg();
    let names = |cfg: &MachineConfig| -> Vec<String> {
        addons::objects(cfg)
            .iter()
            .map(|d| {
                d["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    assert!(names(&cfg).iter().any(|n| n == "cairn-logcollector"));
    cfg.cluster.addons.logging.enabled = false;
    assert!(!names(&cfg).iter().any(|n| n.starts_with("cairn-log")));
}
