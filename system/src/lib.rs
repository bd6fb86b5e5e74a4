//! The bottom of Cairn's PID 1 stack, shared by `init` (the initramfs) and
//! `machined`: the system calls tests cannot make behind one trait
//! ([`syscall::Syscalls`], with a real and a recording implementation), the
//! mount table applied idempotently ([`mounts`]), the services' cgroups
//! ([`cgroups`]), loop devices, switching root, and the kernel's sysctls.
//! It knows the services' cgroup layout, but nothing of services,
//! resources or Kubernetes; everything above depends on it, never the
//! reverse.

pub mod cgroups;
pub mod loopdev;
pub mod mounts;
pub mod switch_root;
pub mod syscall;
pub mod sysctl;
