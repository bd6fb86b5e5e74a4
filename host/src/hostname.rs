//! The hostname of a node that was not given one: `cairn-` and a random
//! suffix kept on STATE, so it is stable across reboots and two nodes
//! never share it (QEMU gives every VM the same default MAC, so the MAC's
//! last bytes named them all `cairn-123456`). Until STATE is mounted (early
//! boot, a live boot without STATE) the MAC-based name stands in.

use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// The suffix's file on STATE.
pub const SUFFIX_FILE: &str = "hostname-suffix";

/// The default hostname: from STATE's suffix when STATE is mounted
/// (creating the suffix the first time), else from the MAC address.
pub fn default_hostname(mac: Option<[u8; 6]>) -> String {
    match stable_suffix(Path::new(config::constants::STATE_MOUNT)) {
        Some(s) => format!("cairn-{s}"),
        None => mac_hostname(mac),
    }
}

/// `cairn-` and the last three bytes of the MAC address: the name before
/// STATE is known (stable across reboots, but not unique among VMs).
pub fn mac_hostname(mac: Option<[u8; 6]>) -> String {
    match mac {
        Some(m) => format!("cairn-{:02x}{:02x}{:02x}", m[3], m[4], m[5]),
        None => "cairn".to_string(),
    }
}

fn valid(s: &str) -> bool {
    s.len() == 6
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Whether `dir` is a mount point (another device than its parent's).
fn is_mount_point(dir: &Path) -> bool {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    match (std::fs::metadata(dir), std::fs::metadata(parent)) {
        (Ok(d), Ok(p)) => d.dev() != p.dev(),
        _ => false,
    }
}

/// The suffix kept in `state`, made (6 random hex digits) if there is none
/// and `state` is a mounted filesystem.
pub fn stable_suffix(state: &Path) -> Option<String> {
    let file = state.join(SUFFIX_FILE);
    if let Ok(s) = std::fs::read_to_string(&file) {
        let s = s.trim();
        if valid(s) {
            return Some(s.to_string());
        }
    }
    if !is_mount_point(state) {
        return None;
    }
    let mut bytes = [0u8; 3];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .ok()?;
    let suffix = hex::encode(bytes);
    config::fsutil::write_private(&file, format!("{suffix}\n").as_bytes(), true).ok()?;
    Some(suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_suffix_is_used_and_nothing_is_made_off_a_mount() {
        let dir = tempfile::tempdir().unwrap();
        // A plain directory (not a mount point): no suffix is made.
        assert_eq!(stable_suffix(dir.path()), None);
        assert!(!dir.path().join(SUFFIX_FILE).exists());
        std::fs::write(dir.path().join(SUFFIX_FILE), "a1b2c3\n").unwrap();
        assert_eq!(stable_suffix(dir.path()).as_deref(), Some("a1b2c3"));
        std::fs::write(dir.path().join(SUFFIX_FILE), "../etc\n").unwrap();
        assert_eq!(stable_suffix(dir.path()), None);
    }

    #[test]
    fn a_mounted_state_gets_a_random_suffix_once() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!(
                "SKIPPED a_mounted_state_gets_a_random_suffix_once: needs root (mounts a tmpfs)"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        if let Err(e) = nix::mount::mount(
            Some("tmpfs"),
            &state,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        ) {
            eprintln!(
                "SKIPPED a_mounted_state_gets_a_random_suffix_once: cannot mount a tmpfs: {e}"
            );
            return;
        }
        let first = stable_suffix(&state);
        let again = stable_suffix(&state);
        let other = {
            std::fs::remove_file(state.join(SUFFIX_FILE)).unwrap();
            stable_suffix(&state)
        };
        let _ = nix::mount::umount(&state);
        let first = first.expect("a suffix on a mounted STATE");
        assert!(valid(&first), "{first}");
        assert_eq!(again.as_deref(), Some(first.as_str()));
        // Another node (a fresh STATE) draws another suffix (1 in 16M to clash).
        assert_ne!(other.as_deref(), Some(first.as_str()));
    }
}
