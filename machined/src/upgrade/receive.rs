//! The Upgrade RPC's client stream: for each asset a header (name, size,
//! version, stage), its bytes in chunks, then its sha256. Every asset is
//! written into the inactive slot's staging directory and fsynced; when the
//! stream ends complete, the staging directory replaces the slot and GRUB's
//! one-shot flag names it. Anything else leaves the slot and GRUB as they
//! were.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use api::machine::upgrade_request::Part;
use api::machine::{UpgradeRequest, UpgradeResponse};
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tonic::Status;

use super::slots::{self, Slots};
use super::UpgradeError;
use crate::lifecycle::Action;
use crate::shutdown::PowerAction;
use crate::state::Node;
use host::meta::{keys, Meta};

/// How long the stream may send nothing while the upgrade holds the
/// node's lifecycle (no apply, reboot or other upgrade meanwhile): a
/// client that stalls gives the node back after this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a complete stream wrote.
#[derive(Debug, PartialEq, Eq)]
pub struct Received {
    pub slot: &'static str,
    pub version: String,
    pub stage: bool,
    pub files: Vec<(String, u64)>,
}

struct Open {
    asset: String,
    path: PathBuf,
    file: File,
    hasher: Sha256,
    expected: u64,
    written: u64,
    /// The asset's detached signature, as the header carried it.
    signature: Option<Vec<u8>>,
}

