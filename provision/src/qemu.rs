//! Booting Cairn in QEMU (TCG) for tests: direct kernel boot, ISO, or the
//! raw disk behind a throwaway qcow2 overlay, with SeaBIOS or OVMF. The
//! serial console goes to a file the test reads like `expect`; apid's port
//! is forwarded to a free port on 127.0.0.1. Dropping a [`Vm`] kills QEMU's
//! whole process group, also when the test panics.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use regex::Regex;

use crate::images::{workspace_root, ImageError, Images};
use crate::ports;

pub const QEMU: &str = "qemu-system-x86_64";
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Limits that fit TCG on a 2-core machine: a direct kernel boot reaches
/// the API in seconds; firmware, GRUB and reading the initramfs through the
/// BIOS take much longer. `CAIRN_BOOT_TIMEOUT` (seconds) overrides both.
pub const DIRECT_BOOT_TIMEOUT: Duration = Duration::from_secs(60);
pub const FIRMWARE_BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Lines of console shown when a wait fails.
const TAIL_LINES: usize = 40;
/// Files in a guest's state directory.
const OVERLAY: &str = "disk.qcow2";
const VARS: &str = "OVMF_VARS.fd";
const MONITOR: &str = "monitor.sock";

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{what} failed: {detail}")]
    Tool { what: String, detail: String },
    #[error("timed out after {secs} s waiting for {what} (console: {console})\n--- last console lines ---\n{tail}")]
    Timeout {
        what: String,
        secs: u64,
        console: PathBuf,
        tail: String,
    },
    #[error("QEMU exited ({status}) while waiting for {what} (console: {console})\n--- qemu ---\n{qemu}\n--- last console lines ---\n{tail}")]
    Exited {
        what: String,
        status: ExitStatus,
        console: PathBuf,
        qemu: String,
        tail: String,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> VmError {
    let what = what.into();
    move |source| VmError::Io { what, source }
}

/// How the guest is booted.
#[derive(Debug, Clone)]
pub enum Boot {
    /// `-kernel`/`-initrd`/`-append`: no firmware menus, no bootloader.
    Direct {
        kernel: PathBuf,
        initrd: PathBuf,
        append: String,
    },
    /// The hybrid ISO as a CD-ROM (live boot, no disk).
    Iso(PathBuf),
    /// The raw disk image, through a qcow2 overlay so it is never written.
    Disk(PathBuf),
    /// No boot medium: the firmware boots the first of [`VmConfig::disks`]
    /// (an installed disk).
    Disks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    SeaBios,
    /// OVMF (UEFI): read-only code, and a private copy of the variables.
    Ovmf,
}

#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Names the log directory `target/vm-logs/<name>/`.
    pub name: String,
    pub boot: Boot,
    pub firmware: Firmware,
    pub memory_mib: u32,
    pub cpus: u32,
    /// `-no-reboot`: a guest reboot ends QEMU instead.
    pub no_reboot: bool,
    /// Extra `host port -> guest port` TCP forwards besides apid's.
    pub forwards: Vec<(u16, u16)>,
    /// Host port for apid; a free one when `None`.
    pub apid_port: Option<u16>,
    /// Disk files the test owns (qcow2 by extension, else raw), attached
    /// writable as virtio disks after the boot medium; they outlive the VM.
    pub disks: Vec<PathBuf>,
    /// The guest address apid's forward goes to; QEMU's default (the first
    /// DHCP address, 10.0.2.15) when `None`.
    pub guest_addr: Option<String>,
    /// More QEMU arguments, e.g. a second NIC on a network the test builds.
    pub extra_args: Vec<String>,
    /// Size of the boot disk's overlay in GiB when larger than the raw
    /// image: EPHEMERAL (/var) grows to the end of the disk on first boot,
    /// and a Kubernetes node needs more than the raw image's ~0.8 GiB.
    pub disk_gib: Option<u32>,
    /// An empty CD-ROM drive (`cd0`) beside the boot medium, for a disc
    /// put in later with [`Vm::insert_disc`].
    pub empty_cdrom: bool,
}

impl VmConfig {
    fn new(name: &str, boot: Boot, firmware: Firmware) -> Self {
        VmConfig {
            name: name.to_string(),
            boot,
            firmware,
            memory_mib: 2048,
            cpus: 2,
            no_reboot: false,
            forwards: Vec::new(),
            apid_port: None,
            disks: Vec::new(),
            guest_addr: None,
            extra_args: Vec::new(),
            disk_gib: None,
            empty_cdrom: false,
        }
    }

