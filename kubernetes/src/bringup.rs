//! Kubernetes on a configured node: the bring-up sequence, started by the
//! configurator once a config is in force (at boot or when the first config
//! is applied):
//!
//! 1. the payload is mounted; the clock is synchronized (bounded wait);
//! 2. the PKI is issued (and kept issued as the config and addresses change);
//! 3. containerd runs and the payload's images are imported into `k8s.io`;
//! 4. etcd starts if this control plane was bootstrapped before (else the
//!    Bootstrap RPC starts it);
//! 5. the static pods are rendered (and re-rendered on config or secrets
//!    changes) and the kubelet runs;
//! 6. once the API server answers, the bootstrap objects are applied;
//!    every node writes its CNI config from its Node's podCIDR.
//!
//! A step that fails is retried with backoff until it succeeds: a payload
//! that is missing for a while, a PKI that cannot be issued yet or a
//! containerd that does not answer delays Kubernetes, never stops it until
//! a reboot. Every step is idempotent, and what must happen once (the
//! keepers, the services) is recorded in [`Progress`].
//!
//! containerd and the kubelet run from their specs (see [`specs`]): a
//! changed config restarts them with the new settings.
//!
//! Workers skip the control-plane parts (their PKI module writes only what a
//! worker has, and they render no static pods).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use config::constants::k8s;
use config::spec::MachineType;

use crate::k8s_pki::NodeFacts;
use runtime::resources::specs::EventType;
use runtime::resources::{kind, Filter, Watch};
use runtime::supervisor::backoff::Backoff;
use runtime::supervisor::Status;
use runtime::Runtime;

use crate::addresses::node_ip;
use crate::payload::PayloadSpec;
use crate::specs;
use crate::timeline::{self, Phase};

/// How long the kubelet waits for containerd's first health before the
/// images are imported anyway (the import reports its own errors).
const CONTAINERD_UP: Duration = Duration::from_secs(120);
/// Between attempts of a failed bring-up: 2 s doubling to a minute.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Starts bringing Kubernetes up; it runs until it succeeds, retrying
/// failed steps with backoff. The caller starts it once per boot
/// (machined's node keeps that fact).
pub fn start(node: &Runtime) {
    let node = node.clone();
    tokio::spawn(async move {
        let progress = Arc::new(tokio::sync::Mutex::new(Progress::default()));
        let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
        // A payload that is mounted ends the wait between attempts at once:
        // the commonest cause of a failed start is one not found yet.
        let mut payload_mounted = PayloadMounted {
            watch: Watch::new(&node.store, Filter::kind(kind::PAYLOAD), false),
            store: node.store.clone(),
        };
        let attempts = retry(&mut backoff, &mut payload_mounted, |attempt| {
            let (node, progress) = (node.clone(), progress.clone());
            Box::pin(async move {
                let mut done = progress.lock().await;
                bring_up(&node, &mut done).await.inspect_err(|e| {
                    node.events.record(
                        EventType::Kubernetes,
                        format!("attempt {attempt} failed: {e}"),
                    );
                })
            })
        })
        .await;
        if attempts > 1 {
            runtime::console!("kubernetes: started after {attempts} attempts");
        }
    });
}

/// Something whose happening makes a failed step worth trying again before
/// its backoff delay is over.
pub trait Wake: Send {
    fn wait(&mut self) -> futures::future::BoxFuture<'_, ()>;
}

/// The payload resource turning `mounted`.
struct PayloadMounted {
    watch: Watch,
    store: Arc<runtime::resources::Store>,
}

impl Wake for PayloadMounted {
    fn wait(&mut self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async move {
            loop {
                self.watch.next().await;
                let spec = self.store.spec::<PayloadSpec>(PayloadSpec::ID);
                if spec.is_some_and(|s| s.state == PayloadSpec::MOUNTED) {
                    return;
                }
            }
        })
    }
}

