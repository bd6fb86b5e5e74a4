//! etcd on control-plane nodes: a supervised host process (Debian's etcd
//! 3.4 from the payload) with TLS everywhere (clients on 2379 and peers on
//! 2380 must present certificates from the etcd CA), data in /var/lib/etcd.
//!
//! etcd starts only on a bootstrapped node:
//! - [`bootstrap`] (the Bootstrap RPC) starts it as a new one-member
//!   cluster, exactly once: when the data directory has a member, or etcd
//!   already runs, it refuses with [`EtcdError::AlreadyBootstrapped`].
//! - At boot, the Kubernetes sequence (kubernetes/src/bringup.rs) starts it by
//!   itself when /var/lib/etcd/member exists: [`start_if_bootstrapped`].
//!
//! Public surface:
//! - [`service_from_store`]: the supervisor service (id `etcd`), restarted
//!   with backoff, healthy when etcd answers a status request with a
//!   leader; it runs with the [`EtcdSpec`] the store has at each start, and
//!   [`start`] restarts it when that spec changes (`cluster.etcd.extraArgs`
//!   applied live). [`EtcdSettings`] and [`service_with`] for fixed
//!   settings (tests).
//! - [`start`]: waits (bounded) for time sync with `host::time::wait_synced`
//!   (certificates and raft leases need a sane clock), issues the PKI,
//!   registers the service (`NodeFacts::of(&node)` gives the facts).
//! - [`client`]: health, member list and snapshots over mutual TLS.

pub mod client;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use config::constants::k8s;
use config::spec::MachineType;
use config::MachineConfig;

use crate::k8s_pki::{self, K8sPkiError, NodeFacts};
use runtime::supervisor::prepared::{Prepare, PreparedRunner};
use runtime::supervisor::process::ProcessRunner;
use runtime::supervisor::restart::{RestartPolicy, RestartRunner};
use runtime::supervisor::{Condition, HealthCheck, Service, ServiceHandle, State, SupervisorError};
use runtime::Runtime;

