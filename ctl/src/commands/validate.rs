//! `cairnctl validate -f FILE [--mode cloud|metal]`: parse and check a
//! machine config; one line per problem, exit 1 when there is any.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use config::validate::{validate, Mode};
use config::MachineConfig;

use crate::global::GlobalArgs;

#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  cairnctl validate -f out/controlplane.yaml
  cairnctl validate -f worker.yaml --mode metal

Prints one line per problem, naming the document and the field path, e.g.
  worker.yaml: document 2 (ClusterConfig), line 38 column 7: cluster.network.podSubnets[0]: \"10.244.0.0/33\" is not a CIDR
and exits with status 1; exits 0 when the config is valid.")]
pub struct Args {
    /// The machine config file to check (`-` reads standard input).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Where the config will run: `metal` requires machine.install.disk.
    #[arg(short = 'm', long, value_enum, default_value_t = ModeArg::Cloud)]
    pub mode: ModeArg,
}

/// `--mode` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ModeArg {
    /// An image already on its disk (raw, qcow2, cloud): no install needed.
    Cloud,
    /// Bare metal or the ISO: the config must name an install disk.
    Metal,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Cloud => Mode::Cloud,
            ModeArg::Metal => Mode::Metal,
        }
    }
}

/// Read a file, or standard input for `-`.
pub(crate) fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .context("cannot read standard input")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// Print each problem as `<label>: <problem>` on stderr.
pub(crate) fn report<T: std::fmt::Display>(label: &str, problems: impl IntoIterator<Item = T>) {
    for p in problems {
        eprintln!("{label}: {p}");
    }
}

/// Parse and validate; on problems print them and return `None`.
pub(crate) fn load_valid(label: &str, bytes: &[u8], mode: Mode) -> Option<MachineConfig> {
    let config = match MachineConfig::parse(bytes) {
        Ok(c) => c,
        Err(errors) => {
            report(label, errors);
            return None;
        }
    };
    if let Err(errors) = validate(&config, mode) {
        report(label, errors.locate(bytes));
        return None;
    }
    Some(config)
}

pub async fn run(a: Args, _g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let bytes = read_input(&a.file)?;
    let label = a.file.display().to_string();
    let mode = Mode::from(a.mode);
    match load_valid(&label, &bytes, mode) {
        Some(config) => {
            println!(
                "{label}: valid {} config for mode {mode}",
                config.machine.machine_type
            );
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(ExitCode::from(1)),
    }
}
