//! apid's settings from machined: read from the settings file in apid's
//! secrets directory, compiled into TLS configurations, and reloaded when
//! machined replaces the file (new certificates, or leaving maintenance
//! mode).
//!
//! machined passes the directory as an open descriptor: apid's user owns
//! the directory and the file, but cannot traverse /system/secrets (root,
//! 0700) to reach them by path. Changes are found by polling the file's
//! inode and times once a second: machined replaces it by rename, so the
//! inode changes, and a stat per second costs nothing; inotify would need
//! a path apid cannot resolve.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use config::apid::{ApidMode, ApidSettings, SETTINGS_FILE};
use rustix::fs::{AtFlags, Mode, OFlags};

use crate::members::{self, Members};
use crate::peers::NodeAddr;
use crate::tls;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot open apid's settings directory {path}: {source}")]
    OpenDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read {SETTINGS_FILE}: {0}")]
    Read(std::io::Error),
    #[error(transparent)]
    Parse(#[from] config::apid::ApidSettingsError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// What a connection was authenticated against. A connection made under
/// other trust (maintenance mode, or another OS CA) is not served after a
/// reload: it must reconnect and authenticate again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    pub mode: ApidMode,
    /// SHA-256 of the OS CA certificate.
    pub ca: Option<String>,
}

/// The settings, ready to serve with.
pub struct Compiled {
    pub trust: Trust,
    pub server: Arc<rustls::ServerConfig>,
    pub forwarding: Option<Arc<rustls::ClientConfig>>,
    /// The join port's TLS (a node that signs joining machines).
    pub join: Option<Arc<rustls::ServerConfig>>,
    /// Whether certificate roles are enforced (`machine.features.rbac`).
    pub rbac: bool,
    /// Bumped by every reload (peer connections are rebuilt on change).
    pub generation: u64,
    /// The nodes apid may forward calls to.
    pub members: Members,
}

/// What apid knows besides its settings file: the port it serves on and
/// members of the cluster given to it when it started.
#[derive(Debug, Clone, Default)]
pub struct Local {
    pub listen_port: Option<u16>,
    pub members: Vec<NodeAddr>,
}

impl Compiled {
    pub fn new(
        settings: &ApidSettings,
        generation: u64,
        local: &Local,
    ) -> Result<Compiled, SettingsError> {
        let own = members::certificate_names(settings.server.crt.der());
        // Entries machined wrote that do not parse are skipped, as the
        // flag's are refused: one bad name must not stop apid serving.
        let from_machined: Vec<NodeAddr> = settings
            .members
            .iter()
            .filter_map(|m| match NodeAddr::parse(m) {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::warn!(member = %m, error = %e, "skipping a member machined listed");
                    None
                }
            })
            .collect();
        Ok(Compiled {
            trust: Trust {
                mode: settings.mode,
                ca: settings
                    .ca
                    .as_ref()
                    .map(|c| config::pki::fingerprint(c.der())),
            },
            server: Arc::new(tls::server_config(settings)?),
            forwarding: tls::forwarding_config(settings)?.map(Arc::new),
            join: tls::join_config(settings)?.map(Arc::new),
            rbac: settings.rbac,
            generation,
            members: Members::for_node(
                own.iter().map(String::as_str),
                local.listen_port,
                local.members.iter().chain(&from_machined),
            ),
        })
    }
}

/// The settings in force; replaced as a whole on reload.
pub struct Current {
    inner: RwLock<Arc<Compiled>>,
    generations: AtomicU64,
    local: Local,
}

impl Current {
    pub fn new(settings: &ApidSettings, local: Local) -> Result<Arc<Current>, SettingsError> {
        Ok(Arc::new(Current {
            inner: RwLock::new(Arc::new(Compiled::new(settings, 0, &local)?)),
            generations: AtomicU64::new(0),
            local,
        }))
    }

    pub fn get(&self) -> Arc<Compiled> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Compiles and installs new settings; the old ones stay on error.
    pub fn replace(&self, settings: &ApidSettings) -> Result<(), SettingsError> {
        let generation = self.generations.fetch_add(1, Ordering::SeqCst) + 1;
        let compiled = Arc::new(Compiled::new(settings, generation, &self.local)?);
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = compiled;
        Ok(())
    }
}

/// apid's settings directory, open.
pub struct Source {
    dir: OwnedFd,
}

/// Identifies one version of the settings file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Source {
    /// From a descriptor machined passed (the directory, opened by root).
    pub fn from_fd(dir: OwnedFd) -> Source {
        Source { dir }
    }

    /// From a path (tests, or apid started by hand).
    pub fn open(path: &Path) -> Result<Source, SettingsError> {
        let dir = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SettingsError::OpenDir {
            path: path.display().to_string(),
            source: e.into(),
        })?;
        Ok(Source { dir })
    }

    fn stamp(&self) -> std::io::Result<Stamp> {
        let st = rustix::fs::statat(&self.dir, SETTINGS_FILE, AtFlags::empty())?;
        Ok(Stamp {
            ino: st.st_ino,
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime, st.st_ctime_nsec as i64),
        })
    }

    /// Reads and parses the settings file.
    pub fn load(&self) -> Result<ApidSettings, SettingsError> {
        let fd = rustix::fs::openat(
            &self.dir,
            SETTINGS_FILE,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SettingsError::Read(e.into()))?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut bytes)
            .map_err(SettingsError::Read)?;
        Ok(ApidSettings::parse(&bytes)?)
    }

    /// Polls the file every `interval` and installs each new version in
    /// `current` (a version that does not parse or compile is logged and
    /// skipped; the last good one stays). Runs until the process ends.
    pub async fn watch(self, current: Arc<Current>, interval: Duration) {
        let mut last = self.stamp().ok();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = match self.stamp() {
                Ok(s) => Some(s),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot stat {SETTINGS_FILE}");
                    continue;
                }
            };
            if now == last || now.is_none() {
                continue;
            }
            last = now;
            match self
                .load()
                .and_then(|s| current.replace(&s).map(|()| s.mode))
            {
                Ok(mode) => tracing::info!(?mode, "reloaded settings and certificates"),
                Err(e) => {
                    tracing::error!(error = %e, "new settings not installed; serving with the previous ones")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::pki;

    #[test]
    fn members_listed_by_machined_are_forwarded_to_and_follow_reloads() {
        let ca = pki::create_os_ca().unwrap();
        let server = pki::issue_server_cert(&ca, "cp-1", &[], pki::LEAF_VALIDITY).unwrap();
        let mut settings = ApidSettings {
            mode: ApidMode::Secure,
            server,
            ca: Some(ca.crt.clone()),
            forwarding: None,
            rbac: true,
            join: false,
            members: vec!["10.5.0.10".into(), "not a host:x".into()],
        };
        let local = Local {
            listen_port: None,
            members: vec![NodeAddr::parse("10.5.0.2").unwrap()],
        };
        let current = Current::new(&settings, local).unwrap();
        let addr = |s| NodeAddr::parse(s).unwrap();
        let m = current.get().members.clone();
        assert!(m.check(&addr("10.5.0.10")).is_ok(), "machined's member");
        assert!(m.check(&addr("10.5.0.2")).is_ok(), "the flag's member");
        assert!(m.check(&addr("10.5.0.11")).is_err());
        // A Node that left is no longer forwarded to after the reload.
        settings.members = vec!["10.5.0.11".into()];
        current.replace(&settings).unwrap();
        let m = current.get().members.clone();
        assert!(m.check(&addr("10.5.0.10")).is_err());
        assert!(m.check(&addr("10.5.0.11")).is_ok());
    }
}
