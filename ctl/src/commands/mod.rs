//! One module per verb.

use std::process::ExitCode;

use crate::global::GlobalArgs;

pub mod apply_config;
pub mod bootstrap;
pub mod cairnconfig;
pub mod cluster;
pub mod completion;
pub mod config_new;
pub mod confirm;
pub mod containers;
pub mod dashboard;
pub mod disks;
pub mod dmesg;
pub mod etcd;
pub mod events;
pub mod gen;
pub mod gen_upgrade_key;
pub mod get;
pub mod health;
pub mod image;
pub mod image_cache_create;
pub mod image_import;
pub mod image_list;
pub mod image_remove;
pub mod kubeconfig;
pub mod logs;
pub mod logs_cluster;
pub mod ls;
pub mod machineconfig;
pub mod memory;
pub mod mounts;
pub mod netstat;
pub mod processes;
pub mod read;
pub mod reboot;
pub mod reset;
pub mod rollback;
pub mod service;
pub mod services;
pub mod shutdown;
pub mod time;
pub mod upgrade;
pub mod validate;
pub mod version;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Generate secrets and machine configs.
    #[command(subcommand)]
    Gen(gen::GenCommand),
    /// Check a machine config file.
    Validate(validate::Args),
    /// Work on machine config files (patch).
    #[command(subcommand)]
    Machineconfig(machineconfig::MachineconfigCommand),
    /// Print a shell completion script.
    Completion(completion::Args),
    /// Print client and server versions.
    Version(version::Args),
    /// Send a machine config to nodes (validated here first).
    ApplyConfig(apply_config::Args),
    /// Keep a config applied with `apply-config --mode try`.
    Confirm(confirm::Args),
    /// List the services on nodes.
    Services(services::Args),
    /// Show, start, stop, restart or kill one service.
    Service(service::Args),
    /// Print a service's log, or search the cluster's logs (--cluster).
    Logs(logs::Args),
    /// Print the kernel log.
    Dmesg(dmesg::Args),
    /// List or watch resources (machineconfig, services, addresses, ...).
    Get(get::Args),
    /// List files on a node.
    Ls(ls::Args),
    /// Print a file from a node.
    Read(read::Args),
    /// List processes.
    Processes(processes::Args),
    /// Show memory use.
    Memory(memory::Args),
    /// A live terminal view of nodes: CPU, memory, services, logs.
    Dashboard(dashboard::Args),
    /// List mounted filesystems.
    Mounts(mounts::Args),
    /// List block devices.
    Disks(disks::Args),
    /// Print events (config, services, boot phases).
    Events(events::Args),
    /// Show nodes' clocks and time synchronisation.
    Time(time::Args),
    /// List TCP and UDP sockets.
    Netstat(netstat::Args),
    /// List containerd's containers (-k: Kubernetes pods and containers).
    Containers(containers::Args),
    /// Container images on nodes: list, import an OCI archive, remove.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Reboot nodes.
    Reboot(reboot::Args),
    /// Power nodes off.
    Shutdown(shutdown::Args),
    /// Install a new system image in the inactive boot slot and boot it.
    Upgrade(upgrade::Args),
    /// Boot the other slot (the system before the last upgrade).
    Rollback(rollback::Args),
    /// Wipe nodes back to maintenance mode.
    Reset(reset::Args),
    /// Edit the client config: endpoints, nodes, contexts.
    #[command(subcommand)]
    Config(cairnconfig::ConfigCommand),
    /// Start etcd on one control-plane node as a new cluster (once).
    Bootstrap(bootstrap::Args),
    /// Fetch the admin kubeconfig (merged into ~/.kube/config by default).
    Kubeconfig(kubeconfig::Args),
    /// etcd: list members, save a snapshot.
    #[command(subcommand)]
    Etcd(etcd::EtcdCommand),
    /// Wait until etcd, the API server, the nodes and cluster DNS are healthy.
    Health(health::Args),
    /// Local clusters in QEMU: create, show, destroy.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
}

pub async fn run(command: Command, global: GlobalArgs) -> anyhow::Result<ExitCode> {
    match command {
        Command::Gen(c) => gen::run(c, &global).await,
        Command::Validate(a) => validate::run(a, &global).await,
        Command::Machineconfig(c) => machineconfig::run(c, &global).await,
        Command::Completion(a) => completion::run(a),
        Command::Version(a) => version::run(a, &global).await,
        Command::ApplyConfig(a) => apply_config::run(a, &global).await,
        Command::Confirm(a) => confirm::run(a, &global).await,
        Command::Services(a) => services::run(a, &global).await,
        Command::Service(a) => service::run(a, &global).await,
        Command::Logs(a) => logs::run(a, &global).await,
        Command::Dmesg(a) => dmesg::run(a, &global).await,
        Command::Get(a) => get::run(a, &global).await,
        Command::Ls(a) => ls::run(a, &global).await,
        Command::Read(a) => read::run(a, &global).await,
        Command::Processes(a) => processes::run(a, &global).await,
        Command::Memory(a) => memory::run(a, &global).await,
        Command::Dashboard(a) => dashboard::run(a, &global).await,
        Command::Mounts(a) => mounts::run(a, &global).await,
        Command::Disks(a) => disks::run(a, &global).await,
        Command::Events(a) => events::run(a, &global).await,
        Command::Time(a) => time::run(a, &global).await,
        Command::Netstat(a) => netstat::run(a, &global).await,
        Command::Containers(a) => containers::run(a, &global).await,
        Command::Image(c) => image::run(c, &global).await,
        Command::Reboot(a) => reboot::run(a, &global).await,
        Command::Shutdown(a) => shutdown::run(a, &global).await,
        Command::Upgrade(a) => upgrade::run(a, &global).await,
        Command::Rollback(a) => rollback::run(a, &global).await,
        Command::Reset(a) => reset::run(a, &global).await,
        Command::Config(c) => cairnconfig::run(c, &global).await,
        Command::Bootstrap(a) => bootstrap::run(a, &global).await,
        Command::Kubeconfig(a) => kubeconfig::run(a, &global).await,
        Command::Etcd(c) => etcd::run(c, &global).await,
        Command::Health(a) => health::run(a, &global).await,
        Command::Cluster(c) => cluster::run(c, &global).await,
    }
}
