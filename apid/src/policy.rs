//! The one access table for every RPC. In maintenance mode apid has no
//! client certificates to authorize anyone by, so it serves only what an
//! unconfigured node must: its version (and, in a later issue, accepting a
//! config). mTLS roles arrive with the PKI issue.

/// Every RPC of `cairn.machine.v1.MachineService`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    Version,
    ApplyConfiguration,
    ConfirmConfiguration,
    Bootstrap,
    Kubeconfig,
    ServiceList,
    ServiceStart,
    ServiceStop,
    ServiceRestart,
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
    EtcdMemberList,
    EtcdSnapshot,
}

/// What maintenance mode does with an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Forwarded to machined.
    Forward,
    /// Served in maintenance mode, but not implemented yet.
    NotYet,
    /// Never served without client certificates.
    NotInMaintenance,
}

/// The maintenance-mode column of the table.
pub fn maintenance(rpc: Rpc) -> Access {
    use Rpc::*;
    match rpc {
        Version => Access::Forward,
        ApplyConfiguration => Access::NotYet,
        ConfirmConfiguration | Bootstrap | Kubeconfig | ServiceList | ServiceStart
        | ServiceStop | ServiceRestart | Logs | Dmesg | Reboot | Shutdown | Reset | Upgrade
        | Rollback | ResourceGet | ResourceList | ResourceWatch | ListFiles | ReadFile
        | Processes | Memory | Mounts | Disks | Events | EtcdMemberList | EtcdSnapshot => {
            Access::NotInMaintenance
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_version_is_forwarded_in_maintenance_mode() {
        assert_eq!(maintenance(Rpc::Version), Access::Forward);
        assert_eq!(maintenance(Rpc::ApplyConfiguration), Access::NotYet);
        for rpc in [
            Rpc::Bootstrap,
            Rpc::Reboot,
            Rpc::Logs,
            Rpc::ReadFile,
            Rpc::Reset,
            Rpc::Kubeconfig,
        ] {
            assert_eq!(maintenance(rpc), Access::NotInMaintenance, "{rpc:?}");
        }
    }
}
