//! `cairnctl gen secrets`, `cairnctl gen config` and `cairnctl gen
//! upgrade-key` (in gen_upgrade_key.rs).
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use config::fsutil::write_private;
use config::generate::{generate_configs, generate_secrets, GenerateInput};
use config::types::{ClusterName, ControlPlaneEndpoint, DiskPath, KubernetesVersion};
use config::validate::Mode;
use config::SecretsBundle;

use super::machineconfig::{apply_validated, ConfigPatchArgs};
use super::validate::{load_valid, read_input, report};
use crate::global::GlobalArgs;

#[derive(clap::Subcommand)]
#[command(after_help = "\
Examples:
  cairnctl gen secrets -o secrets.yaml
  cairnctl gen config demo https://10.5.0.2:6443 --with-secrets secrets.yaml -o out
  cairnctl gen upgrade-key -o keys")]
pub enum GenCommand {
    /// Generate a secrets bundle: the CAs, the service-account key, the
    /// tokens and the etcd encryption key of one cluster.
    #[command(after_help = "\
Examples:
  cairnctl gen secrets -o secrets.yaml
  cairnctl gen secrets --from-controlplane-config controlplane.yaml -o secrets.yaml

Keep the bundle safe: it holds every key of the cluster. The file is written
with mode 0600.")]
    Secrets(SecretsArgs),
    /// Generate controlplane.yaml, worker.yaml and the client config
    /// cairnconfig for a new cluster.
    #[command(after_help = "\
Examples:
  cairnctl gen config demo https://10.5.0.2:6443 -o out
  cairnctl gen config demo https://10.5.0.2:6443 --with-secrets secrets.yaml \\
      --install-disk /dev/vda --config-patch-control-plane @cp-patch.yaml -o out

All three files carry secrets and are written with mode 0600. Existing files
are not overwritten unless --force is given.")]
    Config(Box<ConfigArgs>),
    /// Generate an Ed25519 key pair for signing upgrade images.
    #[command(after_help = "\
Examples:
  cairnctl gen upgrade-key -o keys
  make image SIGNING_KEY=keys/upgrade-key.pem

Writes upgrade-key.pem (the private key, mode 0600: keep it off the nodes) and
upgrade-key.pub, and prints a config patch that lists the public key in
machine.install.trustedKeys. Nodes whose config lists trusted keys accept only
upgrades signed by one of them.")]
    UpgradeKey(super::gen_upgrade_key::UpgradeKeyArgs),
}

#[derive(clap::Args)]
pub struct SecretsArgs {
    /// Where to write the bundle.
    #[arg(short = 'o', long, value_name = "FILE", default_value = "secrets.yaml")]
    pub output: PathBuf,
    /// Take the secrets from an existing control-plane config instead of
    /// generating new ones.
    #[arg(long, value_name = "FILE")]
    pub from_controlplane_config: Option<PathBuf>,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::Args)]
pub struct ConfigArgs {
    /// The cluster's name (one DNS label).
    pub cluster_name: ClusterName,
    /// The Kubernetes API endpoint, e.g. https://10.5.0.2:6443.
    pub endpoint: ControlPlaneEndpoint,
    /// Directory to write controlplane.yaml, worker.yaml and cairnconfig to.
    #[arg(
        short = 'o',
        long = "output-dir",
        value_name = "DIR",
        default_value = "."
    )]
    pub output_dir: PathBuf,
    /// Use this secrets bundle (from `gen secrets`) instead of generating
    /// new secrets.
    #[arg(long, value_name = "FILE")]
    pub with_secrets: Option<PathBuf>,
    #[command(flatten)]
    pub patches: ConfigPatchArgs,
    /// Install to this disk (for ISO / bare-metal boots).
    #[arg(long, value_name = "DEVICE")]
    pub install_disk: Option<DiskPath>,
    /// Kubernetes version.
    #[arg(long, value_name = "VERSION", default_value = config::version::KUBERNETES_VERSION)]
    pub kubernetes_version: KubernetesVersion,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

pub async fn run(c: GenCommand, _g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match c {
        GenCommand::Secrets(a) => secrets(a),
        GenCommand::Config(a) => configs(*a),
        GenCommand::UpgradeKey(a) => super::gen_upgrade_key::run(a),
    }
}

/// Parse a secrets bundle file, printing its problems.
fn load_secrets(path: &Path) -> anyhow::Result<Option<SecretsBundle>> {
    let bytes = read_input(path)?;
    match SecretsBundle::parse(&bytes) {
        Ok(s) => Ok(Some(s)),
        Err(errors) => {
            report(&path.display().to_string(), errors);
            Ok(None)
        }
    }
}

fn secrets(a: SecretsArgs) -> anyhow::Result<ExitCode> {
    if !a.force && a.output.exists() {
        anyhow::bail!(
            "{} already exists (use --force to overwrite)",
            a.output.display()
        );
    }
    let bundle = match &a.from_controlplane_config {
        None => generate_secrets().context("generating secrets")?,
        Some(path) => {
            let label = path.display().to_string();
            let Some(config) = load_valid(&label, &read_input(path)?, Mode::Cloud) else {
                return Ok(ExitCode::from(1));
            };
            SecretsBundle::from_config(&config).with_context(|| {
                format!("{label} lacks some secrets (is it a worker config? use the control-plane config)")
            })?
        }
    };
    write_private(&a.output, bundle.render().as_bytes(), a.force)?;
    eprintln!("wrote {}", a.output.display());
    Ok(ExitCode::SUCCESS)
}

fn configs(a: ConfigArgs) -> anyhow::Result<ExitCode> {
    let targets = ["controlplane.yaml", "worker.yaml", "cairnconfig"].map(|f| a.output_dir.join(f));
    if !a.force {
        let existing: Vec<String> = targets
            .iter()
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            anyhow::bail!(
                "refusing to overwrite {} (use --force)",
                existing.join(", ")
            );
        }
    }
    let patches = a.patches.parse()?;

    let secrets = match &a.with_secrets {
        Some(path) => match load_secrets(path)? {
            Some(s) => s,
            None => return Ok(ExitCode::from(1)),
        },
        None => generate_secrets().context("generating secrets")?,
    };
    let mut input = GenerateInput::new(a.cluster_name, a.endpoint, secrets);
    input.kubernetes_version = a.kubernetes_version;
    input.install_disk = a.install_disk;
    let mode = if input.install_disk.is_some() {
        Mode::Metal
    } else {
        Mode::Cloud
    };
    let (cp, worker, client) = generate_configs(&input).context("generating configs")?;

    let Some(cp) = apply_validated("controlplane.yaml", cp, &patches.controlplane, mode) else {
        return Ok(ExitCode::from(1));
    };
    let Some(worker) = apply_validated("worker.yaml", worker, &patches.worker, mode) else {
        return Ok(ExitCode::from(1));
    };

    std::fs::create_dir_all(&a.output_dir)
        .with_context(|| format!("cannot create {}", a.output_dir.display()))?;
    let [cp_path, worker_path, client_path] = &targets;
    write_private(cp_path, cp.render().as_bytes(), a.force)?;
    write_private(worker_path, worker.render().as_bytes(), a.force)?;
    write_private(client_path, client.render().as_bytes(), a.force)?;
    for t in &targets {
        eprintln!("wrote {}", t.display());
    }
    Ok(ExitCode::SUCCESS)
}
