//! Time synchronisation: an SNTP client that asks the configured servers
//! (`machine.time.servers`, by default `pool.ntp.org`) in order, steps the
//! clock at its first answer after boot and slews it afterwards (see
//! [`clock`]), and keeps two resources current: `timeservers` and
//! `timestatus`, whose `synced` condition etcd and kubelet wait for
//! ([`wait_synced`]).
//!
//! It runs once the node has a machine config: in maintenance mode nothing
//! needs the time yet, and the node should not reach out to public servers
//! before it is told to.

pub mod clock;
pub mod responder;
pub mod sntp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;

use crate::resources::time::{TimeServersSpec, TimeStatusSpec};
use clock::{Clock, Correction};
use runtime::resources::controller::ControllerError;
use runtime::resources::machineconfig::MachineConfigSpec;
use runtime::resources::{kind, Controller, Filter, Input, Kind, Watch, Writer};

/// How long one server may take to answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long resolving a server's name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Between polls once synchronised.
const POLL_INTERVAL: Duration = Duration::from_secs(256);
/// Retries while no server answers: from 1 s, doubling up to this.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Waits until the clock is synchronised (or time synchronisation is
/// disabled in the config), at most `timeout`. Returns whether it is; on
/// `false` the caller goes on and should warn that the clock may be wrong.
pub async fn wait_synced(node: &runtime::Runtime, timeout: Duration) -> bool {
    let ready = |s: &TimeStatusSpec| s.synced || s.disabled;
    let store = &node.store;
    let mut watch = Watch::new(store, Filter::kind(kind::TIME_STATUS), false);
    let wait = async {
        loop {
            if store
                .spec::<TimeStatusSpec>(TimeStatusSpec::ID)
                .is_some_and(|s| ready(&s))
            {
                return;
            }
            watch.next().await;
        }
    };
    tokio::time::timeout(timeout, wait).await.is_ok()
}

/// The Time RPC's answer: the node's clock now and the `timestatus`.
pub fn time_response(node: &runtime::Runtime) -> api::machine::TimeResponse {
    let s = node
        .store
        .spec::<TimeStatusSpec>(TimeStatusSpec::ID)
        .unwrap_or_default();
    let servers = node
        .store
        .spec::<TimeServersSpec>(TimeServersSpec::ID)
        .unwrap_or_default();
    api::machine::TimeResponse {
        node_time: Some(prost_types::Timestamp::from(SystemTime::now())),
        synced: s.synced,
        disabled: s.disabled,
        server: s.server,
        offset_seconds: s.offset_seconds,
        roundtrip_seconds: s.roundtrip_seconds,
        last_sync: s.last_sync,
        message: s.message,
        servers: servers.servers,
    }
}

/// Keeps the clock synchronised with the running config's time servers.
#[derive(Clone)]
pub struct TimeController {
    pub clock: Arc<dyn Clock>,
    /// The servers' port: [`sntp::PORT`] except in tests.
    pub port: u16,
}

impl Default for TimeController {
    fn default() -> Self {
        Self {
            clock: Arc::new(clock::SystemClock),
            port: sntp::PORT,
        }
    }
}

impl Controller for TimeController {
    fn name(&self) -> &'static str {
        "time"
    }

    fn inputs(&self) -> Vec<Input> {
        vec![
            Input::Resource(kind::MACHINE_CONFIG),
            Input::External("SNTP servers"),
        ]
    }

    fn outputs(&self) -> Vec<&'static Kind> {
        vec![kind::TIME_SERVERS, kind::TIME_STATUS]
    }

    fn run(self, writer: Writer) -> BoxFuture<'static, Result<(), ControllerError>> {
        Box::pin(async move {
            self.run_loop(writer).await;
            Ok(())
        })
    }
}

/// What survives a change of the time config: whether the clock was
/// stepped since boot, and the status.
struct Sync {
    stepped: bool,
    status: TimeStatusSpec,
}

fn time_config(writer: &Writer) -> Option<config::spec::Time> {
    writer
        .store()
        .spec::<MachineConfigSpec>(MachineConfigSpec::RUNNING)
        .map(|c| c.0.machine.time)
}

