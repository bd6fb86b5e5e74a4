//! The apply modes against a temp STATE directory and recording effects.

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::*;

/// A generated control-plane config, and every secret string in it.
pub(crate) fn generated() -> (MachineConfig, Vec<String>) {
    config::generate::sample_controlplane()
}

#[derive(Default)]
struct Recorded {
    running: Option<MachineConfig>,
    /// (leaving maintenance, services) per activation.
    activations: Vec<(bool, Vec<&'static str>)>,
    reboots: usize,
    /// The guard of the install "running in the background".
    install: Option<Guard>,
    installs: usize,
}

#[derive(Default)]
struct Fake(Mutex<Recorded>);

impl Fake {
    fn with(running: Option<MachineConfig>) -> Arc<Fake> {
        Arc::new(Fake(Mutex::new(Recorded {
            running,
            ..Default::default()
        })))
    }
    fn get<T>(&self, f: impl FnOnce(&Recorded) -> T) -> T {
        f(&self.0.lock().unwrap())
    }
}

impl Effects for Fake {
    fn running(&self) -> Option<MachineConfig> {
        self.0.lock().unwrap().running.clone()
    }
    fn activate<'a>(
        &'a self,
        previous: Option<&'a MachineConfig>,
        config: &'a MachineConfig,
        services: &'a BTreeSet<&'static str>,
        _source: &'a str,
    ) -> BoxFuture<'a, Vec<String>> {
        let mut r = self.0.lock().unwrap();
        r.activations
            .push((previous.is_none(), services.iter().copied().collect()));
        r.running = Some(config.clone());
        Box::pin(async { Vec::new() })
    }
    fn reboot(&self, _guard: Guard) {
        self.0.lock().unwrap().reboots += 1;
    }
    fn install(
        &self,
        _bytes: &[u8],
        _config: &MachineConfig,
        guard: Guard,
    ) -> Result<String, String> {
        let mut r = self.0.lock().unwrap();
        r.installs += 1;
        r.install = Some(guard);
        Ok("installing".into())
    }
}

/// A lifecycle whose power actions go nowhere.
fn lifecycle() -> Arc<Lifecycle> {
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    Lifecycle::new(tx, None)
}

fn request(config: &MachineConfig, mode: ApplyMode) -> ApplyConfigurationRequest {
    ApplyConfigurationRequest {
        data: config.render().into_bytes(),
        mode: mode as i32,
        dry_run: false,
        try_timeout_seconds: 0,
    }
}

fn setup(
    running: Option<MachineConfig>,
) -> (tempfile::TempDir, StateFiles, Arc<Fake>, Arc<Configurator>) {
    let dir = tempfile::tempdir().unwrap();
    let files = StateFiles::new(dir.path());
    let fake = Fake::with(running);
    let c = Configurator::new(
        Some(files.clone()),
        ValidationMode::Cloud,
        fake.clone(),
        lifecycle(),
    );
    (dir, files, fake, c)
}

fn with_hostname(c: &MachineConfig, h: &str) -> MachineConfig {
    let mut c = c.clone();
    c.machine.network.hostname = Some(h.parse().unwrap());
    c
}

#[tokio::test]
async fn a_rejected_config_changes_nothing_and_names_the_fields() {
    let (cfg, _) = generated();
    let (_d, files, fake, c) = setup(Some(cfg.clone()));
    let bad = cfg.render().replace("10.244.0.0/16", "10.244.0.0/33");
    let mut req = request(&cfg, ApplyMode::NoReboot);
    req.data = bad.into_bytes();
    let e = c.apply(&req).await.unwrap_err();
    let status = to_status(&e);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("the config was rejected (1 problem); nothing was changed:\n"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("cluster.network.podSubnets[0]"),
        "{}",
        status.message()
    );
    // Semantic problems carry their path and line too.
    req.data = cfg
        .render()
        .replace("servers:\n", "servers: []\n")
        .into_bytes();
    let mut no_time = cfg.clone();
    no_time.machine.time.servers.clear();
    req.data = no_time.render().into_bytes();
    let e = c.apply(&req).await.unwrap_err().to_string();
    assert!(e.contains("machine.time.servers"), "{e}");
    assert!(!files.exists(store::CONFIG));
    assert_eq!(fake.get(|r| r.activations.len()), 0);
    assert_eq!(fake.running(), Some(cfg));

    // 20 MB of garbage: refused by size before any parsing.
    req.data = vec![0xA5; 20 << 20];
    let e = c.apply(&req).await.unwrap_err();
    assert_eq!(to_status(&e).code(), tonic::Code::InvalidArgument);
    assert!(e.to_string().contains("at most"), "{e}");
}

