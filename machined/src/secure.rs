//! apid's certificates and settings, and apid as a service.
//!
//! machined writes apid's settings ([`config::apid::ApidSettings`]: mode,
//! server certificate and key, the OS CA, the forwarding certificate) to
//! one file in /system/secrets/apid, atomically, owned by apid's user with
//! mode 0600 in a 0700 directory of that user. apid gets the directory as
//! an open descriptor (it cannot traverse /system/secrets itself) and
//! reloads the file when it changes, so leaving maintenance mode or new
//! certSANs need no apid restart.
//!
//! apid runs as uid/gid 50 with no capabilities (port 50000 needs none),
//! `no_new_privs`, a clean environment (PATH only) and stdin from
//! /dev/null. What it keeps: TCP to anywhere (it forwards to other nodes),
//! read access to world-readable files of the read-only root, and
//! machined's socket, whose callers machined trusts to name the caller's
//! role; so a compromised apid is as strong as an admin on this node.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use config::apid::{ApidMode, ApidSettings, SETTINGS_FILE};
use config::constants::{role, APID_PORT, APID_SECRETS_DIR, MACHINED_SOCKET};
use config::pki::{self, CertifiedKey, LeafRequest, Usage};
use config::types::SubjectAltName;
use config::MachineConfig;

use crate::maintenance::{APID_BIN, APID_GID, APID_UID};
use runtime::supervisor::process::ProcessRunner;
use runtime::supervisor::restart::{RestartPolicy, RestartRunner};
use runtime::supervisor::{HealthCheck, Service};

