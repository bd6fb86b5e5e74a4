//! What every boot of an installed node does about slots: mount BOOT, open
//! META, count the boot, and settle the upgrade META says is under way:
//! - `writing`: the previous boot was cut off while writing the other slot
//!   (GRUB never pointed at it): recorded as interrupted;
//! - `trying`, booted the new slot: this is its one trial; it becomes the
//!   default once machined is steady, or records why not and reboots;
//! - `trying`, booted the old slot: the new one failed before it could
//!   mark itself good (GRUB cleared the one-shot flag): recorded as failed.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::mount::MsFlags;

use super::slots::{self, Slots};
use super::{System, BOOT_MOUNT};
use crate::lifecycle::{Action, LifecycleError};
use crate::shutdown::PowerAction;
use crate::state::Node;
use config::constants::partition;
use host::disks::BlockDevice;
use host::meta::{keys, Meta, Values};
use runtime::supervisor::{Health, State};
use system::mounts::{self, MountPoint};
use system::syscall::Syscalls;

/// How long a tried slot has to reach steady state; `cairn.upgrade.timeout`
/// (seconds) on the kernel command line overrides it.
pub const TRIAL_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Kernel log bytes kept in META when a tried slot gives up.
const LOG_TAIL: usize = 24 * 1024;

/// BOOT and META on the disk that holds STATE or EPHEMERAL.
pub fn find_boot_partitions(devices: &[BlockDevice]) -> Option<(BlockDevice, BlockDevice)> {
    let disk = host::partitions::find(devices)?.disk?;
    let on_disk = |name: &str| {
        devices
            .iter()
            .find(|d| {
                d.is_partition
                    && d.parent.as_deref() == Some(&disk)
                    && d.partname.as_deref() == Some(name)
            })
            .cloned()
    };
    Some((on_disk(partition::BOOT)?, on_disk(partition::META)?))
}

/// The boot hook (called once STATE and EPHEMERAL are mounted).
pub async fn on_boot(sys: &dyn Syscalls, node: &Arc<Node>, devices: &[BlockDevice]) {
    let Some((boot, meta_part)) = find_boot_partitions(devices) else {
        return;
    };
    let m = MountPoint::new(
        &boot.node.to_string_lossy(),
        BOOT_MOUNT,
        "ext4",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    );
    if let Err(e) = mounts::apply_one(sys, &m) {
        runtime::console!(
            "upgrade: cannot mount BOOT ({}): {e}; upgrades are off",
            boot.node.display()
        );
        return;
    }
    let meta = match Meta::open(&meta_part.node, Some(&node.store)) {
        Ok(m) => m,
        Err(e) => {
            runtime::console!("upgrade: {e}; upgrades are off");
            return;
        }
    };
    let booted = node.cmdline.slot().and_then(slots::parse);
    let system = Arc::new(System {
        slots: Slots::boot(BOOT_MOUNT),
        meta: meta.clone(),
        booted,
    });
    node.lifecycle.set_system(system.clone());
    let Some(slot) = booted else {
        runtime::console!("upgrade: no cairn.slot= on the kernel command line; upgrades are off");
        return;
    };
    let timeout = node
        .cmdline
        .get("cairn.upgrade.timeout")
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(TRIAL_TIMEOUT);
    match settle(&system.slots, &meta, slot) {
        Ok(Settled::Trial) => {
            node.lifecycle.set_trial(Some(slot));
            runtime::console!(
                "upgrade: slot {slot} boots on trial; it becomes the default once machined is steady (within {} s)",
                timeout.as_secs()
            );
            tokio::spawn(mark_good_when_steady(node.clone(), system, slot, timeout));
        }
        Ok(Settled::Failed(reason)) | Ok(Settled::Interrupted(reason)) => {
            runtime::console!("upgrade: {reason}")
        }
        Ok(Settled::Nothing) => {}
        Err(e) => runtime::console!("upgrade: cannot settle META: {e}"),
    }
}

/// What this boot is, upgrade-wise.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    Nothing,
    Trial,
    Failed(String),
    Interrupted(String),
}

