//! Least privilege for apid. machined starts it as an unprivileged user
//! (uid 50) with `no_new_privs` and hands it its certificate and key as
//! open descriptors, so apid needs no capability at all; this module makes
//! sure of that even when apid is started some other way (as root).

use caps::CapSet;

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(std::io::Error),
    #[error("cannot drop capabilities: {0}")]
    Caps(#[from] caps::errors::CapsError),
}

/// Sets no_new_privs, empties the bounding set (when allowed), and clears
/// every capability set. Listening on :50000 needs none.
pub fn drop_all() -> Result<(), PrivilegeError> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(PrivilegeError::NoNewPrivs(std::io::Error::last_os_error()));
    }
    if caps::has_cap(None, CapSet::Effective, caps::Capability::CAP_SETPCAP)? {
        caps::clear(None, CapSet::Bounding)?;
    }
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set)?;
    }
    Ok(())
}

/// A one-line description for the log: uid and remaining capabilities.
pub fn describe() -> String {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let permitted = caps::read(None, CapSet::Permitted)
        .map(|c| c.len())
        .unwrap_or(usize::MAX);
    format!("uid {uid} gid {gid}, {permitted} permitted capabilities")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dropping privileges is irreversible, but capabilities and
    /// no_new_privs are per thread on Linux, so a dedicated thread can drop
    /// them without affecting the rest of the test process.
    #[test]
    fn drop_all_leaves_no_capabilities() {
        std::thread::spawn(|| {
            drop_all().unwrap();
            assert!(caps::read(None, CapSet::Effective).unwrap().is_empty());
            assert!(caps::read(None, CapSet::Permitted).unwrap().is_empty());
        })
        .join()
        .unwrap();
    }
}
