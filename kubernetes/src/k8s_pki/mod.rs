//! The Kubernetes and etcd PKI of a node, issued by machined from the CAs
//! and keys in the machine config and written (0600 files, 0700
//! directories, atomically) to the secrets tmpfs:
//! `/system/secrets/kubernetes` and `/system/secrets/etcd` (the paths are
//! [`config::constants::k8s`]).
//!
//! Public surface for the Kubernetes sequence (kubernetes/src/bringup.rs):
//! - [`issue`]`(&cfg, &facts)`: issue or refresh everything this node needs.
//!   Call it at start and again whenever the config, the hostname or the
//!   node's addresses change; it is idempotent: a certificate that still
//!   answers its request (same CA key, names, usages, key; more than
//!   [`reuse::RENEW_BEFORE`] of validity left) is kept, and a file whose
//!   content would not change is not rewritten. [`Issued::changed`] says
//!   whether anything was written (so the caller knows to restart readers).
//! - [`keep_issued`]`(node)`: a task that calls [`issue`] again whenever
//!   the running config, the hostname or the addresses change.
//! - [`NodeFacts::of`]`(&node)`: hostname and addresses from the resources.
//! - [`admin_kubeconfig`]: what the Kubeconfig RPC streams.
//! - [`apiserver_sans`], [`first_service_ip`]: the names the API server is
//!   reached by.
//!
//! Control-plane nodes get everything (CAs, the apiserver's serving and
//! client certificates, the service-account key, the encryption config,
//! kubeconfigs for admin, controller-manager, scheduler and kubelet, and
//! etcd's server, peer and client certificates). Workers get the Kubernetes
//! CA certificate and a bootstrap-token kubeconfig for the kubelet.

#[cfg(test)]
mod host_tests;
pub mod kubeconfig;
pub mod reuse;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use config::constants::k8s;
use config::pki::{CertifiedKey, LeafRequest, PkiError, Usage};
use config::spec::MachineType;
use config::MachineConfig;

use kubeconfig::Credentials;

/// What the certificates name about this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    pub hostname: String,
    /// The node's addresses (from the network resources), without loopback.
    pub addresses: Vec<IpAddr>,
}

impl NodeFacts {
    /// The node's hostname and global addresses (from the address
    /// resources, on node links only), the node's Kubernetes address first
    /// (see [`crate::addresses::node_addresses`]).
    pub fn of(node: &runtime::Runtime) -> NodeFacts {
        Self::of_store(&node.store)
    }

    /// [`NodeFacts::of`] from the resource store alone.
    pub fn of_store(store: &runtime::resources::Store) -> NodeFacts {
        let cfg = runtime::resources::machineconfig::MachineConfigSpec::running(store);
        NodeFacts {
            hostname: runtime::resources::specs::HostnameSpec::current(store),
            addresses: crate::addresses::node_addresses(store, cfg.as_ref()),
        }
    }
}

/// Where the secrets go: the node's directories, or a temporary directory
/// in tests.
#[derive(Debug, Clone)]
pub struct SecretDirs {
    pub kubernetes: PathBuf,
    pub etcd: PathBuf,
    /// Who owns `etcd` and its files (uid, gid): etcd's own user on a
    /// node; `None` leaves them machined's.
    pub etcd_owner: Option<(u32, u32)>,
}

impl SecretDirs {
    pub fn node() -> SecretDirs {
        SecretDirs {
            kubernetes: k8s::SECRETS_DIR.into(),
            etcd: k8s::etcd::SECRETS_DIR.into(),
            etcd_owner: Some((k8s::etcd::UID, k8s::etcd::GID)),
        }
    }

