//! `cairnctl etcd members|snapshot`: the etcd cluster of control-plane
//! nodes.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use api::machine::EtcdMember;
use serde::Serialize;
use sha2::Digest as _;

use crate::global::GlobalArgs;
use crate::output::{self, Format, Table};
use crate::session::{self, Session};

#[derive(clap::Subcommand, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 etcd members
  cairnctl -n 10.5.0.2 etcd snapshot etcd-backup.db")]
pub enum EtcdCommand {
    /// List the etcd cluster's members.
    #[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 etcd members
  cairnctl -n 10.5.0.2 etcd members -o yaml

Asks each node's etcd (control-plane nodes, after bootstrap). Needs a reader
certificate.")]
    Members(MembersArgs),
    /// Save a snapshot of etcd's keyspace to a file.
    #[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 etcd snapshot etcd-backup.db
  cairnctl -n 10.5.0.2 etcd snapshot /backups/etcd.db --force

Streams the snapshot from one control-plane node into FILE (written as
FILE.part, then renamed), checks etcd's own SHA-256 trailer, and prints the
size and the file's SHA-256. Needs an operator certificate.")]
    Snapshot(SnapshotArgs),
}

#[derive(clap::Args, Debug)]
pub struct MembersArgs {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(clap::Args, Debug)]
pub struct SnapshotArgs {
    /// Where to save the snapshot.
    pub file: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

/// One member as seen from one node, for `-o json|yaml`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct MemberRecord {
    pub node: String,
    /// Hex, as etcdctl prints it.
    pub id: String,
    pub hostname: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub learner: bool,
}

impl MemberRecord {
    pub fn new(node: &str, m: &EtcdMember) -> Self {
        MemberRecord {
            node: node.to_string(),
            id: format!("{:x}", m.id),
            hostname: m.hostname.clone(),
            peer_urls: m.peer_urls.clone(),
            client_urls: m.client_urls.clone(),
            learner: m.is_learner,
        }
    }
}

pub fn table(records: &[MemberRecord]) -> Table {
    let mut t = Table::new([
        "NODE",
        "ID",
        "HOSTNAME",
        "PEER URLS",
        "CLIENT URLS",
        "LEARNER",
    ]);
    for r in records {
        t.row([
            r.node.clone(),
            r.id.clone(),
            r.hostname.clone(),
            r.peer_urls.join(","),
            r.client_urls.join(","),
            r.learner.to_string(),
        ]);
    }
    t
}

pub async fn run(command: EtcdCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match command {
        EtcdCommand::Members(a) => members(a, global).await,
        EtcdCommand::Snapshot(a) => snapshot(a, global).await,
    }
}

async fn members(args: MembersArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let results = session
        .each(|c| async move {
            c.call("EtcdMemberList", (), |mut m, r| async move {
                m.etcd_member_list(r).await
            })
            .await
        })
        .await;
    let records: Vec<MemberRecord> = session::successes(&results)
        .flat_map(|(node, list)| list.members.iter().map(move |m| MemberRecord::new(node, m)))
        .collect();
    output::print_records(args.output, || table(&records), &records)?;
    Ok(session::report_errors(&results))
}

/// The SHA-256 of a streamed snapshot, and whether it ends with etcd's
/// SHA-256 of everything before the last 32 bytes, without keeping the
/// snapshot in memory.
#[derive(Default)]
pub struct SnapshotDigest {
    whole: sha2::Sha256,
    body: sha2::Sha256,
    /// The last 32 bytes seen (not yet in `body`).
    tail: Vec<u8>,
    pub size: u64,
}

impl SnapshotDigest {
    pub fn update(&mut self, chunk: &[u8]) {
        self.whole.update(chunk);
        self.size += chunk.len() as u64;
        self.tail.extend_from_slice(chunk);
        if self.tail.len() > 32 {
            let keep = self.tail.split_off(self.tail.len() - 32);
            self.body.update(&self.tail);
            self.tail = keep;
        }
    }

    /// The hex SHA-256 of the whole snapshot, and whether etcd's trailer
    /// matches.
    pub fn finish(self) -> (String, bool) {
        let ok = self.tail.len() == 32 && self.body.finalize().as_slice() == self.tail.as_slice();
        (hex::encode(self.whole.finalize()), ok)
    }
}