/// Counts the boot of `slot` and settles the upgrade state in META.
pub fn settle(
    slots: &Slots,
    meta: &Meta,
    slot: &'static str,
) -> Result<Settled, host::meta::MetaError> {
    let before = meta.values();
    let get = |k: &str| before.get(k).cloned().unwrap_or_default();
    let state = get(keys::UPGRADE_STATE);
    let target = get(keys::UPGRADE_SLOT);
    let version = get(keys::UPGRADE_VERSION);
    let mut settled = Settled::Nothing;
    let mut changes: Values = Values::new();
    let count = get(&keys::boot_count(slot)).parse::<u64>().unwrap_or(0) + 1;
    changes.insert(keys::boot_count(slot), count.to_string());
    changes.insert(keys::BOOT_LAST.into(), slot.into());
    let named = |v: &str| {
        if v.is_empty() {
            String::new()
        } else {
            format!(" ({v})")
        }
    };
    if state == keys::state::WRITING {
        let _ = slots.drop_staging(&target);
        let reason = format!(
            "the upgrade of slot {target}{} was interrupted while its files were written (power cut or crash); slot {slot} kept booting",
            named(&version)
        );
        changes.insert(keys::UPGRADE_STATE.into(), keys::state::INTERRUPTED.into());
        changes.insert(keys::UPGRADE_ERROR.into(), reason.clone());
        settled = Settled::Interrupted(reason);
    } else if state == keys::state::TRYING && target == slot {
        settled = Settled::Trial;
    } else if state == keys::state::TRYING {
        let reason = format!(
            "slot {target}{} did not mark itself good: it failed before machined reached steady state \
             (kernel, init or machined), so slot {slot} booted again",
            named(&version)
        );
        changes.insert(keys::UPGRADE_STATE.into(), keys::state::FAILED.into());
        changes.insert(keys::FAILURE_SLOT.into(), target.clone());
        changes.insert(keys::FAILURE_VERSION.into(), version.clone());
        changes.insert(keys::FAILURE_TIME.into(), host::meta::now());
        changes.insert(keys::FAILURE_REASON.into(), reason.clone());
        changes.insert(
            keys::FAILURE_LOG.into(),
            "(none: the failed system did not get far enough to save its kernel log)".into(),
        );
        settled = Settled::Failed(reason);
    } else if state == keys::state::GAVE_UP && get(keys::FAILURE_SLOT) == slots::other(slot) {
        // The tried slot saved its own failure before rebooting.
        changes.insert(keys::UPGRADE_STATE.into(), keys::state::FAILED.into());
        settled = Settled::Failed(format!(
            "slot {} gave up and slot {slot} booted again: {}",
            slots::other(slot),
            get(keys::FAILURE_REASON)
        ));
    }
    meta.update(|v| v.extend(changes))?;
    Ok(settled)
}

/// Steady state: apid runs and no service has failed or fails its health
/// check. Services still waiting for a condition (e.g. a bootstrap) do not
/// hold a new slot back.
pub fn steady(node: &Node) -> Result<(), String> {
    let services = node.supervisor.list();
    let apid = services
        .iter()
        .find(|s| s.id == "apid")
        .ok_or("apid is not started yet")?;
    if apid.snapshot().state != State::Running {
        return Err(format!("apid is {}", apid.snapshot().state));
    }
    for s in &services {
        let snap = s.snapshot();
        if snap.state == State::Failed
            || (snap.state == State::Running && snap.health == Health::Failing)
        {
            return Err(format!(
                "service {} is {} ({})",
                s.id, snap.state, snap.health_message
            ));
        }
        if snap.state == State::Running && snap.has_health_check && snap.health == Health::Unknown {
            return Err(format!(
                "service {} has not passed its health check yet",
                s.id
            ));
        }
    }
    Ok(())
}

/// How a trial boot stands at one check.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Steady,
    NotYet,
    /// Give up now and boot the old slot again.
    Failed(String),
}

/// A trial boot fails at once when the node ended in maintenance mode:
/// the new system could not use the stored config, and maintenance mode
/// with STATE attached would let anyone replace the installed node's
/// config. Otherwise it is steady, or not yet until `timed_out`.
pub fn trial_verdict(node: &Node, timed_out: bool) -> Verdict {
    if node.maintenance() {
        return Verdict::Failed(
            "the new system could not use the node's config and entered maintenance mode".into(),
        );
    }
    match steady(node) {
        Ok(()) => Verdict::Steady,
        Err(why) if timed_out => Verdict::Failed(why),
        Err(_) => Verdict::NotYet,
    }
}

