//! Paths, ports, labels and names shared by the node (init, machined, apid)
//! and the client (cairnctl). One name for one thing, everywhere.

/// TCP port apid listens on, in maintenance mode and with mTLS alike.
pub const APID_PORT: u16 = 50000;
/// Control planes' apid port for joining machines (TLS with a server
/// certificate only; the join token authenticates): `cairn.security.v1`.
pub const APID_JOIN_PORT: u16 = 50001;

/// machined's internal API (the machine service over a unix socket).
pub const MACHINED_SOCKET: &str = "/system/run/machined/machined.sock";

/// tmpfs for runtime state that must never reach a disk.
pub const SYSTEM_RUN_DIR: &str = "/system/run";
/// tmpfs holding secrets (keys, certs, kubeconfigs), mode 0700, files 0600.
pub const SECRETS_DIR: &str = "/system/secrets";
/// Where the STATE partition is mounted.
pub const STATE_MOUNT: &str = "/system/state";
/// Where the BOOT partition is mounted on an installed node.
pub const BOOT_MOUNT: &str = "/boot";
/// The machine config persisted on STATE.
pub const STATE_CONFIG_PATH: &str = "/system/state/config.yaml";
/// Where the EPHEMERAL partition (or a tmpfs on a live boot) is mounted.
pub const EPHEMERAL_MOUNT: &str = "/var";

/// GPT partition names, which are also the filesystem labels where the
/// partition carries a filesystem.
pub mod partition {
    pub const EFI: &str = "EFI";
    pub const BIOS: &str = "BIOS";
    pub const BOOT: &str = "BOOT";
    pub const META: &str = "META";
    pub const STATE: &str = "STATE";
    pub const EPHEMERAL: &str = "EPHEMERAL";
}

/// Label of a volume (e.g. a cloud-init style CD or USB stick) that carries
/// a machine config as `config.yaml` at its root.
pub const CONFIG_VOLUME_LABEL: &str = "CAIRNCFG";

/// Kernel command-line keys Cairn reads.
pub mod cmdline {
    /// `cairn.config=<url>`: fetch the machine config from this URL.
    pub const CONFIG: &str = "cairn.config";
    /// `cairn.config.sha256=<hex>`: the SHA-256 the fetched config must
    /// have (required for a plain `http://` URL).
    pub const CONFIG_SHA256: &str = "cairn.config.sha256";
    /// `cairn.config.fingerprint=<hex>`: the SHA-256 of the `https://`
    /// server's certificate (required for `https://`: no CA is known at
    /// boot, and the config holds the cluster's keys).
    pub const CONFIG_FINGERPRINT: &str = "cairn.config.fingerprint";
    /// `cairn.hostname=<name>`: hostname before any config is applied.
    pub const HOSTNAME: &str = "cairn.hostname";
}

/// Organization values in client certificates that carry the API role.
pub mod role {
    pub const ADMIN: &str = "os:admin";
    pub const OPERATOR: &str = "os:operator";
    pub const READER: &str = "os:reader";
    /// apid's own client certificate for forwarding to another node's apid.
    /// A peer presenting it may name the caller's role in the
    /// [`super::metadata::ROLE`] metadata; nobody else may.
    pub const IMPERSONATOR: &str = "os:impersonator";
}

/// gRPC metadata keys of the machine API.
pub mod metadata {
    /// The node a request is for (`host` or `host:port`); apid forwards the
    /// call one to one to that node's apid.
    pub const NODES: &str = "nodes";
    /// The caller's role (`os:admin`, ...), set by apid on everything it
    /// forwards (to machined, or to another node's apid).
    pub const ROLE: &str = "x-cairn-role";
}

/// apid's settings (certificates, mode) as machined writes them: a
/// [`crate::apid::ApidSettings`] YAML file in this directory (0700, owned by
/// apid's user), which apid watches and reloads.
pub const APID_SECRETS_DIR: &str = "/system/secrets/apid";

/// Registry name of the images built into Cairn (imported into containerd
/// at boot, never pulled): `cairn.local/kube-apiserver:v1.20.2`, ...
pub const IMAGE_REGISTRY: &str = "cairn.local";

