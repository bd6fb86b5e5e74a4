//! Reset: wipe the node's state and bring it back to maintenance mode.
//!
//! Wipe modes (the Reset RPC's `mode`): `system` wipes STATE (the machine
//! config, secrets) and META; `user` wipes EPHEMERAL (/var: containers,
//! etcd data, logs); `all` both. The RPC replies first; then services stop,
//! filesystems are unmounted, the partitions are zeroed (BLKZEROOUT, so no
//! config or key survives on the disk), and the node reboots (`--reboot`)
//! or powers off. The next boot formats the blank partitions and, with no
//! config on STATE, enters maintenance mode.
//!
//! Graceful (`--graceful`) would first leave etcd and drain the node. This
//! build has no etcd member management in machined yet (kubernetes::etcd), so a
//! graceful reset of a node where etcd runs cannot leave its cluster: it is
//! refused there rather than silently skipped. Without etcd (workers, or a
//! control plane never bootstrapped) there is nothing to leave, and no
//! kubelet workload is drained yet either.

use std::sync::Arc;

use api::machine::reset_request::WipeMode;
use api::machine::ResetRequest;
use config::constants::partition;
use tonic::{Response, Status};

use crate::shutdown::PowerAction;
use crate::state::Node;
use host::disks::BlockDevice;
use runtime::resources::specs::EventType;

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("this node runs live from the ISO and has no system disk to wipe")]
    Live,
    #[error("unknown wipe mode {0}")]
    BadMode(i32),
    #[error(
        "a graceful reset leaves etcd first, and this build of machined cannot manage etcd membership yet; \
         remove the member by hand and reset without --graceful"
    )]
    GracefulUnsupported,
    #[error(transparent)]
    Lifecycle(#[from] crate::lifecycle::LifecycleError),
}

pub fn to_status(e: &ResetError) -> Status {
    let msg = e.to_string();
    match e {
        ResetError::BadMode(_) => Status::invalid_argument(msg),
        ResetError::Live | ResetError::GracefulUnsupported | ResetError::Lifecycle(_) => {
            Status::failed_precondition(msg)
        }
    }
}

/// The partitions a wipe mode covers.
pub fn partitions_for(mode: WipeMode) -> &'static [&'static str] {
    match mode {
        WipeMode::All => &[partition::STATE, partition::META, partition::EPHEMERAL],
        WipeMode::SystemDisk => &[partition::STATE, partition::META],
        WipeMode::UserDisks => &[partition::EPHEMERAL],
    }
}

/// The Reset RPC: check, reply, then wipe in the background.
pub async fn handle_reset(node: &Arc<Node>, req: ResetRequest) -> Result<Response<()>, Status> {
    start(node, req)
        .map(Response::new)
        .map_err(|e| to_status(&e))
}

fn start(node: &Arc<Node>, req: ResetRequest) -> Result<(), ResetError> {
    let mode = WipeMode::try_from(req.mode).map_err(|_| ResetError::BadMode(req.mode))?;
    let devices = host::disks::list();
    let system = host::partitions::find(&devices).ok_or(ResetError::Live)?;
    let disk = system.disk.clone().ok_or(ResetError::Live)?;
    let etcd_runs = node
        .supervisor
        .handle("etcd")
        .is_some_and(|h| h.snapshot().state == runtime::supervisor::State::Running);
    if req.graceful && etcd_runs {
        return Err(ResetError::GracefulUnsupported);
    }
    let guard = node.lifecycle.begin(crate::lifecycle::Action::Reset)?;
    let targets: Vec<BlockDevice> = partitions_for(mode)
        .iter()
        .filter_map(|name| {
            devices
                .iter()
                .find(|d| {
                    d.is_partition
                        && d.parent.as_deref() == Some(&disk)
                        && d.partname.as_deref() == Some(*name)
                })
                .cloned()
        })
        .collect();
    let action = if req.reboot {
        PowerAction::Reboot
    } else {
        PowerAction::PowerOff
    };
    let names: Vec<String> = targets
        .iter()
        .map(|d| d.partname.clone().unwrap_or_default())
        .collect();
    node.events.record(
        EventType::Power,
        format!("reset requested: wiping {}", names.join(", ")),
    );
    let node = node.clone();
    tokio::spawn(async move {
        tokio::time::sleep(crate::lifecycle::REPLY_FIRST).await;
        guard.phase("stopping services");
        runtime::console!("reset: stopping services, then wiping {}", names.join(", "));
        node.supervisor.stop_all().await;
        for (target, problem) in system::mounts::unmount_all(&system::syscall::Real) {
            runtime::console!("reset: {}: {problem}", target.display());
        }
        guard.phase("wiping");
        // Zeroing takes minutes on a large partition: on a blocking
        // thread, so PID 1's runtime (the reaper, the console) goes on.
        let wiped = tokio::task::spawn_blocking(move || {
            for d in &targets {
                let name = d.partname.as_deref().unwrap_or_default();
                let r = if name == partition::META {
                    host::meta::MetaStore::open(&d.node)
                        .and_then(|mut m| m.erase())
                        .map_err(|e| e.to_string())
                } else {
                    crate::install::disk::zero(&d.node, 0, d.size_bytes).map_err(|e| e.to_string())
                };
                match r {
                    Ok(()) => runtime::console!("reset: wiped {name} ({})", d.node.display()),
                    Err(e) => runtime::console!("reset: cannot wipe {name}: {e}"),
                }
            }
        })
        .await;
        if let Err(e) = wiped {
            runtime::console!("reset: the wipe stopped: {e}");
        }
        guard.power(action, "reset done");
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipe_modes_name_their_partitions() {
        assert_eq!(partitions_for(WipeMode::SystemDisk), ["STATE", "META"]);
        assert_eq!(partitions_for(WipeMode::UserDisks), ["EPHEMERAL"]);
        assert_eq!(partitions_for(WipeMode::All).len(), 3);
    }
}
