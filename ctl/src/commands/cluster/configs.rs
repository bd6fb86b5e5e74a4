//! The machine configs of a local cluster: one generated cluster (secrets,
//! `controlplane.yaml`, `worker.yaml`, the admin cairnconfig), and per node
//! only what differs between the nodes, as a strategic-merge patch. A
//! worker gets the generated worker config (no CA keys) plus its node
//! patch, exactly what a user would apply by hand.

use config::client::ClientConfig;
use config::generate::{generate_configs, generate_secrets, GenerateInput};
use config::patch::Patch;
use config::types::{ClusterName, ControlPlaneEndpoint};
use config::validate::{validate, Mode};
use config::{MachineConfig, SecretsBundle};
use provision::cluster::{NodeState, Role, NETWORK, PREFIX};

#[derive(Debug, thiserror::Error)]
pub enum ConfigsError {
    #[error("cluster name {0:?}: {1}")]
    Name(String, String),
    #[error("endpoint {0:?}: {1}")]
    Endpoint(String, String),
    #[error("generating the cluster's secrets: {0}")]
    Secrets(#[from] config::pki::PkiError),
    #[error("generating the configs: {0}")]
    Generate(#[from] config::generate::GenerateError),
    #[error("the patch for {node}: {source}")]
    Patch {
        node: String,
        source: config::patch::PatchError,
    },
    #[error("the config of {node} is not valid: {problems}")]
    Invalid { node: String, problems: String },
}

/// What `gen config` would write for this cluster.
pub struct Generated {
    pub secrets: SecretsBundle,
    pub controlplane: MachineConfig,
    pub worker: MachineConfig,
    pub client: ClientConfig,
}

/// New secrets and the configs of cluster `name` at `endpoint`.
pub fn generate(name: &str, endpoint: &str) -> Result<Generated, ConfigsError> {
    let secrets = generate_secrets()?;
    let input = GenerateInput::new(
        name.parse::<ClusterName>()
            .map_err(|e| ConfigsError::Name(name.into(), e.to_string()))?,
        endpoint
            .parse::<ControlPlaneEndpoint>()
            .map_err(|e| ConfigsError::Endpoint(endpoint.into(), e.to_string()))?,
        secrets.clone(),
    );
    let (controlplane, worker, client) = generate_configs(&input)?;
    Ok(Generated {
        secrets,
        controlplane,
        worker,
        client,
    })
}

/// What differs per node: its host name; QEMU's user network on the first
/// NIC by DHCP (the host's forwards reach apid there); the private NIC,
/// selected by its MAC address, with the node's static address; Kubernetes
/// on the private network (`nodeIp.validSubnets`: the Node's InternalIP
/// and etcd's peer address there, not on the user network every VM shares
/// as 10.0.2.15); 127.0.0.1 in the certificates (the host reaches apid and
/// the API server through forwards on 127.0.0.1); and no time sync, since
/// no NTP server is in reach and QEMU's clock starts from the host's.
/// Ordinary Pods run on the control plane only when there is no worker.
pub fn node_patch(node: &NodeState, schedule_on_control_plane: bool) -> String {
    let mut patch = format!(
        "machine:\n\
         \x20 network:\n\
         \x20   hostname: {name}\n\
         \x20   interfaces:\n\
         \x20   - interface: eth0\n\
         \x20     dhcp: true\n\
         \x20   - deviceSelector: {{hardwareAddr: '{mac}'}}\n\
         \x20     addresses: [{ip}/{PREFIX}]\n\
         \x20 kubelet:\n\
         \x20   nodeIp:\n\
         \x20     validSubnets: [{NETWORK}]\n\
         \x20 certSans: [127.0.0.1]\n\
         \x20 time: {{disabled: true}}\n",
        name = node.name,
        mac = node.mac,
        ip = node.ip,
    );
    if schedule_on_control_plane && node.role == Role::Controlplane {
        patch.push_str("cluster:\n  allowSchedulingOnControlPlanes: true\n");
    }
    patch
}

/// The config of `node`: the generated config of its role and its patch,
/// validated.
pub fn node_config(
    generated: &Generated,
    node: &NodeState,
    schedule_on_control_plane: bool,
) -> Result<MachineConfig, ConfigsError> {
    let base = match node.role {
        Role::Controlplane => &generated.controlplane,
        Role::Worker => &generated.worker,
    };
    let text = node_patch(node, schedule_on_control_plane);
    let patch_err = |source| ConfigsError::Patch {
        node: node.name.clone(),
        source,
    };
    let patch =
        Patch::parse(text.as_bytes(), &format!("{}.patch", node.name)).map_err(patch_err)?;
    let config = patch.apply(base).map_err(patch_err)?;
    validate(&config, Mode::Cloud).map_err(|errors| ConfigsError::Invalid {
        node: node.name.clone(),
        problems: errors.to_string(),
    })?;
    Ok(config)
}

/// The admin cairnconfig pointed at `endpoint` (`127.0.0.1:<apid port>` of
/// the first control plane).
pub fn client_config(generated: &Generated, endpoint: &str) -> ClientConfig {
    let mut client = generated.client.clone();
    for context in client.contexts.values_mut() {
        context.endpoints = vec![endpoint.to_string()];
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use provision::cluster::{plan, Request};

    fn nodes() -> Vec<NodeState> {
        plan(&Request {
            name: "demo".into(),
            controlplanes: 1,
            workers: 1,
            controlplane_memory_mib: 4096,
            worker_memory_mib: 2048,
            cpus: 2,
        })
        .unwrap()
    }

    #[test]
    fn each_node_gets_its_name_address_and_the_private_network_for_kubernetes() {
        let g = generate("demo", "https://10.5.0.2:6443").unwrap();
        let n = nodes();
        let cp = node_config(&g, &n[0], false).unwrap().render();
        let worker = node_config(&g, &n[1], false).unwrap().render();
        for (text, name, ip, mac) in [
            (&cp, "cp-1", "10.5.0.2/24", "52:54:00:ca:00:02"),
            (&worker, "worker-1", "10.5.0.10/24", "52:54:00:ca:00:0a"),
        ] {
            assert!(text.contains(&format!("hostname: {name}")), "{text}");
            assert!(text.contains(ip), "{text}");
            assert!(text.contains(mac), "{text}");
            assert!(text.contains("10.5.0.0/24"), "{text}");
            assert!(text.contains("127.0.0.1"), "{text}");
        }
        assert!(!cp.contains("allowSchedulingOnControlPlanes: true"));
        let alone = node_config(&g, &n[0], true).unwrap().render();
        assert!(
            alone.contains("allowSchedulingOnControlPlanes: true"),
            "{alone}"
        );
    }

    #[test]
    fn the_worker_config_carries_no_ca_key_and_the_cairnconfig_the_forward() {
        let g = generate("demo", "https://10.5.0.2:6443").unwrap();
        let worker = node_config(&g, &nodes()[1], true).unwrap();
        assert!(worker.machine.ca.key.is_none(), "no OS CA key on a worker");
        assert!(
            worker.cluster.ca.key.is_none(),
            "no Kubernetes CA key on a worker"
        );
        assert!(
            !worker
                .render()
                .contains("allowSchedulingOnControlPlanes: true"),
            "only control planes get the scheduling patch"
        );
        assert!(!worker.machine.token.to_string().is_empty());
        let client = client_config(&g, "127.0.0.1:50000");
        let (_, ctx) = client.context(None).unwrap();
        assert_eq!(ctx.endpoints, ["127.0.0.1:50000"]);
    }
}