    /// Direct kernel boot of the image's kernel and initramfs with the
    /// image's command line plus `extra_append`.
    pub fn direct(name: &str, images: &Images, extra_append: &str) -> Result<Self, VmError> {
        let mut append = images.cmdline();
        if !extra_append.is_empty() {
            append = format!("{append} {extra_append}");
        }
        let boot = Boot::Direct {
            kernel: images.kernel()?,
            initrd: images.initramfs()?,
            append,
        };
        Ok(Self::new(name, boot, Firmware::SeaBios))
    }

    pub fn iso(name: &str, images: &Images, firmware: Firmware) -> Result<Self, VmError> {
        Ok(Self::new(name, Boot::Iso(images.iso()?), firmware))
    }

    pub fn disk(name: &str, images: &Images, firmware: Firmware) -> Result<Self, VmError> {
        Ok(Self::new(name, Boot::Disk(images.raw()?), firmware))
    }

    /// Boots from `raw`, a disk image other than the built one (a test's
    /// altered copy); the guest writes to an overlay, as with [`Self::disk`].
    pub fn disk_image(name: &str, raw: PathBuf, firmware: Firmware) -> Self {
        Self::new(name, Boot::Disk(raw), firmware)
    }

    /// Boots from `disks` alone (the first one), e.g. an installed disk.
    pub fn from_disks(name: &str, disks: Vec<PathBuf>, firmware: Firmware) -> Self {
        let mut c = Self::new(name, Boot::Disks, firmware);
        c.disks = disks;
        c
    }

    /// How long a boot to the API may take with this configuration.
    pub fn boot_timeout(&self) -> Duration {
        if let Some(secs) = std::env::var("CAIRN_BOOT_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            return Duration::from_secs(secs);
        }
        match self.boot {
            Boot::Direct { .. } => DIRECT_BOOT_TIMEOUT,
            _ => FIRMWARE_BOOT_TIMEOUT,
        }
    }

    /// Prepares the writable files QEMU needs in `state` (the disk overlay,
    /// the UEFI variables) and returns QEMU's arguments.
    pub fn prepare(
        &self,
        state: &Path,
        console: &Path,
        apid_port: u16,
    ) -> Result<Vec<OsString>, VmError> {
        let overlay = state.join(OVERLAY);
        let vars = state.join(VARS);
        if let Boot::Disk(raw) = &self.boot {
            if !overlay.exists() {
                create_overlay(raw, &overlay, self.disk_gib)?;
            }
        }
        if self.firmware == Firmware::Ovmf && !vars.exists() {
            fs::copy(OVMF_VARS, &vars).map_err(io_err(format!("copying {OVMF_VARS}")))?;
        }
        Ok(self.args(console, apid_port, state))
    }