/// The descriptor apid finds its settings directory on.
pub const SETTINGS_FD: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum SecureError {
    #[error(
        "apid's certificate is issued from the OS CA, but this config has neither machine.ca.key \
         nor machine.token to ask a control plane for one"
    )]
    NoCaKey,
    #[error("cannot issue apid's certificates: {0}")]
    Pki(#[from] pki::PkiError),
    #[error("the maintenance certificate: {0}")]
    Maintenance(String),
    #[error("cannot write apid's settings to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// apid's settings directory.
pub fn settings_dir() -> PathBuf {
    PathBuf::from(APID_SECRETS_DIR)
}

/// Whether this node can serve mutual TLS with `config`: it issues apid's
/// certificates itself (it has the OS CA key), or it asks a control plane
/// for them with the join token (a worker; see `crate::join`).
pub fn check(config: &MachineConfig) -> Result<(), SecureError> {
    if config.machine.ca.certified_key().is_some() || !config.machine.token.as_str().is_empty() {
        Ok(())
    } else {
        Err(SecureError::NoCaKey)
    }
}

/// Names apid's server certificate is valid for: the node's addresses and
/// hostname, `machine.certSANs`, and loopback (a local client, or a port
/// forwarded to 127.0.0.1).
pub fn server_sans(
    config: &MachineConfig,
    hostname: &str,
    addresses: &[IpAddr],
) -> Vec<SubjectAltName> {
    let mut sans: Vec<SubjectAltName> = Vec::new();
    let mut add = |s: SubjectAltName| {
        if !sans.contains(&s) {
            sans.push(s);
        }
    };
    for a in addresses {
        add(SubjectAltName::Ip(*a));
    }
    if !hostname.is_empty() {
        add(SubjectAltName::Dns(hostname.to_string()));
    }
    for s in &config.machine.cert_sans {
        add(s.clone());
    }
    add(SubjectAltName::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    add(SubjectAltName::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    add(SubjectAltName::Dns("localhost".into()));
    sans
}

/// Settings for mutual TLS: a server certificate and a forwarding client
/// certificate (`os:impersonator`), both issued now from the OS CA.
pub fn secure_settings(
    config: &MachineConfig,
    hostname: &str,
    addresses: &[IpAddr],
) -> Result<ApidSettings, SecureError> {
    let ca = config
        .machine
        .ca
        .certified_key()
        .ok_or(SecureError::NoCaKey)?;
    let name = if hostname.is_empty() {
        "cairn"
    } else {
        hostname
    };
    let server = pki::issue_server_cert(
        &ca,
        name,
        &server_sans(config, hostname, addresses),
        pki::LEAF_VALIDITY,
    )?;
    let mut forwarding = LeafRequest::new(name, Usage::Client);
    forwarding.organizations = vec![role::IMPERSONATOR.to_string()];
    let forwarding = pki::issue(&ca, &forwarding)?;
    Ok(ApidSettings {
        mode: ApidMode::Secure,
        server,
        ca: Some(ca.crt),
        forwarding: Some(forwarding),
        rbac: config.machine.features.rbac,
        // It holds the OS CA key: it can sign joining machines' apid.
        join: true,
        members: Vec::new(),
    })
}

/// Settings for maintenance mode with a self-signed certificate.
pub fn maintenance_settings(
    cert: &crate::maintenance::Certificate,
) -> Result<ApidSettings, SecureError> {
    let server = CertifiedKey {
        crt: cert.cert_pem.parse().map_err(SecureError::Maintenance)?,
        key: cert.key_pem.parse().map_err(SecureError::Maintenance)?,
    };
    Ok(ApidSettings {
        mode: ApidMode::Maintenance,
        server,
        ca: None,
        forwarding: None,
        rbac: true,
        join: false,
        members: Vec::new(),
    })
}

/// apid's settings as the `apidspec` resource shows them: everything but
/// the keys. apid runs from the settings file; this is its readable copy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApidSpec {
    pub mode: String,
    /// The server certificate's names (subject CN, then its SANs).
    pub names: Vec<String>,
    /// Its expiry, RFC 3339.
    pub not_after: String,
    /// `sha256:<hex>` of its DER, as clients pin it.
    pub fingerprint: String,
    /// Client certificates must be signed by the OS CA.
    pub client_certificates: bool,
    pub rbac: bool,
    /// apid holds a certificate to forward calls to other nodes.
    pub forwarding: bool,
    /// apid signs joining machines' certificates (control planes).
    pub join: bool,
    pub members: Vec<String>,
}

impl ApidSpec {
    pub const ID: &'static str = "apid";

    pub fn of(s: &ApidSettings) -> ApidSpec {
        let der = s.server.crt.der();
        let (mut names, mut not_after) = (Vec::new(), String::new());
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) {
            names.extend(
                cert.subject()
                    .iter_common_name()
                    .filter_map(|cn| cn.as_str().ok().map(str::to_string)),
            );
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                for n in &san.value.general_names {
                    match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => {
                            names.push(d.to_string())
                        }
                        x509_parser::extensions::GeneralName::IPAddress(b) => {
                            let ip = match b.len() {
                                4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                                16 => <[u8; 16]>::try_from(*b).ok().map(IpAddr::from),
                                _ => None,
                            };
                            names.extend(ip.map(|ip| ip.to_string()));
                        }
                        _ => {}
                    }
                }
            }
            let expiry = cert.validity().not_after.timestamp();
            not_after = u64::try_from(expiry)
                .map(|secs| {
                    let at = std::time::UNIX_EPOCH + Duration::from_secs(secs);
                    humantime::format_rfc3339_seconds(at).to_string()
                })
                .unwrap_or_default();
        }
        ApidSpec {
            mode: match s.mode {
                ApidMode::Maintenance => "maintenance",
                ApidMode::Secure => "secure",
            }
            .to_string(),
            names,
            not_after,
            fingerprint: format!("sha256:{}", pki::fingerprint(der)),
            client_certificates: s.ca.is_some(),
            rbac: s.rbac,
            forwarding: s.forwarding.is_some(),
            join: s.join,
            members: s.members.clone(),
        }
    }
}

impl runtime::resources::Spec for ApidSpec {
    const KIND: &'static runtime::resources::Kind = runtime::resources::kind::APID_SPEC;
    fn to_yaml(&self, _: runtime::resources::Secrets) -> String {
        runtime::resources::yaml_of(self)
    }
}

/// apid's settings file: where it is, who owns it, and the one lock its
/// writers take. New certificates (apply, join) and new members are
/// written by different tasks, and a read-modify-write must not put back
/// certificates just replaced. The node holds one (`Node::apid_settings`);
/// every write is published as the [`ApidSpec`] through its store writer.
pub struct ApidSettingsFile {
    pub dir: PathBuf,
    /// apid's uid/gid; `None` in tests.
    pub owner: Option<(u32, u32)>,
    writer: std::sync::Mutex<()>,
    publish: Option<runtime::resources::Writer>,
}

impl ApidSettingsFile {
    /// The node's: apid's secrets directory, owned by apid's user,
    /// published through `publish`.
    pub fn node(publish: Option<runtime::resources::Writer>) -> Arc<Self> {
        Arc::new(Self {
            dir: settings_dir(),
            owner: Some((APID_UID, APID_GID)),
            writer: std::sync::Mutex::new(()),
            publish,
        })
    }

