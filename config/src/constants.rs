//! Paths, ports, labels and names shared by the node (init, machined, apid)
//! and the client (cairnctl). One name for one thing, everywhere.

/// TCP port apid listens on, in maintenance mode and with mTLS alike.
pub const APID_PORT: u16 = 50000;

/// machined's internal API (the machine service over a unix socket).
pub const MACHINED_SOCKET: &str = "/system/run/machined/machined.sock";

/// tmpfs for runtime state that must never reach a disk.
pub const SYSTEM_RUN_DIR: &str = "/system/run";
/// tmpfs holding secrets (keys, certs, kubeconfigs), mode 0700, files 0600.
pub const SECRETS_DIR: &str = "/system/secrets";
/// Where the STATE partition is mounted.
pub const STATE_MOUNT: &str = "/system/state";
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
