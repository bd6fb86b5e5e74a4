//! Readers for the few /proc files the API serves: processes
//! (`/proc/<pid>/stat`, `cmdline`, `exe`), `/proc/meminfo` and
//! `/proc/self/mountinfo` (with statvfs sizes).
//!
//! Hand-written rather than the `procfs` crate: these formats are small
//! and stable, and PID 1 stays smaller without a general-purpose /proc
//! library and its dependencies.

use std::path::{Path, PathBuf};

use api::machine as pb;

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn read(path: &Path) -> Result<String, ProcError> {
    std::fs::read_to_string(path).map_err(|source| ProcError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The fields of `/proc/<pid>/stat` the API shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    /// User and system time in clock ticks.
    pub utime: u64,
    pub stime: u64,
    pub threads: i32,
    pub vsize: u64,
    /// Resident set in pages.
    pub rss_pages: u64,
}

/// Parses a `/proc/<pid>/stat` line. The command name sits in parentheses
/// and may itself hold spaces and parentheses, so the fields after it are
/// found from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_string();
    // After ")": state ppid pgrp session tty tpgid flags minflt cminflt
    // majflt cmajflt utime stime cutime cstime priority nice threads
    // itrealvalue starttime vsize rss ...
    let f: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        pid,
        comm,
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        utime: num(11)?,
        stime: num(12)?,
        threads: f.get(17)?.parse().ok()?,
        vsize: num(20)?,
        rss_pages: num(21)?,
    })
}

/// `cmdline` with its NUL separators as spaces.
pub fn parse_cmdline(raw: &[u8]) -> String {
    let trimmed = raw.strip_suffix(b"\0").unwrap_or(raw);
    String::from_utf8_lossy(trimmed).replace('\0', " ")
}

fn sysconf(var: nix::unistd::SysconfVar, fallback: u64) -> u64 {
    nix::unistd::sysconf(var)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(fallback)
}

/// Every process under `proc_root` (normally `/proc`). Processes that
/// exit while being read are left out.
pub fn processes(proc_root: &Path) -> Result<Vec<pb::ProcessInfo>, ProcError> {
    let ticks = sysconf(nix::unistd::SysconfVar::CLK_TCK, 100) as f64;
    let page = sysconf(nix::unistd::SysconfVar::PAGE_SIZE, 4096);
    let dir = std::fs::read_dir(proc_root).map_err(|source| ProcError::Read {
        path: proc_root.to_path_buf(),
        source,
    })?;
    let mut out: Vec<pb::ProcessInfo> = dir
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| {
            let p = e.path();
            let stat = parse_stat(&std::fs::read_to_string(p.join("stat")).ok()?)?;
            let args = std::fs::read(p.join("cmdline"))
                .map(|c| parse_cmdline(&c))
                .unwrap_or_default();
            let executable = std::fs::read_link(p.join("exe"))
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            Some(pb::ProcessInfo {
                pid: stat.pid,
                ppid: stat.ppid,
                state: stat.state.to_string(),
                threads: stat.threads,
                cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
                virtual_memory: stat.vsize,
                resident_memory: stat.rss_pages * page,
                command: stat.comm,
                executable,
                args,
            })
        })
        .collect();
    out.sort_by_key(|p| p.pid);
    Ok(out)
}

/// `/proc/meminfo` in bytes (the file says kB, meaning KiB).
pub fn parse_meminfo(text: &str) -> pb::MemoryResponse {
    let mut m = pb::MemoryResponse::default();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let Some(value) = words.next().and_then(|v| v.parse::<u64>().ok()) else {
            continue;
        };
        let bytes = if words.next() == Some("kB") {
            value * 1024
        } else {
            value
        };
        let field = match key {
            "MemTotal" => &mut m.mem_total,
            "MemFree" => &mut m.mem_free,
            "MemAvailable" => &mut m.mem_available,
            "Buffers" => &mut m.buffers,
            "Cached" => &mut m.cached,
            "SwapTotal" => &mut m.swap_total,
            "SwapFree" => &mut m.swap_free,
            "Shmem" => &mut m.shmem,
            _ => continue,
        };
        *field = bytes;
    }
    m
}

