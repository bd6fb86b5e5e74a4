//! The add-ons' objects (metrics server, Prometheus, Web UI): each parses
//! as its Kubernetes type and survives a round trip unchanged (so no field
//! is misspelt or misplaced: k8s-openapi drops what it does not know), the
//! security rules hold for every container, and the whole set matches a
//! golden file per add-on. Regenerate with `UPDATE_GOLDEN=1 cargo test -p
//! addons` and review the diff: it is what machined applies.

use std::path::Path;

use config::MachineConfig;
use serde_json::Value;

/// The fixed control-plane config of config's own golden files.
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

fn check_type(doc: &Value) {
    use k8s_openapi::api::{apps::v1 as apps, core::v1 as core, rbac::v1 as rbac};
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as reg;
    match doc["kind"].as_str().unwrap() {
        "ServiceAccount" => round_trip::<core::ServiceAccount>(doc),
        "ConfigMap" => round_trip::<core::ConfigMap>(doc),
        "Secret" => round_trip::<core::Secret>(doc),
        "Service" => round_trip::<core::Service>(doc),
        "Deployment" => round_trip::<apps::Deployment>(doc),
        "ClusterRole" => round_trip::<rbac::ClusterRole>(doc),
        "ClusterRoleBinding" => round_trip::<rbac::ClusterRoleBinding>(doc),
        "Role" => round_trip::<rbac::Role>(doc),
        "RoleBinding" => round_trip::<rbac::RoleBinding>(doc),
        "APIService" => round_trip::<reg::APIService>(doc),
        other => panic!("no type check for {other}"),
    }
}

/// Every container: non-root, read-only root, no escalation, all
/// capabilities dropped, requests and a memory limit, an image from the
/// payload that is never pulled.
fn check_workload(doc: &Value) {
    if doc["kind"] != "Deployment" {
        return;
    }
    let spec = &doc["spec"]["template"]["spec"];
    for c in spec["containers"].as_array().unwrap() {
        let name = format!("{}/{}", doc["metadata"]["name"], c["name"]);
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{name}");
        assert!(sc["runAsUser"].as_u64().unwrap() > 0, "{name}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{name}"
        );
        assert!(sc.get("privileged").is_none(), "{name}");
        assert!(c["resources"]["requests"]["cpu"].is_string(), "{name}");
        assert!(c["resources"]["requests"]["memory"].is_string(), "{name}");
        assert!(c["resources"]["limits"]["memory"].is_string(), "{name}");
        assert_eq!(c["imagePullPolicy"], "Never", "{name}");
        let image = c["image"].as_str().unwrap();
        assert!(
            config::constants::images::ALL.contains(&image),
            "{name}: {image} is not a payload image"
        );
    }
    assert!(spec.get("hostNetwork").is_none());
}

fn golden(name: &str, docs: &[Value]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.json"));
    let text = serde_json::to_string_pretty(docs).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        want == text,
        "{name}'s objects differ from {}; if intended, UPDATE_GOLDEN=1 cargo test -p addons",
        path.display()
    );
}

#[test]
fn every_object_parses_as_its_type_and_matches_its_golden_file() {
    let cfg = cfg();
    for (name, docs) in [
        ("metrics_server", addons::metrics_server::objects(&cfg)),
        ("prometheus", addons::prometheus::objects(&cfg)),
        ("dashboard", addons::dashboard::objects(&cfg)),
    ] {
        for d in &docs {
            check_type(d);
            check_workload(d);
        }
        golden(name, &docs);
    }
}

#[test]
fn each_add_on_can_be_turned_off() {
    let mut cfg = cfg();
    let kinds = |cfg: &MachineConfig| -> Vec<String> {
        addons::objects(cfg)
            .iter()
            .map(|d| format!("{}/{}", d["kind"], d["metadata"]["name"]))
            .collect()
    };
    let all = kinds(&cfg);
    assert!(all.iter().any(|k| k.contains("APIService")));
    assert!(all.iter().any(|k| k.contains("cairn-prometheus")));
    assert!(all.iter().any(|k| k.contains("cairn-webui")));
    cfg.cluster.addons.metrics_server.enabled = false;
    cfg.cluster.addons.prometheus.enabled = false;
    cfg.cluster.addons.dashboard.enabled = false;
    let left = kinds(&cfg);
    for mine in [
        "APIService",
        "cairn-prometheus",
        "cairn-webui",
        "cairn-metrics-server",
    ] {
        assert!(
            !left.iter().any(|k| k.contains(mine)),
            "{mine} still in {left:?}"
        );
    }
    assert!(addons::serving_certs(&cfg).is_empty());
}

