//! `cairnctl apply-config -f FILE [--mode ...] [--dry-run]`: check a
//! machine config here, then send it to the nodes and show what they did.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use api::machine::{ApplyConfigurationRequest, ApplyConfigurationResponse, ApplyMode};
use config::validate::Mode;

use super::machineconfig::{apply_validated, parse_patches};
use super::validate::{load_valid, read_input};
use crate::global::GlobalArgs;
use crate::session::{self, Session};
use crate::wait;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl apply-config --insecure -n 10.5.0.2 -f controlplane.yaml
  cairnctl -n 10.5.0.2 apply-config -f controlplane.yaml --dry-run
  cairnctl -n 10.5.0.2 apply-config -f cp.yaml --mode try --timeout 2m
  cairnctl -n 10.5.0.2,10.5.0.3 apply-config -f worker.yaml -p @hostname.yaml

The config is parsed and validated here first: problems are printed with their
field paths and nothing is sent. A node in maintenance mode takes its first
config with --insecure; from then on it only talks mTLS (use the cairnconfig).

Modes: auto reboots only when the change needs it; no-reboot applies now or
fails; reboot applies and reboots; staged applies at the next boot; try applies
now and reverts after --timeout unless `cairnctl confirm` is run.")]
pub struct Args {
    /// The machine config to apply (`-` reads standard input).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// When the new config takes effect.
    #[arg(short = 'm', long, value_enum, default_value_t = ApplyModeArg::Auto)]
    pub mode: ApplyModeArg,
    /// With --mode try: how long until the node reverts unless confirmed.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1m")]
    pub timeout: Duration,
    /// Show the diff and the services that would restart; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Patch the config before sending (`@file` or patch text); repeatable.
    #[arg(short = 'p', long = "config-patch", value_name = "@FILE|PATCH")]
    pub config_patch: Vec<String>,
    /// How long to wait for a rebooting node to answer again.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10m")]
    pub wait_timeout: Duration,
}

/// `--mode` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyModeArg {
    /// Reboot only when the change needs it.
    Auto,
    /// Apply without rebooting; fail if that is impossible.
    NoReboot,
    /// Apply, then reboot.
    Reboot,
    /// Store the config; it takes effect at the next boot.
    Staged,
    /// Apply now; revert after --timeout unless confirmed.
    Try,
}

impl From<ApplyModeArg> for ApplyMode {
    fn from(m: ApplyModeArg) -> ApplyMode {
        match m {
            ApplyModeArg::Auto => ApplyMode::Auto,
            ApplyModeArg::NoReboot => ApplyMode::NoReboot,
            ApplyModeArg::Reboot => ApplyMode::Reboot,
            ApplyModeArg::Staged => ApplyMode::Staged,
            ApplyModeArg::Try => ApplyMode::Try,
        }
    }
}

/// Durations like `90s`, `1m`, `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (e.g. 30s, 1m, 1h30m)"))
}