/// apiVersion of every Cairn config document.
pub const CONFIG_API_VERSION: &str = "cairn.dev/v1alpha1";

/// Kubernetes on the node: secrets issued by machined's PKI module, etcd's
/// files, and the runtime directories of containerd, the kubelet and CNI.
/// Secrets live on the [`super::SECRETS_DIR`] tmpfs (directories 0700, files
/// 0600) and are re-issued from the machine config at every boot.
pub mod k8s {
    /// Kubernetes secrets: certificates, keys, kubeconfigs, encryption config.
    pub const SECRETS_DIR: &str = "/system/secrets/kubernetes";
    /// Kubernetes CA certificate and key (from `cluster.ca`).
    pub const CA_CERT: &str = "/system/secrets/kubernetes/ca.crt";
    pub const CA_KEY: &str = "/system/secrets/kubernetes/ca.key";
    /// kube-apiserver serving certificate.
    pub const APISERVER_CERT: &str = "/system/secrets/kubernetes/apiserver.crt";
    pub const APISERVER_KEY: &str = "/system/secrets/kubernetes/apiserver.key";
    /// kube-apiserver's client certificate towards kubelets.
    pub const APISERVER_KUBELET_CLIENT_CERT: &str =
        "/system/secrets/kubernetes/apiserver-kubelet-client.crt";
    pub const APISERVER_KUBELET_CLIENT_KEY: &str =
        "/system/secrets/kubernetes/apiserver-kubelet-client.key";
    /// Front-proxy (aggregation layer) CA certificate (from `cluster.aggregatorCa`).
    pub const FRONT_PROXY_CA_CERT: &str = "/system/secrets/kubernetes/front-proxy-ca.crt";
    /// kube-apiserver's front-proxy client certificate.
    pub const FRONT_PROXY_CLIENT_CERT: &str = "/system/secrets/kubernetes/front-proxy-client.crt";
    pub const FRONT_PROXY_CLIENT_KEY: &str = "/system/secrets/kubernetes/front-proxy-client.key";
    /// Service-account signing key (private, PKCS#8) and its public key.
    pub const SA_KEY: &str = "/system/secrets/kubernetes/sa.key";
    pub const SA_PUB: &str = "/system/secrets/kubernetes/sa.pub";
    /// kube-apiserver's client certificate towards etcd.
    pub const APISERVER_ETCD_CLIENT_CERT: &str =
        "/system/secrets/kubernetes/apiserver-etcd-client.crt";
    pub const APISERVER_ETCD_CLIENT_KEY: &str =
        "/system/secrets/kubernetes/apiserver-etcd-client.key";
    /// The etcd CA certificate, for kube-apiserver's `--etcd-cafile`.
    pub const ETCD_CA_CERT: &str = "/system/secrets/kubernetes/etcd-ca.crt";
    /// `EncryptionConfiguration` for secrets at rest (secretbox).
    pub const ENCRYPTION_CONFIG: &str = "/system/secrets/kubernetes/encryption-config.yaml";
    /// Kubeconfigs (all pointing at the local apiserver except admin's,
    /// which names the cluster endpoint).
    pub const ADMIN_KUBECONFIG: &str = "/system/secrets/kubernetes/admin.kubeconfig";
    pub const CONTROLLER_MANAGER_KUBECONFIG: &str =
        "/system/secrets/kubernetes/controller-manager.kubeconfig";
    pub const SCHEDULER_KUBECONFIG: &str = "/system/secrets/kubernetes/scheduler.kubeconfig";
    /// The kubelet's kubeconfig: on control planes a client certificate
    /// `system:node:<hostname>` (O `system:nodes`) issued by machined.
    pub const KUBELET_KUBECONFIG: &str = "/system/secrets/kubernetes/kubelet.kubeconfig";
    /// On workers: the bootstrap-token kubeconfig the kubelet starts with.
    pub const BOOTSTRAP_KUBELET_KUBECONFIG: &str =
        "/system/secrets/kubernetes/bootstrap-kubelet.kubeconfig";

