//! What `cairnctl cluster create` prints once the cluster is up, below its
//! table of nodes: the cluster's files and the commands to run next.
//!
//! The commands run as printed, pasted into a shell in any directory:
//! programs by their absolute path unless PATH finds the same program,
//! files by absolute paths, words quoted where the shell would split or
//! expand them, and `CAIRN_CACHE=<dir>` before the `cluster` verbs when the
//! cluster is not where cairnctl looks without it (`make cluster
//! CAIRN_CACHE=...`, or `$XDG_CACHE_HOME` set). The Kubernetes VM test runs
//! what this prints, the way a newcomer would.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::cluster::{default_clusters_dir, ClusterState, Layout, Role};

/// The programs the commands name, as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Programs {
    pub cairnctl: PathBuf,
    pub kubectl: PathBuf,
}

impl Programs {
    /// `cairnctl` is `running` (the cairnctl that made the cluster), by
    /// its name when `path` (a PATH value) finds that same file first;
    /// `kubectl` by its name when `path` finds one, else the one in
    /// `images_dir` (the payload build puts it there) by its path.
    pub fn find(path: Option<&OsStr>, running: &Path, images_dir: &Path) -> Programs {
        let on_path = |name: &str| {
            path.into_iter()
                .flat_map(std::env::split_paths)
                // A relative entry finds it only from this directory.
                .filter(|d| d.is_absolute())
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        };
        let running = absolute(running);
        let same_file = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        let cairnctl = match on_path("cairnctl") {
            Some(p) if same_file(&p, &running) => PathBuf::from("cairnctl"),
            _ => running,
        };
        let beside = absolute(&images_dir.join("kubectl"));
        let kubectl = if on_path("kubectl").is_some() || !beside.is_file() {
            PathBuf::from("kubectl")
        } else {
            beside
        };
        Programs { cairnctl, kubectl }
    }
}

/// `path` made absolute against the current directory (symlinks kept).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `word` as a shell reads it back unchanged.
fn quote(word: &str) -> Cow<'_, str> {
    // The only error is a NUL byte, which no path or name here holds.
    shlex::try_quote(word).unwrap_or(Cow::Borrowed(word))
}

/// One command under "next:".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextCommand {
    /// `NAME=value` set for this command only.
    pub env: Vec<(String, String)>,
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// A `# comment` after it.
    pub comment: Option<String>,
}

impl NextCommand {
    fn new(program: &Path, args: &[&str]) -> NextCommand {
        let mut argv = vec![program.display().to_string()];
        argv.extend(args.iter().map(|a| (*a).to_string()));
        NextCommand {
            env: Vec::new(),
            argv,
            comment: None,
        }
    }

    /// The line a shell runs as this command.
    pub fn line(&self) -> String {
        let mut words: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", quote(v)))
            .collect();
        words.extend(self.argv.iter().map(|w| quote(w).into_owned()));
        let mut line = words.join(" ");
        if let Some(c) = &self.comment {
            line.push_str("    # ");
            line.push_str(c);
        }
        line
    }
}

/// The commands to run next, in the order printed.
pub fn next_commands(
    state: &ClusterState,
    layout: &Layout,
    programs: &Programs,
    default_clusters: Option<&Path>,
) -> Vec<NextCommand> {
    let dir = absolute(&layout.dir);
    let kubeconfig = absolute(&layout.kubeconfig()).display().to_string();
    let cairnconfig = absolute(&layout.cairnconfig()).display().to_string();
    let mut next = Vec::new();
    if state.merged_context.is_some() {
        next.push(NextCommand::new(
            &programs.kubectl,
            &["get", "nodes", "-o", "wide"],
        ));
    } else {
        next.push(NextCommand::new(
            &programs.kubectl,
            &["--kubeconfig", &kubeconfig, "get", "nodes", "-o", "wide"],
        ));
    }
    next.push(NextCommand::new(
        &programs.cairnctl,
        &["--cairnconfig", &cairnconfig, "services"],
    ));
    if let Some(w) = state.nodes.iter().find(|n| n.role == Role::Worker) {
        let addr = format!("127.0.0.1:{}", w.apid_port);
        let mut c = NextCommand::new(
            &programs.cairnctl,
            &[
                "--cairnconfig",
                &cairnconfig,
                "-e",
                &addr,
                "-n",
                &addr,
                "services",
            ],
        );
        c.comment = Some(w.name.clone());
        next.push(c);
    }
    // `cluster` verbs find the cluster by its name under the clusters'
    // directory: CAIRN_CACHE says where unless it is the default one.
    let clusters = dir.parent().map(Path::to_path_buf);
    let env: Vec<(String, String)> = match (clusters.as_deref(), default_clusters) {
        (Some(c), Some(d)) if c == absolute(d) => Vec::new(),
        (Some(c), _) => c
            .parent()
            .map(|cache| vec![("CAIRN_CACHE".into(), cache.display().to_string())])
            .unwrap_or_default(),
        (None, _) => Vec::new(),
    };
    for verb in ["show", "destroy"] {
        let mut c = NextCommand::new(
            &programs.cairnctl,
            &["cluster", verb, "--name", &state.name],
        );
        c.env.clone_from(&env);
        next.push(c);
    }
    next
}

/// The text printed below the table of nodes: the files (labels aligned)
/// and the commands to run next, for a shell whose cairnctl looks for
/// clusters in `default_clusters` (see [`default_clusters_dir`]).
pub fn render(
    state: &ClusterState,
    layout: &Layout,
    programs: &Programs,
    default_clusters: Option<&Path>,
) -> String {
    let path = |p: PathBuf| absolute(&p).display().to_string();
    let mut files = vec![
        ("kubeconfig:", path(layout.kubeconfig())),
        ("cairnconfig:", path(layout.cairnconfig())),
    ];
    if let Some(m) = &state.merged_context {
        files.push((
            "kube context:",
            format!("{} (merged into {})", m.context, m.path.display()),
        ));
    }
    let width = files.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (label, value) in files {
        out.push_str(&format!("  {label:<width$} {value}\n"));
    }
    out.push_str("\nnext:\n");
    for c in next_commands(state, layout, programs, default_clusters) {
        out.push_str(&format!("  {}\n", c.line()));
    }
    out
}

/// [`render`] for this process's environment: PATH, and the clusters'
/// directory cairnctl uses without `CAIRN_CACHE`.
pub fn render_here(
    state: &ClusterState,
    layout: &Layout,
    running: &Path,
    images_dir: &Path,
) -> String {
    let path = std::env::var_os("PATH");
    let programs = Programs::find(path.as_deref(), running, images_dir);
    render(state, layout, &programs, default_clusters_dir().as_deref())
}

#[cfg(test)]
#[path = "summary_tests.rs"]
mod tests;
