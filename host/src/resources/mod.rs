//! Controllers that turn what the kernel knows into resources: `network`
//! (links, addresses, routes, resolvers from rtnetlink), `mounts`
//! (/proc/self/mountinfo), `disks` (sysfs and probing), `time` (the SNTP
//! client's state).

pub mod disks;
pub mod mounts;
pub mod network;
pub mod time;
