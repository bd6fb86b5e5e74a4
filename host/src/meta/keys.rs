//! The keys machined keeps in META. One place, so the upgrade, rollback,
//! reset and boot code agree on names.

/// What an upgrade is doing: see [`state`].
pub const UPGRADE_STATE: &str = "upgrade.state";
/// The slot an upgrade writes or tries (`A` or `B`).
pub const UPGRADE_SLOT: &str = "upgrade.slot";
/// The slot that was running when the upgrade started.
pub const UPGRADE_FROM: &str = "upgrade.from";
/// The version the client said it sends (may be empty).
pub const UPGRADE_VERSION: &str = "upgrade.version";
/// When the upgrade (or its last step) happened.
pub const UPGRADE_TIME: &str = "upgrade.time";

/// Values of [`UPGRADE_STATE`].
pub mod state {
    /// Writing the new slot's files; a boot that finds this was cut off.
    pub const WRITING: &str = "writing";
    /// The new slot is the one-shot boot: waiting for it to mark itself good.
    pub const TRYING: &str = "trying";
    /// The new slot reached steady state and is the default.
    pub const GOOD: &str = "good";
    /// The new slot did not mark itself good; the old one booted again.
    pub const FAILED: &str = "failed";
    /// The new slot gave up waiting for steady state and rebooted (the old
    /// slot then records FAILED).
    pub const GAVE_UP: &str = "gave-up";
    /// The write of the new slot was interrupted; the old slot kept booting.
    pub const INTERRUPTED: &str = "interrupted";
    /// `cairnctl rollback` made the other slot the default.
    pub const ROLLED_BACK: &str = "rolled-back";
}

/// Boots of each slot: `boot.count.A`, `boot.count.B`.
pub fn boot_count(slot: &str) -> String {
    format!("boot.count.{slot}")
}
/// The slot of the last boot.
pub const BOOT_LAST: &str = "boot.last";

/// The last failed boot: the slot, its version, when, why, and the tail of
/// the kernel log when the failing system could save it.
pub const FAILURE_SLOT: &str = "failure.slot";
pub const FAILURE_VERSION: &str = "failure.version";
pub const FAILURE_TIME: &str = "failure.time";
pub const FAILURE_REASON: &str = "failure.reason";
pub const FAILURE_LOG: &str = "failure.log";

/// When and which version was installed.
pub const INSTALL_TIME: &str = "install.time";
pub const INSTALL_VERSION: &str = "install.version";
/// Why the last upgrade stopped before its slot was complete.
pub const UPGRADE_ERROR: &str = "upgrade.error";