    /// QEMU's command line (without the program name); `state` holds the
    /// disk overlay, the UEFI variables and the monitor's socket.
    pub fn args(&self, console: &Path, apid_port: u16, state: &Path) -> Vec<OsString> {
        let (overlay, vars) = (&state.join(OVERLAY), &state.join(VARS));
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
        let mem = self.memory_mib.to_string();
        let cpus = self.cpus.to_string();
        push(&["-accel", "tcg", "-m", &mem, "-smp", &cpus]);
        push(&["-display", "none", "-no-user-config"]);
        // The human monitor on a socket, for what a test does to the
        // hardware while the guest runs (a disc put in a drive).
        push(&[
            "-monitor",
            &format!(
                "unix:{},server=on,wait=off",
                qemu_path(&state.join(MONITOR))
            ),
        ]);
        push(&["-serial", &format!("file:{}", qemu_path(console))]);
        let mut netdev = format!(
            "user,id=net0,hostfwd=tcp:127.0.0.1:{apid_port}-{}:{}",
            self.guest_addr.as_deref().unwrap_or(""),
            config::constants::APID_PORT
        );
        for (host, guest) in &self.forwards {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        push(&["-netdev", &netdev, "-device", "virtio-net-pci,netdev=net0"]);
        // Entropy for the guest's key generation without waiting on jitter.
        push(&["-device", "virtio-rng-pci"]);
        let extra: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
        push(&extra);
        if self.no_reboot {
            push(&["-no-reboot"]);
        }
        if self.firmware == Firmware::Ovmf {
            push(&[
                "-drive",
                &format!(
                    "if=pflash,format=raw,readonly=on,file={}",
                    qemu_path(Path::new(OVMF_CODE))
                ),
            ]);
            push(&[
                "-drive",
                &format!("if=pflash,format=raw,file={}", qemu_path(vars)),
            ]);
        }
        match &self.boot {
            Boot::Direct {
                kernel,
                initrd,
                append,
            } => {
                push(&["-kernel"]);
                a.push(kernel.into());
                a.push("-initrd".into());
                a.push(initrd.into());
                a.push("-append".into());
                a.push(append.into());
            }
            Boot::Iso(iso) => {
                push(&[
                    "-drive",
                    &format!("file={},media=cdrom,readonly=on", qemu_path(iso)),
                ]);
                push(&["-boot", "d"]);
            }
            Boot::Disk(_) => {
                push(&[
                    "-drive",
                    &format!("file={},format=qcow2,if=virtio", qemu_path(overlay)),
                ]);
                // The disk first, also when a bootable disc is in a drive.
                push(&["-boot", "order=c"]);
            }
            Boot::Disks => {}
        }
        if self.empty_cdrom {
            a.push("-drive".into());
            a.push("if=ide,media=cdrom,id=cd0,readonly=on".into());
        }
        for d in &self.disks {
            let format = if d.extension().is_some_and(|e| e == "qcow2") {
                "qcow2"
            } else {
                "raw"
            };
            a.push("-drive".into());
            a.push(format!("file={},format={format},if=virtio", qemu_path(d)).into());
        }
        a
    }
}

/// QEMU separates options with commas; a comma in a path is doubled.
fn qemu_path(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

fn create_overlay(raw: &Path, overlay: &Path, gib: Option<u32>) -> Result<(), VmError> {
    let raw = fs::canonicalize(raw).map_err(io_err(format!("resolving {}", raw.display())))?;
    let mut cmd = Command::new("qemu-img");
    cmd.args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&raw)
        .arg(overlay);
    if let Some(gib) = gib {
        cmd.arg(format!("{gib}G"));
    }
    let out = cmd
        .output()
        .map_err(io_err("running qemu-img (install qemu-utils)"))?;
    if !out.status.success() {
        return Err(VmError::Tool {
            what: format!("qemu-img create over {}", raw.display()),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

/// A running guest. QEMU dies with it.
pub struct Vm {
    child: Child,
    pub name: String,
    pub console_path: PathBuf,
    pub qemu_log: PathBuf,
    /// Host port forwarded to the guest's apid.
    pub apid_port: u16,
    /// When QEMU was started.
    pub started: Instant,
    /// Byte offset in the console log after the last [`Vm::expect`] match.
    cursor: usize,
    _state: tempfile::TempDir,
}

impl Vm {
    /// Starts QEMU with `config`; logs go to `target/vm-logs/<name>/`.
    pub fn start(config: &VmConfig) -> Result<Vm, VmError> {
        let log_dir = workspace_root().join("target/vm-logs").join(&config.name);
        let _ = fs::remove_dir_all(&log_dir);
        fs::create_dir_all(&log_dir).map_err(io_err(format!("creating {}", log_dir.display())))?;
        let console_path = log_dir.join("console.log");
        let qemu_log = log_dir.join("qemu.log");
        let state = tempfile::Builder::new()
            .prefix("cairn-vm-")
            .tempdir()
            .map_err(io_err("creating a temporary directory"))?;
        let apid_port = match config.apid_port {
            Some(p) => p,
            None => ports::free_port().map_err(io_err("finding a free port"))?,
        };
        let args = config.prepare(state.path(), &console_path, apid_port)?;
        fs::write(&console_path, b"")
            .map_err(io_err(format!("creating {}", console_path.display())))?;
        let log = fs::File::create(&qemu_log)
            .map_err(io_err(format!("creating {}", qemu_log.display())))?;
        let mut cmd = Command::new(QEMU);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(io_err("duplicating a file handle"))?,
            )
            .stderr(log)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the
        // parent; it makes the kernel kill QEMU if this test process dies
        // without running destructors (e.g. SIGKILL).
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(io::Error::from)
            });
        }
        let started = Instant::now();
        let child = cmd.spawn().map_err(io_err(format!("starting {QEMU}")))?;
        Ok(Vm {
            child,
            name: config.name.clone(),
            console_path,
            qemu_log,
            apid_port,
            started,
            cursor: 0,
            _state: state,
        })
    }

    /// Puts the disc image `iso` in the empty drive of
    /// [`VmConfig::empty_cdrom`], as a person would while the guest runs.
    pub fn insert_disc(&self, iso: &Path) -> Result<(), VmError> {
        let reply = self.monitor(&format!("change cd0 {}", iso.display()))?;
        if reply.contains("rror") || reply.contains("Could not") {
            return Err(VmError::Tool {
                what: format!("putting {} in drive cd0", iso.display()),
                detail: reply,
            });
        }
        Ok(())
    }

    /// Runs one command on QEMU's human monitor; returns what it printed.
    pub fn monitor(&self, command: &str) -> Result<String, VmError> {
        use std::io::{Read, Write};
        let path = self._state.path().join(MONITOR);
        let what = || format!("QEMU's monitor ({})", path.display());
        let mut s = std::os::unix::net::UnixStream::connect(&path).map_err(io_err(what()))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(io_err(what()))?;
        // Everything up to the next prompt: the banner, then the reply.
        let until_prompt = |s: &mut std::os::unix::net::UnixStream| {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.ends_with(b"(qemu) ") {
                let n = s.read(&mut buf).map_err(io_err(what()))?;
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            Ok::<_, VmError>(String::from_utf8_lossy(&got).into_owned())
        };
        until_prompt(&mut s)?;
        s.write_all(format!("{command}\n").as_bytes())
            .map_err(io_err(what()))?;
        let reply = until_prompt(&mut s)?;
        // The monitor echoes the command (with terminal escapes) first.
        Ok(reply
            .trim_end_matches("(qemu) ")
            .lines()
            .skip(1)
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// The console so far, with `\r` removed.
    pub fn console(&self) -> String {
        fs::read(&self.console_path)
            .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
            .unwrap_or_default()
    }

    /// The last `n` lines of the console, without the periodic status lines.
    pub fn console_tail(&self, n: usize) -> String {
        let text = self.console();
        // The 10-second RSS status lines would crowd out what happened.
        let status = regex::Regex::new(crate::STATUS_LINE).expect("STATUS_LINE is a valid pattern");
        let lines: Vec<&str> = text.lines().filter(|l| !status.is_match(l)).collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `host:port` for cairnctl's `-n`.
    pub fn apid_node(&self) -> String {
        format!("127.0.0.1:{}", self.apid_port)
    }

    /// Whether QEMU still runs; its exit status if not.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for a complete console line matching `pattern` after the
    /// previous match, like `expect`; returns the line.
    pub fn expect(&mut self, pattern: &str, timeout: Duration) -> Result<String, VmError> {
        let re = Regex::new(pattern).expect("test patterns are valid regexes");
        let what = format!("console line /{pattern}/");
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.console();
            let mut offset = self.cursor.min(text.len());
            // Only complete lines: a line is matched once its newline is there.
            for line in text.get(offset..).unwrap_or("").split_inclusive('\n') {
                if !line.ends_with('\n') {
                    break;
                }
                offset += line.len();
                if re.is_match(line) {
                    self.cursor = offset;
                    return Ok(line.trim_end().to_string());
                }
            }
            self.check_running(&what)?;
            if Instant::now() >= deadline {
                return Err(self.timeout(&what, timeout));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until QEMU exits on its own (with `-no-reboot`, a guest reboot).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(self.timeout("QEMU to exit", timeout));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls Version through apid in maintenance mode until it answers.
    ///
    /// A new attempt starts every 200 ms while earlier ones may still be
    /// waiting: before the guest has its address, QEMU's user network
    /// holds a connection while it retries the SYN with backoff, and a
    /// single attempt at a time would see the API seconds late.
    pub fn wait_for_version(
        &mut self,
        timeout: Duration,
    ) -> Result<api::machine::VersionResponse, VmError> {
        const MAX_IN_FLIGHT: usize = 16;
        let what = format!("Version to answer on {}", self.apid_node());
        let deadline = Instant::now() + timeout;
        let port = self.apid_port;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io_err("starting a tokio runtime"))?;
        runtime.block_on(async {
            let mut attempts = tokio::task::JoinSet::new();
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    Some(done) = attempts.join_next(), if !attempts.is_empty() => {
                        if let Ok(Ok(version)) = done {
                            return Ok(version);
                        }
                    }
                    _ = tick.tick() => {
                        self.check_running(&what)?;
                        if Instant::now() >= deadline {
                            return Err(self.timeout(&what, timeout));
                        }
                        if attempts.len() < MAX_IN_FLIGHT {
                            attempts.spawn(crate::probe::version_insecure(port));
                        }
                    }
                }
            }
        })
    }

    fn check_running(&mut self, what: &str) -> Result<(), VmError> {
        match self.exit_status() {
            None => Ok(()),
            Some(status) => Err(VmError::Exited {
                what: what.to_string(),
                status,
                console: self.console_path.clone(),
                qemu: fs::read_to_string(&self.qemu_log).unwrap_or_default(),
                tail: self.console_tail(TAIL_LINES),
            }),
        }
    }

    fn timeout(&self, what: &str, timeout: Duration) -> VmError {
        VmError::Timeout {
            what: what.to_string(),
            secs: timeout.as_secs(),
            console: self.console_path.clone(),
            tail: self.console_tail(TAIL_LINES),
        }
    }

    /// Kills QEMU and everything in its process group now.
    pub fn kill(&mut self) {
        if self.exit_status().is_none() {
            if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = self.child.wait();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- {}: last console lines ({}) ---\n{}",
                self.name,
                self.console_path.display(),
                self.console_tail(TAIL_LINES)
            );
        }
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn config(boot: Boot, firmware: Firmware) -> VmConfig {
        VmConfig::new("t", boot, firmware)
    }

    #[test]
    fn every_vm_uses_tcg_2g_2cpus_serial_file_and_forwards_apid() {
        let c = config(Boot::Iso("/o/metal-amd64.iso".into()), Firmware::SeaBios);
        let a = strings(&c.args(Path::new("/l/console.log"), 40000, Path::new("/s"))).join(" ");
        assert!(a.contains("-accel tcg -m 2048 -smp 2"), "{a}");
        assert!(a.contains("-serial file:/l/console.log"), "{a}");
        assert!(a.contains("hostfwd=tcp:127.0.0.1:40000-:50000"), "{a}");
        assert!(a.contains("file=/o/metal-amd64.iso,media=cdrom"), "{a}");
        assert!(!a.contains("pflash"), "SeaBIOS needs no pflash: {a}");
        assert!(!a.contains("-no-reboot"));
    }

    #[test]
    fn disk_boots_use_the_overlay_and_ovmf_a_private_vars_copy() {
        let mut c = config(Boot::Disk("/o/metal-amd64.raw".into()), Firmware::Ovmf);
        c.no_reboot = true;
        c.forwards.push((6443, 6443));
        let a = strings(&c.args(Path::new("/l/c"), 1, Path::new("/s"))).join(" ");
        assert!(
            a.contains("file=/s/disk.qcow2,format=qcow2,if=virtio"),
            "{a}"
        );
        assert!(
            !a.contains("metal-amd64.raw"),
            "the raw image is never opened: {a}"
        );
        assert!(a.contains(&format!("readonly=on,file={OVMF_CODE}")), "{a}");
        assert!(
            a.contains("if=pflash,format=raw,file=/s/OVMF_VARS.fd"),
            "{a}"
        );
        assert!(a.contains("hostfwd=tcp:127.0.0.1:6443-:6443"), "{a}");
        assert!(a.contains("-no-reboot"));
    }

    #[test]
    fn direct_boots_pass_kernel_initrd_and_append() {
        let c = config(
            Boot::Direct {
                kernel: "/o/vmlinuz".into(),
                initrd: "/o/initramfs.img".into(),
                append: "console=ttyS0 cairn.debug.panic=5".into(),
            },
            Firmware::SeaBios,
        );
        let a = strings(&c.args(Path::new("/l/c"), 1, Path::new("/s")));
        let at = a.iter().position(|x| x == "-append").unwrap();
        assert_eq!(a[at + 1], "console=ttyS0 cairn.debug.panic=5");
        assert_eq!(
            a[a.iter().position(|x| x == "-kernel").unwrap() + 1],
            "/o/vmlinuz"
        );
    }

    #[test]
    fn extra_disks_are_writable_virtio_drives_after_the_medium() {
        let mut c = config(Boot::Iso("/o/metal-amd64.iso".into()), Firmware::SeaBios);
        c.disks = vec!["/t/blank.qcow2".into(), "/t/used.raw".into()];
        let a = strings(&c.args(Path::new("/l/c"), 1, Path::new("/s"))).join(" ");
        let iso = a.find("metal-amd64.iso").unwrap();
        let blank = a
            .find("file=/t/blank.qcow2,format=qcow2,if=virtio")
            .unwrap();
        let used = a.find("file=/t/used.raw,format=raw,if=virtio").unwrap();
        assert!(iso < blank && blank < used, "{a}");
        let d = VmConfig::from_disks("d", vec!["/t/blank.qcow2".into()], Firmware::SeaBios);
        let a = strings(&d.args(Path::new("/l/c"), 1, Path::new("/s"))).join(" ");
        assert!(
            a.contains("file=/t/blank.qcow2,format=qcow2,if=virtio") && !a.contains("-boot"),
            "{a}"
        );
    }

    #[test]
    fn commas_in_paths_are_escaped() {
        assert_eq!(qemu_path(Path::new("/a,b/c")), "/a,,b/c");
    }
}
