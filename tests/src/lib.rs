//! Helpers for tests that boot Cairn in QEMU under TCG and talk to it the
//! way a user does: through apid on a forwarded port and the `cairnctl`
//! binary. Used by the tests in `tests/` and the benchmarks in `src/bin/`.
//! Booting VMs is the `provision` crate's (shared with `cairnctl cluster`);
//! its modules are re-exported here under their old names.

pub mod addons;
pub mod cairnctl;
pub mod checks;
pub mod kube;
pub mod kube_floor;
pub mod media;
pub mod netnode;
pub mod timeline;

pub use provision::probe as api;
pub use provision::{cpio, images, ports, qemu};
pub use provision::{
    Boot, Firmware, Images, Vm, VmConfig, VmError, FINGERPRINT_LINE, MAINTENANCE_BANNER,
    STATUS_LINE,
};

/// The benchmarks' `--runs N` (default 1): how many times to measure, for
/// medians (TCG timings vary with the host's load).
pub fn runs_flag(args: &[String]) -> anyhow::Result<usize> {
    use anyhow::Context as _;
    match args.iter().position(|a| a == "--runs") {
        Some(i) => args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .filter(|n| *n > 0)
            .context("--runs takes a positive number"),
        None => Ok(1),
    }
}