/// Makes `slot` the default once the node is steady; after `timeout`,
/// saves why not and the kernel log's tail in META and reboots (GRUB then
/// boots the old default).
pub async fn mark_good_when_steady(
    node: Arc<Node>,
    sys: Arc<System>,
    slot: &'static str,
    timeout: Duration,
) {
    let started = Instant::now();
    // Steady for a few checks in a row, so a service that starts and then
    // crashes is not taken for good.
    let mut steady_checks = 0;
    let last = loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if node.lifecycle.trial() != Some(slot) {
            // A rollback decided the trial meanwhile.
            return;
        }
        match trial_verdict(&node, started.elapsed() >= timeout) {
            Verdict::Steady => {
                steady_checks += 1;
                if steady_checks >= 3 {
                    break Ok(());
                }
            }
            Verdict::NotYet => steady_checks = 0,
            Verdict::Failed(why) => break Err(why),
        }
    };
    // Marking good (or giving up) changes the slots: under the lifecycle,
    // like every slot change; a rollback that runs now decides instead.
    let guard = loop {
        match node.lifecycle.begin(Action::MarkGood) {
            Ok(g) => break g,
            Err(LifecycleError::PoweringOff(_)) => return,
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    };
    if node.lifecycle.trial() != Some(slot) {
        return;
    }
    node.lifecycle.set_trial(None);
    match last {
        Ok(()) => {
            let r = sys
                .slots
                .make_default(slot)
                .map_err(|e| e.to_string())
                .and_then(|_| {
                    sys.meta
                        .update(|v| {
                            v.insert(keys::UPGRADE_STATE.into(), keys::state::GOOD.into());
                            v.insert(keys::UPGRADE_TIME.into(), host::meta::now());
                        })
                        .map_err(|e| e.to_string())
                });
            match r {
                Ok(()) => runtime::console!("upgrade: slot {slot} is steady and now the default"),
                Err(e) => runtime::console!(
                    "upgrade: slot {slot} is steady but cannot be made the default: {e}"
                ),
            }
        }
        Err(why) => {
            let reason = format!(
                "slot {slot} ({}) was not steady within {} s: {why}; rebooting into slot {}",
                config::version::running().version,
                timeout.as_secs(),
                slots::other(slot)
            );
            runtime::console!("upgrade: {reason}");
            let log = kmsg_tail(Path::new("/dev/kmsg"), LOG_TAIL);
            let _ = sys.meta.update(|v| {
                v.insert(keys::UPGRADE_STATE.into(), keys::state::GAVE_UP.into());
                v.insert(keys::FAILURE_SLOT.into(), slot.into());
                v.insert(
                    keys::FAILURE_VERSION.into(),
                    config::version::running().version.clone(),
                );
                v.insert(keys::FAILURE_TIME.into(), host::meta::now());
                v.insert(keys::FAILURE_REASON.into(), reason.clone());
                v.insert(keys::FAILURE_LOG.into(), log);
            });
            guard.power(PowerAction::Reboot, &reason);
        }
    }
}

