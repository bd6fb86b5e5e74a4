//! The system disk's partition layout: the same names, sizes, order and
//! types as the raw image (images/disk.sh `DISK_LAYOUT`; a test below reads
//! that file, so the two cannot drift apart).

use config::constants::partition;

pub const MIB: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Efi,
    BiosBoot,
    Linux,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub name: &'static str,
    /// 0: the rest of the disk.
    pub size_mib: u64,
    pub kind: Kind,
}

/// In partition-number order (1-based), packed from 1 MiB.
pub const LAYOUT: &[Part] = &[
    Part {
        name: partition::EFI,
        size_mib: 100,
        kind: Kind::Efi,
    },
    Part {
        name: partition::BIOS,
        size_mib: 1,
        kind: Kind::BiosBoot,
    },
    Part {
        name: partition::BOOT,
        size_mib: 1000,
        kind: Kind::Linux,
    },
    Part {
        name: partition::META,
        size_mib: 1,
        kind: Kind::Linux,
    },
    Part {
        name: partition::STATE,
        size_mib: 100,
        kind: Kind::Linux,
    },
    Part {
        name: partition::EPHEMERAL,
        size_mib: 0,
        kind: Kind::Linux,
    },
];

/// EPHEMERAL needs at least this much (machined grows it to the disk's end).
pub const MIN_EPHEMERAL_MIB: u64 = 256;

/// Where partitions start.
pub const FIRST_MIB: u64 = 1;

/// The partition number of `name`.
pub fn number(name: &str) -> u32 {
    LAYOUT
        .iter()
        .position(|p| p.name == name)
        .map(|i| i as u32 + 1)
        .expect("a name from LAYOUT")
}

/// Start MiB of each partition, in order.
pub fn starts_mib() -> Vec<u64> {
    let mut at = FIRST_MIB;
    LAYOUT
        .iter()
        .map(|p| {
            let s = at;
            at += p.size_mib;
            s
        })
        .collect()
}

/// Bytes a disk needs at least.
pub fn min_disk_bytes() -> u64 {
    (FIRST_MIB + LAYOUT.iter().map(|p| p.size_mib).sum::<u64>() + MIN_EPHEMERAL_MIB + 1) * MIB
}

#[cfg(test)]
mod tests {
    use super::*;

    /// images/disk.sh and this table describe the same disk.
    #[test]
    fn matches_the_raw_image_layout() {
        let script =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../images/disk.sh"))
                .unwrap();
        let body = script
            .split("DISK_LAYOUT=(")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap();
        let rows: Vec<(String, u64, String)> = body
            .lines()
            .map(|l| l.trim().trim_matches('"'))
            .filter(|l| !l.is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].to_string(), f[1].parse().unwrap(), f[2].to_string())
            })
            .collect();
        assert_eq!(rows.len(), LAYOUT.len());
        for (row, part) in rows.iter().zip(LAYOUT) {
            let code = match part.kind {
                Kind::Efi => "EF00",
                Kind::BiosBoot => "EF02",
                Kind::Linux => "8300",
            };
            assert_eq!(
                (row.0.as_str(), row.1, row.2.as_str()),
                (part.name, part.size_mib, code)
            );
        }
        assert_eq!(starts_mib(), vec![1, 101, 102, 1102, 1103, 1203]);
        assert_eq!(number(partition::STATE), 5);
    }
}