    /// kube-apiserver's secure port.
    pub const APISERVER_PORT: u16 = 6443;

    /// etcd's secrets and runtime paths.
    pub mod etcd {
        pub const SECRETS_DIR: &str = "/system/secrets/etcd";
        /// etcd runs as this unprivileged user and group (as Talos's does),
        /// owning its secrets and its data directory.
        pub const UID: u32 = 60;
        pub const GID: u32 = 60;
        pub const CA_CERT: &str = "/system/secrets/etcd/ca.crt";
        /// Serving certificate for clients (port 2379).
        pub const SERVER_CERT: &str = "/system/secrets/etcd/server.crt";
        pub const SERVER_KEY: &str = "/system/secrets/etcd/server.key";
        /// Peer certificate (port 2380), server and client usage.
        pub const PEER_CERT: &str = "/system/secrets/etcd/peer.crt";
        pub const PEER_KEY: &str = "/system/secrets/etcd/peer.key";
        /// machined's own client certificate (health, members, snapshots).
        pub const CLIENT_CERT: &str = "/system/secrets/etcd/client.crt";
        pub const CLIENT_KEY: &str = "/system/secrets/etcd/client.key";
        /// etcd's data directory (on EPHEMERAL, survives reboots).
        pub const DATA_DIR: &str = "/var/lib/etcd";
        /// Exists once this node has been bootstrapped (or joined): etcd
        /// then starts by itself at boot.
        pub const MEMBER_DIR: &str = "/var/lib/etcd/member";
        pub const CLIENT_PORT: u16 = 2379;
        pub const PEER_PORT: u16 = 2380;
    }

    /// containerd's generated config.
    pub const CONTAINERD_CONFIG: &str = "/system/containerd/config.toml";
    /// containerd's gRPC socket (CRI and the containerd API).
    pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
    /// containerd's root (images, snapshots).
    pub const CONTAINERD_ROOT: &str = "/var/lib/containerd";
    /// containerd namespace of the Kubernetes (CRI) containers and images.
    pub const CONTAINERD_NAMESPACE: &str = "k8s.io";
    /// Static pod manifests (re-rendered every boot).
    pub const MANIFESTS_DIR: &str = "/system/kubernetes/manifests";
    /// The generated KubeletConfiguration.
    pub const KUBELET_CONFIG: &str = "/system/kubernetes/kubelet.yaml";
    /// The kubelet's root directory.
    pub const KUBELET_DIR: &str = "/var/lib/kubelet";
    /// Pod logs written by the kubelet.
    pub const POD_LOGS_DIR: &str = "/var/log/pods";
    /// CNI network configuration directory.
    pub const CNI_CONF_DIR: &str = "/system/cni/net.d";
    /// CNI plugin binaries, from the payload.
    pub const CNI_BIN_DIR: &str = "/system/payload/cni/bin";
}

