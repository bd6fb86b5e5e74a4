//! The real apid binary, started the way machined starts it: as uid/gid 50
//! with `no_new_privs`, its settings directory passed as descriptor 3 (the
//! directory's parent is root's and 0700, so apid could not open it by
//! path). It drops every capability, reports a missing machined clearly,
//! and reloads its settings when machined replaces them.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use common::*;
use config::pki::{self, Role};
use tonic::Code;

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn proc_status(pid: u32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn runs_unprivileged_from_a_descriptor_and_reloads_its_settings() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: needs root to start apid as uid 50 the way machined does");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let settings = dir.path().join("apid");
    let cert = machined::maintenance::generate_certificate("maint", &[]).unwrap();
    machined::maintenance::install_settings(
        &cert,
        &machined::secure::ApidSettingsFile::new(
            std::path::PathBuf::from(&settings),
            Some((50, 50)),
        ),
    )
    .unwrap();
    let dirfd = std::fs::File::open(&settings).unwrap();
    let raw = dirfd.as_raw_fd();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_apid"));
    cmd.args([
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--machined-socket",
        dir.path().join("absent.sock").to_str().unwrap(),
        "--settings-fd",
        "3",
    ])
    .env_clear()
    .uid(50)
    .gid(50)
    .stderr(std::process::Stdio::piped());
    // SAFETY: dup2 and prctl on integers in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 3) < 0 || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = Kill(cmd.spawn().unwrap());
    let pid = child.0.id();

    // Maintenance mode: apid answers Version itself; Disks is forwarded, and
    // machined is missing.
    let mut anon = None;
    for _ in 0..200 {
        if let Ok(c) = client(port, Verify::Nothing, None).await {
            anon = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut anon = anon.expect("apid did not come up");
    assert!(anon.version(()).await.unwrap().into_inner().maintenance);
    let e = anon.disks(()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(
        e.message().starts_with("apid cannot reach machined"),
        "{}",
        e.message()
    );

    // Least privilege.
    assert_eq!(
        proc_status(pid, "Uid").split_whitespace().next(),
        Some("50")
    );
    assert_eq!(
        proc_status(pid, "Gid").split_whitespace().next(),
        Some("50")
    );
    // The bounding set stays as it was (only root may shrink it, and the
    // uid changes before exec); with no_new_privs no exec can gain a
    // capability, so it grants nothing.
    for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(proc_status(pid, set), "0000000000000000", "{set}");
    }
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(
        environ.is_empty(),
        "apid has an environment: {:?}",
        String::from_utf8_lossy(&environ)
    );

    // machined replaces the settings: mutual TLS from the next connection.
    let cfg = generated("demo");
    let secure = machined::secure::secure_settings(&cfg, "node", &[]).unwrap();
    machined::secure::ApidSettingsFile::new(std::path::PathBuf::from(&settings), Some((50, 50)))
        .write(&secure)
        .unwrap();
    let ca = os_ca(&cfg);
    let admin = pki::issue_client_cert(&ca, "a", Role::Admin, pki::LEAF_VALIDITY).unwrap();
    assert!(
        eventually(10, || {
            let (ca, admin) = (ca.clone(), admin.clone());
            async move {
                match client(port, Verify::Ca(ca), Some(&admin)).await {
                    Ok(mut c) => c
                        .version(())
                        .await
                        .is_ok_and(|v| !v.into_inner().maintenance),
                    Err(_) => false,
                }
            }
        })
        .await,
        "apid did not reload its settings"
    );
    let anonymous = async {
        let mut c = client(port, Verify::Nothing, None).await?;
        c.version(()).await.map_err(|s| format!("{s:?}"))
    };
    assert!(anonymous.await.is_err());
    drop(child);
}
