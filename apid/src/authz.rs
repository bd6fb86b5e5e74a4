//! The one access table for every RPC of `cairn.machine.v1.MachineService`:
//! the least role that may call it with mutual TLS, and whether maintenance
//! mode (no client certificates, so nobody to authorize) serves it at all.
//! A unit test checks the table against the compiled service descriptor,
//! so a new RPC cannot be forgotten.

use std::fmt;

pub use config::pki::Role;

/// The gRPC path prefix of the machine service.
pub const SERVICE_PATH: &str = "/cairn.machine.v1.MachineService/";

macro_rules! rpcs {
    ($($name:ident),* $(,)?) => {
        /// Every RPC of `cairn.machine.v1.MachineService`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Rpc { $($name),* }

        impl Rpc {
            pub const ALL: &'static [Rpc] = &[$(Rpc::$name),*];

            /// The method name as in the .proto (`ApplyConfiguration`).
            pub fn name(self) -> &'static str {
                match self { $(Rpc::$name => stringify!($name)),* }
            }
        }
    };
}

rpcs!(
    Version,
    ApplyConfiguration,
    ConfirmConfiguration,
    GenerateClientConfiguration,
    Bootstrap,
    Kubeconfig,
    ServiceList,
    ServiceStart,
    ServiceStop,
    ServiceRestart,
    ServiceKill,
    Logs,
    Dmesg,
    Reboot,
    Shutdown,
    Reset,
    Upgrade,
    Rollback,
    ResourceGet,
    ResourceList,
    ResourceWatch,
    ListFiles,
    ReadFile,
    Processes,
    Memory,
    Mounts,
    Disks,
    Events,
    Netstat,
    Time,
    EtcdMemberList,
    EtcdSnapshot,
    ClusterHealth,
    Containers,
    ImageList,
    ImageImport,
    ImageRemove,
);

impl Rpc {
    /// The RPC a gRPC request path names (`/cairn.machine.v1.MachineService/Version`).
    pub fn from_path(path: &str) -> Option<Rpc> {
        let method = path.strip_prefix(SERVICE_PATH)?;
        Rpc::ALL.iter().copied().find(|r| r.name() == method)
    }
}