/// Runs `step` until it succeeds, waiting `backoff`'s delays in between, or
/// until `wake` resolves (a cause of failure went away); returns how many
/// attempts it took. The step gets the attempt's number.
pub async fn retry<E: std::fmt::Display>(
    backoff: &mut Backoff,
    wake: &mut dyn Wake,
    mut step: impl FnMut(u32) -> futures::future::BoxFuture<'static, Result<(), E>>,
) -> u32 {
    let mut attempt = 1;
    loop {
        match step(attempt).await {
            Ok(()) => return attempt,
            Err(e) => {
                let delay = backoff.next_delay();
                runtime::console!(
                    "kubernetes: {e}; trying again in {} s",
                    delay.as_secs().max(1)
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = wake.wait() => {}
                }
                attempt += 1;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error("not started: the payload is not mounted ({0})")]
    Payload(String),
    #[error("not started: no running config")]
    NoConfig,
    #[error("not started: cannot issue the Kubernetes PKI: {0}")]
    Pki(#[from] crate::k8s_pki::K8sPkiError),
    #[error("cannot start {0}: {1}")]
    Service(&'static str, runtime::supervisor::SupervisorError),
    #[error("cannot import the payload's images: {0}")]
    Images(#[from] crate::containerd::ContainerdError),
    #[error("etcd: {0}")]
    Etcd(#[from] crate::etcd::EtcdError),
    #[error("static pods: {0}")]
    StaticPods(String),
}

/// What earlier attempts of the bring-up already did, so a retry does not
/// start a second keeper or service.
#[derive(Default)]
pub struct Progress {
    clock_waited: bool,
    pki_keeper: bool,
    image_cache: bool,
    containerd: bool,
    images: bool,
    static_pods: bool,
    kubelet: bool,
    node_labels: bool,
    csr_approver: bool,
    podnet: bool,
    timeline: bool,
}

async fn bring_up(node: &Runtime, done: &mut Progress) -> Result<(), KubernetesError> {
    // 1. Payload and clock.
    crate::payload::wait_mounted(node)
        .await
        .map_err(KubernetesError::Payload)?;
    timeline::mark(node, Phase::PayloadMounted, "the payload is mounted");
    let cfg = node.running_config().ok_or(KubernetesError::NoConfig)?;
    if !done.clock_waited {
        let timeout = cfg.machine.time.boot_timeout.get();
        if !host::time::wait_synced(node, timeout).await {
            runtime::console!(
                "kubernetes: the clock is not synchronized after {}s; going on (certificates may look not yet valid)",
                timeout.as_secs()
            );
        }
        done.clock_waited = true;
    }
    let cfg = node.running_config().ok_or(KubernetesError::NoConfig)?;
    let control_plane = cfg.machine.machine_type == MachineType::Controlplane;

    // What happens outside these steps (etcd healthy, the Node, its Pods,
    // DNS) is marked on the timeline as it happens.
    if !done.timeline {
        tokio::spawn(timeline::follow(node.clone(), control_plane));
        done.timeline = true;
    }

    // 2. PKI.
    let facts = NodeFacts::of(node);
    crate::k8s_pki::issue(&cfg, &facts).await?;
    timeline::mark(node, Phase::PkiIssued, "the Kubernetes PKI is on disk");
    if !done.pki_keeper {
        let n = node.clone();
        let writer = match node.store.writer("pki", &[kind::SECRETS]) {
            Ok(w) => Some(w),
            Err(e) => {
                runtime::console!("kubernetes: the secrets cannot be published: {e}");
                None
            }
        };
        runtime::keep::keep("kubernetes: the PKI keeper", move || {
            crate::k8s_pki::keep_issued(n.clone(), writer.clone())
        });
        done.pki_keeper = true;
    }

    // 3. The image cache (it writes containerd's registry hosts first),
    // containerd and the images.
    if !done.image_cache {
        tokio::spawn(crate::registry::run(node.clone()));
        done.image_cache = true;
    }
    if !done.containerd {
        let started = specs::StartedWith::default();
        node.supervisor
            .start(crate::containerd::service(&node.store, started.clone()))
            .map_err(|e| KubernetesError::Service(crate::containerd::SERVICE, e))?;
        tokio::spawn(specs::restart_on_change::<specs::ContainerdSpec>(
            node.store.clone(),
            Arc::downgrade(&node.supervisor),
            crate::containerd::SERVICE,
            specs::ContainerdSpec::ID,
            started,
        ));
        done.containerd = true;
    }
    if !done.images {
        if let Some(containerd) = node.supervisor.handle(crate::containerd::SERVICE) {
            let mut rx = containerd.status.subscribe();
            let up = tokio::time::timeout(CONTAINERD_UP, async {
                rx.wait_for(Status::is_up).await.map(drop)
            })
            .await;
            if matches!(up, Ok(Ok(()))) {
                timeline::mark(
                    node,
                    Phase::ContainerdUp,
                    "containerd answers on its socket",
                );
            } else {
                runtime::console!(
                    "kubernetes: containerd is not healthy after {}s; importing anyway",
                    CONTAINERD_UP.as_secs()
                );
            }
        }
        // What the kubelet needs first goes in before it starts; the rest
        // (kube-proxy's, the add-ons', the image cache) goes in beside it,
        // long before the API server can schedule a Pod that needs it.
        let imported = import_images(ImageSet::First { control_plane }).await?;
        timeline::mark(node, Phase::ImagesImported, &imported);
        done.images = true;
        tokio::spawn(import_the_rest(node.clone(), control_plane));
    }

    // 4. etcd, when this control plane was bootstrapped before.
    match crate::etcd::start_if_bootstrapped(node, &cfg, &facts).await {
        // A Bootstrap RPC started it meanwhile.
        Some(Err(crate::etcd::EtcdError::AlreadyRunning)) | Some(Ok(_)) | None => {}
        Some(Err(e)) => return Err(e.into()),
    }

    // 5. Static pods (control planes) and the kubelet.
    if !done.static_pods {
        let pods = crate::staticpods::StaticPods::new(&node.store)
            .map_err(|e| KubernetesError::StaticPods(e.to_string()))?;
        let (n, pods) = (node.clone(), Arc::new(pods));
        runtime::keep::keep("kubernetes: the static Pods keeper", move || {
            keep_static_pods(n.clone(), pods.clone())
        });
        done.static_pods = true;
    }
    if !done.kubelet {
        let started = specs::StartedWith::default();
        node.supervisor
            .start(crate::kubelet::service(&node.store, started.clone()))
            .map_err(|e| KubernetesError::Service(crate::kubelet::SERVICE, e))?;
        tokio::spawn(specs::restart_on_change::<specs::KubeletSpec>(
            node.store.clone(),
            Arc::downgrade(&node.supervisor),
            crate::kubelet::SERVICE,
            specs::KubeletSpec::ID,
            started,
        ));
        let n = node.clone();
        tokio::spawn(async move {
            let detail = "the kubelet answers its health check";
            timeline::mark_when_up(&n, crate::kubelet::SERVICE, Phase::KubeletStarted, detail)
                .await;
        });
        done.kubelet = true;
    }
    node.events
        .record(EventType::Kubernetes, "services started");

    // 6. Bootstrap objects, the role label, the config's node labels and
    // the CNI config.
    if !done.node_labels {
        let n = node.clone();
        runtime::keep::keep("kubernetes: the Node labels and taints keeper", move || {
            crate::manifests::node_labels::follow(n.clone())
        });
        done.node_labels = true;
    }
    if !done.podnet {
        let n = node.clone();
        runtime::keep::keep("kubernetes: the Pod network keeper", move || {
            crate::podnet::run(n.clone())
        });
        done.podnet = true;
    }
    if control_plane {
        if cfg.cluster.addons.prometheus.enabled {
            if let Err(e) = prometheus_data_dir(Path::new(addons::prometheus::DATA_DIR)) {
                runtime::console!(
                    "kubernetes: cannot make {}: {e}",
                    addons::prometheus::DATA_DIR
                );
            }
        }
        let client =
            crate::manifests::apply_bootstrap(&cfg, Path::new(k8s::ADMIN_KUBECONFIG), || {
                timeline::mark(node, Phase::ApiReady, "the API server answers /version")
            })
            .await;
        timeline::mark(
            node,
            Phase::BootstrapApplied,
            "node bootstrap RBAC, kube-proxy and cluster DNS applied",
        );
        if !done.csr_approver {
            tokio::spawn(crate::manifests::first_pod_cidr::claim(
                client.clone(),
                cfg.clone(),
                node.hostname(),
            ));
            let c = client.clone();
            runtime::keep::keep("kubernetes: the CSR approver", move || {
                crate::manifests::csr_approver::run(c.clone())
            });
            tokio::spawn(crate::manifests::apply_addons_after_pod_network(
                client.clone(),
                cfg.clone(),
                node.hostname(),
            ));
            done.csr_approver = true;
        }
        crate::manifests::label_control_plane(&client, &node.hostname()).await;
    }
    Ok(())
}

/// Prometheus's storage on a control plane's disk: its image has no
/// `chown` for an init container, so machined makes the directory, owned
/// by the user Prometheus runs as, private to it.
fn prometheus_data_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let id = addons::prometheus::UID;
    std::os::unix::fs::chown(dir, Some(id), Some(id))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Which of the node's image archives an import takes.
#[derive(Debug, Clone, Copy)]
enum ImageSet {
    /// What the kubelet needs before it starts: the sandbox's image and,
    /// on a control plane, the static Pods'.
    First { control_plane: bool },
    /// Everything else: kube-proxy's, the add-ons', the image cache's.
    Rest { control_plane: bool },
}

impl ImageSet {
    fn takes(self, archive: &Path, origin: crate::containerd::import::Origin) -> bool {
        let (ImageSet::First { control_plane } | ImageSet::Rest { control_plane }) = self;
        let first = origin == crate::containerd::import::Origin::System
            && archive
                .file_stem()
                .and_then(|s| s.to_str())
                .is_some_and(|name| {
                    name == "pause" || (control_plane && timeline::STATIC_PODS.contains(&name))
                });
        first == matches!(self, ImageSet::First { .. })
    }
}

/// Imports `set` of the payload's OCI archives and the boot medium's image
/// cache (when it has one) into containerd's `k8s.io` namespace. A failure
/// to reach containerd is an error (the step is retried); an archive that
/// cannot be imported is reported and skipped.
async fn import_images(set: ImageSet) -> Result<String, crate::containerd::ContainerdError> {
    use crate::containerd::import::{archives_in, import_archives, Origin, Outcome};
    let socket = Path::new(k8s::CONTAINERD_SOCKET);
    let channel = crate::containerd::connect(socket).await?;
    let mut summary = Vec::new();
    let sources = [
        (crate::containerd::PAYLOAD_IMAGES, Origin::System),
        (::config::constants::payload::IMAGE_CACHE_DIR, Origin::Cache),
    ];
    for (dir, origin) in sources {
        let dir = Path::new(dir);
        // The image cache is mounted only when the medium carries one.
        if origin == Origin::Cache && !dir.join("refs.txt").is_file() {
            continue;
        }
        let archives: Vec<_> = match archives_in(dir) {
            Ok(all) => all.into_iter().filter(|a| set.takes(a, origin)).collect(),
            Err(e) => {
                runtime::console!("kubernetes: image import: {e}");
                continue;
            }
        };
        if archives.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        let (mut imported, mut present) = (0, 0);
        for result in import_archives(&channel, &archives, k8s::CONTAINERD_NAMESPACE, origin).await
        {
            match result {
                Ok(images) => {
                    for i in images {
                        match i.outcome {
                            Outcome::Imported => imported += 1,
                            Outcome::Present => present += 1,
                        }
                    }
                }
                Err(e) => runtime::console!("kubernetes: image import: {e}"),
            }
        }
        let took = started.elapsed().as_secs_f64();
        let which = match set {
            ImageSet::First { .. } => "needed first",
            ImageSet::Rest { .. } => "other",
        };
        runtime::console!(
            "kubernetes: {} images {which} imported into containerd from {} ({imported} new, {present} present) in {took:.1}s",
            origin.label(),
            dir.display(),
        );
        summary.push(format!(
            "{} {} images ({which}) in {took:.1} s",
            imported + present,
            origin.label()
        ));
    }
    Ok(summary.join(", "))
}

/// Imports the images the kubelet did not need first, trying again while
/// containerd cannot be reached (it may be restarting).
async fn import_the_rest(node: Runtime, control_plane: bool) {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    loop {
        match import_images(ImageSet::Rest { control_plane }).await {
            Ok(summary) => {
                node.events
                    .record(EventType::Kubernetes, format!("images imported: {summary}"));
                return;
            }
            Err(e) => {
                runtime::console!("kubernetes: the other images: {e}; trying again");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// Renders the static pods now and again whenever the config, the
/// addresses or the secrets on disk change (the PKI keeper publishes
/// those as the `secrets` resource): no polling.
async fn keep_static_pods(node: Runtime, pods: Arc<crate::staticpods::StaticPods>) {
    let filter = Filter {
        kinds: vec![kind::MACHINE_CONFIG, kind::ADDRESSES, kind::SECRETS],
        id: None,
    };
    let mut watch = Watch::new(&node.store, filter, false);
    // Whether the API server answered this boot (the controller-manager and
    // the scheduler wait for it, StaticPods::sync); once is enough.
    let (answered, mut api_ready) = tokio::sync::watch::channel(false);
    let control_plane = node
        .running_config()
        .is_some_and(|c| c.machine.machine_type == config::spec::MachineType::Controlplane);
    if control_plane {
        tokio::spawn(async move {
            crate::manifests::local_api_answering(Path::new(k8s::ADMIN_KUBECONFIG)).await;
            let _ = answered.send(true);
        });
    }
    loop {
        if let Some(cfg) = node.running_config() {
            let input = crate::staticpods::input_for(
                node_ip(&node.store, Some(&cfg)),
                Path::new(k8s::SECRETS_DIR),
                *api_ready.borrow(),
            );
            if let Err(e) = pods.sync(&cfg, &input) {
                runtime::console!("kubernetes: static pods: {e}");
            }
        }
        tokio::select! {
            _ = watch.next() => {}
            // Once: a closed channel (the waiter is done) is not a change.
            Ok(()) = api_ready.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Never wakes: only the backoff delay ends a wait.
    struct Never;
    impl Wake for Never {
        fn wait(&mut self) -> futures::future::BoxFuture<'_, ()> {
            Box::pin(std::future::pending())
        }
    }

    /// Wakes when told to.
    struct Told(Arc<tokio::sync::Notify>);
    impl Wake for Told {
        fn wait(&mut self) -> futures::future::BoxFuture<'_, ()> {
            let n = self.0.clone();
            Box::pin(async move { n.notified().await })
        }
    }

    /// Fails until `fixed` is set; counts its attempts.
    fn step_until(
        fixed: Arc<std::sync::atomic::AtomicBool>,
        tries: Arc<AtomicU32>,
    ) -> impl FnMut(u32) -> futures::future::BoxFuture<'static, Result<(), String>> {
        move |_| {
            let (fixed, tries) = (fixed.clone(), tries.clone());
            Box::pin(async move {
                tries.fetch_add(1, Ordering::SeqCst);
                if fixed.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("no payload".to_string())
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_step_is_retried_with_backoff_until_its_cause_goes_away() {
        let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tries = Arc::new(AtomicU32::new(0));
        let f = fixed.clone();
        // The cause goes away after 100 s of failures: 2+4+8+16+32 = 62 s,
        // then 60 s waits, so attempt 7 (at 122 s) is the first to succeed.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(100)).await;
            f.store(true, Ordering::SeqCst);
        });
        let started = tokio::time::Instant::now();
        let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
        let attempts = retry(&mut backoff, &mut Never, step_until(fixed, tries.clone())).await;
        assert_eq!(attempts, 7);
        assert_eq!(tries.load(Ordering::SeqCst), 7);
        assert_eq!(started.elapsed().as_secs(), 122);
    }

    #[tokio::test(start_paused = true)]
    async fn the_wake_ends_a_long_backoff_at_once() {
        let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tries = Arc::new(AtomicU32::new(0));
        let notify = Arc::new(tokio::sync::Notify::new());
        let (f, n) = (fixed.clone(), notify.clone());
        // Well into the 60 s waits, the payload appears.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(200)).await;
            f.store(true, Ordering::SeqCst);
            n.notify_waiters();
        });
        let started = tokio::time::Instant::now();
        let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
        retry(&mut backoff, &mut Told(notify), step_until(fixed, tries)).await;
        assert_eq!(
            started.elapsed().as_secs(),
            200,
            "the next attempt must run when the wake fires, not at the end of its 60 s wait"
        );
    }

    #[test]
    fn the_kubelet_needs_the_sandbox_and_the_static_pods_images_first() {
        use crate::containerd::import::Origin;
        let payload = [
            "pause",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kube-proxy",
            "cairn-dns",
        ]
        .map(|n| std::path::PathBuf::from(format!("/system/payload/images/{n}.tar")));
        let taken = |set: ImageSet, origin: Origin| -> Vec<String> {
            payload
                .iter()
                .filter(|a| set.takes(a, origin))
                .map(|a| a.file_stem().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        let cp = true;
        assert_eq!(
            taken(ImageSet::First { control_plane: cp }, Origin::System),
            [
                "pause",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler"
            ]
        );
        assert_eq!(
            taken(ImageSet::Rest { control_plane: cp }, Origin::System),
            ["kube-proxy", "cairn-dns"]
        );
        // A worker runs no static Pod: only the sandbox comes first.
        assert_eq!(
            taken(
                ImageSet::First {
                    control_plane: false
                },
                Origin::System
            ),
            ["pause"]
        );
        assert_eq!(
            taken(
                ImageSet::Rest {
                    control_plane: false
                },
                Origin::System
            )
            .len(),
            5
        );
        // The image cache is never on the critical path, whatever it holds.
        assert!(taken(ImageSet::First { control_plane: cp }, Origin::Cache).is_empty());
        assert_eq!(
            taken(ImageSet::Rest { control_plane: cp }, Origin::Cache).len(),
            6
        );
    }
}
