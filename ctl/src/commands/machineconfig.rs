//! `cairnctl machineconfig patch FILE -p @patch.yaml|@patch.json [-o OUT]`.
use std::path::PathBuf;
use std::process::ExitCode;

use config::patch::Patch;
use config::validate::{validate, Mode};
use config::MachineConfig;

use super::validate::{load_valid, read_input, report};
use crate::global::GlobalArgs;

#[derive(clap::Subcommand)]
#[command(after_help = "\
Examples:
  cairnctl machineconfig patch controlplane.yaml -p @hostname.yaml -o cp-1.yaml")]
pub enum MachineconfigCommand {
    /// Apply strategic-merge YAML patches or RFC 6902 JSON patches to a
    /// machine config.
    #[command(after_help = "\
Examples:
  cairnctl machineconfig patch controlplane.yaml -p @hostname.yaml -o cp-1.yaml
  cairnctl machineconfig patch worker.yaml -p @ops.json > worker-1.yaml
  cairnctl machineconfig patch worker.yaml -p 'machine: {install: {disk: /dev/sda}}'

A strategic-merge patch is a partial config (machine: and/or cluster:). Mappings
merge; interfaces merge by `interface`, files by `path`, VLANs by `vlanId`;
other lists are replaced; `$patch: delete` removes a mapping or list item.
A JSON patch is a list of RFC 6902 operations on paths such as
/machine/network/hostname or /cluster/network/podSubnets/0.
The result must be a valid config; the error names the patch that broke it.")]
    Patch(PatchArgs),
}

#[derive(clap::Args)]
pub struct PatchArgs {
    /// The machine config to patch (`-` reads standard input).
    pub file: PathBuf,
    /// A patch: `@file` (YAML or JSON) or the patch text itself. Repeat to
    /// apply several, in order.
    #[arg(
        short = 'p',
        long = "patch",
        value_name = "@FILE|PATCH",
        required = true
    )]
    pub patches: Vec<String>,
    /// Write the result here (mode 0600) instead of to standard output.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Parse `args` (`@file` or inline patch text).
pub(crate) fn parse_patches(args: &[String]) -> anyhow::Result<Vec<Patch>> {
    args.iter()
        .map(|a| Patch::from_arg(a).map_err(anyhow::Error::from))
        .collect()
}

/// Apply patches in order, validating after each one so a problem names
/// the patch that caused it. Problems are printed with `label`.
pub(crate) fn apply_validated(
    label: &str,
    config: MachineConfig,
    patches: &[Patch],
    mode: Mode,
) -> Option<MachineConfig> {
    let mut config = config;
    for p in patches {
        config = match p.apply(&config) {
            Ok(c) => c,
            Err(e) => {
                report(label, e.to_string().lines());
                return None;
            }
        };
        if let Err(errors) = validate(&config, mode) {
            eprintln!("{label}: patch {} makes the config invalid:", p.name());
            report(label, errors.0);
            return None;
        }
    }
    Some(config)
}

pub async fn run(c: MachineconfigCommand, _g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let MachineconfigCommand::Patch(a) = c;
    let patches = parse_patches(&a.patches)?;
    let bytes = read_input(&a.file)?;
    let label = a.file.display().to_string();
    let Some(config) = load_valid(&label, &bytes, Mode::Cloud) else {
        return Ok(ExitCode::from(1));
    };
    let Some(patched) = apply_validated(&label, config, &patches, Mode::Cloud) else {
        return Ok(ExitCode::from(1));
    };
    let text = patched.render();
    match a.output {
        Some(out) => {
            config::fsutil::write_private(&out, text.as_bytes(), true)?;
            eprintln!("wrote {}", out.display());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