    /// Both directories under `root` (tests).
    pub fn under(root: &Path) -> SecretDirs {
        SecretDirs {
            kubernetes: root.join("kubernetes"),
            etcd: root.join("etcd"),
            etcd_owner: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum K8sPkiError {
    #[error("a control-plane node issues the Kubernetes certificates from {field}, but the machine config has none")]
    Missing { field: &'static str },
    #[error("cannot issue {what}: {source}")]
    Issue { what: String, source: PkiError },
    #[error("the service-account key (cluster.serviceAccount.key) cannot be read: {0}")]
    ServiceAccountKey(String),
    #[error(transparent)]
    Write(#[from] config::fsutil::WriteError),
    #[error("cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the PKI task failed: {0}")]
    Task(String),
    #[error("the node has no machine config yet; `cairnctl apply-config` first")]
    NoConfig,
    #[error("this node is a worker (machine.type); the admin kubeconfig comes from a control-plane node")]
    NotControlPlane,
}

/// What [`issue`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Issued {
    /// Files written (new or changed content).
    pub written: Vec<PathBuf>,
    /// Files already up to date.
    pub unchanged: Vec<PathBuf>,
}

impl Issued {
    pub fn changed(&self) -> bool {
        !self.written.is_empty()
    }
}

/// Issues this node's Kubernetes and etcd secrets into the node's secrets
/// directories (blocking work runs off the async runtime).
pub async fn issue(cfg: &MachineConfig, facts: &NodeFacts) -> Result<Issued, K8sPkiError> {
    issue_async(cfg, facts, &SecretDirs::node()).await
}

/// [`issue_into`] off the async runtime.
pub async fn issue_async(
    cfg: &MachineConfig,
    facts: &NodeFacts,
    dirs: &SecretDirs,
) -> Result<Issued, K8sPkiError> {
    let (cfg, facts, dirs) = (cfg.clone(), facts.clone(), dirs.clone());
    tokio::task::spawn_blocking(move || issue_into(&cfg, &facts, &dirs))
        .await
        .map_err(|e| K8sPkiError::Task(e.to_string()))?
}

/// The admin kubeconfig (cluster endpoint, client certificate with
/// O=system:masters), issuing the PKI first when it is not there yet.
pub async fn admin_kubeconfig(node: &runtime::Runtime) -> Result<Vec<u8>, K8sPkiError> {
    let cfg = node.running_config().ok_or(K8sPkiError::NoConfig)?;
    if cfg.machine.machine_type != MachineType::Controlplane {
        return Err(K8sPkiError::NotControlPlane);
    }
    if let Ok(bytes) = std::fs::read(k8s::ADMIN_KUBECONFIG) {
        return Ok(bytes);
    }
    issue(&cfg, &NodeFacts::of(node)).await?;
    std::fs::read(k8s::ADMIN_KUBECONFIG).map_err(|source| K8sPkiError::Read {
        path: k8s::ADMIN_KUBECONFIG.into(),
        source,
    })
}

/// The secret files on disk as the PKI keeper last left them (id
/// `secrets`): what the static Pods follow to be rendered again when a
/// certificate they mount changes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretsSpec {
    /// Digest of the Kubernetes secrets directory's files.
    pub kubernetes_digest: String,
    pub kubernetes_files: usize,
    /// Digest of etcd's secrets directory's files (control planes).
    pub etcd_digest: String,
    pub etcd_files: usize,
}

impl SecretsSpec {
    pub const ID: &'static str = "secrets";

    /// The secrets in `dirs` now.
    pub fn of(dirs: &SecretDirs) -> SecretsSpec {
        let count = |d: &Path| {
            std::fs::read_dir(d)
                .map(|rd| {
                    rd.filter(|e| e.as_ref().is_ok_and(|e| e.path().is_file()))
                        .count()
                })
                .unwrap_or(0)
        };
        SecretsSpec {
            kubernetes_digest: crate::staticpods::render::dir_digest(&dirs.kubernetes),
            kubernetes_files: count(&dirs.kubernetes),
            etcd_digest: crate::staticpods::render::dir_digest(&dirs.etcd),
            etcd_files: count(&dirs.etcd),
        }
    }
}

impl runtime::resources::Spec for SecretsSpec {
    const KIND: &'static runtime::resources::Kind = runtime::resources::kind::SECRETS;
    fn to_yaml(&self, _: runtime::resources::Secrets) -> String {
        runtime::resources::yaml_of(self)
    }
}

/// Keeps the secrets current for as long as machined runs: re-issues them
/// whenever the running config, the hostname or the node's addresses
/// change (a new DHCP lease, a new config), and publishes what is on disk
/// as the [`SecretsSpec`] through `writer` (when given). The Kubernetes
/// sequence spawns it after its first [`issue`].
pub async fn keep_issued(node: runtime::Runtime, writer: Option<runtime::resources::Writer>) {
    keep_issued_in(node, SecretDirs::node(), writer).await
}

/// [`keep_issued`] into `dirs`.
pub async fn keep_issued_in(
    node: runtime::Runtime,
    dirs: SecretDirs,
    writer: Option<runtime::resources::Writer>,
) {
    let publish = |dirs: &SecretDirs| {
        if let Some(w) = &writer {
            // Fails only for an undeclared output; the writer is SECRETS'.
            let _ = w.put(SecretsSpec::ID, SecretsSpec::of(dirs));
        }
    };
    // What the first issue (before this keeper) wrote.
    publish(&dirs);
    use runtime::resources::{kind, Filter, Watch};
    let filter = Filter {
        kinds: vec![kind::ADDRESSES, kind::HOSTNAME, kind::MACHINE_CONFIG],
        id: None,
    };
    let mut watch = Watch::new(&node.store, filter, false);
    let mut last: Option<(MachineConfig, NodeFacts)> = None;
    loop {
        watch.next().await;
        // Addresses come and go in bursts (DHCP, link changes): settle first.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        while futures::FutureExt::now_or_never(watch.next()).is_some() {}
        let Some(cfg) = node.running_config() else {
            continue;
        };
        let facts = NodeFacts::of(&node);
        let now = Some((cfg, facts));
        if now == last {
            continue;
        }
        let (cfg, facts) = now.as_ref().expect("just set");
        match issue_async(cfg, facts, &dirs).await {
            Ok(done) if done.changed() => {
                runtime::console!("pki: {} Kubernetes/etcd secret file(s) re-issued for the new config or addresses", done.written.len());
                publish(&dirs);
                last = now;
            }
            Ok(_) => last = now,
            Err(e) => runtime::console!("pki: {e}"),
        }
    }
}

/// [`issue`] into `dirs`.
pub fn issue_into(
    cfg: &MachineConfig,
    facts: &NodeFacts,
    dirs: &SecretDirs,
) -> Result<Issued, K8sPkiError> {
    let mut w = Writer {
        owned: dirs.etcd_owner.map(|o| (dirs.etcd.clone(), o)),
        ..Writer::default()
    };
    let c = &cfg.cluster;
    let cluster = c.cluster_name.to_string();
    let endpoint = c.control_plane.endpoint.to_string();
    w.dir(&dirs.kubernetes)?;
    let kdir = |constant: &str| at(&dirs.kubernetes, constant);

    if cfg.machine.machine_type == MachineType::Worker {
        w.file(&kdir(k8s::CA_CERT), c.ca.crt.pem())?;
        let token = c.token.as_str();
        let text = kubeconfig::render(
            &cluster,
            &endpoint,
            c.ca.crt.pem(),
            "kubelet-bootstrap",
            Credentials::Token(token),
        );
        w.file(&kdir(k8s::BOOTSTRAP_KUBELET_KUBECONFIG), &text)?;
        return Ok(w.done);
    }

    let missing = |field| K8sPkiError::Missing { field };
    let ca = c.ca.certified_key().ok_or(missing("cluster.ca.key"))?;
    let aggregator = c
        .aggregator_ca
        .as_ref()
        .and_then(|a| a.certified_key())
        .ok_or(missing("cluster.aggregatorCa"))?;
    let etcd_ca = c
        .etcd
        .ca
        .as_ref()
        .and_then(|a| a.certified_key())
        .ok_or(missing("cluster.etcd.ca"))?;
    let sa = c
        .service_account
        .as_ref()
        .ok_or(missing("cluster.serviceAccount"))?;
    let secretbox = c
        .secretbox_encryption_secret
        .as_ref()
        .ok_or(missing("cluster.secretboxEncryptionSecret"))?;
    let hostname = if facts.hostname.is_empty() {
        "cairn"
    } else {
        facts.hostname.as_str()
    };

    // Kubernetes.
    w.file(&kdir(k8s::CA_CERT), ca.crt.pem())?;
    w.file(&kdir(k8s::CA_KEY), ca.key.pem())?;
    let mut apiserver = LeafRequest::new("kube-apiserver", Usage::Server);
    for san in apiserver_sans(cfg, facts) {
        match san {
            config::types::SubjectAltName::Ip(ip) => apiserver.ips.push(ip),
            config::types::SubjectAltName::Dns(d) => apiserver.dns_names.push(d),
        }
    }
    w.leaf(
        &ca,
        &apiserver,
        &kdir(k8s::APISERVER_CERT),
        &kdir(k8s::APISERVER_KEY),
    )?;
    let kubelet_client = client("kube-apiserver-kubelet-client", "system:masters");
    w.leaf(
        &ca,
        &kubelet_client,
        &kdir(k8s::APISERVER_KUBELET_CLIENT_CERT),
        &kdir(k8s::APISERVER_KUBELET_CLIENT_KEY),
    )?;
    w.file(&kdir(k8s::FRONT_PROXY_CA_CERT), aggregator.crt.pem())?;
    let front_proxy = LeafRequest::new("front-proxy-client", Usage::Client);
    w.leaf(
        &aggregator,
        &front_proxy,
        &kdir(k8s::FRONT_PROXY_CLIENT_CERT),
        &kdir(k8s::FRONT_PROXY_CLIENT_KEY),
    )?;
    let sa_pub = sa
        .key
        .key_pair()
        .map_err(|e| K8sPkiError::ServiceAccountKey(e.to_string()))?
        .public_key_pem();
    w.file(&kdir(k8s::SA_KEY), sa.key.pem())?;
    w.file(&kdir(k8s::SA_PUB), &sa_pub)?;
    let etcd_client = client("kube-apiserver-etcd-client", "system:masters");
    w.leaf(
        &etcd_ca,
        &etcd_client,
        &kdir(k8s::APISERVER_ETCD_CLIENT_CERT),
        &kdir(k8s::APISERVER_ETCD_CLIENT_KEY),
    )?;
    w.file(&kdir(k8s::ETCD_CA_CERT), etcd_ca.crt.pem())?;
    w.file(
        &kdir(k8s::ENCRYPTION_CONFIG),
        &encryption_config(secretbox.as_str()),
    )?;

    let local = format!("https://127.0.0.1:{}", k8s::APISERVER_PORT);
    let kubeconfigs = [
        (
            k8s::ADMIN_KUBECONFIG,
            "admin",
            client("admin", "system:masters"),
            endpoint.as_str(),
        ),
        (
            k8s::CONTROLLER_MANAGER_KUBECONFIG,
            "system:kube-controller-manager",
            LeafRequest::new("system:kube-controller-manager", Usage::Client),
            local.as_str(),
        ),
        (
            k8s::SCHEDULER_KUBECONFIG,
            "system:kube-scheduler",
            LeafRequest::new("system:kube-scheduler", Usage::Client),
            local.as_str(),
        ),
        (
            k8s::KUBELET_KUBECONFIG,
            "kubelet",
            client(&format!("system:node:{hostname}"), "system:nodes"),
            local.as_str(),
        ),
    ];
    for (path, user, req, server) in kubeconfigs {
        w.kubeconfig(&ca, &req, &kdir(path), &cluster, server, user)?;
    }

    // etcd.
    w.dir(&dirs.etcd)?;
    let edir = |constant: &str| at(&dirs.etcd, constant);
    w.file(&edir(k8s::etcd::CA_CERT), etcd_ca.crt.pem())?;
    let mut server = LeafRequest::new(hostname, Usage::ServerAndClient);
    server.dns_names = vec![hostname.to_string(), "localhost".into()];
    server.ips = etcd_ips(facts);
    let mut peer = server.clone();
    peer.common_name = hostname.to_string();
    w.leaf(
        &etcd_ca,
        &server,
        &edir(k8s::etcd::SERVER_CERT),
        &edir(k8s::etcd::SERVER_KEY),
    )?;
    w.leaf(
        &etcd_ca,
        &peer,
        &edir(k8s::etcd::PEER_CERT),
        &edir(k8s::etcd::PEER_KEY),
    )?;
    let machined = LeafRequest::new("machined", Usage::Client);
    w.leaf(
        &etcd_ca,
        &machined,
        &edir(k8s::etcd::CLIENT_CERT),
        &edir(k8s::etcd::CLIENT_KEY),
    )?;
    Ok(w.done)
}

/// `dir` joined with the file name of a path constant.
fn at(dir: &Path, constant: &str) -> PathBuf {
    dir.join(
        Path::new(constant)
            .file_name()
            .expect("path constants name files"),
    )
}

fn client(common_name: &str, organization: &str) -> LeafRequest {
    let mut r = LeafRequest::new(common_name, Usage::Client);
    r.organizations = vec![organization.to_string()];
    r
}

fn add_unique<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// The first address of a service network (10.96.0.1 for 10.96.0.0/12):
/// the ClusterIP of the `kubernetes` Service.
pub fn first_service_ip(net: ipnet::IpNet) -> IpAddr {
    match net {
        ipnet::IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n.network()).wrapping_add(1))),
        ipnet::IpNet::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n.network()).wrapping_add(1))),
    }
}