#[test]
fn the_api_service_trusts_the_cluster_ca() {
    use base64::Engine as _;
    let cfg = cfg();
    let api = addons::metrics_server::objects(&cfg)
        .into_iter()
        .find(|d| d["kind"] == "APIService")
        .unwrap();
    let bundle = base64::engine::general_purpose::STANDARD
        .decode(api["spec"]["caBundle"].as_str().unwrap())
        .unwrap();
    assert_eq!(bundle, cfg.cluster.ca.crt.pem().as_bytes());
    assert_eq!(api["spec"]["insecureSkipTLSVerify"], false);
}

/// A Secret as the API server returns it (`data`, base64).
fn as_stored(secret: &Value) -> Value {
    use base64::Engine as _;
    let mut s = secret.clone();
    let data: serde_json::Map<String, Value> = secret["stringData"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let b = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap());
            (k.clone(), Value::String(b))
        })
        .collect();
    s["data"] = Value::Object(data);
    s.as_object_mut().unwrap().remove("stringData");
    s
}

#[test]
fn serving_certificates_come_from_the_cluster_ca_and_are_kept_while_they_fit() {
    let cfg = cfg();
    let certs = addons::serving_certs(&cfg);
    assert_eq!(certs.len(), 2);
    for c in &certs {
        let secret = addons::tls::secret(&cfg, c).unwrap();
        check_type(&secret);
        assert_eq!(secret["type"], "kubernetes.io/tls");
        assert_eq!(secret["metadata"]["name"], c.secret);
        let now = time_now();
        assert!(
            addons::tls::is_current(&cfg, c, &as_stored(&secret), now),
            "{}",
            c.secret
        );
        // Near its end it is replaced.
        let later = now + 340 * 24 * 3600;
        assert!(!addons::tls::is_current(
            &cfg,
            c,
            &as_stored(&secret),
            later
        ));
        // A certificate for other names is replaced.
        let mut other = c.clone();
        other.names.push("elsewhere.example".into());
        assert!(!addons::tls::is_current(
            &cfg,
            &other,
            &as_stored(&secret),
            now
        ));
        // Garbage is replaced.
        assert!(!addons::tls::is_current(
            &cfg,
            c,
            &serde_json::json!({"data": {}}),
            now
        ));
    }
    // Another cluster's CA: the certificate is replaced.
    let other_ca = config::pki::create_kubernetes_ca().unwrap();
    let mut other_cfg = cfg.clone();
    other_cfg.cluster.ca = other_ca.into();
    let c = &certs[0];
    let secret = addons::tls::secret(&cfg, c).unwrap();
    assert!(!addons::tls::is_current(
        &other_cfg,
        c,
        &as_stored(&secret),
        time_now()
    ));
    // The Web UI's certificate is valid where cairnctl forwards it.
    let webui = addons::dashboard::serving_cert(&cfg);
    assert!(webui.names.contains(&"127.0.0.1".to_string()));
    assert!(webui
        .names
        .contains(&"cairn-webui.kube-system.svc".to_string()));
    // A worker's config has no CA key: a clear error.
    let mut worker = cfg.clone();
    worker.cluster.ca = worker.cluster.ca.without_key();
    let e = addons::tls::secret(&worker, c).unwrap_err();
    assert!(e.to_string().contains("cluster.ca has no key"), "{e}");
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Prometheus's configuration is valid for the Prometheus we ship: checked
/// with its promtool from the payload build's Debian packages (or the
/// host's), skipped with a message when neither is there.
#[test]
fn prometheus_config_passes_promtool() {
    let Some(promtool) = promtool() else {
        eprintln!("SKIP: no promtool (make payload unpacks Debian's prometheus into $CAIRN_CACHE/payload/debs-*)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prometheus.yml");
    std::fs::write(&file, addons::prometheus::CONFIG).unwrap();
    let out = std::process::Command::new(&promtool)
        .args(["check", "config", "--syntax-only"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} check config: {}{}",
        promtool.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let cm = addons::prometheus::objects(&cfg())
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap")
        .unwrap();
    assert_eq!(cm["data"]["prometheus.yml"], addons::prometheus::CONFIG);
}

fn promtool() -> Option<std::path::PathBuf> {
    let cache = std::env::var_os("CAIRN_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/cairn")))?;
    let from_cache = std::fs::read_dir(cache.join("payload"))
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("root/usr/bin/promtool"))
        .find(|p| p.is_file());
    from_cache.or_else(|| {
        let p = Path::new("/usr/bin/promtool");
        p.is_file().then(|| p.to_path_buf())
    })
}
