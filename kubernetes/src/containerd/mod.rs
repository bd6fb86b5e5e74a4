//! containerd on the node: its generated config, the supervised service
//! (from the payload), its health through the containerd API, and the
//! import of the payload's OCI images into the `k8s.io` namespace.
//!
//! machined talks to containerd only with `containerd-client` (gRPC on the
//! unix socket), never through `ctr`.

pub mod config;
pub mod import;
pub mod list;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ::config::constants::k8s;
use containerd_client::services::v1::version_client::VersionClient;
use tonic::transport::Channel;

use crate::specs::{current, ContainerdSpec, StartedWith};
use runtime::resources::Store;
use runtime::supervisor::prepared::{Prepare, PreparedRunner};
use runtime::supervisor::process::ProcessRunner;
use runtime::supervisor::restart::{RestartPolicy, RestartRunner};
use runtime::supervisor::{HealthCheck, Service};

pub use self::config::{ContainerdPaths, Settings};

/// The service's id.
pub const SERVICE: &str = "containerd";
/// containerd's state directory (sockets of shims, task bundles).
pub const STATE_DIR: &str = "/run/containerd";
/// The payload's binaries and libraries.
pub const PAYLOAD_BIN: &str = ::config::constants::payload::BIN_DIR;
pub const PAYLOAD_LIB: &str = ::config::constants::payload::LIB_DIR;
/// The payload's OCI image archives.
pub const PAYLOAD_IMAGES: &str = ::config::constants::payload::IMAGES_DIR;
/// containerd namespace machined's own containers would live in
/// (`cairnctl containers` without `-k`).
pub const SYSTEM_NAMESPACE: &str = "system";

/// The pause image the payload carries (the CRI sandbox image).
pub fn pause_image() -> String {
    ::config::constants::images::PAUSE.to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("cannot connect to containerd at {path}: {source}")]
    Connect {
        path: String,
        source: tonic::transport::Error,
    },
    #[error("containerd {call} failed: {status}")]
    Call {
        call: &'static str,
        status: Box<tonic::Status>,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: ::config::fsutil::WriteError,
    },
    #[error("cannot create {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
}

impl ContainerdError {
    pub fn call(call: &'static str) -> impl FnOnce(tonic::Status) -> ContainerdError {
        move |status| ContainerdError::Call {
            call,
            status: Box::new(status),
        }
    }
}

/// The environment of payload programs: its libraries first, its binaries
/// first on PATH (the kubelet execs mount and iptables, containerd execs
/// the shim), iptables' extensions from the payload.
pub fn payload_env() -> Vec<(String, String)> {
    use ::config::constants::payload;
    vec![
        ("PATH".into(), payload::PATH.into()),
        ("LD_LIBRARY_PATH".into(), PAYLOAD_LIB.into()),
        ("XTABLES_LIBDIR".into(), payload::XTABLES_LIB_DIR.into()),
    ]
}

/// A channel to containerd's socket. Connecting is lazy in tonic, so a
/// missing socket shows on the first call.
pub async fn connect(socket: &Path) -> Result<Channel, ContainerdError> {
    containerd_client::connect(socket)
        .await
        .map_err(|source| ContainerdError::Connect {
            path: socket.display().to_string(),
            source,
        })
}

/// containerd's version, asked over the API: the health check.
pub async fn version(socket: &Path) -> Result<String, ContainerdError> {
    let channel = connect(socket).await?;
    let v = VersionClient::new(channel)
        .version(())
        .await
        .map_err(ContainerdError::call("Version"))?
        .into_inner();
    Ok(v.version)
}

/// Writes the config text and creates the directories containerd needs.
pub fn prepare(
    config_path: &Path,
    layout: &ContainerdPaths,
    text: &str,
) -> Result<(), ContainerdError> {
    for dir in [
        config_path.parent(),
        Some(layout.root.as_path()),
        Some(layout.state.as_path()),
        Some(layout.cni_conf_dir.as_path()),
    ]
    .into_iter()
    .flatten()
    {
        std::fs::create_dir_all(dir).map_err(|source| ContainerdError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    ::config::fsutil::write_private(config_path, text.as_bytes(), true).map_err(|source| {
        ContainerdError::Write {
            path: config_path.display().to_string(),
            source,
        }
    })
}

/// The text of containerd's config as it should be now, or why there is
/// none yet.
pub type ConfigSource = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// containerd as a service: `binary` with the config at `config_path`,
/// which every start writes from `config` (so a restart runs with what is
/// current), restarted always, healthy once Version answers.
pub fn service_with(
    binary: PathBuf,
    config_path: PathBuf,
    layout: ContainerdPaths,
    config: ConfigSource,
) -> Service {
    let socket = layout.socket.clone();
    let prepare: Prepare = Arc::new(move || {
        let text = config()?;
        prepare(&config_path, &layout, &text).map_err(|e| e.to_string())?;
        let mut runner = ProcessRunner::new(binary.clone())
            .args(["--config".to_string(), config_path.display().to_string()]);
        runner.env = payload_env();
        // containerd takes a while to stop its shims' event streams.
        runner.stop_timeout = Duration::from_secs(20);
        runner.cgroup = layout.cgroup.clone();
        Ok(runner)
    });
    Service::new(
        SERVICE,
        RestartRunner::new(PreparedRunner::new(prepare), RestartPolicy::Always),
    )
    .health(HealthCheck::new(
        Duration::from_secs(10),
        Duration::from_secs(3),
        move || {
            let socket = socket.clone();
            async move { version(&socket).await.map(drop).map_err(|e| e.to_string()) }
        },
    ))
}

/// containerd on the node, from the payload, with the [`ContainerdSpec`]
/// the store has at each start; `started` records which one that was.
pub fn service(store: &Arc<Store>, started: StartedWith<ContainerdSpec>) -> Service {
    let store = store.clone();
    service_with(
        PathBuf::from(PAYLOAD_BIN).join("containerd"),
        k8s::CONTAINERD_CONFIG.into(),
        ContainerdPaths::node(),
        Arc::new(move || {
            let spec = current::<ContainerdSpec>(&store, ContainerdSpec::ID)?;
            started.set(spec.clone());
            Ok(spec.config)
        }),
    )
}

#[cfg(test)]
mod host_tests;
