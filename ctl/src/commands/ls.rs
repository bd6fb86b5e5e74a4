//! `cairnctl ls [PATH] [-r] [-d N]`: list files on the node.

use std::process::ExitCode;

use api::machine::{FileInfo, ListFilesRequest};
use serde::Serialize;

use crate::global::GlobalArgs;
use crate::output::{self, Format, Table};
use crate::session::{self, Session};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 ls /var
  cairnctl -n 10.5.0.2 ls /system/state -l
  cairnctl -n 10.5.0.2 ls /var/log -r -d 2

Shows names, sizes and modes, never contents (`cairnctl read` needs an admin
certificate for that). Entries the node could not read are reported on
standard error and the exit status is 1.")]
pub struct Args {
    /// The directory (or file) to list.
    #[arg(default_value = "/")]
    pub path: String,
    /// Descend into directories.
    #[arg(short = 'r', long)]
    pub recurse: bool,
    /// How deep to descend (implies -r; 0 with -r means no limit).
    #[arg(short = 'd', long, value_name = "N")]
    pub depth: Option<u32>,
    /// Show mode, size and modification time.
    #[arg(short = 'l', long)]
    pub long: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// The request for `args`.
pub fn request(args: &Args) -> ListFilesRequest {
    let depth = args.depth.unwrap_or(if args.recurse { 0 } else { 1 });
    ListFilesRequest {
        root: args.path.clone(),
        recurse: args.recurse || depth != 1,
        recursion_depth: i32::try_from(depth).unwrap_or(i32::MAX),
    }
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct FileRecord {
    pub node: String,
    pub name: String,
    pub mode: String,
    pub size: u64,
    pub modified: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub link: String,
}

impl FileRecord {
    pub fn new(node: &str, f: &FileInfo) -> Self {
        let name = if f.relative_name.is_empty() {
            f.name.clone()
        } else {
            f.relative_name.clone()
        };
        FileRecord {
            node: node.to_string(),
            name,
            mode: mode_string(f),
            size: f.size,
            modified: if f.modified == 0 {
                String::new()
            } else {
                output::unix_time(f.modified)
            },
            link: f.link.clone(),
        }
    }
}

/// `drwxr-xr-x`-style mode.
pub fn mode_string(f: &FileInfo) -> String {
    let kind = if f.is_dir {
        'd'
    } else if !f.link.is_empty() {
        'l'
    } else {
        '-'
    };
    let mut s = String::from(kind);
    for shift in [6, 3, 0] {
        let bits = (f.mode >> shift) & 0o7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

pub fn table(records: &[FileRecord], long: bool) -> Table {
    let mut t = if long {
        Table::new(["NODE", "MODE", "SIZE(B)", "LASTMOD", "NAME"])
    } else {
        Table::new(["NODE", "NAME"])
    };
    for r in records {
        let name = if r.link.is_empty() {
            r.name.clone()
        } else {
            format!("{} -> {}", r.name, r.link)
        };
        if long {
            t.row([
                r.node.clone(),
                r.mode.clone(),
                r.size.to_string(),
                r.modified.clone(),
                name,
            ]);
        } else {
            t.row([r.node.clone(), name]);
        }
    }
    t
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let request = request(&args);
    let results = session
        .each(|c| {
            let request = request.clone();
            async move {
                let mut stream = c
                    .call("ListFiles", request, |mut m, r| async move {
                        m.list_files(r).await
                    })
                    .await?;
                let mut files = Vec::new();
                while let Some(f) = stream
                    .message()
                    .await
                    .map_err(|s| c.explain(&s, "ListFiles"))?
                {
                    files.push(f);
                }
                Ok(files)
            }
        })
        .await;
    let mut records = Vec::new();
    let mut unreadable = false;
    for (node, files) in session::successes(&results) {
        for f in files {
            if f.error.is_empty() {
                records.push(FileRecord::new(node, f));
            } else {
                unreadable = true;
                eprintln!("error: {node}: {}: {}", f.name, f.error);
            }
        }
    }
    output::print_records(args.output, || table(&records, args.long), &records)?;
    let code = session::report_errors(&results);
    Ok(if unreadable { ExitCode::FAILURE } else { code })
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

    fn req(argv: &[&str]) -> ListFilesRequest {
        request(&Cli::parse_from(std::iter::once("ls").chain(argv.iter().copied())).args)
    }

    #[test]
    fn depth_and_recursion() {
        let r = req(&[]);
        assert_eq!(
            (r.root.as_str(), r.recurse, r.recursion_depth),
            ("/", false, 1)
        );
        let r = req(&["/var", "-r"]);
        assert_eq!(
            (r.root.as_str(), r.recurse, r.recursion_depth),
            ("/var", true, 0)
        );
        let r = req(&["/var", "-d", "3"]);
        assert_eq!((r.recurse, r.recursion_depth), (true, 3));
    }

    #[test]
    fn modes_read_like_ls() {
        let dir = FileInfo {
            name: "/var/log".into(),
            mode: 0o755,
            is_dir: true,
            ..Default::default()
        };
        assert_eq!(mode_string(&dir), "drwxr-xr-x");
        let file = FileInfo {
            mode: 0o100640,
            ..Default::default()
        };
        assert_eq!(mode_string(&file), "-rw-r-----");
        let link = FileInfo {
            mode: 0o777,
            link: "/x".into(),
            ..Default::default()
        };
        assert_eq!(mode_string(&link), "lrwxrwxrwx");
    }

    #[test]
    fn long_tables_show_mode_size_and_links() {
        let f = FileInfo {
            name: "/etc/resolv.conf".into(),
            relative_name: "resolv.conf".into(),
            mode: 0o777,
            size: 20,
            modified: 60,
            link: "/system/etc/resolv.conf".into(),
            ..Default::default()
        };
        let records = vec![FileRecord::new("n1", &f)];
        assert_eq!(
            table(&records, true).render(),
            "NODE   MODE         SIZE(B)   LASTMOD                NAME\n\
             n1     lrwxrwxrwx   20        1970-01-01T00:01:00Z   resolv.conf -> /system/etc/resolv.conf\n"
        );
        assert_eq!(
            table(&records, false).render(),
            "NODE   NAME\nn1     resolv.conf -> /system/etc/resolv.conf\n"
        );
    }
}