#[tokio::test]
async fn the_first_config_leaves_maintenance_mode_and_lands_on_state() {
    let (cfg, secrets) = generated();
    let (_d, files, fake, c) = setup(None);
    let mut dry = request(&cfg, ApplyMode::NoReboot);
    dry.dry_run = true;
    let r = c.apply(&dry).await.unwrap();
    assert!(
        r.summary.contains("would leave maintenance mode"),
        "{}",
        r.summary
    );
    assert!(r.diff.contains("+kind: MachineConfig"));
    assert!(
        secrets.iter().all(|s| !r.diff.contains(s.as_str())),
        "secrets in the diff"
    );
    assert!(!files.exists(store::CONFIG));

    let r = c.apply(&request(&cfg, ApplyMode::NoReboot)).await.unwrap();
    assert!(r.summary.contains("left maintenance mode"), "{}", r.summary);
    assert!(!r.reboot_required);
    assert_eq!(
        std::fs::read(files.path(store::CONFIG)).unwrap(),
        cfg.render().into_bytes()
    );
    assert_eq!(fake.get(|r| r.activations.clone()), vec![(true, vec![])]);
}

#[tokio::test]
async fn modes_decide_about_reboots() {
    let (cfg, _) = generated();
    let (_d, files, fake, c) = setup(Some(cfg.clone()));
    let mut cluster_change = cfg.clone();
    cluster_change.cluster.network.pod_subnets = vec!["10.200.0.0/16".parse().unwrap()];

    // no-reboot refuses a change that needs one, and writes nothing.
    let e = c
        .apply(&request(&cluster_change, ApplyMode::NoReboot))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ApplyError::NeedsReboot(p) if p == &["cluster.network.podSubnets"]),
        "{e}"
    );
    assert!(!files.exists(store::CONFIG));

    // auto: written, and the node reboots.
    let r = c
        .apply(&request(&cluster_change, ApplyMode::Auto))
        .await
        .unwrap();
    assert!(r.reboot_required);
    assert_eq!(fake.get(|r| r.reboots), 1);
    assert_eq!(fake.get(|r| r.activations.len()), 0);
    assert!(files.exists(store::CONFIG));

    // auto without a reboot: applied live, apid reloads for new SANs.
    let mut sans = cfg.clone();
    sans.machine
        .cert_sans
        .push(config::types::SubjectAltName::Dns("lb.test".into()));
    let r = c.apply(&request(&sans, ApplyMode::Auto)).await.unwrap();
    assert_eq!(r.services_to_restart, vec!["apid"]);
    assert_eq!(
        fake.get(|r| r.activations.clone()),
        vec![(false, vec!["apid"])]
    );
    assert_eq!(fake.get(|r| r.reboots), 1);

    // reboot: always.
    c.apply(&request(&sans, ApplyMode::Reboot)).await.unwrap();
    assert_eq!(fake.get(|r| r.reboots), 2);

    // staged: only the staged file.
    let staged = with_hostname(&cfg, "later");
    let r = c.apply(&request(&staged, ApplyMode::Staged)).await.unwrap();
    assert!(r.summary.contains("next reboot"));
    assert_eq!(
        std::fs::read(files.path(store::STAGED)).unwrap(),
        staged.render().into_bytes()
    );
    assert_eq!(fake.get(|r| r.activations.len()), 1);
}

#[tokio::test]
async fn try_reverts_unless_confirmed() {
    let (cfg, _) = generated();
    let (_d, files, fake, c) = setup(Some(cfg.clone()));
    files.write(store::CONFIG, cfg.render().as_bytes()).unwrap();
    let tried = with_hostname(&cfg, "tried");
    let mut req = request(&tried, ApplyMode::Try);
    req.try_timeout_seconds = 1;
    let r = c.apply(&req).await.unwrap();
    assert!(r.summary.contains("cairnctl confirm"), "{}", r.summary);
    assert_eq!(fake.running(), Some(tried.clone()));
    assert!(files.exists(store::TRY));
    // Nothing else is applied while a try waits.
    let e = c
        .apply(&request(&cfg, ApplyMode::NoReboot))
        .await
        .unwrap_err();
    assert!(matches!(e, ApplyError::TryPending(_)), "{e}");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.running(), Some(cfg.clone()), "not reverted");
    assert!(!files.exists(store::TRY));
    assert_eq!(
        std::fs::read(files.path(store::CONFIG)).unwrap(),
        cfg.render().into_bytes()
    );
    let e = c.confirm().await.unwrap_err();
    assert_eq!(to_status(&e).code(), tonic::Code::FailedPrecondition);

    // Confirmed in time: kept, and on STATE.
    let kept = with_hostname(&cfg, "kept");
    let mut req = request(&kept, ApplyMode::Try);
    req.try_timeout_seconds = 1;
    c.apply(&req).await.unwrap();
    c.confirm().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.running(), Some(kept.clone()));
    assert_eq!(
        std::fs::read(files.path(store::CONFIG)).unwrap(),
        kept.render().into_bytes()
    );
    assert!(!files.exists(store::TRY));

    // A try needs something to go back to.
    let (_d2, _f2, _fake2, fresh) = setup(None);
    let e = fresh
        .apply(&request(&cfg, ApplyMode::Try))
        .await
        .unwrap_err();
    assert!(matches!(e, ApplyError::TryWithoutRunningConfig));
}

