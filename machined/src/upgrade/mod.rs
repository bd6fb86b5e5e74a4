//! A/B upgrades and rollback on an installed node.
//!
//! BOOT holds slots `A` and `B`; GRUB boots `cairn_default` unless the
//! one-shot `cairn_next` names a slot to try (see `grubenv`). An upgrade
//! (`receive`) writes the new kernel, initramfs and payload into the slot
//! that is not running, sets `cairn_next` to it, and reboots. The new
//! system marks itself good (`boot::mark_good_when_steady`: makes its slot
//! the default) only once machined reaches steady state; if it never does
//! (its kernel or init fails, or machined gives up after a deadline and
//! reboots), GRUB has already cleared the one-shot flag and the old slot
//! boots again, which records in META why (`boot::on_boot`).
//!
//! META (host::meta) holds the upgrade's state across these boots.

pub mod boot;
pub mod grubenv;
pub mod receive;
pub mod slots;

use std::sync::Arc;

use api::machine::{UpgradeRequest, UpgradeResponse};
use tonic::{Response, Status, Streaming};

use crate::lifecycle::Action;
use crate::shutdown::PowerAction;
use crate::state::Node;
use host::meta::{keys, Meta, MetaError};
use slots::{SlotError, Slots};

pub use boot::on_boot;

pub use config::constants::BOOT_MOUNT;

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error(
        "this node runs live from the ISO and has no boot slots: install it first (machine.install.disk in its config)"
    )]
    Live,
    #[error("the kernel command line names no boot slot (cairn.slot=A|B); was this node booted by Cairn's GRUB?")]
    NoSlot,
    #[error(transparent)]
    Lifecycle(#[from] crate::lifecycle::LifecycleError),
    #[error("the upgrade stream is malformed: {0}")]
    Protocol(String),
    #[error(
        "{asset}: sha256 {got} does not match the client's {expected}; slot {slot} was not changed"
    )]
    Checksum {
        asset: String,
        expected: String,
        got: String,
        slot: &'static str,
    },
    #[error("{asset}: received {got} bytes, the header said {expected}")]
    Size {
        asset: String,
        expected: u64,
        got: u64,
    },
    #[error("{asset}: {size} bytes do not fit in the {free} bytes free on BOOT; slot {slot} was not changed")]
    NoSpace {
        asset: String,
        size: u64,
        free: u64,
        slot: &'static str,
    },
    #[error("{asset}: {source}; slot {slot} was not changed")]
    Signature {
        asset: String,
        source: config::signing::SigningError,
        slot: &'static str,
    },
    #[error("the upgrade did not include the {0} (vmlinuz and initramfs.img are both needed)")]
    Missing(&'static str),
    #[error("slot {0} holds no complete system to roll back to")]
    NotBootable(&'static str),
    #[error("the upgrade stream broke off: {0}; slot {1} was not changed")]
    Stream(String, &'static str),
    #[error(transparent)]
    Slot(#[from] SlotError),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// The one place upgrade errors become gRPC statuses.
pub fn to_status(e: &UpgradeError) -> Status {
    let msg = e.to_string();
    match e {
        UpgradeError::Live
        | UpgradeError::NoSlot
        | UpgradeError::Lifecycle(_)
        | UpgradeError::NotBootable(_) => Status::failed_precondition(msg),
        UpgradeError::Protocol(_)
        | UpgradeError::Checksum { .. }
        | UpgradeError::Size { .. }
        | UpgradeError::Missing(_) => Status::invalid_argument(msg),
        UpgradeError::Stream(..) => Status::aborted(msg),
        UpgradeError::NoSpace { .. } => Status::resource_exhausted(msg),
        UpgradeError::Signature { .. } => Status::permission_denied(msg),
        UpgradeError::Slot(_) | UpgradeError::Meta(_) => Status::internal(msg),
    }
}

/// The installed system as this boot found it: BOOT (mounted), META, and
/// the slot that booted.
pub struct System {
    pub slots: Slots,
    pub meta: Arc<Meta>,
    pub booted: Option<&'static str>,
}

impl System {
    fn booted(&self) -> Result<&'static str, UpgradeError> {
        self.booted.ok_or(UpgradeError::NoSlot)
    }
}

/// The Upgrade RPC: delegate and map the error.
pub async fn handle_upgrade(
    node: &Arc<Node>,
    stream: Streaming<UpgradeRequest>,
) -> Result<Response<UpgradeResponse>, Status> {
    receive::receive(node, stream)
        .await
        .map(Response::new)
        .map_err(|e| {
            runtime::console!("upgrade: {e}");
            to_status(&e)
        })
}

/// Rollback: the other slot becomes the default, then reboot.
pub async fn rollback(node: &Arc<Node>) -> Result<&'static str, UpgradeError> {
    let sys = node.lifecycle.system().ok_or(UpgradeError::Live)?;
    let booted = sys.booted()?;
    let guard = node.lifecycle.begin(Action::Rollback)?;
    let target = slots::other(booted);
    if !sys.slots.bootable(target) {
        return Err(UpgradeError::NotBootable(target));
    }
    sys.slots.make_default(target)?;
    sys.meta.update(|v| {
        v.insert(keys::UPGRADE_STATE.into(), keys::state::ROLLED_BACK.into());
        v.insert(keys::UPGRADE_SLOT.into(), target.into());
        v.insert(keys::UPGRADE_FROM.into(), booted.into());
        v.insert(keys::UPGRADE_TIME.into(), host::meta::now());
    })?;
    runtime::console!("upgrade: rollback: slot {target} is the default now; rebooting");
    // A rollback decides a pending trial: the old slot is the default now.
    node.lifecycle.set_trial(None);
    guard.power(PowerAction::Reboot, &format!("rollback to slot {target}"));
    Ok(target)
}

/// The Rollback RPC.
pub async fn handle_rollback(node: &Arc<Node>) -> Result<Response<()>, Status> {
    rollback(node)
        .await
        .map(|_| Response::new(()))
        .map_err(|e| to_status(&e))
}