/// The Kubernetes payload: a read-only squashfs on the boot medium
/// (`/<slot>/payload.sqsh` on the BOOT partition or the ISO), built by
/// images/build-payload.sh and mounted by machined once the API is up.
/// Layout: images/payload/README.md.
pub mod payload {
    /// Where the payload is mounted (read-only).
    pub const PAYLOAD_DIR: &str = "/system/payload";
    /// Executables: containerd, containerd-shim-runc-v2, runc, etcd, etcdctl,
    /// kubelet, mount, umount, the iptables-nft tools, conntrack.
    pub const BIN_DIR: &str = "/system/payload/bin";
    /// Shared libraries of the dynamic programs in [`BIN_DIR`] and [`CNI_BIN_DIR`].
    pub const LIB_DIR: &str = "/system/payload/lib";
    /// iptables' extensions; programs that run the payload's iptables tools
    /// need `XTABLES_LIBDIR` set to this.
    pub const XTABLES_LIB_DIR: &str = "/system/payload/lib/xtables";
    /// CNI plugins: bridge, host-local, loopback, portmap.
    pub const CNI_BIN_DIR: &str = "/system/payload/cni/bin";
    /// OCI image archives (`<name>.tar`), see [`super::images`].
    pub const IMAGES_DIR: &str = "/system/payload/images";
    /// One line per archive in [`IMAGES_DIR`]: `<file> <image reference>`.
    pub const IMAGE_REFS: &str = "/system/payload/images/refs.txt";
    /// The versions file the payload was built from (KEY=value lines).
    pub const VERSIONS_FILE: &str = "/system/payload/versions.env";
    /// The payload's build key (hash of its inputs), one line.
    pub const ID_FILE: &str = "/system/payload/id";
    /// `PATH` for programs run from the payload.
    pub const PATH: &str = "/system/payload/bin:/sbin:/usr/sbin:/bin:/usr/bin";
    /// The payload file in a boot slot's directory on the boot medium.
    pub const FILE_NAME: &str = "payload.sqsh";
    /// The slot booted when the kernel command line names none.
    pub const DEFAULT_SLOT: &str = "A";
    /// The boot medium's image cache (`make image IMAGE_CACHE=<dir>`, a
    /// directory `cairnctl image cache-create` wrote): a squashfs beside
    /// the slot directories, so upgrades keep it.
    pub const IMAGE_CACHE_FILE: &str = "image-cache.sqsh";
    /// Where the image cache is mounted (read-only): OCI archives and
    /// `refs.txt`, imported at every boot with origin `cache`.
    pub const IMAGE_CACHE_DIR: &str = "/system/image-cache";
    /// Where machined mounts the boot medium read-only when nothing else
    /// has (the ISO on a live boot; BOOT when the slot logic did not).
    pub const MEDIUM_DIR: &str = "/system/medium";
}

/// Cluster-level logging (addons/src/logging.rs, logstore/README.md): where
/// the log store answers. machined ships its own logs to the JSON-lines
/// port; `cairnctl logs --cluster` reaches the HTTP API through the API
/// server's service proxy.
pub mod logging {
    /// Namespace of the store's Service.
    pub const NAMESPACE: &str = "kube-system";
    /// The store's Service (and Deployment).
    pub const SERVICE: &str = "cairn-logstore";
    /// HTTP API: ingest, query, live tail (Service port `http`).
    pub const HTTP_PORT: u16 = 8080;
    /// Records as JSON lines over TCP, no acknowledgement (Service port
    /// `jsonlines`).
    pub const JSONLINES_PORT: u16 = 5170;
    /// The Service's ClusterIP is fixed: this address of the first service
    /// subnet (`10.96.0.11` by default), so a node can send its logs there
    /// without asking the API server.
    pub const SERVICE_IP_INDEX: u32 = 11;
}

/// The OCI images the payload carries, imported into containerd's `k8s.io`
/// namespace at boot and never pulled. Tags match images/payload/versions.env
/// (checked by a test). `cairn-testpod` is tagged `latest`: Pods using it
/// must say `imagePullPolicy: IfNotPresent` (or `Never`), since `latest`
/// defaults to `Always` and there is no registry.
pub mod images {
    /// The Kubernetes version of the payload (and the tag of its images).
    pub use crate::version::KUBERNETES_VERSION;
    pub const PAUSE: &str = "cairn.local/pause:v1.20.2";
    pub const KUBE_APISERVER: &str = "cairn.local/kube-apiserver:v1.20.2";
    pub const KUBE_CONTROLLER_MANAGER: &str = "cairn.local/kube-controller-manager:v1.20.2";
    pub const KUBE_SCHEDULER: &str = "cairn.local/kube-scheduler:v1.20.2";
    pub const KUBE_PROXY: &str = "cairn.local/kube-proxy:v1.20.2";
    /// The cluster DNS server (the `dns` crate's `cairn-dns`).
    pub const DNS: &str = "cairn.local/cairn-dns:v1.20.2";
    /// The end-to-end tests' Pod program (the `testpod` crate).
    pub const TESTPOD: &str = "cairn.local/cairn-testpod:latest";
    /// The resource metrics API (`cairn-metrics-server`) and Prometheus's
    /// target discovery (`cairn-prometheus-sd`): the `metrics-server` crate.
    pub const METRICS_SERVER: &str = "cairn.local/cairn-metrics-server:v1.20.2";
    /// Prometheus from Debian's `prometheus` package.
    pub const PROMETHEUS: &str = "cairn.local/prometheus:v1.20.2";
    /// The Web UI (the `webui` crate's `cairn-webui`).
    pub const WEBUI: &str = "cairn.local/cairn-webui:v1.20.2";
    /// The cluster log store (the `logstore` crate's `cairn-logstore`).
    pub const LOGSTORE: &str = "cairn.local/cairn-logstore:v1.20.2";
    /// The per-node log collector (the `logcollector` crate's `cairn-logcollector`).
    pub const LOGCOLLECTOR: &str = "cairn.local/cairn-logcollector:v1.20.2";
    /// Every image, as listed in the payload's images/refs.txt.
    pub const ALL: &[&str] = &[
        PAUSE,
        KUBE_APISERVER,
        KUBE_CONTROLLER_MANAGER,
        KUBE_SCHEDULER,
        KUBE_PROXY,
        DNS,
        TESTPOD,
        METRICS_SERVER,
        PROMETHEUS,
        WEBUI,
        LOGSTORE,
        LOGCOLLECTOR,
    ];
}

