//! The boot sequence machined runs as PID 1, in order, and the panic
//! policy. Everything before the controllers is this short linear
//! sequence; shutdown is the other end of it (`shutdown`).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::shutdown::PowerAction;
use crate::state::Node;
use crate::{api, apply, console, debug, maintenance, secure};
use host::cmdline::{Cmdline, PanicAction};
use host::network::Network;
use host::{acquire, disks, network, partitions};
use runtime::reaper;
use runtime::supervisor::logbuf::LogRing;
use runtime::supervisor::Supervisor;
use system::syscall::{Real, Syscalls};
use system::{mounts, sysctl};

/// Writes straight to /dev/kmsg (for use where tracing may not work), or
/// to stderr (the console) when kmsg cannot be opened.
fn kmsg(line: &str) {
    let line = line.replace('\n', " ");
    let written = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .and_then(|mut f| f.write_all(format!("<2>cairn: {line}\n").as_bytes()));
    if written.is_err() {
        let _ = writeln!(std::io::stderr(), "cairn: {line}");
    }
}

/// `machined panicked at <file>:<line>: <message>`, on one line.
fn describe_panic(info: &std::panic::PanicHookInfo<'_>) -> String {
    let payload = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string());
    match info.location() {
        Some(l) => format!(
            "machined panicked: {payload} (at {}:{})",
            l.file(),
            l.line()
        ),
        None => format!("machined panicked: {payload}"),
    }
}