/// Names the API server's serving certificate is valid for: the endpoint
/// host, the node's addresses and hostname, loopback, the first address of
/// each service network, the `kubernetes` Service's DNS names,
/// `cluster.apiServer.certSANs` and `machine.certSANs`.
pub fn apiserver_sans(
    cfg: &MachineConfig,
    facts: &NodeFacts,
) -> Vec<config::types::SubjectAltName> {
    use config::types::SubjectAltName as San;
    let c = &cfg.cluster;
    let mut sans = Vec::new();
    let endpoint = &c.control_plane.endpoint;
    add_unique(
        &mut sans,
        match endpoint.ip() {
            Some(ip) => San::Ip(ip),
            None => San::Dns(endpoint.host().to_string()),
        },
    );
    for a in &facts.addresses {
        add_unique(&mut sans, San::Ip(*a));
    }
    add_unique(&mut sans, San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    add_unique(&mut sans, San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    for net in &c.network.service_subnets {
        add_unique(&mut sans, San::Ip(first_service_ip(net.net())));
    }
    let domain = c.network.dns_domain.to_string();
    for name in ["kubernetes", "kubernetes.default", "kubernetes.default.svc"] {
        add_unique(&mut sans, San::Dns(name.into()));
    }
    add_unique(
        &mut sans,
        San::Dns(format!("kubernetes.default.svc.{domain}")),
    );
    add_unique(&mut sans, San::Dns("localhost".into()));
    if !facts.hostname.is_empty() {
        add_unique(&mut sans, San::Dns(facts.hostname.clone()));
    }
    for s in c.api_server.cert_sans.iter().chain(&cfg.machine.cert_sans) {
        add_unique(&mut sans, s.clone());
    }
    sans
}

/// etcd's server and peer certificates: the node's addresses and loopback.
fn etcd_ips(facts: &NodeFacts) -> Vec<IpAddr> {
    let mut ips = facts.addresses.clone();
    add_unique(&mut ips, IpAddr::V4(Ipv4Addr::LOCALHOST));
    add_unique(&mut ips, IpAddr::V6(Ipv6Addr::LOCALHOST));
    ips
}

/// kube-apiserver's `--encryption-provider-config`: Secrets encrypted with
/// secretbox, plain reads still allowed (data written before encryption).
pub fn encryption_config(secretbox_key_base64: &str) -> String {
    let doc = serde_json::json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{
            "resources": ["secrets"],
            "providers": [
                {"secretbox": {"keys": [{"name": "key1", "secret": secretbox_key_base64}]}},
                {"identity": {}},
            ],
        }],
    });
    serde_yaml::to_string(&doc).expect("JSON values serialize as YAML")
}

