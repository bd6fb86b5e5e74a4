//! Control-plane static pods: rendered from the machine config (see
//! [`render`]), written atomically into the kubelet's static pod directory
//! and shown as `staticpods` resources. Written again whenever the config
//! or the secrets change; a worker has none (stale manifests are removed).

pub mod render;

use std::path::{Path, PathBuf};

use config::constants::k8s;
use config::spec::MachineType;
use config::MachineConfig;

use crate::staticpods_resource::StaticPodSpec;
use runtime::resources::{kind, Store, Writer};

pub use render::{Manifest, RenderInput};

#[derive(Debug, thiserror::Error)]
pub enum StaticPodsError {
    #[error("cannot create {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: config::fsutil::WriteError,
    },
    #[error("cannot remove the stale manifest {path}: {source}")]
    Remove {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Store(#[from] runtime::resources::StoreError),
}

/// Writes the static pods and owns the `staticpods` resources.
pub struct StaticPods {
    dir: PathBuf,
    writer: Writer,
}

/// The file name machined gives a component's manifest; only files named
/// like this are machined's to replace or remove.
fn file_name(component: &str) -> String {
    format!("{component}.yaml")
}

const COMPONENTS: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

impl StaticPods {
    /// For the node: the kubelet's static pod directory.
    pub fn new(store: &std::sync::Arc<Store>) -> Result<StaticPods, StaticPodsError> {
        Self::in_dir(store, k8s::MANIFESTS_DIR.into())
    }

    pub fn in_dir(
        store: &std::sync::Arc<Store>,
        dir: PathBuf,
    ) -> Result<StaticPods, StaticPodsError> {
        Ok(StaticPods {
            dir,
            writer: store.writer("staticpods", &[kind::STATIC_PODS])?,
        })
    }

    /// Makes the directory and the resources match `cfg`: the control
    /// plane's manifests on a control-plane node, none on a worker.
    /// Until `input.api_ready`, only the API server's: the controller-manager
    /// and the scheduler started with it took CPU from its start (under
    /// emulation, minutes), and the controller-manager exited on an API
    /// server that was not healthy yet, then waited out its own lease.
    /// Returns whether any file changed.
    pub fn sync(&self, cfg: &MachineConfig, input: &RenderInput) -> Result<bool, StaticPodsError> {
        let mut manifests = match cfg.machine.machine_type {
            MachineType::Controlplane => render::control_plane(cfg, input),
            MachineType::Worker => Vec::new(),
        };
        manifests.retain(|m| input.api_ready || m.component == "kube-apiserver");
        std::fs::create_dir_all(&self.dir).map_err(|source| StaticPodsError::Dir {
            path: self.dir.display().to_string(),
            source,
        })?;
        let mut changed = false;
        let mut resources = Vec::new();
        for m in &manifests {
            let path = self.dir.join(file_name(m.component));
            if std::fs::read_to_string(&path).ok().as_deref() != Some(m.yaml.as_str()) {
                config::fsutil::write_private(&path, m.yaml.as_bytes(), true).map_err(
                    |source| StaticPodsError::Write {
                        path: path.display().to_string(),
                        source,
                    },
                )?;
                runtime::console!("static pod {}: written", m.component);
                changed = true;
            }
            resources.push((
                m.component.to_string(),
                StaticPodSpec {
                    path: path.display().to_string(),
                    image: m.image.clone(),
                    secrets_digest: input.secrets_digest.clone(),
                    manifest: m.yaml.clone(),
                },
            ));
        }
        for c in COMPONENTS
            .iter()
            .filter(|c| !manifests.iter().any(|m| m.component == **c))
        {
            let path = self.dir.join(file_name(c));
            match std::fs::remove_file(&path) {
                Ok(()) => changed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StaticPodsError::Remove {
                        path: path.display().to_string(),
                        source,
                    })
                }
            }
        }
        self.writer.reconcile(resources)?;
        Ok(changed)
    }
}

/// The render input for this node now: its address, the digest of the
/// Kubernetes secrets and whether the API server has answered this boot.
pub fn input_for(
    node_ip: Option<std::net::IpAddr>,
    secrets_dir: &Path,
    api_ready: bool,
) -> RenderInput {
    RenderInput {
        node_ip,
        secrets_digest: render::dir_digest(secrets_dir),
        api_ready,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil;

    #[test]
    fn control_planes_get_manifests_and_resources_workers_none() {
        let store = Store::new();
        let dir = tempfile::tempdir().unwrap();
        let pods = StaticPods::in_dir(&store, dir.path().join("manifests")).unwrap();
        std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
        std::fs::write(dir.path().join("manifests/user.yaml"), "kind: Pod\n").unwrap();
        let cfg = testutil::machine_config();
        // Before the API server answered: its manifest only.
        let early = RenderInput {
            node_ip: None,
            secrets_digest: "d1".into(),
            api_ready: false,
        };
        assert!(pods.sync(&cfg, &early).unwrap());
        let ids = |store: &Store| -> Vec<String> {
            store
                .specs::<StaticPodSpec>()
                .into_iter()
                .map(|(id, _)| id)
                .collect()
        };
        assert_eq!(ids(&store), ["kube-apiserver"]);
        assert!(!dir.path().join("manifests/kube-scheduler.yaml").exists());

        let input = RenderInput {
            api_ready: true,
            ..early
        };
        assert!(pods.sync(&cfg, &input).unwrap());
        assert!(
            !pods.sync(&cfg, &input).unwrap(),
            "a second sync changes nothing"
        );
        let specs = store.specs::<StaticPodSpec>();
        assert_eq!(
            specs.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
            COMPONENTS
        );
        let api =
            std::fs::read_to_string(dir.path().join("manifests/kube-apiserver.yaml")).unwrap();
        assert_eq!(api, specs[0].1.manifest);

        // New secrets: the manifests change.
        let input2 = RenderInput {
            node_ip: None,
            secrets_digest: "d2".into(),
            api_ready: true,
        };
        assert!(pods.sync(&cfg, &input2).unwrap());
        assert!(
            std::fs::read_to_string(dir.path().join("manifests/kube-scheduler.yaml"))
                .unwrap()
                .contains("d2")
        );

        // A worker: machined's manifests go, the user's stays.
        assert!(pods.sync(&testutil::worker_config(), &input2).unwrap());
        assert!(store.specs::<StaticPodSpec>().is_empty());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("manifests"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("user.yaml")]);
    }
}
