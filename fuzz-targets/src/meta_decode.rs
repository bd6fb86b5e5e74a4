//! META, the raw key-value store on the META partition: opening a
//! partition holding any bytes never panics, and a store opened from any
//! bytes can write and read back its values. With the first input bit set
//! the harness gives the copy a valid magic and checksum, so that the JSON
//! payload behind them is reached too.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;

use host::meta::{MetaStore, MAGIC};
use sha2::Digest as _;

const COPY: usize = 4096;
const HEADER: usize = 8 + 8 + 4 + 32;

fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("cairn-fuzz-meta-{}", std::process::id()))
    })
}

/// One input, as the fuzzer gives it.
pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut part = vec![0u8; 2 * COPY];
    let n = rest.len().min(2 * COPY);
    part[..n].copy_from_slice(&rest[..n]);
    if flags & 1 == 1 {
        let copy = &mut part[..COPY];
        copy[..8].copy_from_slice(MAGIC);
        let len = (u32::from_le_bytes([copy[16], copy[17], copy[18], copy[19]]) as usize)
            .min(COPY - HEADER);
        copy[16..20].copy_from_slice(&(len as u32).to_le_bytes());
        let mut h = sha2::Sha256::new();
        h.update(&copy[8..16]);
        h.update((len as u32).to_le_bytes());
        h.update(&copy[HEADER..HEADER + len]);
        let sum: [u8; 32] = h.finalize().into();
        copy[20..52].copy_from_slice(&sum);
    }
    let mut f = std::fs::File::create(path()).expect("the scratch file");
    f.write_all(&part).expect("writing the scratch file");
    drop(f);

    let Ok(mut store) = MetaStore::open(path()) else {
        return;
    };
    let mut values = store.values();
    let before = store.generation();
    values.insert("fuzz".into(), "written".into());
    if store.write(&values).is_err() {
        return;
    }
    assert!(store.generation() > before || before == u64::MAX);
    let again = MetaStore::open(path()).expect("META reopens after a write");
    assert_eq!(again.values(), values, "META lost what was written");
}