/// A panic in PID 1 logs to /dev/kmsg, syncs, and reboots; or hangs when
/// the kernel command line says `panic=0`, so the message can be read.
pub fn install_panic_hook(action: PanicAction) {
    std::panic::set_hook(Box::new(move |info| {
        kmsg(&describe_panic(info));
        nix::unistd::sync();
        match action {
            PanicAction::Hang => {
                kmsg("panic=0 on the kernel command line: halting here");
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            PanicAction::Reboot(delay) => {
                kmsg(&format!("rebooting in {}s", delay.as_secs()));
                std::thread::sleep(delay);
                let e = Real.reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
                kmsg(&format!("reboot failed: {e}; halting"));
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
        }
    }));
}

/// Entry point when running as PID 1. Never returns: PID 1 exiting panics
/// the kernel.
pub fn main() -> ! {
    install_panic_hook(PanicAction::Reboot(Duration::ZERO));
    reaper::start();
    let sys = Real;
    // /proc and /dev come first: the command line and kmsg need them.
    let mount_result = mounts::apply(&sys, &mounts::early_table());
    let cmdline = Cmdline::read().unwrap_or_else(|e| {
        kmsg(&format!("cannot read /proc/cmdline: {e}"));
        Cmdline::default()
    });
    install_panic_hook(cmdline.panic_action());
    let _ = runtime::logging::allow_kmsg_bursts();
    let ring = Arc::new(LogRing::new(256 * 1024));
    runtime::logging::init(ring.clone(), cmdline.debug_logging());
    runtime::console!(
        "machined {} (build {}) starting as PID 1",
        config::version::running().version,
        config::version::running().build_id
    );
    match mount_result {
        Ok(outcomes) => {
            for (m, o) in mounts::early_table().iter().zip(outcomes) {
                if let mounts::Outcome::Skipped(why) = o {
                    tracing::warn!(target = %m.target.display(), "optional mount skipped: {why}");
                }
            }
        }
        Err(e) => panic!("early mounts failed: {e}"),
    }
    // One or two threads are plenty for an agent that mostly waits; a
    // current-thread runtime keeps RSS small.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot build the tokio runtime");
    rt.block_on(boot(cmdline, ring))
}

fn early_system_setup(sys: &dyn Syscalls) {
    if let Err(e) = mounts::make_root_rshared(sys) {
        tracing::warn!(error = %e, "cannot make / rshared");
    }
    for (c, e) in mounts::enable_cgroup_controllers(Path::new(system::cgroups::ROOT)) {
        runtime::console!("cgroups: cannot enable the {c} controller: {e}");
    }
    for (path, e) in system::cgroups::prepare(Path::new(system::cgroups::ROOT)) {
        runtime::console!("cgroups: {}: {e}", path.display());
    }
    for (s, r) in sysctl::apply(Path::new("/"), sysctl::KSPP) {
        match r {
            sysctl::Applied::Set => {}
            sysctl::Applied::Missing => tracing::debug!(key = s.key, "sysctl not in this kernel"),
            sysctl::Applied::Failed(e) => {
                tracing::warn!(key = s.key, error = %e, "cannot set sysctl")
            }
        }
    }
    // Ctrl-Alt-Del sends SIGINT to PID 1 instead of rebooting at once, so
    // it becomes an orderly reboot.
    if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
        tracing::warn!(error = %e, "cannot disable Ctrl-Alt-Del");
    }
}

/// Tells the console what boot did with STATE's config files.
fn report_state_cleanup(done: &apply::store::BootCleanup) {
    if done.staged_applied {
        runtime::console!("config: the staged config is applied from this boot on");
    }
    if !done.staged_rejected.is_empty() {
        runtime::console!(
            "config: the staged config is invalid and was not applied (kept as {}):",
            apply::store::REJECTED
        );
        for p in &done.staged_rejected {
            runtime::console!("config:   {p}");
        }
    }
    if done.try_discarded {
        runtime::console!(
            "config: a tried config was never confirmed; the previous config is used"
        );
    }
    if done.temp_removed > 0 {
        runtime::console!(
            "config: removed {} file(s) of an interrupted write",
            done.temp_removed
        );
    }
}

/// SIGTERM powers off and SIGINT (Ctrl-Alt-Del) reboots, through the
/// lifecycle: refused while an install, upgrade or reset runs unless the
/// same signal comes again within `SIGNAL_CONFIRM`. SIGPWR (power failing)
/// powers off at once.
fn spawn_signal_handlers(lifecycle: Arc<crate::lifecycle::Lifecycle>) {
    use crate::lifecycle::{SignalOutcome, SIGNAL_CONFIRM};
    for (kind, action, name, force) in [
        (
            SignalKind::terminate(),
            PowerAction::PowerOff,
            "SIGTERM",
            false,
        ),
        (
            SignalKind::interrupt(),
            PowerAction::Reboot,
            "SIGINT (Ctrl-Alt-Del)",
            false,
        ),
        (
            SignalKind::from_raw(libc::SIGPWR),
            PowerAction::PowerOff,
            "SIGPWR",
            true,
        ),
    ] {
        let lifecycle = lifecycle.clone();
        match signal(kind) {
            Ok(mut s) => {
                tokio::spawn(async move {
                    let mut last_refused = None;
                    while s.recv().await.is_some() {
                        let why = format!("received {name}");
                        match lifecycle.power_signal(action, &why, force, &mut last_refused) {
                            SignalOutcome::Taken => runtime::console!("{why}"),
                            SignalOutcome::Forced => {
                                runtime::console!("{why}: going ahead over what runs")
                            }
                            SignalOutcome::Refused(e) => runtime::console!(
                                "{why}: not now, {e}; send it again within {} s to go ahead anyway",
                                SIGNAL_CONFIRM.as_secs()
                            ),
                            SignalOutcome::AlreadyPowering => {
                                runtime::console!("{why}: already shutting down")
                            }
                        }
                    }
                });
            }
            Err(e) => tracing::error!(signal = name, error = %e, "cannot handle signal"),
        }
    }
}

/// The node's addresses once the first network configuration finished
/// (a DHCP lease, or its timeout); cloned by whoever must wait for it.
#[derive(Clone)]
struct NetworkReady(tokio::sync::watch::Receiver<Option<Vec<std::net::IpAddr>>>);

impl NetworkReady {
    async fn wait(&self) -> Vec<std::net::IpAddr> {
        let mut rx = self.0.clone();
        let addresses = match rx.wait_for(Option::is_some).await {
            Ok(a) => a.clone().unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        addresses
    }
}

fn spawn_network_configuration(
    node: &Arc<Node>,
    net: Option<Network>,
    link: Option<network::link::Link>,
) -> NetworkReady {
    let (tx, rx) = tokio::sync::watch::channel(None);
    let node = node.clone();
    tokio::spawn(async move {
        if link.is_none() {
            runtime::console!("network: no Ethernet link found");
        }
        if let Some(n) = &net {
            network::configurator::start(&node, &node.cmdline, n.clone())
                .wait()
                .await;
        }
        let addresses = match &net {
            Some(n) => n.node_addresses().await,
            None => Vec::new(),
        };
        let _ = tx.send(Some(addresses));
    });
    NetworkReady(rx)
}

/// Starts the controllers that turn the kernel's and the supervisor's
/// state into resources. Each registers its outputs; a clash is a bug and
/// is logged (the rest still start).
pub fn start_controllers(node: &Node) {
    let store = &node.store;
    let started = [
        runtime::resources::controller::spawn(
            store,
            host::resources::network::NetworkController::default(),
        ),
        runtime::resources::controller::spawn(
            store,
            host::resources::mounts::MountsController::default(),
        ),
        runtime::resources::controller::spawn(
            store,
            host::resources::disks::DisksController::default(),
        ),
        runtime::resources::controller::spawn(store, host::time::TimeController::default()),
        runtime::resources::controller::spawn(store, kubernetes::specs::SpecController),
        runtime::resources::controller::spawn(
            store,
            kubernetes::members::MembersController::default(),
        ),
        runtime::resources::controller::spawn(
            store,
            runtime::resources::services::ServicesController {
                supervisor: node.supervisor.clone(),
                events: node.events.clone(),
            },
        ),
    ];
    for r in started {
        if let Err(e) = r {
            tracing::error!(error = %e, "cannot start a controller");
        }
    }
}

/// The controllers that keep the resource store current, and the
/// console's status block that follows it. Started once apid is (or, on a
/// configured node, just before the config is put in force): on the
/// single-threaded runtime their first passes (probing every disk, listing
/// the network, resolving time servers) would otherwise sit between
/// machined's start and apid's, which costs about a second under TCG.
fn start_observers(node: &Arc<Node>) {
    start_controllers(node);
    crate::log_shipping::start(node);
    tokio::spawn(crate::metrics::serve(Arc::downgrade(node)));
    tokio::spawn(crate::apid_members::follow(
        Arc::downgrade(node),
        node.apid_settings.clone(),
    ));
    tokio::spawn(console::block_loop(node.store.clone()));
}

async fn boot(cmdline: Cmdline, ring: Arc<LogRing>) -> ! {
    let sys = Real;
    // Listing the disks waits on the drives (an optical drive is asked
    // whether it holds a disc: about 0.1 s under TCG), so it runs on a
    // blocking thread while early setup, the API socket and the network
    // link-up go on here.
    let listing = tokio::task::spawn_blocking(disks::list);
    early_system_setup(&sys);
    let (power_tx, mut power_rx) = mpsc::channel(4);
    let supervisor = Supervisor::new();
    let node = Arc::new(Node::new(
        cmdline.clone(),
        supervisor.clone(),
        ring,
        power_tx,
    ));
    spawn_signal_handlers(node.lifecycle.clone());

    // The internal API first, so apid can reach machined as soon as it runs.
    let sock = Path::new(config::constants::MACHINED_SOCKET);
    match api::bind(sock, Some(maintenance::APID_GID)) {
        Ok(listener) => {
            let n = node.clone();
            tokio::spawn(async move {
                if let Err(e) = api::serve(n, listener, sock).await {
                    runtime::console!("api: {e}");
                }
            });
        }
        Err(e) => runtime::console!("api: {e}"),
    }
    // Network, hostname: before the disks, whose listing runs meanwhile,
    // so the link-up and the first DHCP exchange overlap the disk work.
    let net = match Network::connect() {
        Ok(n) => Some(n),
        Err(e) => {
            runtime::console!("network: {e}");
            None
        }
    };
    let link = match &net {
        Some(n) => n.bring_up_links().await.unwrap_or_else(|e| {
            runtime::console!("network: {e}");
            None
        }),
        None => None,
    };
    if let Some(l) = &link {
        tracing::debug!(link = %l.name, index = l.index, "primary link is up");
    }
    let hostname = cmdline
        .hostname()
        .map(str::to_string)
        .or_else(|| {
            cmdline
                .ip()
                .and_then(Result::ok)
                .and_then(|ip| ip.hostname().map(str::to_string))
        })
        .unwrap_or_else(|| host::hostname::mac_hostname(link.as_ref().and_then(|l| l.mac)));
    if let Err(e) = nix::unistd::sethostname(&hostname) {
        runtime::console!("cannot set the hostname: {e}");
    }
    node.set_hostname(&hostname);
    let etc = Path::new(network::resolv::SYSTEM_ETC);
    let _ = network::resolv::write_atomic(etc, "hosts", &network::resolv::hosts(&hostname, None));
    if !etc.join("resolv.conf").exists() {
        let _ = network::resolv::write_atomic(
            etc,
            "resolv.conf",
            &network::resolv::resolv_conf(&[], None, "nothing yet"),
        );
    }
    // DHCP runs in the background: apid (and its maintenance certificate)
    // does not need an address to start listening, and under emulation the
    // lease takes about half a second that boot-to-API should not wait for.
    let network_ready = spawn_network_configuration(&node, net.clone(), link);
    // The maintenance-mode certificate is made now, on a blocking thread,
    // while the disks and the config sources are looked at: key generation
    // costs about 0.1 s under TCG that a node without config would
    // otherwise wait for before apid starts (a configured node drops it).
    // It names the hostname alone: no address is known this early, and
    // maintenance clients compare its fingerprint rather than verify it.
    let maintenance_cert = {
        let hostname = hostname.clone();
        tokio::task::spawn_blocking(move || maintenance::generate_certificate(&hostname, &[]))
    };

    // Disks: STATE and EPHEMERAL (or a tmpfs /var).
    let devices = listing.await.unwrap_or_else(|_| disks::list());
    let (var, state) = partitions::mount_system(&sys, &devices).await;
    match &var {
        partitions::VarBacking::Ephemeral(dev) => {
            runtime::console!("disk: /var on EPHEMERAL ({})", dev.display())
        }
        partitions::VarBacking::Tmpfs => {
            runtime::console!("disk: no EPHEMERAL partition; /var is a tmpfs (live boot)")
        }
    }
    if let Err(e) = &state {
        runtime::console!("disk: STATE: {e}");
    }
    // Installed node: BOOT, META, and the upgrade this boot may settle.
    crate::upgrade::on_boot(&sys, &node, &devices).await;

    // The machine config: STATE's files first (a staged config, an
    // unconfirmed try), then the sources in order.
    let state_mounted =
        state.is_ok() && partitions::find(&devices).is_some_and(|f| f.state.is_some());
    let files =
        state_mounted.then(|| apply::store::StateFiles::new(config::constants::STATE_MOUNT));
    // A node booted from its disk is installed; a live boot needs an
    // install disk in its config.
    let validation = if state_mounted {
        config::validate::Mode::Cloud
    } else {
        config::validate::Mode::Metal
    };
    if let Some(f) = &files {
        report_state_cleanup(&f.prepare_boot(|b| apply::validate_bytes(b, validation).map(|_| ())));
    }
    let configurator = apply::Configurator::new(
        files,
        validation,
        apply::node::NodeEffects::new(&node, net.clone()),
        node.lifecycle.clone(),
    );
    let _ = node.configurator.set(configurator.clone());
    if cmdline.config_url().is_some() {
        network_ready.wait().await;
    }
    let config = match acquire::acquire(&sys, &cmdline, &devices).await {
        Some(a) => match configurator
            .validate(&a.bytes)
            .and_then(|c| Ok(secure::check(&c).map(|()| c)?))
        {
            Ok(c) => Some((a, c)),
            Err(e) => {
                runtime::console!(
                    "config: {} cannot be used, staying in maintenance mode: {e}",
                    a.source
                );
                None
            }
        },
        None => {
            runtime::console!(
                "config: none on STATE, the kernel command line or a CAIRNCFG volume"
            );
            None
        }
    };
    host::entropy::ready().await;

    // Said once apid's banner is out: the payload mount waits for it, so
    // its I/O never delays the API (dropped unsent when apid cannot start).
    let (api_up, api_up_rx) = tokio::sync::oneshot::channel::<()>();
    match config {
        // Configured: apid serves mutual TLS from the start.
        Some((acquired, cfg)) => {
            let from_state = matches!(acquired.source, acquire::Source::State(_));
            runtime::console!("config: using the machine config from {}", acquired.source);
            // apid's certificates name the node's addresses.
            network_ready.wait().await;
            start_observers(&node);
            configurator
                .boot(
                    &acquired.bytes,
                    &cfg,
                    &acquired.source.to_string(),
                    from_state,
                )
                .await;
            let n = node.clone();
            tokio::spawn(async move {
                if let Some(apid) = n.supervisor.handle("apid") {
                    secure::banner_when_ready(apid).await;
                }
                let _ = api_up.send(());
                console::status_loop(n).await;
            });
        }
        // Maintenance mode.
        None => {
            node.set_maintenance(true);
            let file = node.apid_settings.clone();
            let made = match maintenance_cert.await {
                Ok(made) => made,
                Err(_) => maintenance::generate_certificate(&hostname, &[]),
            };
            match made.and_then(|c| maintenance::install_settings(&c, &file).map(|()| c)) {
                Ok(cert) => match supervisor.start(secure::apid_service(&file.dir)) {
                    Ok(apid) => {
                        let n = node.clone();
                        tokio::spawn(async move {
                            let addresses = network_ready.wait().await;
                            // The name the network configuration gave the
                            // node (on an installed node, a suffix kept on
                            // STATE), not the early one from the MAC.
                            maintenance::banner_when_ready(
                                apid,
                                n.hostname(),
                                addresses,
                                cert.fingerprint,
                            )
                            .await;
                            let _ = api_up.send(());
                            console::status_loop(n).await;
                        });
                    }
                    Err(e) => {
                        drop(api_up);
                        runtime::console!("maintenance: {e}")
                    }
                },
                Err(e) => {
                    drop(api_up);
                    runtime::console!("maintenance: {e}")
                }
            }
            start_observers(&node);
        }
    }
    // The Kubernetes payload, once apid answers (or a minute at most):
    // mounted in the background (kubernetes::payload::wait_mounted waits
    // for it), from the boot medium in the disk list boot already made.
    let slot = cmdline.slot().map(str::to_string);
    let n = node.clone();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(60), api_up_rx).await;
        kubernetes::payload::spawn(&n, slot.as_deref(), devices);
    });
    debug::spawn_hooks(&cmdline, supervisor.clone());

    let action = power_rx.recv().await.unwrap_or(PowerAction::PowerOff);
    node.set_stage(match action {
        PowerAction::Reboot => runtime::resources::specs::Stage::Rebooting,
        PowerAction::PowerOff => runtime::resources::specs::Stage::ShuttingDown,
    });
    let e = crate::shutdown::run(&sys, &supervisor, action).await;
    runtime::console!("shutdown: reboot(2) failed: {e}; halting");
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