    /// A file in `dir`, published nowhere (tests, benches).
    pub fn new(dir: PathBuf, owner: Option<(u32, u32)>) -> Arc<Self> {
        Arc::new(Self {
            dir,
            owner,
            writer: std::sync::Mutex::new(()),
            publish: None,
        })
    }

    fn written(&self, settings: &ApidSettings) {
        if let Some(w) = &self.publish {
            // Fails only for an undeclared output: the writer is apidspec's.
            let _ = w.put(ApidSpec::ID, ApidSpec::of(settings));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `settings` atomically: a 0600 temp file owned by the owner,
    /// fsync, rename, fsync of the directory. The directory is made 0700
    /// and owned by the owner too.
    pub fn write(&self, settings: &ApidSettings) -> Result<(), SecureError> {
        let _one_writer = self.lock();
        write_unlocked(&self.dir, settings, self.owner)?;
        self.written(settings);
        Ok(())
    }

    /// Changes the settings with `change` (which says whether it changed
    /// anything) and writes them back; nothing when there are no settings
    /// yet or they do not parse (the next full write replaces them).
    pub fn update(
        &self,
        change: impl FnOnce(&mut ApidSettings) -> bool,
    ) -> Result<bool, SecureError> {
        let _one_writer = self.lock();
        let Ok(bytes) = std::fs::read(self.dir.join(SETTINGS_FILE)) else {
            return Ok(false);
        };
        let Ok(mut settings) = ApidSettings::parse(&bytes) else {
            return Ok(false);
        };
        if !change(&mut settings) {
            return Ok(false);
        }
        write_unlocked(&self.dir, &settings, self.owner)?;
        self.written(&settings);
        Ok(true)
    }
}

fn write_unlocked(
    dir: &Path,
    settings: &ApidSettings,
    owner: Option<(u32, u32)>,
) -> Result<(), SecureError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SecureError::Write { path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err(dir))?;
    let chown = |p: &Path| -> std::io::Result<()> {
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(p, Some(uid), Some(gid))?;
        }
        Ok(())
    };
    chown(dir).map_err(err(dir))?;
    let target = dir.join(SETTINGS_FILE);
    // NamedTempFile creates the file with mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(".apid-tmp")
        .tempfile_in(dir)
        .map_err(err(dir))?;
    tmp.write_all(settings.render().as_bytes())
        .map_err(err(&target))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(tmp.as_file(), Some(uid), Some(gid)).map_err(err(&target))?;
    }
    tmp.as_file().sync_all().map_err(err(&target))?;
    tmp.persist(&target).map_err(|e| SecureError::Write {
        path: target.clone(),
        source: e.error,
    })?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err(dir))?;
    Ok(())
}

/// The apid service: restarted with backoff, healthy once it accepts TCP
/// connections on its port. Its settings directory is opened afresh for
/// every start and passed as [`SETTINGS_FD`].
pub fn apid_service(dir: &Path) -> Service {
    let mut runner = ProcessRunner::new(APID_BIN).args([
        "--listen".to_string(),
        format!("0.0.0.0:{APID_PORT}"),
        "--machined-socket".to_string(),
        MACHINED_SOCKET.to_string(),
        "--settings-fd".to_string(),
        SETTINGS_FD.to_string(),
    ]);
    runner.uid = Some(APID_UID);
    runner.gid = Some(APID_GID);
    runner.no_new_privs = true;
    runner.pass_files = vec![(dir.to_path_buf(), SETTINGS_FD)];
    runner.stop_timeout = Duration::from_secs(5);
    runner.cgroup = Some(system::cgroups::Group::System.node_service("apid"));
    Service::new("apid", RestartRunner::new(runner, RestartPolicy::Always)).health(
        HealthCheck::tcp_connect(([127, 0, 0, 1], APID_PORT).into(), Duration::from_secs(5)),
    )
}

