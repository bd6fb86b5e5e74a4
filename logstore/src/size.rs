//! Sizes on the command line: `2GiB`, `512MiB`, `300KiB` (bytesize's
//! syntax), and free-space floors that are either a size or a percentage
//! of the filesystem (`15%`).

use std::str::FromStr;

/// Parses a size such as `2GiB` or `1500000`.
pub fn parse(s: &str) -> Result<u64, String> {
    bytesize::ByteSize::from_str(s.trim())
        .map(|b| b.as_u64())
        .map_err(|e| format!("{s:?} is not a size such as 512MiB or 2GiB ({e})"))
}

/// A size for people: `1.5 GiB`.
pub fn show(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

/// The free space the store leaves on its disk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinFree {
    Bytes(u64),
    /// Percent of the filesystem's size.
    Percent(f64),
}

impl MinFree {
    /// The floor in bytes on a filesystem of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            MinFree::Bytes(b) => b,
            MinFree::Percent(p) => (total as f64 * p / 100.0) as u64,
        }
    }
}

impl FromStr for MinFree {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(v) if (0.0..100.0).contains(&v) => Ok(MinFree::Percent(v)),
                _ => Err(format!("{s:?}: a percentage must be a number from 0 to 99")),
            },
            None => parse(s).map(MinFree::Bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_floors_parse() {
        assert_eq!(parse("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse("300 KiB").unwrap(), 300 << 10);
        assert_eq!(parse("1000").unwrap(), 1000);
        assert!(parse("lots").unwrap_err().contains("not a size"));
        assert_eq!("15%".parse::<MinFree>().unwrap().bytes(1000), 150);
        assert_eq!(
            "256MiB".parse::<MinFree>().unwrap(),
            MinFree::Bytes(256 << 20)
        );
        assert!("150%".parse::<MinFree>().is_err());
        assert_eq!(show(1536 << 20), "1.5 GiB");
    }
}
