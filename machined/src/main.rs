//! machined: Cairn's PID 1 agent.

#[macro_use]
mod logging;
mod cmdline;
mod disks;
mod exec;
mod mounts;
mod partitions;
mod probe;
mod reaper;
mod supervisor;
mod syscall;
mod sysctl;

fn main() {}