/// Writes files only when their content changes, and remembers what it did.
#[derive(Default)]
struct Writer {
    done: Issued,
    /// A directory whose files (and itself) belong to a service's user.
    owned: Option<(PathBuf, (u32, u32))>,
}

impl Writer {
    fn owner_of(&self, path: &Path) -> Option<(u32, u32)> {
        self.owned
            .as_ref()
            .filter(|(dir, _)| path.starts_with(dir))
            .map(|(_, owner)| *owner)
    }

    fn dir(&self, path: &Path) -> Result<(), K8sPkiError> {
        let err = |source| K8sPkiError::Dir {
            path: path.to_path_buf(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
        if let Some((uid, gid)) = self.owner_of(path) {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(err)?;
        }
        Ok(())
    }

    fn file(&mut self, path: &Path, content: &str) -> Result<(), K8sPkiError> {
        let owner = self.owner_of(path);
        if std::fs::read(path).is_ok_and(|old| old == content.as_bytes()) {
            // Written by an older Cairn as machined's own: hand it over.
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|source| {
                    K8sPkiError::Dir {
                        path: path.to_path_buf(),
                        source,
                    }
                })?;
            }
            self.done.unchanged.push(path.to_path_buf());
            return Ok(());
        }
        config::fsutil::write_private_as(path, content.as_bytes(), true, owner)?;
        self.done.written.push(path.to_path_buf());
        Ok(())
    }