impl TimeController {
    async fn run_loop(self, writer: Writer) {
        let mut watch = Watch::new(writer.store(), Filter::kind(kind::MACHINE_CONFIG), false);
        let mut sync = Sync {
            stepped: false,
            status: TimeStatusSpec::default(),
        };
        loop {
            let time = time_config(&writer);
            let servers: Vec<String> = match &time {
                Some(t) if !t.disabled => t.servers.iter().map(ToString::to_string).collect(),
                _ => Vec::new(),
            };
            let _ = writer.put(
                TimeServersSpec::ID,
                TimeServersSpec {
                    servers: servers.clone(),
                },
            );
            sync.status.disabled = time.as_ref().is_some_and(|t| t.disabled);
            sync.status.message = match &time {
                None => "waiting for a machine config".into(),
                Some(t) if t.disabled => {
                    "time synchronisation is disabled (machine.time.disabled)".into()
                }
                Some(_) if servers.is_empty() => "no time servers configured".into(),
                Some(_) => String::new(),
            };
            let _ = writer.put(TimeStatusSpec::ID, sync.status.clone());
            let changed = async {
                loop {
                    watch.next().await;
                    if time_config(&writer) != time {
                        return;
                    }
                }
            };
            tokio::select! {
                () = self.sync_loop(&mut sync, &servers, &writer), if !servers.is_empty() => {}
                () = changed => {}
            }
        }
    }

    /// Polls `servers` forever, correcting the clock at each answer.
    async fn sync_loop(&self, sync: &mut Sync, servers: &[String], writer: &Writer) {
        let mut retry = Duration::from_secs(1);
        loop {
            match self.ask(servers).await {
                Ok((server, sample)) => {
                    self.correct(sync, &server, sample);
                    let _ = writer.put(TimeStatusSpec::ID, sync.status.clone());
                    retry = Duration::from_secs(1);
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                Err(why) => {
                    if !sync.status.synced {
                        sync.status.message = why;
                        let _ = writer.put(TimeStatusSpec::ID, sync.status.clone());
                    }
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// The first answer of the servers in order; every failure otherwise.
    async fn ask(&self, servers: &[String]) -> Result<(String, sntp::Sample), String> {
        let mut problems = Vec::new();
        for host in servers {
            let addrs = match resolve(host, self.port).await {
                Ok(a) => a,
                Err(e) => {
                    problems.push(format!("{host}: {e}"));
                    continue;
                }
            };
            for addr in addrs {
                match sntp::query(addr, QUERY_TIMEOUT).await {
                    Ok(sample) => return Ok((host.clone(), sample)),
                    Err(e) => problems.push(e.to_string()),
                }
            }
        }
        Err(format!("no time server answered: {}", problems.join("; ")))
    }

    fn correct(&self, sync: &mut Sync, server: &str, sample: sntp::Sample) {
        let how = clock::correction(sample.offset_us, sync.stepped);
        let done = match how {
            Correction::Step => self.clock.step(sample.offset_us),
            Correction::Slew => self.clock.slew(sample.offset_us),
        };
        let offset = sample.offset_us as f64 / 1e6;
        if let Err(e) = done {
            sync.status.message =
                format!("cannot {} the clock by {offset:.3} s: {e}", how.as_str());
            tracing::warn!(controller = "time", error = %e, "cannot correct the clock");
            return;
        }
        if how == Correction::Step {
            sync.stepped = true;
        }
        if !sync.status.synced || how == Correction::Step {
            runtime::console!(
                "time: synchronised with {server} ({} by {offset:.3} s)",
                how.as_str()
            );
        }
        sync.status = TimeStatusSpec {
            synced: true,
            disabled: false,
            server: server.to_string(),
            offset_seconds: offset,
            roundtrip_seconds: sample.roundtrip_us as f64 / 1e6,
            last_correction: how.as_str().to_string(),
            last_sync: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            message: String::new(),
        };
    }
}

/// The addresses of `host` (an IP address or a DNS name), IPv4 first.
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| format!("resolving took longer than {RESOLVE_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot resolve: {e}"))?;
    let mut addrs: Vec<SocketAddr> = found.collect();
    addrs.sort_by_key(|a| a.is_ipv6());
    if addrs.is_empty() {
        return Err("the name has no addresses".into());
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests;