/// `FILE.part` next to FILE.
fn part_path(file: &Path) -> PathBuf {
    let mut name = file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".part");
    file.with_file_name(name)
}

async fn snapshot(args: SnapshotArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if args.file.exists() && !args.force {
        anyhow::bail!(
            "{} already exists (use --force to replace it)",
            args.file.display()
        );
    }
    let session = Session::open(global).await?;
    let client = session.single("etcd snapshot")?;
    let mut stream = client
        .call("EtcdSnapshot", (), |mut m, r| async move {
            m.etcd_snapshot(r).await
        })
        .await
        .map_err(anyhow::Error::msg)?;

    let part = part_path(&args.file);
    let mut out = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&part)
            .with_context(|| format!("cannot create {}", part.display()))?
    };
    let progress = indicatif::ProgressBar::new_spinner();
    progress.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} {bytes} ({bytes_per_sec})")
            .expect("a valid template"),
    );
    progress.set_message(format!("snapshot from {}", client.node));
    progress.enable_steady_tick(std::time::Duration::from_millis(120));
    let mut digest = SnapshotDigest::default();
    let result: anyhow::Result<()> = async {
        while let Some(d) = stream
            .message()
            .await
            .map_err(|s| anyhow::anyhow!(client.explain(&s, "EtcdSnapshot")))?
        {
            out.write_all(&d.bytes)
                .with_context(|| format!("writing {}", part.display()))?;
            digest.update(&d.bytes);
            progress.set_position(digest.size);
        }
        out.sync_all()
            .with_context(|| format!("writing {}", part.display()))?;
        Ok(())
    }
    .await;
    progress.finish_and_clear();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    let size = digest.size;
    let (sha256, trailer_ok) = digest.finish();
    if !trailer_ok {
        let _ = std::fs::remove_file(&part);
        anyhow::bail!("the snapshot is corrupt: its SHA-256 trailer does not match ({size} bytes received); nothing was saved");
    }
    std::fs::rename(&part, &args.file).with_context(|| {
        format!(
            "cannot rename {} to {}",
            part.display(),
            args.file.display()
        )
    })?;
    println!(
        "saved {} ({}, {size} bytes)",
        args.file.display(),
        output::bytes(size)
    );
    println!("sha256 {sha256}");
    println!("etcd's integrity trailer: ok");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_table_and_records() {
        let m = EtcdMember {
            id: 0x8e9e05c52164694d,
            hostname: "cp-1".into(),
            peer_urls: vec!["https://10.5.0.2:2380".into()],
            client_urls: vec!["https://10.5.0.2:2379".into()],
            is_learner: false,
        };
        let r = MemberRecord::new("10.5.0.2", &m);
        assert_eq!(
            table(std::slice::from_ref(&r)).render(),
            "NODE       ID                 HOSTNAME   PEER URLS               CLIENT URLS             LEARNER\n\
             10.5.0.2   8e9e05c52164694d   cp-1       https://10.5.0.2:2380   https://10.5.0.2:2379   false\n"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["id"], "8e9e05c52164694d");
    }

    #[test]
    fn trailer_and_part_file() {
        let digest_of = |snap: &[u8], chunk: usize| {
            let mut d = SnapshotDigest::default();
            for c in snap.chunks(chunk) {
                d.update(c);
            }
            d.finish()
        };
        let mut snap = b"bolt database bytes, long enough to span chunks".repeat(3);
        let sum = sha2::Sha256::digest(&snap);
        snap.extend_from_slice(&sum);
        for chunk in [1, 7, 32, 33, 1000] {
            let (hex, ok) = digest_of(&snap, chunk);
            assert!(ok, "chunk {chunk}");
            assert_eq!(hex, hex::encode(sha2::Sha256::digest(&snap)));
        }
        snap[0] ^= 1;
        assert!(!digest_of(&snap, 7).1);
        assert!(!digest_of(b"short", 2).1);
        assert_eq!(
            part_path(Path::new("/b/etcd.db")),
            PathBuf::from("/b/etcd.db.part")
        );
    }
}
