//! `cairnctl machineconfig patch FILE -p @patch.yaml|@patch.json [-o OUT]`,
//! and the patch arguments the verbs that generate configs share (`gen
//! config`, `cluster create`).
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

/// The patch flags of a verb that generates the control-plane and the
/// worker config (`gen config`, `cluster create`).
#[derive(clap::Args, Debug, Default)]
pub struct ConfigPatchArgs {
    /// Patch every generated config (`@file` or patch text); repeatable.
    #[arg(long = "config-patch", value_name = "@FILE|PATCH")]
    pub config_patch: Vec<String>,
    /// Patch the generated control-plane config only; repeatable.
    #[arg(long = "config-patch-control-plane", value_name = "@FILE|PATCH")]
    pub config_patch_control_plane: Vec<String>,
    /// Patch the generated worker config only; repeatable.
    #[arg(long = "config-patch-worker", value_name = "@FILE|PATCH")]
    pub config_patch_worker: Vec<String>,
}

/// The patches of the command line, per role: the common ones first, then
/// the role's own.
#[derive(Debug)]
pub(crate) struct RolePatches {
    pub controlplane: Vec<Patch>,
    pub worker: Vec<Patch>,
}

impl ConfigPatchArgs {
    /// Parse every patch; the first bad one is an error naming it.
    pub(crate) fn parse(&self) -> anyhow::Result<RolePatches> {
        let common = parse_patches(&self.config_patch)?;
        Ok(RolePatches {
            controlplane: [
                common.clone(),
                parse_patches(&self.config_patch_control_plane)?,
            ]
            .concat(),
            worker: [common, parse_patches(&self.config_patch_worker)?].concat(),
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_gets_the_common_patches_first_then_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let arg = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, "machine: {}\n").unwrap();
            format!("@{}", path.display())
        };
        let args = ConfigPatchArgs {
            config_patch: vec![arg("common-1.yaml"), arg("common-2.yaml")],
            config_patch_control_plane: vec![arg("cp.yaml")],
            config_patch_worker: vec![arg("worker.yaml")],
        };
        let patches = args.parse().unwrap();
        let names = |ps: &[Patch]| -> Vec<String> {
            let dir = format!("{}/", dir.path().display());
            ps.iter()
                .map(|p| p.name().trim_start_matches(&dir).to_string())
                .collect()
        };
        assert_eq!(
            names(&patches.controlplane),
            ["common-1.yaml", "common-2.yaml", "cp.yaml"]
        );
        assert_eq!(
            names(&patches.worker),
            ["common-1.yaml", "common-2.yaml", "worker.yaml"]
        );
        let none = ConfigPatchArgs::default().parse().unwrap();
        assert!(none.controlplane.is_empty() && none.worker.is_empty());
    }

    #[test]
    fn a_bad_patch_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "machine: {\n").unwrap();
        let args = ConfigPatchArgs {
            config_patch_worker: vec![format!("@{}", bad.display())],
            ..ConfigPatchArgs::default()
        };
        let err = format!("{:#}", args.parse().unwrap_err());
        assert!(err.contains("bad.yaml"), "{err}");
        let args = ConfigPatchArgs {
            config_patch: vec!["{machine: {".into()],
            ..ConfigPatchArgs::default()
        };
        let err = format!("{:#}", args.parse().unwrap_err());
        assert!(err.contains("(inline)"), "{err}");
    }
}
