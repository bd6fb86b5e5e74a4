//! /etc/resolv.conf and /etc/hosts. The root is read-only; both are
//! symlinks into the /system/etc tmpfs, which is written here.

use std::net::IpAddr;
use std::path::Path;

/// Where /etc/resolv.conf and /etc/hosts point.
pub const SYSTEM_ETC: &str = "/system/etc";

/// resolv.conf naming at most three servers (the resolver's limit);
/// `source` says where they came from.
pub fn resolv_conf(dns: &[IpAddr], domain: Option<&str>, source: &str) -> String {
    let mut s = format!("# written by machined from {source}\n");
    for d in dns.iter().take(3) {
        s.push_str(&format!("nameserver {d}\n"));
    }
    if let Some(domain) = domain {
        s.push_str(&format!("search {domain}\n"));
    }
    s
}

pub fn hosts(hostname: &str, address: Option<IpAddr>) -> String {
    let mut s = format!("127.0.0.1 localhost\n::1 localhost\n127.0.1.1 {hostname}\n");
    if let Some(a) = address {
        s.push_str(&format!("{a} {hostname}\n"));
    }
    s
}

/// Writes a file atomically (temp file + rename) so readers never see a
/// half-written resolv.conf.
pub fn write_atomic(dir: &Path, name: &str, contents: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_resolv_and_hosts() {
        let r = resolv_conf(
            &["10.0.2.3".parse().unwrap()],
            Some("example.internal"),
            "the DHCP lease",
        );
        assert!(r.starts_with("# written by machined from the DHCP lease\n"));
        assert!(r.contains("nameserver 10.0.2.3\n"));
        assert!(r.contains("search example.internal\n"));
        let h = hosts("node1", Some("10.0.2.15".parse().unwrap()));
        assert!(h.contains("127.0.0.1 localhost\n"));
        assert!(h.contains("10.0.2.15 node1\n"));
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "hosts", &h).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("hosts")).unwrap(),
            h
        );
    }
}
