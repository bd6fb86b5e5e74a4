//! Helpers for tests that boot Cairn in QEMU under TCG and talk to it the
//! way a user does: through apid on a forwarded port and the `cairnctl`
//! binary. Used by the tests in `tests/`, the boot benchmark
//! (`src/bin/bench.rs`) and the local node (`src/bin/cluster.rs`).

pub mod api;
pub mod cairnctl;
pub mod checks;
pub mod cpio;
pub mod images;
pub mod kube;
pub mod netnode;
pub mod ports;
pub mod qemu;

pub use images::Images;
pub use qemu::{Boot, Firmware, Vm, VmConfig, VmError};

/// The console banner machined prints once apid serves maintenance mode.
pub const MAINTENANCE_BANNER: &str = r"cairn: maintenance mode: apid listening on :50000";
/// machined's periodic console status line: RSS of machined, apid and
/// init (KiB, or "gone"); the benchmarks read memory from it.
pub const STATUS_LINE: &str = r"cairn: status: .*rss machined=(\d+)KiB apid=(\d+)KiB init=(\S+)";
/// The console line with apid's certificate fingerprint (`sha256:<hex>`).
pub const FINGERPRINT_LINE: &str = r"cairn: apid certificate (sha256:[0-9a-f]{64})";