pub fn memory(proc_root: &Path) -> Result<pb::MemoryResponse, ProcError> {
    Ok(parse_meminfo(&read(&proc_root.join("meminfo"))?))
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountLine {
    pub mount_id: u32,
    pub parent_id: u32,
    pub root: String,
    pub target: String,
    /// Per-mount options (`rw,nosuid,relatime`).
    pub options: String,
    pub fstype: String,
    pub source: String,
    /// Per-superblock options.
    pub super_options: String,
}

impl MountLine {
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// Parses mountinfo: `id parent major:minor root target options
/// [optional fields...] - fstype source superoptions`, with `\ooo` escapes.
pub fn parse_mountinfo(text: &str) -> Vec<MountLine> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let mut r = right.split(' ');
            Some(MountLine {
                mount_id: l.first()?.parse().ok()?,
                parent_id: l.get(1)?.parse().ok()?,
                root: system::mounts::unescape(l.get(3)?),
                target: system::mounts::unescape(l.get(4)?),
                options: l.get(5)?.to_string(),
                fstype: r.next()?.to_string(),
                source: system::mounts::unescape(r.next().unwrap_or_default()),
                super_options: r.next().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

/// Size and free space of the filesystem at `path`; (0, 0) when it has
/// none (pseudo filesystems) or cannot be asked.
pub fn fs_size(path: &Path) -> (u64, u64) {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => {
            // fsblkcnt_t is u64 on 64-bit Linux but not everywhere.
            #[allow(clippy::unnecessary_cast)]
            let (frag, blocks, avail) = (
                s.fragment_size() as u64,
                s.blocks() as u64,
                s.blocks_available() as u64,
            );
            (blocks * frag, avail * frag)
        }
        Err(_) => (0, 0),
    }
}

/// The mount table with sizes, in mount order.
pub fn mounts(mountinfo: &Path) -> Result<Vec<pb::MountInfo>, ProcError> {
    Ok(parse_mountinfo(&read(mountinfo)?)
        .into_iter()
        .map(|m| {
            let (size, available) = fs_size(Path::new(&m.target));
            pb::MountInfo {
                source: m.source,
                target: m.target,
                filesystem: m.fstype,
                options: m.options,
                size,
                available,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_awkward_command_names() {
        let s = parse_stat(
            "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 500 0 0 0 150 50 0 0 20 0 3 0 100 10485760 256 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n",
        )
        .unwrap();
        assert_eq!(s.pid, 1234);
        assert_eq!(s.comm, "my (odd) cmd");
        assert_eq!((s.state, s.ppid), ('S', 1));
        assert_eq!((s.utime, s.stime), (150, 50));
        assert_eq!(s.threads, 3);
        assert_eq!((s.vsize, s.rss_pages), (10485760, 256));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S"), None);
    }

    #[test]
    fn cmdline_nuls_become_spaces() {
        assert_eq!(
            parse_cmdline(b"/sbin/apid\0--listen\x000.0.0.0:50000\0"),
            "/sbin/apid --listen 0.0.0.0:50000"
        );
        assert_eq!(parse_cmdline(b""), "");
    }

    #[test]
    fn meminfo_in_bytes() {
        let m = parse_meminfo(
            "MemTotal:        2030000 kB\nMemFree:         1000000 kB\nMemAvailable:    1500000 kB\nBuffers:            1000 kB\nCached:            20000 kB\nSwapCached:            0 kB\nShmem:              300 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\nHugePages_Total:       0\n",
        );
        assert_eq!(m.mem_total, 2030000 * 1024);
        assert_eq!(m.mem_available, 1500000 * 1024);
        assert_eq!(m.cached, 20000 * 1024);
        assert_eq!(m.shmem, 300 * 1024);
        assert_eq!(m.swap_total, 0);
    }

    #[test]
    fn mountinfo_lines() {
        let m = parse_mountinfo(
            "20 1 7:0 / / ro,relatime - squashfs /dev/loop0 ro,errors=continue\n\
             36 20 254:6 / /var rw,nosuid,nodev,relatime shared:5 master:1 - ext4 /dev/vda6 rw\n\
             40 20 0:50 / /mnt\\040x rw - tmpfs tmpfs rw,mode=755\n\
             broken line\n",
        );
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].target, "/");
        assert!(m[0].read_only());
        assert_eq!(m[0].super_options, "ro,errors=continue");
        assert_eq!((m[1].mount_id, m[1].parent_id), (36, 20));
        assert_eq!(
            (m[1].fstype.as_str(), m[1].source.as_str()),
            ("ext4", "/dev/vda6")
        );
        assert!(!m[1].read_only());
        assert_eq!(m[2].target, "/mnt x");
    }

    #[test]
    fn live_host_proc() {
        let me = std::process::id() as i32;
        let procs = processes(Path::new("/proc")).unwrap();
        let p = procs
            .iter()
            .find(|p| p.pid == me)
            .expect("this test process");
        assert!(p.threads >= 1);
        assert!(p.resident_memory > 0);
        assert!(!p.command.is_empty());
        assert!(p.args.contains("machined") || !p.args.is_empty());
        assert!(procs.windows(2).all(|w| w[0].pid < w[1].pid));

        let mem = memory(Path::new("/proc")).unwrap();
        assert!(mem.mem_total > 0 && mem.mem_available <= mem.mem_total);

        let mounts = mounts(Path::new("/proc/self/mountinfo")).unwrap();
        let root = mounts
            .iter()
            .find(|m| m.target == "/")
            .expect("a root mount");
        assert!(!root.filesystem.is_empty());
        let proc_mount = mounts.iter().find(|m| m.target == "/proc").expect("/proc");
        assert_eq!(proc_mount.filesystem, "proc");
        assert_eq!(proc_mount.size, 0);
        assert!(matches!(
            memory(Path::new("/nonexistent")),
            Err(ProcError::Read { .. })
        ));
    }
}
