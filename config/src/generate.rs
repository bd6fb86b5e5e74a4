//! Config generation (`cairnctl gen secrets|config`): from a secrets bundle
//! and a few choices, the control-plane and worker machine configs and the
//! client config. Deterministic for a given bundle, except for the admin
//! client certificate, which is issued anew each time.

use crate::client::{ClientConfig, Context};
use crate::pki::{self, PkiError, Role};
use crate::secrets::SecretsBundle;
use crate::spec::{
    ClusterNetwork, ClusterSpec, ControlPlane, Etcd, Features, Install, MachineSpec, MachineType,
    Time,
};
use crate::types::{ClusterName, ControlPlaneEndpoint, DiskPath, KubernetesVersion};
use crate::MachineConfig;

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// What `gen config` needs.
#[derive(Debug, Clone)]
pub struct GenerateInput {
    pub cluster_name: ClusterName,
    pub endpoint: ControlPlaneEndpoint,
    pub secrets: SecretsBundle,
    /// Default `v1.20.2`.
    pub kubernetes_version: KubernetesVersion,
    /// Default none (the image is booted from its disk already).
    pub install_disk: Option<DiskPath>,
}

impl GenerateInput {
    pub fn new(
        cluster_name: ClusterName,
        endpoint: ControlPlaneEndpoint,
        secrets: SecretsBundle,
    ) -> Self {
        GenerateInput {
            cluster_name,
            endpoint,
            secrets,
            kubernetes_version: crate::spec::default_kubernetes_version(),
            install_disk: None,
        }
    }
}

/// A new secrets bundle.
pub fn generate_secrets() -> Result<SecretsBundle, PkiError> {
    SecretsBundle::generate()
}

/// The control-plane config, the worker config and the client config.
pub fn generate_configs(
    input: &GenerateInput,
) -> Result<(MachineConfig, MachineConfig, ClientConfig), GenerateError> {
    let controlplane = controlplane_config(input);
    let worker = worker_config(&controlplane);
    let client = client_config(input)?;
    Ok((controlplane, worker, client))
}

fn controlplane_config(input: &GenerateInput) -> MachineConfig {
    let s = &input.secrets;
    MachineConfig {
        machine: MachineSpec {
            machine_type: MachineType::Controlplane,
            token: s.secrets.machine_token.clone(),
            ca: s.certs.os.clone().into(),
            cert_sans: Vec::new(),
            install: Install {
                disk: input.install_disk.clone(),
                image: None,
                wipe: false,
                trusted_keys: Vec::new(),
            },
            network: Default::default(),
            time: Time::default(),
            sysctls: Default::default(),
            files: Vec::new(),
            kubelet: Default::default(),
            registries: Default::default(),
            features: Features::default(),
            logging: Default::default(),
        },
        cluster: ClusterSpec {
            cluster_name: input.cluster_name.clone(),
            control_plane: ControlPlane {
                endpoint: input.endpoint.clone(),
            },
            network: ClusterNetwork::default(),
            kubernetes_version: input.kubernetes_version.clone(),
            token: s.secrets.bootstrap_token.clone(),
            secretbox_encryption_secret: Some(s.secrets.secretbox_encryption_secret.clone()),
            ca: s.certs.kubernetes.clone().into(),
            aggregator_ca: Some(s.certs.aggregator.clone().into()),
            service_account: Some(s.certs.service_account.clone()),
            etcd: Etcd {
                ca: Some(s.certs.etcd.clone().into()),
                ..Default::default()
            },
            api_server: Default::default(),
            controller_manager: Default::default(),
            scheduler: Default::default(),
            proxy: Default::default(),
            allow_scheduling_on_control_planes: false,
            addons: Default::default(),
        },
    }
}

/// A worker gets the same config minus every private key and the
/// control-plane-only secrets.
fn worker_config(controlplane: &MachineConfig) -> MachineConfig {
    let mut w = controlplane.clone();
    w.machine.machine_type = MachineType::Worker;
    w.machine.ca = w.machine.ca.without_key();
    let c = &mut w.cluster;
    c.ca = c.ca.without_key();
    c.secretbox_encryption_secret = None;
    c.aggregator_ca = None;
    c.service_account = None;
    c.etcd = Etcd::default();
    w
}

fn client_config(input: &GenerateInput) -> Result<ClientConfig, GenerateError> {
    let os = &input.secrets.certs.os;
    let admin = pki::issue_client_cert(os, "admin", Role::Admin, pki::LEAF_VALIDITY)?;
    let name = input.cluster_name.to_string();
    let context = Context {
        endpoints: vec![input.endpoint.host().to_string()],
        nodes: Vec::new(),
        ca: os.crt.clone(),
        crt: admin.crt,
        key: admin.key,
    };
    Ok(ClientConfig {
        context: Some(name.clone()),
        contexts: [(name, context)].into(),
    })
}

/// A control-plane config of a cluster `test` at `https://10.5.0.2:6443`
/// with fresh secrets, and every secret string in it (for tests that check
/// redaction). For tests across the workspace; costs a key generation.
pub fn sample_controlplane() -> (MachineConfig, Vec<String>) {
    let secrets = generate_secrets().expect("generating secrets");
    let input = GenerateInput::new(
        "test".parse().expect("valid cluster name"),
        "https://10.5.0.2:6443".parse().expect("valid endpoint"),
        secrets.clone(),
    );
    let (cp, _, _) = generate_configs(&input).expect("generating configs");
    let c = &secrets.certs;
    let list = vec![
        secrets.secrets.bootstrap_token.as_str().to_string(),
        secrets.secrets.machine_token.as_str().to_string(),
        secrets
            .secrets
            .secretbox_encryption_secret
            .as_str()
            .to_string(),
        c.os.key.pem().to_string(),
        c.kubernetes.key.pem().to_string(),
        c.etcd.key.pem().to_string(),
        c.aggregator.key.pem().to_string(),
        c.service_account.key.pem().to_string(),
    ];
    (cp, list)
}