/// The last `max` bytes of the kernel log, as dmesg prints it.
pub fn kmsg_tail(path: &Path, max: usize) -> String {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    else {
        return String::new();
    };
    let mut lines = std::collections::VecDeque::new();
    let mut total = 0;
    let mut buf = vec![0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(line) = host::dmesg::format_record(&String::from_utf8_lossy(&buf[..n]))
                {
                    total += line.len() + 1;
                    lines.push_back(line);
                    while total > max {
                        match lines.pop_front() {
                            Some(l) => total -= l.len() + 1,
                            None => break,
                        }
                    }
                }
            }
            // EPIPE: records were overwritten while reading; go on.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    lines.into_iter().collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> (tempfile::TempDir, Slots, Arc<Meta>) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meta");
        std::fs::File::create(&p).unwrap().set_len(1 << 20).unwrap();
        let slots = Slots::new(dir.path().join("boot"));
        (dir, slots, Meta::open(&p, None).unwrap())
    }

    fn set(m: &Meta, kv: &[(&str, &str)]) {
        m.update(|v| {
            for (k, val) in kv {
                v.insert(k.to_string(), val.to_string());
            }
        })
        .unwrap();
    }

    #[test]
    fn boots_are_counted_and_trials_recognised() {
        let (_d, slots, m) = meta();
        assert_eq!(settle(&slots, &m, "A").unwrap(), Settled::Nothing);
        assert_eq!(settle(&slots, &m, "A").unwrap(), Settled::Nothing);
        assert_eq!(m.get("boot.count.A").as_deref(), Some("2"));
        set(
            &m,
            &[
                (keys::UPGRADE_STATE, "trying"),
                (keys::UPGRADE_SLOT, "B"),
                (keys::UPGRADE_VERSION, "v2"),
            ],
        );
        assert_eq!(settle(&slots, &m, "B").unwrap(), Settled::Trial);
        assert_eq!(m.get(keys::BOOT_LAST).as_deref(), Some("B"));
    }

    #[test]
    fn the_old_slot_booting_during_a_trial_records_the_failure() {
        let (_d, slots, m) = meta();
        set(
            &m,
            &[
                (keys::UPGRADE_STATE, "trying"),
                (keys::UPGRADE_SLOT, "B"),
                (keys::UPGRADE_VERSION, "v2"),
            ],
        );
        let Settled::Failed(reason) = settle(&slots, &m, "A").unwrap() else {
            panic!()
        };
        assert!(
            reason.contains("slot B (v2) did not mark itself good"),
            "{reason}"
        );
        assert_eq!(m.get(keys::UPGRADE_STATE).as_deref(), Some("failed"));
        assert_eq!(m.get(keys::FAILURE_SLOT).as_deref(), Some("B"));
        assert_eq!(m.get(keys::FAILURE_REASON), Some(reason));
        // The next boot has nothing to settle.
        assert_eq!(settle(&slots, &m, "A").unwrap(), Settled::Nothing);
        // A tried slot that gave up by itself left its reason: reported once.
        set(
            &m,
            &[
                (keys::UPGRADE_STATE, "gave-up"),
                (keys::FAILURE_SLOT, "B"),
                (keys::FAILURE_REASON, "apid is Failed"),
            ],
        );
        let Settled::Failed(reason) = settle(&slots, &m, "A").unwrap() else {
            panic!()
        };
        assert!(reason.contains("apid is Failed"), "{reason}");
        assert_eq!(settle(&slots, &m, "A").unwrap(), Settled::Nothing);
    }

    #[test]
    fn an_interrupted_write_is_recorded_and_its_files_dropped() {
        let (_d, slots, m) = meta();
        slots.start_staging("B").unwrap();
        set(
            &m,
            &[(keys::UPGRADE_STATE, "writing"), (keys::UPGRADE_SLOT, "B")],
        );
        let Settled::Interrupted(reason) = settle(&slots, &m, "A").unwrap() else {
            panic!()
        };
        assert!(reason.contains("interrupted"), "{reason}");
        assert!(!slots.staging("B").exists());
        assert_eq!(m.get(keys::UPGRADE_STATE).as_deref(), Some("interrupted"));
    }

    #[test]
    fn finds_boot_and_meta_on_the_system_disk() {
        let dev = |name: &str, part: Option<&str>, parent: &str| BlockDevice {
            name: name.into(),
            node: format!("/dev/{name}").into(),
            is_partition: part.is_some(),
            partn: None,
            partname: part.map(str::to_string),
            parent: part.map(|_| parent.to_string()),
            size_bytes: 1,
            read_only: false,
        };
        let devices = vec![
            dev("sr0", None, ""),
            dev("vdb3", Some("BOOT"), "vdb"),
            dev("vda3", Some("BOOT"), "vda"),
            dev("vda4", Some("META"), "vda"),
            dev("vda5", Some("STATE"), "vda"),
        ];
        let (b, m) = find_boot_partitions(&devices).unwrap();
        assert_eq!((b.name.as_str(), m.name.as_str()), ("vda3", "vda4"));
        assert!(find_boot_partitions(&devices[..3]).is_none());
    }

    /// Race 3: a trial boot that lands in maintenance mode (the new system
    /// could not use the stored config) fails at once, so the node rolls
    /// back instead of waiting out the trial with STATE open to anyone.
    #[tokio::test]
    async fn a_trial_that_ends_in_maintenance_mode_fails_at_once() {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let node = Node::new(
            host::cmdline::Cmdline::parse("cairn.slot=B"),
            runtime::supervisor::Supervisor::new(),
            Arc::new(runtime::supervisor::logbuf::LogRing::new(1024)),
            tx,
        );
        // No apid yet: not steady, but not a failure before the timeout.
        assert_eq!(trial_verdict(&node, false), Verdict::NotYet);
        assert!(matches!(trial_verdict(&node, true), Verdict::Failed(_)));
        node.set_maintenance(true);
        match trial_verdict(&node, false) {
            Verdict::Failed(why) => assert!(why.contains("maintenance mode"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
