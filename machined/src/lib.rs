//! machined: Cairn's PID 1 agent. `init` switches root and execs it; from
//! then on it reaps orphans, mounts, supervises services (apid first),
//! acquires the machine config and serves the internal API on a unix socket.
//!
//! The binary's own part is what only PID 1 does: the boot sequence
//! (`pid1`), the one owner of the machine's lifecycle (`lifecycle`, with
//! `apply`, `install`, `upgrade`, `reset` and `shutdown` run under it), the
//! internal API (`api`), apid's settings (`secure`, `maintenance`) and the
//! console. Everything else lives in the crates below it, which Cargo keeps
//! from depending on it: `kubernetes` <- `host` <- `runtime` <- `system`.

pub mod api;
pub mod apid_members;
pub mod apply;
pub mod console;
pub mod debug;
pub mod install;
pub mod join;
pub mod lifecycle;
pub mod log_shipping;
pub mod maintenance;
pub mod metrics;
pub mod pid1;
pub mod reset;
pub mod role_certs;
pub mod secure;
pub mod shutdown;
pub mod state;
pub mod upgrade;