/// etcd's plain-HTTP metrics port (as kubeadm's).
pub const METRICS_PORT: u16 = 2381;
/// The supervisor's id of the etcd service.
pub const SERVICE_ID: &str = "etcd";
/// How long the service waits for the etcd binary (the payload mount).
const PAYLOAD_WAIT: Duration = Duration::from_secs(600);
/// How long [`start`] waits for the clock to be synchronized by default.
pub const TIME_SYNC_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error(
        "the cluster is already bootstrapped: this node has etcd data in {0} (bootstrap runs once per cluster; \
         `cairnctl etcd members` lists the members)"
    )]
    AlreadyBootstrapped(String),
    #[error("the cluster is already bootstrapped: etcd is already running on this node (`cairnctl service etcd` shows it)")]
    AlreadyRunning,
    #[error("the node has no machine config yet; `cairnctl apply-config` first, then bootstrap")]
    NoConfig,
    #[error("this node is a worker (machine.type); bootstrap a control-plane node")]
    NotControlPlane,
    #[error(
        "etcd is not running on this node (not bootstrapped yet? `cairnctl bootstrap` starts it)"
    )]
    NotRunning,
    #[error(transparent)]
    Pki(#[from] K8sPkiError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("etcd: {0}")]
    Client(String),
    #[error("cannot start etcd: {0}")]
    Supervisor(#[from] SupervisorError),
}

/// Whether this node has joined an etcd cluster (bootstrap ran, or etcd
/// started once): the data directory has a member.
pub fn bootstrapped(data_dir: &Path) -> bool {
    data_dir.join("member").is_dir()
}

/// Everything etcd's command line is made of.
#[derive(Debug, Clone)]
pub struct EtcdSettings {
    pub binary: PathBuf,
    /// `LD_LIBRARY_PATH` for the binary (the payload's lib/), if any.
    pub lib_dir: Option<PathBuf>,
    pub data_dir: PathBuf,
    /// Directory with ca.crt, server/peer/client certificates and keys.
    pub secrets_dir: PathBuf,
    /// Member name (the hostname).
    pub name: String,
    /// The address peers and clients are told to use.
    pub advertise: IpAddr,
    pub client_port: u16,
    pub peer_port: u16,
    /// `--initial-cluster-token` (the cluster name).
    pub cluster_token: String,
    /// `cluster.etcd.extraArgs`: override Cairn's flags.
    pub extra_args: BTreeMap<String, String>,
    pub cgroup: Option<PathBuf>,
    pub user: Option<(u32, u32)>,
}

/// Where etcd's pieces are: the node's paths, or temporary ones in tests.
#[derive(Debug, Clone)]
pub struct EtcdPaths {
    pub binary: PathBuf,
    pub lib_dir: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub secrets: k8s_pki::SecretDirs,
    pub client_port: u16,
    pub peer_port: u16,
    /// How long [`start_in`] waits for the clock to be synchronized.
    pub time_sync_timeout: Duration,
    /// etcd's cgroup (the node's `podruntime/etcd`); `None` in tests.
    pub cgroup: Option<PathBuf>,
    /// The user and group etcd runs as (no capabilities, `no_new_privs`),
    /// owning its data directory; `None` runs it as machined (tests).
    pub user: Option<(u32, u32)>,
}

impl EtcdPaths {
    pub fn node() -> EtcdPaths {
        EtcdPaths {
            // Debian's etcd from the payload, with the payload's libraries.
            binary: Path::new(config::constants::payload::BIN_DIR).join("etcd"),
            lib_dir: Some(config::constants::payload::LIB_DIR.into()),
            data_dir: k8s::etcd::DATA_DIR.into(),
            secrets: k8s_pki::SecretDirs::node(),
            client_port: k8s::etcd::CLIENT_PORT,
            peer_port: k8s::etcd::PEER_PORT,
            time_sync_timeout: TIME_SYNC_TIMEOUT,
            cgroup: Some(system::cgroups::Group::PodRuntime.node_service(SERVICE_ID)),
            user: Some((k8s::etcd::UID, k8s::etcd::GID)),
        }
    }
}

/// What etcd runs with that the config and the node decide (id `etcd`,
/// control planes only): its member name, the address it advertises, the
/// cluster token and `cluster.etcd.extraArgs`. Derived by the spec
/// controller (`crate::specs`); etcd's runner reads it at every start, and
/// a changed spec restarts etcd. Sensitive: extra args may carry secrets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdSpec {
    pub name: String,
    pub advertise: IpAddr,
    pub cluster_token: String,
    pub extra_args: BTreeMap<String, String>,
}

impl EtcdSpec {
    pub const ID: &'static str = "etcd";