/// Writes the stream into `target`'s staging directory and, when it is
/// complete and every checksum holds, commits it and sets the one-shot
/// boot. `meta` follows each step. With `trusted_keys`, every asset must
/// carry a signature by one of them over its sha256, checked before the
/// slot is touched.
pub async fn write_slot<S>(
    slots: &Slots,
    meta: &Meta,
    booted: &'static str,
    trusted_keys: &[config::signing::TrustedKey],
    mut stream: S,
) -> Result<Received, UpgradeError>
where
    S: Stream<Item = Result<UpgradeRequest, Status>> + Unpin,
{
    let target = slots::other(booted);
    // A one-shot boot of the slot being rewritten must not happen while it
    // is half written.
    if slots.env().next_slot() == Some(target) {
        slots.update_env(|e| e.set(super::grubenv::NEXT, ""))?;
    }
    meta.update(|v| {
        v.insert(keys::UPGRADE_STATE.into(), keys::state::WRITING.into());
        v.insert(keys::UPGRADE_SLOT.into(), target.into());
        v.insert(keys::UPGRADE_FROM.into(), booted.into());
        v.insert(keys::UPGRADE_VERSION.into(), String::new());
        v.insert(keys::UPGRADE_TIME.into(), host::meta::now());
    })?;
    let staging = slots.start_staging(target)?;
    let io = |what: &'static str, path: &PathBuf| {
        let path = path.clone();
        move |source| UpgradeError::Slot(slots::SlotError::Io { what, path, source })
    };
    let mut open: Option<Open> = None;
    let mut received = Received {
        slot: target,
        version: String::new(),
        stage: false,
        files: Vec::new(),
    };
    loop {
        let msg = match tokio::time::timeout(IDLE_TIMEOUT, stream.next()).await {
            Ok(Some(msg)) => msg,
            Ok(None) => break,
            Err(_) => {
                return Err(UpgradeError::Stream(
                    format!("nothing arrived for {} s", IDLE_TIMEOUT.as_secs()),
                    target,
                ))
            }
        };
        let msg = msg.map_err(|s| UpgradeError::Stream(s.message().to_string(), target))?;
        match msg.part {
            Some(Part::Header(h)) => {
                if let Some(o) = &open {
                    return Err(UpgradeError::Protocol(format!(
                        "{} ended without its sha256",
                        o.asset
                    )));
                }
                let name = slots::asset_file(&h.asset).ok_or_else(|| {
                    UpgradeError::Protocol(format!(
                        "unknown asset {:?} (kernel, initramfs or payload)",
                        h.asset
                    ))
                })?;
                if received.files.iter().any(|(f, _)| f == name) {
                    return Err(UpgradeError::Protocol(format!(
                        "{} was sent twice",
                        h.asset
                    )));
                }
                if !h.version.is_empty() && received.version.is_empty() {
                    received.version = h.version.clone();
                    // So that an interrupted write names what it was.
                    meta.update(|v| {
                        v.insert(keys::UPGRADE_VERSION.into(), h.version.clone());
                    })?;
                }
                received.stage |= h.stage;
                // Refused before a byte is written, rather than when BOOT
                // fills up halfway through.
                let free = free_bytes(&staging);
                if h.size > free {
                    return Err(UpgradeError::NoSpace {
                        asset: h.asset,
                        size: h.size,
                        free,
                        slot: target,
                    });
                }
                let path = staging.join(name);
                let file = File::create(&path).map_err(io("creating", &path))?;
                open = Some(Open {
                    asset: h.asset,
                    path,
                    file,
                    hasher: Sha256::new(),
                    expected: h.size,
                    written: 0,
                    signature: h.signature,
                });
            }
            Some(Part::Chunk(bytes)) => {
                let o = open
                    .as_mut()
                    .ok_or_else(|| UpgradeError::Protocol("data before any header".into()))?;
                // Checked as it streams: a client cannot fill BOOT by
                // sending more than its header announced.
                let after = o.written + bytes.len() as u64;
                if after > o.expected {
                    return Err(UpgradeError::Size {
                        asset: o.asset.clone(),
                        expected: o.expected,
                        got: after,
                    });
                }
                o.file.write_all(&bytes).map_err(io("writing", &o.path))?;
                o.hasher.update(&bytes);
                o.written += bytes.len() as u64;
            }
            Some(Part::Sha256(hex)) => {
                let o = open
                    .take()
                    .ok_or_else(|| UpgradeError::Protocol("sha256 before any header".into()))?;
                let digest: [u8; 32] = o.hasher.finalize().into();
                let got = hex::encode(digest);
                if !got.eq_ignore_ascii_case(hex.trim()) {
                    return Err(UpgradeError::Checksum {
                        asset: o.asset,
                        expected: hex,
                        got,
                        slot: target,
                    });
                }
                if o.written != o.expected {
                    return Err(UpgradeError::Size {
                        asset: o.asset,
                        expected: o.expected,
                        got: o.written,
                    });
                }
                if !trusted_keys.is_empty() {
                    let key =
                        config::signing::verify(&digest, o.signature.as_deref(), trusted_keys)
                            .map_err(|source| UpgradeError::Signature {
                                asset: o.asset.clone(),
                                source,
                                slot: target,
                            })?;
                    runtime::console!("upgrade: {} is signed by trusted key {key}", o.asset);
                }
                o.file.sync_all().map_err(io("syncing", &o.path))?;
                let name = o
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                runtime::console!(
                    "upgrade: received {} ({} bytes) for slot {target}",
                    o.asset,
                    o.written
                );
                received.files.push((name, o.written));
            }
            None => return Err(UpgradeError::Protocol("an empty message".into())),
        }
    }
    if let Some(o) = open {
        return Err(UpgradeError::Protocol(format!(
            "the stream ended in the middle of {}",
            o.asset
        )));
    }
    for (asset, file) in [("kernel", "vmlinuz"), ("initramfs", "initramfs.img")] {
        if !received.files.iter().any(|(f, _)| f == file) {
            return Err(UpgradeError::Missing(asset));
        }
    }
    crate::debug::power_cut("upgrade:staged");
    slots.commit_staging(target)?;
    crate::debug::power_cut("upgrade:committed");
    meta.update(|v| {
        v.insert(keys::UPGRADE_STATE.into(), keys::state::TRYING.into());
        v.insert(keys::UPGRADE_VERSION.into(), received.version.clone());
        v.insert(keys::UPGRADE_TIME.into(), host::meta::now());
    })?;
    slots.try_once(target)?;
    crate::debug::power_cut("upgrade:switched");
    Ok(received)
}