#[cfg(test)]
mod tests {
    use super::k8s;

    #[test]
    fn k8s_secrets_live_in_their_directories() {
        use k8s::etcd as e;
        for p in [
            k8s::CA_CERT,
            k8s::APISERVER_KEY,
            k8s::SA_PUB,
            k8s::ETCD_CA_CERT,
            k8s::ENCRYPTION_CONFIG,
            k8s::ADMIN_KUBECONFIG,
            k8s::KUBELET_KUBECONFIG,
        ] {
            assert_eq!(
                std::path::Path::new(p).parent().unwrap().to_str(),
                Some(k8s::SECRETS_DIR),
                "{p}"
            );
        }
        for p in [e::CA_CERT, e::SERVER_KEY, e::PEER_CERT, e::CLIENT_KEY] {
            assert_eq!(
                std::path::Path::new(p).parent().unwrap().to_str(),
                Some(e::SECRETS_DIR),
                "{p}"
            );
        }
        assert!(k8s::SECRETS_DIR.starts_with(super::SECRETS_DIR));
        assert!(e::MEMBER_DIR.starts_with(e::DATA_DIR));
    }

    /// The image references here are the ones images/build-payload.sh
    /// builds from images/payload/versions.env.
    #[test]
    fn image_refs_match_the_payload_versions_file() {
        use super::images;
        let versions = include_str!("../../images/payload/versions.env");
        let get = |key: &str| {
            versions
                .lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .unwrap_or_else(|| panic!("{key} missing from versions.env"))
        };
        let (registry, tag) = (get("IMAGE_REGISTRY"), get("IMAGE_TAG"));
        assert_eq!(registry, super::IMAGE_REGISTRY);
        assert_eq!(get("KUBERNETES_VERSION"), images::KUBERNETES_VERSION);
        for (name, r) in [
            ("pause", images::PAUSE),
            ("kube-apiserver", images::KUBE_APISERVER),
            ("kube-controller-manager", images::KUBE_CONTROLLER_MANAGER),
            ("kube-scheduler", images::KUBE_SCHEDULER),
            ("kube-proxy", images::KUBE_PROXY),
            ("cairn-dns", images::DNS),
            ("cairn-metrics-server", images::METRICS_SERVER),
            ("prometheus", images::PROMETHEUS),
            ("cairn-webui", images::WEBUI),
            ("cairn-logstore", images::LOGSTORE),
            ("cairn-logcollector", images::LOGCOLLECTOR),
        ] {
            assert_eq!(r, format!("{registry}/{name}:{tag}"));
        }
        assert_eq!(
            images::TESTPOD,
            format!("{registry}/cairn-testpod:{}", get("TESTPOD_TAG"))
        );
        assert_eq!(images::ALL.len(), 12);
    }
}
