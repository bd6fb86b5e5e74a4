//! Local Cairn clusters in QEMU (TCG): the provisioner behind `cairnctl
//! cluster create|destroy|show`, and the harness the VM tests in `tests/`
//! boot nodes with.
//!
//! - [`qemu`], [`images`], [`ports`], [`cpio`], [`probe`]: one VM from the
//!   built images, its serial console as a file, apid forwarded to
//!   127.0.0.1.
//! - [`hub`]: the private Ethernet network between a cluster's VMs, a
//!   learning switch over unix datagram sockets (QEMU `-netdev dgram`), so
//!   traffic between nodes never leaves this machine.
//! - [`cluster`]: a cluster's plan and directory: its nodes, their
//!   addresses and forwarded ports; [`preflight`]: enough memory and disk
//!   before anything starts; [`launch`]: the daemonized QEMUs and the hub,
//!   known by pid files, started and stopped; [`summary`]: the files and
//!   the commands to run next that `create` prints, runnable as printed.

pub mod cluster;
pub mod cpio;
pub mod hub;
pub mod images;
pub mod launch;
pub mod ports;
pub mod preflight;
pub mod probe;
pub mod qemu;
pub mod summary;

pub use images::Images;
pub use qemu::{Boot, Firmware, Vm, VmConfig, VmError};

/// The console banner machined prints once apid serves maintenance mode.
pub const MAINTENANCE_BANNER: &str = r"cairn: maintenance mode: apid listening on :50000";
/// machined's periodic console status line: RSS of machined, apid and
/// init (KiB, or "gone"); the benchmarks read memory from it.
pub const STATUS_LINE: &str = r"cairn: status: .*rss machined=(\d+)KiB apid=(\d+)KiB init=(\S+)";
/// The console line with apid's certificate fingerprint (`sha256:<hex>`).
pub const FINGERPRINT_LINE: &str = r"cairn: apid certificate (sha256:[0-9a-f]{64})";