    fn issue(ca: &CertifiedKey, req: &LeafRequest) -> Result<CertifiedKey, K8sPkiError> {
        config::pki::issue(ca, req).map_err(|source| K8sPkiError::Issue {
            what: req.common_name.clone(),
            source,
        })
    }

    /// A certificate and its key, kept when the files on disk still answer
    /// the request.
    fn leaf(
        &mut self,
        ca: &CertifiedKey,
        req: &LeafRequest,
        crt: &Path,
        key: &Path,
    ) -> Result<(), K8sPkiError> {
        let old = std::fs::read_to_string(crt)
            .ok()
            .zip(std::fs::read_to_string(key).ok());
        let cert = match old.and_then(|(c, k)| reuse::reusable(ca, req, &c, &k)) {
            Some(c) => c,
            None => Self::issue(ca, req)?,
        };
        // Key first: a reader never sees a new certificate with an old key
        // for longer than the two renames.
        self.file(key, cert.key.pem())?;
        self.file(crt, cert.crt.pem())
    }

    /// A kubeconfig with a client certificate, kept when the file's
    /// certificate still answers the request.
    fn kubeconfig(
        &mut self,
        ca: &CertifiedKey,
        req: &LeafRequest,
        path: &Path,
        cluster: &str,
        server: &str,
        user: &str,
    ) -> Result<(), K8sPkiError> {
        let old = std::fs::read(path)
            .ok()
            .and_then(|t| kubeconfig::client_cert(&t));
        let cert = match old.and_then(|(c, k)| reuse::reusable(ca, req, &c, &k)) {
            Some(c) => c,
            None => Self::issue(ca, req)?,
        };
        let creds = Credentials::ClientCert {
            crt: cert.crt.pem(),
            key: cert.key.pem(),
        };
        self.file(
            path,
            &kubeconfig::render(cluster, server, ca.crt.pem(), user, creds),
        )
    }
}