    pub fn of(cfg: &MachineConfig, facts: &NodeFacts) -> EtcdSpec {
        let advertise = facts
            .addresses
            .iter()
            .find(|a| a.is_ipv4())
            .or(facts.addresses.first())
            .copied()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        EtcdSpec {
            name: if facts.hostname.is_empty() {
                "cairn".into()
            } else {
                facts.hostname.clone()
            },
            advertise,
            cluster_token: cfg.cluster.cluster_name.to_string(),
            extra_args: cfg
                .cluster
                .etcd
                .extra_args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

impl runtime::resources::Spec for EtcdSpec {
    const KIND: &'static runtime::resources::Kind = runtime::resources::kind::ETCD_SPEC;
    fn to_yaml(&self, secrets: runtime::resources::Secrets) -> String {
        match secrets {
            runtime::resources::Secrets::Show => runtime::resources::yaml_of(self),
            runtime::resources::Secrets::Redact => runtime::resources::yaml_of(&EtcdSpec {
                extra_args: self
                    .extra_args
                    .keys()
                    .map(|k| (k.clone(), runtime::resources::REDACTED.to_string()))
                    .collect(),
                ..self.clone()
            }),
        }
    }
}

impl EtcdSettings {
    /// The settings of this node's etcd.
    pub fn for_node(cfg: &MachineConfig, facts: &NodeFacts) -> EtcdSettings {
        Self::new(cfg, facts, &EtcdPaths::node())
    }

    pub fn new(cfg: &MachineConfig, facts: &NodeFacts, layout: &EtcdPaths) -> EtcdSettings {
        Self::from_spec(&EtcdSpec::of(cfg, facts), layout)
    }

    /// The settings of `spec` (what the config and the node decide) at
    /// `layout`'s paths.
    pub fn from_spec(spec: &EtcdSpec, layout: &EtcdPaths) -> EtcdSettings {
        EtcdSettings {
            binary: layout.binary.clone(),
            lib_dir: layout.lib_dir.clone(),
            data_dir: layout.data_dir.clone(),
            secrets_dir: layout.secrets.etcd.clone(),
            name: spec.name.clone(),
            advertise: spec.advertise,
            client_port: layout.client_port,
            peer_port: layout.peer_port,
            cluster_token: spec.cluster_token.clone(),
            extra_args: spec.extra_args.clone(),
            cgroup: layout.cgroup.clone(),
            user: layout.user,
        }
    }

    fn url(&self, ip: IpAddr, port: u16) -> String {
        format!("https://{}", SocketAddr::new(ip, port))
    }

    fn file(&self, constant: &str) -> String {
        self.secrets_dir
            .join(Path::new(constant).file_name().expect("a file path"))
            .display()
            .to_string()
    }

    /// The local client endpoint machined talks to.
    pub fn local_endpoint(&self) -> String {
        self.url(IpAddr::V4(Ipv4Addr::LOCALHOST), self.client_port)
    }

    /// etcd's flags. A new one-member cluster when the data directory is
    /// empty; etcd ignores the `--initial-*` flags once it has data.
    pub fn args(&self) -> Vec<String> {
        let any = if self.advertise.is_ipv6() {
            "::".parse().expect("valid")
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        let peer = self.url(self.advertise, self.peer_port);
        let mut flags: BTreeMap<String, String> = [
            ("name", self.name.clone()),
            ("data-dir", self.data_dir.display().to_string()),
            ("listen-client-urls", self.url(any, self.client_port)),
            (
                "advertise-client-urls",
                self.url(self.advertise, self.client_port),
            ),
            ("listen-peer-urls", self.url(any, self.peer_port)),
            ("initial-advertise-peer-urls", peer.clone()),
            ("initial-cluster", format!("{}={peer}", self.name)),
            ("initial-cluster-state", "new".into()),
            ("initial-cluster-token", self.cluster_token.clone()),
            ("client-cert-auth", "true".into()),
            ("trusted-ca-file", self.file(k8s::etcd::CA_CERT)),
            ("cert-file", self.file(k8s::etcd::SERVER_CERT)),
            ("key-file", self.file(k8s::etcd::SERVER_KEY)),
            ("peer-client-cert-auth", "true".into()),
            ("peer-trusted-ca-file", self.file(k8s::etcd::CA_CERT)),
            ("peer-cert-file", self.file(k8s::etcd::PEER_CERT)),
            ("peer-key-file", self.file(k8s::etcd::PEER_KEY)),
            // Keep the revision history and raft log small: machined's
            // memory budget is tight and nobody needs old revisions.
            // Metrics (no secrets in them) in plain HTTP on the node's
            // address, for the Prometheus add-on; the client port needs
            // etcd's client certificate, which no add-on holds.
            (
                "listen-metrics-urls",
                format!("http://{}", SocketAddr::new(self.advertise, METRICS_PORT)),
            ),
            ("auto-compaction-mode", "periodic".into()),
            ("auto-compaction-retention", "5m".into()),
            ("snapshot-count", "10000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in &self.extra_args {
            flags.insert(k.clone(), v.clone());
        }
        flags
            .into_iter()
            .map(|(k, v)| format!("--{k}={v}"))
            .collect()
    }
}

/// The etcd service with explicit settings: restarted with backoff, data
/// directory created 0700 first, healthy when a status request over
/// mutual TLS finds a leader.
pub fn service_with(settings: EtcdSettings) -> Service {
    let fixed = settings.clone();
    service_prepared(&settings, Arc::new(move || Ok(process(&fixed))))
}

/// etcd at `layout`'s paths with the [`EtcdSpec`] the store has at each
/// start (derived from the running config and the node's facts while the
/// spec controller has written none, as in tests); `started` records which
/// one that was, for [`crate::specs::restart_on_change`].
pub fn service_from_store(
    store: &Arc<runtime::resources::Store>,
    layout: &EtcdPaths,
    started: crate::specs::StartedWith<EtcdSpec>,
) -> Result<Service, String> {
    let current = {
        let store = store.clone();
        move || -> Result<EtcdSpec, String> {
            if let Some(spec) = store.spec::<EtcdSpec>(EtcdSpec::ID) {
                return Ok(spec);
            }
            let cfg = runtime::resources::machineconfig::MachineConfigSpec::running(&store)
                .ok_or("no etcd spec yet (the node has no running config)")?;
            Ok(EtcdSpec::of(&cfg, &NodeFacts::of_store(&store)))
        }
    };
    let first = EtcdSettings::from_spec(&current()?, layout);
    let layout = layout.clone();
    Ok(service_prepared(
        &first,
        Arc::new(move || {
            let spec = current()?;
            started.set(spec.clone());
            Ok(process(&EtcdSettings::from_spec(&spec, &layout)))
        }),
    ))
}

/// Gives `dir` and everything under it to `uid`:`gid` (symlinks themselves,
/// never what they point at).
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(dir)?.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// etcd's process with `settings`.
fn process(settings: &EtcdSettings) -> ProcessRunner {
    let mut runner = ProcessRunner::new(&settings.binary).args(settings.args());
    if let Some(lib) = &settings.lib_dir {
        runner
            .env
            .push(("LD_LIBRARY_PATH".into(), lib.display().to_string()));
    }
    // etcd writes its WAL on stop; give it time before SIGKILL.
    runner.stop_timeout = Duration::from_secs(15);
    runner.cgroup = settings.cgroup.clone();
    // Its own user: the kernel clears every capability at the switch, and
    // no_new_privs keeps it so.
    if let Some((uid, gid)) = settings.user {
        runner.uid = Some(uid);
        runner.gid = Some(gid);
        runner.no_new_privs = true;
    }
    runner
}

/// The service around `prepare`'s process; `settings` gives what does not
/// change from one start to the next (paths, ports).
fn service_prepared(settings: &EtcdSettings, prepare: Prepare) -> Service {
    let (data_dir, user) = (settings.data_dir.clone(), settings.user);
    let pre: runtime::supervisor::Hook = Arc::new(move || {
        let data_dir = data_dir.clone();
        Box::pin(async move {
            use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&data_dir)?;
            // etcd refuses a data directory readable by others.
            std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))?;
            // Data an older Cairn's etcd wrote as root, or a join restored:
            // its user's, whole.
            if let Some((uid, gid)) = user {
                let dir = data_dir.clone();
                tokio::task::spawn_blocking(move || chown_tree(&dir, uid, gid))
                    .await
                    .map_err(std::io::Error::other)??;
            }
            Ok(())
        })
    });
    let endpoint = settings.local_endpoint();
    let files = client::ClientFiles::in_dir(&settings.secrets_dir);
    let health = HealthCheck::new(Duration::from_secs(10), Duration::from_secs(5), move || {
        let (endpoint, files) = (endpoint.clone(), files.clone());
        async move { client::health(&endpoint, &files).await }
    })
    // Under emulation etcd takes a few seconds to elect itself.
    .startup_grace(Duration::from_secs(90));
    // A Bootstrap can come before the payload is mounted: wait for the binary.
    let binary = Condition::file_exists(&settings.binary, PAYLOAD_WAIT);
    Service::new(
        SERVICE_ID,
        RestartRunner::new(PreparedRunner::new(prepare), RestartPolicy::Always),
    )
    .condition(binary)
    .pre(pre)
    .health(health)
}

/// Starts etcd on this node: issues the PKI and registers the service.
/// Refuses when etcd is registered already.
pub async fn start(
    node: &Runtime,
    cfg: &MachineConfig,
    facts: &NodeFacts,
) -> Result<Arc<ServiceHandle>, EtcdError> {
    start_in(node, cfg, facts, &EtcdPaths::node()).await
}

/// [`start`] with explicit paths.
///
/// Certificates and raft leases need a sane clock. With the clock
/// synchronized (or no wait configured) the PKI is issued before this
/// returns, so its errors reach the caller. Otherwise the service is
/// registered at once and its first start waits (bounded) for the clock
/// and then issues the PKI: the caller does not hang for minutes with no
/// time server in reach, and the registered service (`cairnctl services`:
/// "preparing") is what refuses a second Bootstrap meanwhile.
pub async fn start_in(
    node: &Runtime,
    cfg: &MachineConfig,
    facts: &NodeFacts,
    layout: &EtcdPaths,
) -> Result<Arc<ServiceHandle>, EtcdError> {
    if node.supervisor.handle(SERVICE_ID).is_some() {
        return Err(EtcdError::AlreadyRunning);
    }
    let synced =
        layout.time_sync_timeout.is_zero() || host::time::wait_synced(node, Duration::ZERO).await;
    let issue = {
        let (cfg, facts, secrets) = (cfg.clone(), facts.clone(), layout.secrets.clone());
        move || {
            let (c, f, s) = (cfg.clone(), facts.clone(), secrets.clone());
            async move {
                tokio::task::spawn_blocking(move || k8s_pki::issue_into(&c, &f, &s))
                    .await
                    .map_err(|e| EtcdError::Client(format!("the PKI task failed: {e}")))??;
                Ok::<(), EtcdError>(())
            }
        }
    };
    if synced {
        issue().await?;
    }
    let started = crate::specs::StartedWith::default();
    let mut service = service_from_store(&node.store, layout, started.clone())
        .map_err(|_| EtcdError::NoConfig)?;
    if !synced {
        service.pre = Some(clock_then_pki(
            node.clone(),
            layout.time_sync_timeout,
            Arc::new(move || Box::pin(issue())),
            service.pre.take(),
        ));
    }
    let handle = node.supervisor.start(service).map_err(|e| match e {
        SupervisorError::AlreadyRegistered(_) => EtcdError::AlreadyRunning,
        other => EtcdError::Supervisor(other),
    })?;
    tokio::spawn(crate::specs::restart_on_change::<EtcdSpec>(
        node.store.clone(),
        Arc::downgrade(&node.supervisor),
        SERVICE_ID,
        EtcdSpec::ID,
        started,
    ));
    Ok(handle)
}

type IssueFn =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<(), EtcdError>> + Send + Sync>;

/// etcd's pre hook when the PKI waits for the clock: until the PKI is
/// issued once, each start waits (bounded) for the clock and issues it;
/// then `then` (the data directory's hook) runs as always. A failed issue
/// fails this start; a second Bootstrap starts it again.
fn clock_then_pki(
    node: Runtime,
    timeout: Duration,
    issue: IssueFn,
    then: Option<runtime::supervisor::Hook>,
) -> runtime::supervisor::Hook {
    let issued = Arc::new(std::sync::atomic::AtomicBool::new(false));
    Arc::new(move || {
        let (node, issue, then, issued) =
            (node.clone(), issue.clone(), then.clone(), issued.clone());
        Box::pin(async move {
            if !issued.load(Ordering::SeqCst) {
                runtime::console!(
                    "etcd: starts once the clock is synchronized (at most {}s)",
                    timeout.as_secs()
                );
                wait_for_clock(&node, timeout).await;
                issue().await.map_err(|e| {
                    runtime::console!("etcd: {e}; call Bootstrap again");
                    std::io::Error::other(e.to_string())
                })?;
                issued.store(true, Ordering::SeqCst);
            }
            match then {
                Some(hook) => hook().await,
                None => Ok(()),
            }
        })
    })
}

/// Waits (bounded) for the clock to be synchronized. On timeout it warns
/// and goes on.
async fn wait_for_clock(node: &Runtime, timeout: Duration) {
    if !host::time::wait_synced(node, timeout).await {
        runtime::console!(
            "etcd: the clock is not synchronized after {}s; starting anyway (certificates and leases may misbehave)",
            timeout.as_secs()
        );
    }
}

/// At boot: starts etcd when this node was bootstrapped before (its data
/// directory has a member); `None` when it was not (etcd then waits for
/// the Bootstrap RPC).
pub async fn start_if_bootstrapped(
    node: &Runtime,
    cfg: &MachineConfig,
    facts: &NodeFacts,
) -> Option<Result<Arc<ServiceHandle>, EtcdError>> {
    if cfg.machine.machine_type != MachineType::Controlplane
        || !bootstrapped(Path::new(k8s::etcd::DATA_DIR))
        // A Bootstrap RPC got there first.
        || node.supervisor.handle(SERVICE_ID).is_some()
    {
        return None;
    }
    Some(start(node, cfg, facts).await)
}

/// The Bootstrap RPC: starts etcd as a new one-member cluster, once.
/// machined takes it under its lifecycle, so two never run at once; were
/// they to, the supervisor registers etcd once and the other is refused.
pub async fn bootstrap(node: &Runtime) -> Result<(), EtcdError> {
    bootstrap_in(node, &EtcdPaths::node()).await
}

/// [`bootstrap`] with explicit paths.
pub async fn bootstrap_in(node: &Runtime, layout: &EtcdPaths) -> Result<(), EtcdError> {
    let cfg = node.running_config().ok_or(EtcdError::NoConfig)?;
    if cfg.machine.machine_type != MachineType::Controlplane {
        return Err(EtcdError::NotControlPlane);
    }
    if bootstrapped(&layout.data_dir) {
        return Err(EtcdError::AlreadyBootstrapped(
            layout.data_dir.display().to_string(),
        ));
    }
    if let Some(etcd) = node.supervisor.handle(SERVICE_ID) {
        // An earlier Bootstrap whose start failed (its PKI, after waiting
        // for the clock): this one starts it again.
        if etcd.snapshot().state == State::Failed {
            node.supervisor
                .start_again(SERVICE_ID)
                .map_err(EtcdError::Supervisor)?;
            runtime::console!("etcd: bootstrap requested again over the API");
            return Ok(());
        }
        return Err(EtcdError::AlreadyRunning);
    }
    let facts = NodeFacts::of(node);
    start_in(node, &cfg, &facts, layout).await?;
    runtime::console!(
        "etcd: bootstrapping a new cluster (member {}), requested over the API",
        facts.hostname
    );
    Ok(())
}

/// The members of the cluster, asked from this node's etcd.
pub async fn members(node: &Runtime) -> Result<Vec<api::machine::EtcdMember>, EtcdError> {
    let (endpoint, files) = local_client(node)?;
    client::members(&endpoint, &files).await
}

/// A snapshot of this node's etcd, streamed.
pub async fn snapshot(node: &Runtime) -> Result<client::Chunks, EtcdError> {
    let (endpoint, files) = local_client(node)?;
    client::snapshot(&endpoint, &files).await
}

/// The local endpoint and client files of this node's etcd, once it runs.
pub fn local_client(node: &Runtime) -> Result<(String, client::ClientFiles), EtcdError> {
    if node.supervisor.handle(SERVICE_ID).is_none() {
        return Err(EtcdError::NotRunning);
    }
    let endpoint = format!("https://127.0.0.1:{}", k8s::etcd::CLIENT_PORT);
    Ok((
        endpoint,
        client::ClientFiles::in_dir(Path::new(k8s::etcd::SECRETS_DIR)),
    ))
}