/// The request for `args` and the config bytes.
pub fn request(args: &Args, data: Vec<u8>) -> Result<ApplyConfigurationRequest, String> {
    let try_timeout_seconds = if args.mode == ApplyModeArg::Try {
        let secs = args.timeout.as_secs();
        if secs == 0 || secs > u64::from(u32::MAX) {
            return Err(format!(
                "--timeout {}: must be at least one second",
                humantime::format_duration(args.timeout)
            ));
        }
        secs as u32
    } else {
        0
    };
    Ok(ApplyConfigurationRequest {
        data,
        mode: ApplyMode::from(args.mode) as i32,
        dry_run: args.dry_run,
        try_timeout_seconds,
    })
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let bytes = read_input(&args.file)?;
    let label = args.file.display().to_string();
    let patches = parse_patches(&args.config_patch)?;
    // Nodes booted from disk need no install disk; a node that does (an ISO
    // boot) says so itself.
    let Some(config) = load_valid(&label, &bytes, Mode::Cloud) else {
        eprintln!("{label}: not sent: fix the problems above first");
        return Ok(ExitCode::from(1));
    };
    let data = if patches.is_empty() {
        bytes
    } else {
        match apply_validated(&label, config, &patches, Mode::Cloud) {
            Some(patched) => patched.render().into_bytes(),
            None => return Ok(ExitCode::from(1)),
        }
    };
    let request = request(&args, data).map_err(anyhow::Error::msg)?;

    let session = Session::open(global).await?;
    let results = session
        .each(|client| {
            let request = request.clone();
            async move {
                client
                    .call("ApplyConfiguration", request, |mut m, r| async move {
                        m.apply_configuration(r).await
                    })
                    .await
            }
        })
        .await;
    let several = results.len() > 1;
    for (node, response) in session::successes(&results) {
        print!("{}", render(node, several, response, &args));
    }
    let mut code = session::report_errors(&results);

    if !args.dry_run {
        let insecure = session.clients.iter().flatten().any(|c| c.insecure());
        // A staged config takes effect at the next boot: until then the
        // node stays in maintenance mode.
        if insecure && args.mode != ApplyModeArg::Staged && results.iter().any(|r| r.result.is_ok())
        {
            eprintln!(
                "the node now requires client certificates: use its cairnconfig \
                 (--cairnconfig) from here on; --insecure is refused"
            );
        }
        let rebooting: Vec<_> = session
            .clients
            .iter()
            .flatten()
            .filter(|c| {
                results.iter().any(|r| {
                    r.node == c.node.to_string()
                        && matches!(&r.result, Ok(resp) if reboots(args.mode, resp))
                })
            })
            .cloned()
            .collect();
        if !rebooting.is_empty() {
            let waited = wait::until_rebooted(&rebooting, args.wait_timeout).await;
            if session::report_errors(&waited) != ExitCode::SUCCESS {
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

/// Whether applying made the node reboot now.
fn reboots(mode: ApplyModeArg, response: &ApplyConfigurationResponse) -> bool {
    match mode {
        ApplyModeArg::Reboot => true,
        ApplyModeArg::Auto => response.reboot_required,
        ApplyModeArg::NoReboot | ApplyModeArg::Staged | ApplyModeArg::Try => false,
    }
}

/// One node's answer for people.
pub fn render(node: &str, several: bool, r: &ApplyConfigurationResponse, args: &Args) -> String {
    let mut out = String::new();
    let indent = if several {
        out.push_str(&format!("{node}:\n"));
        "  "
    } else {
        ""
    };
    let mut line = |text: &str| {
        out.push_str(indent);
        out.push_str(text);
        out.push('\n');
    };
    for l in r.summary.lines() {
        line(l);
    }
    if args.dry_run {
        if r.diff.trim().is_empty() {
            line("no changes");
        } else {
            line("diff:");
            for l in r.diff.lines() {
                line(&format!("  {l}"));
            }
        }
    }
    if !r.services_to_restart.is_empty() {
        let verb = if args.dry_run {
            "would restart"
        } else {
            "restarting"
        };
        line(&format!(
            "services {verb}: {}",
            r.services_to_restart.join(", ")
        ));
    }
    if r.reboot_required && args.mode == ApplyModeArg::NoReboot {
        line("the change needs a reboot to take full effect");
    }
    if args.mode == ApplyModeArg::Try && !args.dry_run {
        line(&format!(
            "the node reverts in {} unless you run `cairnctl confirm`",
            humantime::format_duration(args.timeout)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(argv: &[&str]) -> Args {
        Cli::try_parse_from(std::iter::once("apply-config").chain(argv.iter().copied()))
            .map(|c| c.args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn modes_and_timeouts_parse() {
        let a = parse(&["-f", "cp.yaml"]);
        assert_eq!(a.mode, ApplyModeArg::Auto);
        assert_eq!(a.timeout, Duration::from_secs(60));
        let a = parse(&[
            "-f",
            "cp.yaml",
            "--mode",
            "try",
            "--timeout",
            "1m30s",
            "--dry-run",
        ]);
        assert_eq!(a.mode, ApplyModeArg::Try);
        assert_eq!(a.timeout, Duration::from_secs(90));
        assert!(a.dry_run);
        assert_eq!(
            parse(&["-f", "x", "-m", "no-reboot"]).mode,
            ApplyModeArg::NoReboot
        );
        assert!(Cli::try_parse_from(["a", "-f", "x", "--mode", "later"]).is_err());
        let err = Cli::try_parse_from(["a", "-f", "x", "--timeout", "soon"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("e.g. 30s, 1m"), "{err}");
    }

    #[test]
    fn the_request_carries_mode_and_try_timeout_only_for_try() {
        let a = parse(&["-f", "x", "--mode", "try", "--timeout", "2m"]);
        let r = request(&a, b"data".to_vec()).unwrap();
        assert_eq!(r.mode, ApplyMode::Try as i32);
        assert_eq!(r.try_timeout_seconds, 120);
        assert_eq!(r.data, b"data");
        let r = request(&parse(&["-f", "x", "-m", "staged"]), vec![]).unwrap();
        assert_eq!(r.mode, ApplyMode::Staged as i32);
        assert_eq!(r.try_timeout_seconds, 0);
        let zero = parse(&["-f", "x", "--mode", "try", "--timeout", "0s"]);
        assert!(request(&zero, vec![])
            .unwrap_err()
            .contains("at least one second"));
    }

    #[test]
    fn only_reboot_and_auto_with_a_needed_reboot_wait() {
        let mut r = ApplyConfigurationResponse::default();
        assert!(reboots(ApplyModeArg::Reboot, &r));
        assert!(!reboots(ApplyModeArg::Auto, &r));
        r.reboot_required = true;
        assert!(reboots(ApplyModeArg::Auto, &r));
        assert!(!reboots(ApplyModeArg::Staged, &r));
        assert!(!reboots(ApplyModeArg::NoReboot, &r));
    }

    #[test]
    fn dry_runs_show_the_diff_and_the_services() {
        let r = ApplyConfigurationResponse {
            summary: "config would be applied without a reboot".into(),
            diff: "-hostname: a\n+hostname: b\n".into(),
            services_to_restart: vec!["apid".into(), "kubelet".into()],
            mode: ApplyMode::Auto as i32,
            reboot_required: false,
        };
        let a = parse(&["-f", "x", "--dry-run"]);
        assert_eq!(
            render("n1", false, &r, &a),
            "config would be applied without a reboot\ndiff:\n  -hostname: a\n  +hostname: b\n\
             services would restart: apid, kubelet\n"
        );
        let text = render("n1", true, &r, &parse(&["-f", "x"]));
        assert!(text.starts_with("n1:\n  config would be applied"), "{text}");
        assert!(
            !text.contains("diff:"),
            "the diff is shown on dry runs only: {text}"
        );
        assert!(
            text.contains("  services restarting: apid, kubelet\n"),
            "{text}"
        );
    }

    #[test]
    fn try_mode_says_how_to_keep_the_config() {
        let r = ApplyConfigurationResponse {
            summary: "applied; reverting in 60s unless confirmed".into(),
            ..Default::default()
        };
        let text = render("n1", false, &r, &parse(&["-f", "x", "--mode", "try"]));
        assert!(
            text.contains("reverts in 1m unless you run `cairnctl confirm`"),
            "{text}"
        );
    }
}
