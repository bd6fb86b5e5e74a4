//! Sockets as /proc/net/{tcp,tcp6,udp,udp6} list them, with the process
//! holding each (found through /proc/<pid>/fd links to `socket:[inode]`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use api::machine::Socket;

const TCP_STATES: [&str; 12] = [
    "",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
];

/// `0100007F:1F90` (address in host byte order words, port in hex).
fn parse_endpoint(s: &str) -> Option<(IpAddr, u32)> {
    let (addr, port) = s.split_once(':')?;
    let port = u32::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(addr, 16).ok()?.swap_bytes(),
        )),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).ok()?;
                chunk.copy_from_slice(&word.swap_bytes().to_be_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some((ip, port))
}

/// The sockets of one /proc/net table.
pub fn parse_table(protocol: &str, text: &str) -> Vec<Socket> {
    let tcp = protocol.starts_with("tcp");
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, lport) = parse_endpoint(f.get(1)?)?;
            let (remote, rport) = parse_endpoint(f.get(2)?)?;
            let state = usize::from_str_radix(f.get(3)?, 16).ok()?;
            let (tx, rx) = f.get(4)?.split_once(':')?;
            Some(Socket {
                protocol: protocol.to_string(),
                local_address: local.to_string(),
                local_port: lport,
                remote_address: remote.to_string(),
                remote_port: rport,
                state: if tcp {
                    TCP_STATES
                        .get(state)
                        .copied()
                        .unwrap_or("UNKNOWN")
                        .to_string()
                } else {
                    String::new()
                },
                uid: f.get(7)?.parse().ok()?,
                inode: f.get(9)?.parse().ok()?,
                pid: 0,
                process: String::new(),
                tx_queue: u64::from_str_radix(tx, 16).unwrap_or(0),
                rx_queue: u64::from_str_radix(rx, 16).unwrap_or(0),
            })
        })
        .collect()
}

/// Socket inode -> (pid, command name), from every process's fds.
fn socket_owners(proc: &Path) -> BTreeMap<u64, (i32, String)> {
    let mut owners = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(proc) else {
        return owners;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            if let Some(inode) = t
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|i| i.parse().ok())
            {
                owners.entry(inode).or_insert((pid, comm.clone()));
            }
        }
    }
    owners
}

/// Every TCP and UDP socket of the node (only listening ones if asked).
pub fn sockets(proc: &Path, listening: bool) -> Vec<Socket> {
    let mut all = Vec::new();
    for protocol in ["tcp", "tcp6", "udp", "udp6"] {
        if let Ok(text) = std::fs::read_to_string(proc.join("net").join(protocol)) {
            all.extend(parse_table(protocol, &text));
        }
    }
    if listening {
        all.retain(|s| s.state == "LISTEN" || (s.state.is_empty() && s.remote_port == 0));
    }
    let owners = socket_owners(proc);
    for s in &mut all {
        if let Some((pid, comm)) = owners.get(&s.inode) {
            s.pid = *pid;
            s.process = comm.clone();
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tables() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:C350 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0F02000A:C350 0202000A:D2F0 01 00000010:00000002 00:00000000 00000000   100        0 12346 1 0000000000000000 20 4 30 10 -1
";
        let s = parse_table("tcp", tcp);
        assert_eq!(s.len(), 2);
        assert_eq!(
            (
                s[0].local_address.as_str(),
                s[0].local_port,
                s[0].state.as_str()
            ),
            ("0.0.0.0", 50000, "LISTEN")
        );
        assert_eq!(
            (s[1].local_address.as_str(), s[1].remote_address.as_str()),
            ("10.0.2.15", "10.0.2.2")
        );
        assert_eq!(
            (s[1].state.as_str(), s[1].uid, s[1].inode, s[1].tx_queue),
            ("ESTABLISHED", 100, 12346, 16)
        );
        let udp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 00000000000000000000000001000000:007B 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777 2 0000000000000000 0
";
        let s = parse_table("udp6", udp6);
        assert_eq!(
            (
                s[0].local_address.as_str(),
                s[0].local_port,
                s[0].state.as_str()
            ),
            ("::1", 123, "")
        );
    }

    /// This test process's own listening socket is found with its pid.
    #[test]
    fn finds_a_real_listener_and_its_process() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = u32::from(l.local_addr().unwrap().port());
        let all = sockets(Path::new("/proc"), true);
        let me = all
            .iter()
            .find(|s| s.protocol == "tcp" && s.local_port == port)
            .expect("our listener");
        assert_eq!(me.state, "LISTEN");
        assert_eq!(me.pid, std::process::id() as i32);
    }
}