#[tokio::test]
async fn without_state_configs_live_in_memory_and_reboots_are_refused() {
    let (cfg, _) = generated();
    let fake = Fake::with(None);
    let c = Configurator::new(None, ValidationMode::Cloud, fake.clone(), lifecycle());
    let r = c.apply(&request(&cfg, ApplyMode::Auto)).await.unwrap();
    assert!(r.summary.contains("kept in memory only"), "{}", r.summary);
    assert_eq!(fake.running(), Some(cfg.clone()));
    for mode in [ApplyMode::Reboot, ApplyMode::Staged] {
        let e = c.apply(&request(&cfg, mode)).await.unwrap_err();
        assert!(matches!(e, ApplyError::NoState(_)), "{e}");
    }
}

#[tokio::test]
async fn a_config_without_the_os_ca_key_cannot_leave_maintenance() {
    let (mut cfg, _) = generated();
    cfg.machine.ca = cfg.machine.ca.without_key();
    cfg.machine.machine_type = config::spec::MachineType::Worker;
    cfg.cluster.ca = cfg.cluster.ca.without_key();
    let (_d, files, _fake, c) = setup(None);
    let req = request(&cfg, ApplyMode::NoReboot);
    match c.apply(&req).await {
        Err(ApplyError::CannotServe(_)) => {}
        // A worker config may fail validation for other cluster secrets
        // first; either way nothing is written.
        Err(ApplyError::Invalid(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(!files.exists(store::CONFIG));
}

/// Race 1: each ApplyConfiguration naming an install disk used to start
/// another background install. While one runs, every apply is refused.
#[tokio::test]
async fn a_second_apply_during_an_install_is_refused() {
    let (mut cfg, _) = generated();
    cfg.machine.install.disk = Some("/dev/vda".parse().unwrap());
    let fake = Fake::with(None);
    let c = Configurator::new(None, ValidationMode::Cloud, fake.clone(), lifecycle());
    let req = request(&cfg, ApplyMode::Auto);
    let r = c.apply_as(&req, Caller::Anonymous).await.unwrap();
    assert_eq!(r.summary, "installing");
    let mut other = cfg.clone();
    other.machine.install.disk = Some("/dev/vdb".parse().unwrap());
    other.machine.install.wipe = true;
    for again in [&cfg, &other] {
        let e = c
            .apply_as(&request(again, ApplyMode::Auto), Caller::Anonymous)
            .await
            .unwrap_err();
        assert_eq!(to_status(&e).code(), tonic::Code::FailedPrecondition);
        assert!(
            e.to_string().starts_with("an install is in progress"),
            "{e}"
        );
    }
    assert_eq!(fake.get(|r| r.installs), 1);
    // An install that ends (fails) lets the next apply try again.
    fake.0.lock().unwrap().install = None;
    c.apply_as(&req, Caller::Anonymous).await.unwrap();
    assert_eq!(fake.get(|r| r.installs), 2);
}

/// Race 2: a request that passed apid's maintenance check just before the
/// first config landed must not replace it anonymously, nor see its diff.
#[tokio::test]
async fn an_anonymous_apply_is_refused_once_a_config_runs() {
    let (cfg, _) = generated();
    let (_d, files, fake, c) = setup(None);
    c.apply_as(&request(&cfg, ApplyMode::Auto), Caller::Anonymous)
        .await
        .unwrap();
    let written = std::fs::read(files.path(store::CONFIG)).unwrap();
    let other = with_hostname(&cfg, "intruder");
    let mut dry = request(&other, ApplyMode::NoReboot);
    dry.dry_run = true;
    for req in [request(&other, ApplyMode::NoReboot), dry] {
        let e = c.apply_as(&req, Caller::Anonymous).await.unwrap_err();
        assert!(matches!(e, ApplyError::AnonymousOnConfigured), "{e}");
        assert_eq!(to_status(&e).code(), tonic::Code::FailedPrecondition);
    }
    assert_eq!(std::fs::read(files.path(store::CONFIG)).unwrap(), written);
    assert_eq!(fake.running(), Some(cfg.clone()));
    // An authenticated caller still can.
    c.apply(&request(&other, ApplyMode::NoReboot))
        .await
        .unwrap();
    assert_eq!(fake.running(), Some(other));
}

/// Race 3's second half: while an upgraded slot is on trial, maintenance
/// mode (the new system could not use the config) takes no anonymous
/// config, even with STATE attached.
#[tokio::test]
async fn no_anonymous_apply_while_a_slot_is_on_trial() {
    let (cfg, _) = generated();
    let dir = tempfile::tempdir().unwrap();
    let files = StateFiles::new(dir.path());
    let fake = Fake::with(None);
    let l = lifecycle();
    l.set_trial(Some("B"));
    let c = Configurator::new(Some(files.clone()), ValidationMode::Cloud, fake.clone(), l);
    let e = c
        .apply_as(&request(&cfg, ApplyMode::Auto), Caller::Anonymous)
        .await
        .unwrap_err();
    assert!(matches!(e, ApplyError::AnonymousOnTrial("B")), "{e}");
    assert!(!files.exists(store::CONFIG));
    assert_eq!(fake.running(), None);
}

/// Live apply tells the truth: the kubelet's and containerd's specs change
/// with their fields, and dry run names them.
#[test]
fn kubelet_and_registry_fields_change_the_services_specs() {
    use kubernetes::specs::services_changed;
    let (cfg, _) = generated();
    let facts = kubernetes::kubelet::NodeRegistration {
        hostname: "cp1".into(),
        node_ip: Some("10.5.0.2".parse().unwrap()),
    };
    assert!(services_changed(&cfg, &cfg, &facts).is_empty());
    let mut labelled = cfg.clone();
    labelled
        .machine
        .kubelet
        .node_labels
        .insert("example.com/zone".parse().unwrap(), "a".parse().unwrap());
    assert_eq!(services_changed(&cfg, &labelled, &facts), vec!["kubelet"]);
    let mut mirrored = cfg.clone();
    mirrored.machine.registries.mirrors.insert(
        "docker.io".parse().unwrap(),
        config::spec::Mirror {
            endpoints: vec!["http://10.5.0.1:5000".parse().unwrap()],
        },
    );
    // Mirrors live in containerd's hosts directory, which it reads at each
    // pull: they apply without a restart.
    assert!(services_changed(&cfg, &mirrored, &facts).is_empty());
    let hosts = kubernetes::containerd::config::hosts_files(
        &kubernetes::containerd::Settings::from_config(&mirrored),
        None,
    );
    assert!(
        hosts["docker.io"].contains("http://10.5.0.1:5000"),
        "{hosts:?}"
    );
    assert!(plan::plan(Some(&cfg), &mirrored).services.is_empty());
    assert!(!plan::plan(Some(&cfg), &mirrored).reboot_required());
}

/// etcd runs from its spec too: `cluster.etcd.extraArgs` applies live on a
/// control plane, restarting etcd (dry run names it); a worker runs none.
#[test]
fn etcd_extra_args_change_etcds_spec_live_on_control_planes_only() {
    use kubernetes::specs::services_changed;
    let (cfg, _) = generated();
    assert_eq!(
        cfg.machine.machine_type,
        config::spec::MachineType::Controlplane
    );
    let facts = kubernetes::kubelet::NodeRegistration {
        hostname: "cp1".into(),
        node_ip: Some("10.5.0.2".parse().unwrap()),
    };
    let mut tuned = cfg.clone();
    tuned.cluster.etcd.extra_args.insert(
        "heartbeat-interval".parse().unwrap(),
        config::types::ScalarString::new("250"),
    );
    assert_eq!(services_changed(&cfg, &tuned, &facts), vec!["etcd"]);
    let p = plan::plan(Some(&cfg), &tuned);
    assert!(!p.reboot_required(), "{p:?}");
    assert_eq!(p.changed, vec!["cluster.etcd.extraArgs.heartbeat-interval"]);
    let spec = kubernetes::specs::EtcdSpec::of(
        &tuned,
        &kubernetes::k8s_pki::NodeFacts {
            hostname: "cp1".into(),
            addresses: vec!["10.5.0.2".parse().unwrap()],
        },
    );
    let args =
        kubernetes::etcd::EtcdSettings::from_spec(&spec, &kubernetes::etcd::EtcdPaths::node())
            .args();
    assert!(
        args.contains(&"--heartbeat-interval=250".to_string()),
        "{args:?}"
    );
    assert!(args.contains(&"--name=cp1".to_string()), "{args:?}");

    let (mut worker, mut worker_tuned) = (cfg.clone(), tuned.clone());
    worker.machine.machine_type = config::spec::MachineType::Worker;
    worker_tuned.machine.machine_type = config::spec::MachineType::Worker;
    assert!(services_changed(&worker, &worker_tuned, &facts).is_empty());
}