/// Bytes an unprivileged writer may still use on the filesystem of `dir`
/// (0 when it cannot be read, which refuses the upgrade rather than
/// risking a full BOOT).
fn free_bytes(dir: &std::path::Path) -> u64 {
    nix::sys::statvfs::statvfs(dir)
        .map(|s| s.blocks_available().saturating_mul(s.fragment_size()))
        .unwrap_or(0)
}

/// The Upgrade RPC on this node.
pub async fn receive<S>(node: &Arc<Node>, stream: S) -> Result<UpgradeResponse, UpgradeError>
where
    S: Stream<Item = Result<UpgradeRequest, Status>> + Unpin,
{
    let sys = node.lifecycle.system().ok_or(UpgradeError::Live)?;
    let booted = sys.booted()?;
    let guard = node.lifecycle.begin(Action::Upgrade)?;
    guard.phase("receiving the new system");
    runtime::console!(
        "upgrade: receiving a new system for slot {}",
        slots::other(booted)
    );
    let trusted_keys = node
        .running_config()
        .map(|c| c.machine.install.trusted_keys)
        .unwrap_or_default();
    let r = match write_slot(&sys.slots, &sys.meta, booted, &trusted_keys, stream).await {
        Ok(r) => r,
        Err(e) => {
            let _ = sys.slots.drop_staging(slots::other(booted));
            let _ = sys.meta.update(|v| {
                v.insert(keys::UPGRADE_STATE.into(), keys::state::INTERRUPTED.into());
                v.insert(keys::UPGRADE_ERROR.into(), e.to_string());
                v.insert(keys::UPGRADE_TIME.into(), host::meta::now());
            });
            return Err(e);
        }
    };
    guard.phase("switching slots");
    let version = if r.version.is_empty() {
        "a new version".to_string()
    } else {
        r.version.clone()
    };
    let message = if r.stage {
        runtime::console!(
            "upgrade: slot {} holds {version}; it boots once at the next reboot",
            r.slot
        );
        format!("slot {} holds {version}; it boots once at the next reboot and becomes the default when it comes up healthy", r.slot)
    } else {
        runtime::console!(
            "upgrade: slot {} holds {version}; rebooting into it",
            r.slot
        );
        guard.power(PowerAction::Reboot, &format!("upgrade to slot {}", r.slot));
        format!(
            "slot {} holds {version}; the node reboots into it now and keeps it if it comes up healthy (else slot {} boots again)",
            r.slot, booted
        )
    };
    Ok(UpgradeResponse {
        message,
        slot: r.slot.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::machine::UpgradeHeader;

    fn header(asset: &str, size: usize) -> UpgradeRequest {
        UpgradeRequest {
            part: Some(Part::Header(UpgradeHeader {
                asset: asset.into(),
                size: size as u64,
                version: "v9".into(),
                stage: true,
                signature: None,
            })),
        }
    }
    fn chunk(b: &[u8]) -> UpgradeRequest {
        UpgradeRequest {
            part: Some(Part::Chunk(b.to_vec())),
        }
    }
    fn digest(b: &[u8]) -> UpgradeRequest {
        UpgradeRequest {
            part: Some(Part::Sha256(hex::encode(Sha256::digest(b)))),
        }
    }
    fn asset(asset: &str, b: &[u8]) -> Vec<UpgradeRequest> {
        vec![
            header(asset, b.len()),
            chunk(&b[..b.len() / 2]),
            chunk(&b[b.len() / 2..]),
            digest(b),
        ]
    }

    fn setup() -> (tempfile::TempDir, Slots, Arc<Meta>) {
        let dir = tempfile::tempdir().unwrap();
        let boot = dir.path().join("boot");
        let slots = Slots::new(&boot);
        std::fs::create_dir_all(slots.dir("A")).unwrap();
        for f in slots::REQUIRED {
            std::fs::write(slots.dir("A").join(f), b"old").unwrap();
        }
        slots.make_default("A").unwrap();
        let meta_path = dir.path().join("meta");
        File::create(&meta_path).unwrap().set_len(1 << 20).unwrap();
        let meta = Meta::open(&meta_path, None).unwrap();
        (dir, slots, meta)
    }

    fn stream(
        msgs: Vec<UpgradeRequest>,
    ) -> impl Stream<Item = Result<UpgradeRequest, Status>> + Unpin {
        futures::stream::iter(msgs.into_iter().map(Ok))
    }

    #[tokio::test]
    async fn a_complete_stream_fills_the_other_slot_and_tries_it_once() {
        let (_d, slots, meta) = setup();
        let mut msgs = asset("kernel", b"kernel-bytes");
        msgs.extend(asset("initramfs", b"initramfs-bytes"));
        let r = write_slot(&slots, &meta, "A", &[], stream(msgs))
            .await
            .unwrap();
        assert_eq!(r.slot, "B");
        assert_eq!(r.version, "v9");
        assert!(r.stage);
        assert_eq!(
            std::fs::read(slots.dir("B").join("vmlinuz")).unwrap(),
            b"kernel-bytes"
        );
        let env = slots.env();
        assert_eq!((env.default_slot(), env.next_slot()), ("A", Some("B")));
        assert_eq!(
            meta.get(keys::UPGRADE_STATE).as_deref(),
            Some(keys::state::TRYING)
        );
        assert_eq!(meta.get(keys::UPGRADE_VERSION).as_deref(), Some("v9"));
    }

    /// An asset's messages with `signature` in its header.
    fn signed(name: &str, b: &[u8], signature: Option<String>) -> Vec<UpgradeRequest> {
        let mut msgs = asset(name, b);
        if let Some(Part::Header(h)) = &mut msgs[0].part {
            h.signature = signature.map(String::into_bytes);
        }
        msgs
    }

    #[tokio::test]
    async fn with_trusted_keys_only_assets_signed_by_one_of_them_are_written() {
        let (private, public) = config::signing::generate().unwrap();
        let (other_private, _) = config::signing::generate().unwrap();
        let sig = |key: &str, b: &[u8]| {
            Some(config::signing::sign(key, &Sha256::digest(b).into()).unwrap())
        };
        let keys = [public];
        let refused = [
            ("unsigned", None, "not signed"),
            (
                "signed by another key",
                sig(&other_private, b"kernel-bytes"),
                "does not trust",
            ),
            (
                "signed for other bytes",
                sig(&private, b"other-bytes"),
                "bad signature",
            ),
        ];
        for (what, signature, says) in refused {
            let (_d, slots, meta) = setup();
            let mut msgs = signed("kernel", b"kernel-bytes", signature);
            msgs.extend(signed(
                "initramfs",
                b"initramfs-bytes",
                sig(&private, b"initramfs-bytes"),
            ));
            let e = write_slot(&slots, &meta, "A", &keys, stream(msgs))
                .await
                .unwrap_err();
            assert!(matches!(e, UpgradeError::Signature { .. }), "{what}: {e}");
            assert!(e.to_string().contains(says), "{what}: {e}");
            assert_eq!(
                super::super::to_status(&e).code(),
                tonic::Code::PermissionDenied
            );
            assert_eq!(
                std::fs::read(slots.dir("A").join("vmlinuz")).unwrap(),
                b"old"
            );
            assert!(!slots.dir("B").join("vmlinuz").exists(), "{what}");
            assert_eq!(slots.env().next_slot(), None, "{what}");
        }
        let (_d, slots, meta) = setup();
        let mut msgs = signed("kernel", b"kernel-bytes", sig(&private, b"kernel-bytes"));
        msgs.extend(signed(
            "initramfs",
            b"initramfs-bytes",
            sig(&private, b"initramfs-bytes"),
        ));
        let r = write_slot(&slots, &meta, "A", &keys, stream(msgs))
            .await
            .unwrap();
        assert_eq!(r.slot, "B");
        assert_eq!(slots.env().next_slot(), Some("B"));
    }

    #[tokio::test]
    async fn bad_or_short_streams_leave_the_slot_and_grub_alone() {
        let (_d, slots, meta) = setup();
        // Wrong checksum.
        let mut msgs = asset("kernel", b"kernel-bytes");
        msgs[3] = digest(b"other");
        msgs.extend(asset("initramfs", b"i"));
        let e = write_slot(&slots, &meta, "A", &[], stream(msgs))
            .await
            .unwrap_err();
        assert!(matches!(e, UpgradeError::Checksum { .. }), "{e}");
        assert!(e.to_string().contains("slot B was not changed"), "{e}");
        // Cut off in the middle of an asset (what a power cut or a killed
        // client looks like from here).
        let msgs = vec![header("kernel", 10), chunk(b"12345")];
        let e = write_slot(&slots, &meta, "A", &[], stream(msgs))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("in the middle of kernel"), "{e}");
        // A broken transport.
        let msgs: Vec<Result<UpgradeRequest, Status>> = vec![
            Ok(header("kernel", 10)),
            Err(Status::cancelled("client went away")),
        ];
        let e = write_slot(&slots, &meta, "A", &[], futures::stream::iter(msgs))
            .await
            .unwrap_err();
        assert!(matches!(e, UpgradeError::Stream(..)), "{e}");
        // No initramfs.
        let e = write_slot(&slots, &meta, "A", &[], stream(asset("kernel", b"k")))
            .await
            .unwrap_err();
        assert!(matches!(e, UpgradeError::Missing("initramfs")), "{e}");
        // Unknown asset, size mismatch.
        let e = write_slot(&slots, &meta, "A", &[], stream(asset("rootfs", b"r")))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("unknown asset"), "{e}");
        let mut msgs = asset("kernel", b"kk");
        msgs[0] = header("kernel", 3);
        let e = write_slot(&slots, &meta, "A", &[], stream(msgs))
            .await
            .unwrap_err();
        assert!(matches!(e, UpgradeError::Size { .. }), "{e}");
        // More bytes than the header said: refused at the chunk that
        // overflows, before its digest (and before it is written).
        let msgs = vec![header("kernel", 3), chunk(b"kk"), chunk(b"kk")];
        let e = write_slot(&slots, &meta, "A", &[], stream(msgs))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                UpgradeError::Size {
                    expected: 3,
                    got: 4,
                    ..
                }
            ),
            "{e}"
        );
        // More than BOOT can hold: refused at the header.
        let msgs = vec![header("kernel", 1 << 62), chunk(b"k")];
        let e = write_slot(&slots, &meta, "A", &[], stream(msgs))
            .await
            .unwrap_err();
        assert!(matches!(e, UpgradeError::NoSpace { .. }), "{e}");
        assert!(e.to_string().contains("free on BOOT"), "{e}");
        assert_eq!(
            super::super::to_status(&e).code(),
            tonic::Code::ResourceExhausted
        );

        assert!(!slots.dir("B").exists());
        let env = slots.env();
        assert_eq!((env.default_slot(), env.next_slot()), ("A", None));
        assert_eq!(
            meta.get(keys::UPGRADE_STATE).as_deref(),
            Some(keys::state::WRITING)
        );
        assert_eq!(meta.get(keys::UPGRADE_VERSION).as_deref(), Some("v9"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_stalls_is_ended_and_the_slot_left_alone() {
        let (_d, slots, meta) = setup();
        let stalled =
            stream(vec![header("kernel", 10), chunk(b"12345")]).chain(futures::stream::pending());
        let e = write_slot(&slots, &meta, "A", &[], Box::pin(stalled))
            .await
            .unwrap_err();
        assert!(matches!(e, UpgradeError::Stream(..)), "{e}");
        assert!(e.to_string().contains("nothing arrived for 60 s"), "{e}");
        assert_eq!(slots.env().next_slot(), None);
    }

    #[tokio::test]
    async fn a_pending_try_of_the_slot_being_rewritten_is_cancelled_first() {
        let (_d, slots, meta) = setup();
        slots.try_once("B").unwrap();
        let _ = write_slot(&slots, &meta, "A", &[], stream(vec![header("kernel", 1)])).await;
        assert_eq!(slots.env().next_slot(), None);
    }
}