/// Prints that apid serves mutual TLS once it is healthy for the first
/// time (a configured boot: no maintenance banner).
pub async fn banner_when_ready(apid: std::sync::Arc<runtime::supervisor::ServiceHandle>) {
    let mut rx = apid.status.subscribe();
    let _ = rx
        .wait_for(|s| s.health == runtime::supervisor::Health::Ok)
        .await;
    runtime::console!(
        "apid listening on :{APID_PORT} with mutual TLS (client certificates from the OS CA)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::tests::generated;

    #[test]
    fn secure_settings_chain_to_the_os_ca_with_the_right_names() {
        let (cfg, _) = generated();
        let addrs: Vec<IpAddr> = vec!["10.0.2.15".parse().unwrap()];
        let s = secure_settings(&cfg, "node-1", &addrs).unwrap();
        assert_eq!(s.mode, ApidMode::Secure);
        assert_eq!(s.ca.as_ref().unwrap(), &cfg.machine.ca.crt);
        let (_, cert) = x509_parser::parse_x509_certificate(s.server.crt.der()).unwrap();
        let names: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        for want in [
            "node-1",
            "localhost",
            "IPAddress(0a:00:02:0f)",
            "IPAddress(7f:00:00:01)",
        ] {
            assert!(
                names.iter().any(|n| n.contains(want)),
                "{want} not in {names:?}"
            );
        }
        let (_, fwd) =
            x509_parser::parse_x509_certificate(s.forwarding.as_ref().unwrap().crt.der()).unwrap();
        let orgs: Vec<&str> = fwd
            .subject()
            .iter_organization()
            .filter_map(|o| o.as_str().ok())
            .collect();
        assert_eq!(orgs, vec!["os:impersonator"]);

        let mut worker = cfg.clone();
        worker.machine.ca = worker.machine.ca.without_key();
        // A worker asks a control plane instead (crate::join).
        assert!(check(&worker).is_ok());
        assert!(matches!(
            secure_settings(&worker, "n", &[]),
            Err(SecureError::NoCaKey)
        ));
    }

    /// Every write of the node's settings file shows in `apidspec`, with
    /// the certificate's names and fingerprint and without its key.
    #[test]
    fn written_settings_are_published_without_the_key() {
        let store = runtime::resources::Store::new();
        let dir = tempfile::tempdir().unwrap();
        let file = ApidSettingsFile {
            dir: dir.path().join("apid"),
            owner: None,
            writer: std::sync::Mutex::new(()),
            publish: Some(
                store
                    .writer("apid", &[runtime::resources::kind::APID_SPEC])
                    .unwrap(),
            ),
        };
        let cert = crate::maintenance::generate_certificate("n", &[]).unwrap();
        file.write(&maintenance_settings(&cert).unwrap()).unwrap();
        let spec = store.spec::<ApidSpec>(ApidSpec::ID).unwrap();
        assert_eq!(spec.mode, "maintenance");
        assert_eq!(spec.fingerprint, format!("sha256:{}", cert.fingerprint));
        assert!(!spec.client_certificates && spec.members.is_empty());

        let (cfg, _) = generated();
        let secure = secure_settings(&cfg, "node-1", &["10.0.2.15".parse().unwrap()]).unwrap();
        file.write(&secure).unwrap();
        assert!(file
            .update(|s| {
                s.members = vec!["10.0.2.16".into()];
                true
            })
            .unwrap());
        let spec = store.spec::<ApidSpec>(ApidSpec::ID).unwrap();
        assert_eq!(spec.mode, "secure");
        assert!(spec.client_certificates && spec.forwarding && spec.rbac);
        assert_eq!(spec.members, ["10.0.2.16"]);
        for name in ["node-1", "10.0.2.15"] {
            assert!(spec.names.iter().any(|n| n == name), "{name}: {spec:?}");
        }
        assert!(
            spec.not_after.ends_with('Z') && spec.not_after.len() == 20,
            "{spec:?}"
        );
        let yaml = runtime::resources::Spec::to_yaml(&spec, runtime::resources::Secrets::Show);
        assert!(!yaml.contains("PRIVATE KEY"), "{yaml}");
    }

    #[test]
    fn settings_file_is_private_owned_and_replaced_atomically() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("apid");
        let cert = crate::maintenance::generate_certificate("n", &[]).unwrap();
        let m = maintenance_settings(&cert).unwrap();
        // Owned by uid/gid 50 when root can chown (as machined is).
        let owner = nix::unistd::Uid::effective().is_root().then_some((50, 50));
        let settings = ApidSettingsFile::new(d.clone(), owner);
        settings.write(&m).unwrap();
        let file = d.join(SETTINGS_FILE);
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        if let Some((uid, gid)) = owner {
            assert_eq!((meta.uid(), meta.gid()), (uid, gid));
        }
        assert_eq!(
            ApidSettings::parse(&std::fs::read(&file).unwrap()).unwrap(),
            m
        );
        let (cfg, _) = generated();
        let s = secure_settings(&cfg, "n", &[]).unwrap();
        settings.write(&s).unwrap();
        assert_eq!(
            ApidSettings::parse(&std::fs::read(&file).unwrap()).unwrap(),
            s
        );
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            1,
            "no temp files left"
        );
    }
}