impl fmt::Display for Rpc {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The least role that may call `rpc`. Readers read non-secret state;
/// operators also change what runs (reboot, services, etcd snapshots);
/// admins also change or read what is secret.
pub fn min_role(rpc: Rpc) -> Role {
    use Rpc::*;
    match rpc {
        // Non-secret state. machined redacts secrets (keys, tokens) from
        // resources for anyone but admins. ListFiles shows names, sizes and
        // modes, never contents (as Talos's `ls` for os:reader).
        Version | ServiceList | Logs | Dmesg | ResourceGet | ResourceList | ResourceWatch
        | ListFiles | Processes | Memory | Mounts | Disks | Events | Netstat | Time
        | EtcdMemberList | ClusterHealth | Containers | ImageList => Role::Reader,
        // Day-2 operations that change what runs but reveal or change no
        // secret. An etcd snapshot holds the cluster's Secrets, but taking
        // backups is the operator's job (as in Talos).
        // Images change what can run, never the system's own (a user
        // import may not replace a system image, remove refuses them).
        ServiceStart | ServiceStop | ServiceRestart | ServiceKill | Reboot | Shutdown
        | EtcdSnapshot | ImageImport | ImageRemove => Role::Operator,
        // Configuration, file contents, credentials (new client
        // certificates included) and anything that replaces or wipes the
        // system.
        ApplyConfiguration
        | ConfirmConfiguration
        | GenerateClientConfiguration
        | Bootstrap
        | Kubeconfig
        | Reset
        | Upgrade
        | Rollback
        | ReadFile => Role::Admin,
    }
}

/// Whether maintenance mode serves `rpc`: only what an unconfigured node
/// must answer. Everything else needs a config (and so client certificates).
pub fn served_in_maintenance(rpc: Rpc) -> bool {
    matches!(rpc, Rpc::Version | Rpc::ApplyConfiguration | Rpc::Disks)
}

/// A role's rank: each role may do everything the lower ones may.
fn rank(role: Role) -> u8 {
    match role {
        Role::Reader => 0,
        Role::Operator => 1,
        Role::Admin => 2,
    }
}

/// Whether `role` may call `rpc`.
pub fn allows(role: Role, rpc: Rpc) -> bool {
    rank(role) >= rank(min_role(rpc))
}

/// The strongest of several roles (a certificate may carry more than one
/// Organization).
pub fn strongest(roles: impl IntoIterator<Item = Role>) -> Option<Role> {
    roles.into_iter().max_by_key(|r| rank(*r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use std::collections::BTreeSet;

    /// Every method of the compiled service has exactly one entry in the
    /// table, and the table names no method the service lacks.
    #[test]
    fn table_covers_every_rpc_of_the_service_descriptor() {
        let set = prost_types::FileDescriptorSet::decode(api::FILE_DESCRIPTOR_SET).unwrap();
        let service = set
            .file
            .iter()
            .filter(|f| f.package() == "cairn.machine.v1")
            .flat_map(|f| f.service.iter())
            .find(|s| s.name() == "MachineService")
            .expect("MachineService in the descriptor set");
        let in_proto: BTreeSet<&str> = service.method.iter().map(|m| m.name()).collect();
        let in_table: BTreeSet<&str> = Rpc::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(
            in_proto, in_table,
            "the role table and machine.proto disagree"
        );
        for m in &in_proto {
            let rpc = Rpc::from_path(&format!("{SERVICE_PATH}{m}")).unwrap();
            // Every RPC has a role (the match is exhaustive); readers can
            // at least call Version.
            let _ = min_role(rpc);
        }
        assert!(Rpc::from_path("/cairn.machine.v1.MachineService/Nope").is_none());
        assert!(Rpc::from_path("/other.Service/Version").is_none());
    }

    #[test]
    fn the_issue_role_matrix() {
        for rpc in [
            Rpc::Version,
            Rpc::ServiceList,
            Rpc::ResourceGet,
            Rpc::ResourceList,
            Rpc::Logs,
            Rpc::ImageList,
        ] {
            assert!(allows(Role::Reader, rpc), "{rpc}");
        }
        for rpc in [
            Rpc::Reboot,
            Rpc::ReadFile,
            Rpc::ApplyConfiguration,
            Rpc::Kubeconfig,
            Rpc::ServiceRestart,
            Rpc::ImageImport,
            Rpc::ImageRemove,
        ] {
            assert!(!allows(Role::Reader, rpc), "{rpc}");
        }
        for rpc in [
            Rpc::Reboot,
            Rpc::Shutdown,
            Rpc::ServiceRestart,
            Rpc::EtcdSnapshot,
            Rpc::ImageImport,
            Rpc::ImageRemove,
        ] {
            assert!(allows(Role::Operator, rpc), "{rpc}");
        }
        for rpc in [
            Rpc::ApplyConfiguration,
            Rpc::ReadFile,
            Rpc::Reset,
            Rpc::Upgrade,
            Rpc::Kubeconfig,
            // Hole 10: minting certificates is the admin's alone.
            Rpc::GenerateClientConfiguration,
        ] {
            assert!(!allows(Role::Operator, rpc), "{rpc}");
        }
        for rpc in Rpc::ALL {
            assert!(allows(Role::Admin, *rpc), "{rpc}");
        }
    }

    #[test]
    fn maintenance_serves_only_what_an_unconfigured_node_must() {
        let served: Vec<Rpc> = Rpc::ALL
            .iter()
            .copied()
            .filter(|r| served_in_maintenance(*r))
            .collect();
        assert_eq!(
            served,
            vec![Rpc::Version, Rpc::ApplyConfiguration, Rpc::Disks]
        );
    }

    #[test]
    fn strongest_role_wins() {
        assert_eq!(
            strongest([Role::Reader, Role::Admin, Role::Operator]),
            Some(Role::Admin)
        );
        assert_eq!(strongest([]), None);
    }
}
