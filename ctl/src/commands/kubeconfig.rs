//! `cairnctl kubeconfig [PATH] [--force] [--merge]`: the cluster's admin
//! kubeconfig from a control-plane node, merged into ~/.kube/config by
//! default (the way kubectl users expect), written to PATH, or printed.
//!
//! Merging works on the YAML tree rather than typed structs so that
//! whatever else the user's file holds (exec plugins, extensions,
//! preferences) survives untouched.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use serde_yaml::{Mapping, Value};

use crate::global::GlobalArgs;
use crate::session::Session;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 kubeconfig                 # merge into ~/.kube/config
  cairnctl -n 10.5.0.2 kubeconfig ./kubeconfig    # a file of its own
  cairnctl -n 10.5.0.2 kubeconfig - | head        # print it
  cairnctl -n 10.5.0.2 kubeconfig ~/.kube/config --force   # replace the file

Without PATH the kubeconfig is merged into $KUBECONFIG (its first file) or
~/.kube/config: a cluster, user or context whose name is taken by a different
entry is added with a suffix (admin@c-1) and the new context becomes current.
With PATH it is written there (a directory gets PATH/kubeconfig); an existing
file is kept unless --force replaces it or --merge merges into it. Files are
written atomically with mode 0600. Needs an admin certificate.")]
pub struct Args {
    /// Where to write it; `-` prints it. Default: merge into ~/.kube/config.
    pub path: Option<String>,
    /// Replace an existing file instead of refusing (or merging).
    #[arg(long, conflicts_with = "merge")]
    pub force: bool,
    /// Merge into an existing file (the default without PATH).
    #[arg(long)]
    pub merge: bool,
}

/// What to do with the kubeconfig.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Stdout,
    Merge(PathBuf),
    Write { path: PathBuf, force: bool },
}

/// The default file kubectl reads: the first of $KUBECONFIG, else
/// ~/.kube/config.
fn default_path(kubeconfig_env: Option<&str>, home: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(first) = kubeconfig_env.and_then(|v| v.split(':').find(|p| !p.is_empty())) {
        return Ok(PathBuf::from(first));
    }
    Ok(home
        .context("cannot find the home directory for ~/.kube/config; pass a PATH")?
        .join(".kube")
        .join("config"))
}

fn target(
    args: &Args,
    default: impl FnOnce() -> anyhow::Result<PathBuf>,
) -> anyhow::Result<Target> {
    Ok(match args.path.as_deref() {
        Some("-") => Target::Stdout,
        None if args.force => Target::Write {
            path: default()?,
            force: true,
        },
        None => Target::Merge(default()?),
        Some(p) => {
            let mut path = PathBuf::from(p);
            if path.is_dir() {
                path.push("kubeconfig");
            }
            if args.merge {
                Target::Merge(path)
            } else {
                Target::Write {
                    path,
                    force: args.force,
                }
            }
        }
    })
}

/// One entry added under another name because its name was taken.
#[derive(Debug, PartialEq, Eq)]
pub struct Renamed {
    pub section: &'static str,
    pub from: String,
    pub to: String,
}

/// The result of a merge: the new file and what was renamed.
#[derive(Debug)]
pub struct Merged {
    pub text: String,
    pub renamed: Vec<Renamed>,
    pub context: String,
}

fn entries<'a>(doc: &'a Mapping, section: &str) -> impl Iterator<Item = &'a Value> {
    doc.get(section)
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
}

fn name_of(entry: &Value) -> Option<&str> {
    entry.get("name").and_then(Value::as_str)
}

/// An entry without its name, to compare entries.
fn body(e: &Value) -> Option<Vec<(&Value, &Value)>> {
    e.as_mapping().map(|m| {
        m.iter()
            .filter(|(k, _)| k.as_str() != Some("name"))
            .collect()
    })
}

/// Adds `entry` to `section` of `doc` under its name, or a suffixed one
/// (`-1`, `-2`, ...) when a different entry has that name; an identical
/// entry already there is reused. Returns the name used.
fn add_entry(
    doc: &mut Mapping,
    section: &'static str,
    entry: &Value,
    renamed: &mut Vec<Renamed>,
) -> anyhow::Result<String> {
    let name = name_of(entry)
        .with_context(|| format!("the new kubeconfig has a {section} entry without a name"))?;
    let mut candidate = name.to_string();
    for n in 1.. {
        match entries(doc, section).find(|e| name_of(e) == Some(candidate.as_str())) {
            Some(existing) if body(existing) == body(entry) => return Ok(candidate),
            Some(_) => candidate = format!("{name}-{n}"),
            None => break,
        }
    }
    let mut entry = entry.clone();
    if let Some(m) = entry.as_mapping_mut() {
        m.insert("name".into(), candidate.clone().into());
    }
    let list = doc
        .entry(section.into())
        .or_insert_with(|| Value::Sequence(Vec::new()));
    if !list.is_sequence() {
        anyhow::bail!("{section} in the existing kubeconfig is not a list");
    }
    if let Value::Sequence(s) = list {
        s.push(entry);
    }
    if candidate != name {
        renamed.push(Renamed {
            section,
            from: name.to_string(),
            to: candidate.clone(),
        });
    }
    Ok(candidate)
}

/// Merges the kubeconfig `new` into `existing` (the text of the user's
/// file; empty when there is none) and makes its context current.
pub fn merge(existing: &str, new: &str) -> anyhow::Result<Merged> {
    let new: Mapping =
        serde_yaml::from_str(new).context("the node sent a kubeconfig that is not YAML")?;
    let mut doc: Mapping = if existing.trim().is_empty() {
        Mapping::new()
    } else {
        serde_yaml::from_str(existing)
            .context("the existing kubeconfig is not valid YAML; pass a PATH or --force")?
    };
    doc.entry("apiVersion".into()).or_insert("v1".into());
    doc.entry("kind".into()).or_insert("Config".into());
    let mut renamed = Vec::new();
    let mut names = std::collections::BTreeMap::new();
    for section in ["clusters", "users"] {
        for e in entries(&new, section) {
            let used = add_entry(&mut doc, section, e, &mut renamed)?;
            names.insert((section, name_of(e).unwrap_or_default().to_string()), used);
        }
    }
    let wanted = new
        .get("current-context")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut current = None;
    for e in entries(&new, "contexts") {
        let mut e = e.clone();
        if let Some(ctx) = e.get_mut("context").and_then(Value::as_mapping_mut) {
            for (key, section) in [("cluster", "clusters"), ("user", "users")] {
                let old = ctx
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if let Some(n) = names.get(&(section, old)) {
                    ctx.insert(key.into(), n.clone().into());
                }
            }
        }
        let used = add_entry(&mut doc, "contexts", &e, &mut renamed)?;
        if name_of(&e) == Some(wanted.as_str()) || current.is_none() {
            current = Some(used);
        }
    }
    let context = current.context("the node sent a kubeconfig without a context")?;
    doc.insert("current-context".into(), context.clone().into());
    Ok(Merged {
        text: serde_yaml::to_string(&doc)?,
        renamed,
        context,
    })
}

/// Removes `context` from the kubeconfig text `existing`, and the cluster
/// and user it names when no other context uses them; `None` when there
/// is no such context. The current context moves to the first one left.
pub fn unmerge(existing: &str, context: &str) -> anyhow::Result<Option<String>> {
    let mut doc: Mapping =
        serde_yaml::from_str(existing).context("the kubeconfig is not valid YAML")?;
    let Some(entry) = entries(&doc, "contexts")
        .find(|e| name_of(e) == Some(context))
        .cloned()
    else {
        return Ok(None);
    };
    let retain = |doc: &mut Mapping, section: &str, keep: &dyn Fn(&Value) -> bool| {
        if let Some(Value::Sequence(list)) = doc.get_mut(section) {
            list.retain(|e| keep(e));
        }
    };
    retain(&mut doc, "contexts", &|e| name_of(e) != Some(context));
    for (key, section) in [("cluster", "clusters"), ("user", "users")] {
        let Some(name) = entry
            .get("context")
            .and_then(|c| c.get(key))
            .and_then(Value::as_str)
        else {
            continue;
        };
        let used = entries(&doc, "contexts").any(|e| {
            e.get("context")
                .and_then(|c| c.get(key))
                .and_then(Value::as_str)
                == Some(name)
        });
        if !used {
            retain(&mut doc, section, &|e| name_of(e) != Some(name));
        }
    }
    if doc.get("current-context").and_then(Value::as_str) == Some(context) {
        let next = entries(&doc, "contexts")
            .find_map(name_of)
            .map(str::to_string);
        match next {
            Some(n) => doc.insert("current-context".into(), n.into()),
            None => doc.insert("current-context".into(), "".into()),
        };
    }
    Ok(Some(serde_yaml::to_string(&doc)?))
}

/// Merges the kubeconfig `new` into the file at `path` (made when
/// missing), as `cairnctl kubeconfig` does.
pub fn merge_file(path: &Path, new: &str) -> anyhow::Result<Merged> {
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let merged = merge(&existing, new)?;
    write(path, merged.text.as_bytes(), true)?;
    Ok(merged)
}

/// Removes `context` from the kubeconfig file at `path` (see [`unmerge`]);
/// whether it was there.
pub fn unmerge_file(path: &Path, context: &str) -> anyhow::Result<bool> {
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    match unmerge(&existing, context)? {
        Some(text) => {
            write(path, text.as_bytes(), true)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Writes `bytes` to `path` atomically with mode 0600, creating the
/// directory (0700) when missing.
pub fn write(path: &Path, bytes: &[u8], overwrite: bool) -> anyhow::Result<()> {
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    config::fsutil::write_private(path, bytes, overwrite)?;
    Ok(())
}

/// The admin kubeconfig from the (single) target node.
pub async fn fetch(session: &Session) -> anyhow::Result<Vec<u8>> {
    let client = session.single("kubeconfig")?;
    let mut stream = client
        .call(
            "Kubeconfig",
            (),
            |mut m, r| async move { m.kubeconfig(r).await },
        )
        .await
        .map_err(anyhow::Error::msg)?;
    let mut bytes = Vec::new();
    while let Some(d) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!(client.explain(&s, "Kubeconfig")))?
    {
        bytes.extend(d.bytes);
    }
    Ok(bytes)
}

/// A Kubernetes client and where it came from, so that a verb can say
/// which API server it could not reach and what to do about it.
pub struct Cluster {
    pub client: kube::Client,
    /// The API server's URL, from the kubeconfig.
    pub server: String,
    /// Whether the kubeconfig was fetched from the node (not `--kubeconfig`).
    pub from_node: bool,
}

impl Cluster {
    /// The error for a request that did not get an answer from the API
    /// server. The node's kubeconfig names the cluster endpoint as the nodes
    /// see it; behind NAT or a port forward that address is not this
    /// machine's way in, and only a kubeconfig of the user's own fixes that.
    pub fn unreachable(&self, e: impl std::fmt::Display) -> anyhow::Error {
        let hint = if self.from_node {
            "; the address comes from the node's admin kubeconfig (the cluster endpoint): \
             if this machine reaches the API server another way, pass --kubeconfig with a \
             kubeconfig that names that address"
        } else {
            ""
        };
        anyhow::anyhow!(
            "cannot reach the Kubernetes API server at {}: {e}{hint}",
            self.server
        )
    }
}

/// A Kubernetes client with `kubeconfig`, or with the admin kubeconfig of
/// the (single) target node, fetched as [`fetch`] does (used by the verbs
/// that talk to the API server: `dashboard --web`, `logs --cluster`).
pub async fn client(kubeconfig: Option<&Path>, global: &GlobalArgs) -> anyhow::Result<Cluster> {
    let kc = match kubeconfig {
        Some(p) => kube::config::Kubeconfig::read_from(p)
            .with_context(|| format!("reading the kubeconfig {}", p.display()))?,
        None => {
            let session = Session::open(global).await?;
            let bytes = fetch(&session).await?;
            let text =
                String::from_utf8(bytes).context("the node sent a kubeconfig that is not UTF-8")?;
            kube::config::Kubeconfig::from_yaml(&text)
                .context("the node's kubeconfig is not valid")?
        }
    };
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .context("the kubeconfig cannot be used")?;
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
    Ok(Cluster {
        client,
        server: server.trim_end_matches('/').to_string(),
        from_node: kubeconfig.is_none(),
    })
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let env = std::env::var("KUBECONFIG").ok();
    let target = target(&args, || {
        default_path(env.as_deref(), dirs::home_dir().as_deref())
    })?;
    let session = Session::open(global).await?;
    let bytes = fetch(&session).await?;
    match target {
        Target::Stdout => {
            use std::io::Write as _;
            std::io::stdout().write_all(&bytes)?;
        }
        Target::Write { path, force } => {
            write(&path, &bytes, force)?;
            eprintln!("kubeconfig written to {}", path.display());
            eprintln!("next: KUBECONFIG={} kubectl get nodes", path.display());
        }
        Target::Merge(path) => {
            let existing = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            };
            let new = std::str::from_utf8(&bytes)
                .context("the node sent a kubeconfig that is not UTF-8")?;
            let merged = merge(&existing, new)?;
            write(&path, merged.text.as_bytes(), true)?;
            for r in &merged.renamed {
                eprintln!(
                    "{}: {:?} is taken by a different entry; added as {:?}",
                    r.section, r.from, r.to
                );
            }
            eprintln!(
                "kubeconfig merged into {} (current context {})",
                path.display(),
                merged.context
            );
            eprintln!("next: kubectl get nodes");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig(cluster: &str, server: &str, cert: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n    certificate-authority-data: Q0E=\n\
             users:\n- name: admin\n  user:\n    client-certificate-data: {cert}\n    client-key-data: S0VZ\n\
             contexts:\n- name: admin@{cluster}\n  context:\n    cluster: {cluster}\n    user: admin\ncurrent-context: admin@{cluster}\n"
        )
    }

    fn doc(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    fn names(v: &Value, section: &str) -> Vec<String> {
        v[section]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn unmerge_takes_out_what_merge_put_in_and_nothing_else() {
        let existing = "apiVersion: v1\nkind: Config\npreferences: {colors: true}\n\
            clusters:\n- name: prod\n  cluster:\n    server: https://prod:6443\n\
            users:\n- name: me\n  user: {token: t}\n\
            contexts:\n- name: prod\n  context: {cluster: prod, user: me}\ncurrent-context: prod\n";
        let m = merge(
            existing,
            &kubeconfig("c1", "https://127.0.0.1:6443", "QQ=="),
        )
        .unwrap();
        assert_eq!(m.context, "admin@c1");
        let back = unmerge(&m.text, "admin@c1")
            .unwrap()
            .expect("the context was there");
        let v = doc(&back);
        assert_eq!(names(&v, "clusters"), vec!["prod"]);
        assert_eq!(names(&v, "users"), vec!["me"]);
        assert_eq!(names(&v, "contexts"), vec!["prod"]);
        assert_eq!(v["current-context"], "prod");
        assert_eq!(v["preferences"]["colors"], true);
        assert!(unmerge(&back, "admin@c1").unwrap().is_none());
        // A user another context still names stays.
        let shared = "clusters:\n- name: a\n  cluster: {server: s}\n- name: b\n  cluster: {server: t}\n\
            users:\n- name: admin\n  user: {token: t}\n\
            contexts:\n- name: x\n  context: {cluster: a, user: admin}\n- name: y\n  context: {cluster: b, user: admin}\n\
            current-context: x\n";
        let v = doc(&unmerge(shared, "x").unwrap().unwrap());
        assert_eq!(names(&v, "clusters"), vec!["b"]);
        assert_eq!(names(&v, "users"), vec!["admin"]);
        assert_eq!(v["current-context"], "y");
    }

    #[test]
    fn into_nothing_is_the_kubeconfig_itself() {
        let new = kubeconfig("c1", "https://10.5.0.2:6443", "QQ==");
        let m = merge("", &new).unwrap();
        assert_eq!(doc(&m.text), doc(&new));
        assert!(m.renamed.is_empty());
        assert_eq!(m.context, "admin@c1");
    }

    #[test]
    fn other_clusters_and_unknown_fields_survive_and_the_new_context_is_current() {
        let existing = "apiVersion: v1\nkind: Config\npreferences: {colors: true}\n\
            clusters:\n- name: prod\n  cluster:\n    server: https://prod:6443\n    extensions: [{name: x, extension: {a: 1}}]\n\
            users:\n- name: me\n  user:\n    exec: {command: aws, apiVersion: client.authentication.k8s.io/v1beta1}\n\
            contexts:\n- name: prod\n  context: {cluster: prod, user: me}\ncurrent-context: prod\n";
        let m = merge(existing, &kubeconfig("c1", "https://10.5.0.2:6443", "QQ==")).unwrap();
        let v = doc(&m.text);
        assert_eq!(names(&v, "clusters"), vec!["prod", "c1"]);
        assert_eq!(names(&v, "users"), vec!["me", "admin"]);
        assert_eq!(names(&v, "contexts"), vec!["prod", "admin@c1"]);
        assert_eq!(v["current-context"], "admin@c1");
        assert_eq!(v["preferences"]["colors"], true);
        assert_eq!(v["users"][0]["user"]["exec"]["command"], "aws");
        assert_eq!(
            v["clusters"][0]["cluster"]["extensions"][0]["extension"]["a"],
            1
        );
    }

    #[test]
    fn the_same_kubeconfig_twice_adds_nothing() {
        let new = kubeconfig("c1", "https://10.5.0.2:6443", "QQ==");
        let once = merge("", &new).unwrap();
        let twice = merge(&once.text, &new).unwrap();
        assert_eq!(doc(&twice.text), doc(&once.text));
        assert!(twice.renamed.is_empty());
    }

    #[test]
    fn conflicting_names_get_a_suffix_and_the_context_points_at_the_renamed_entries() {
        let old = merge("", &kubeconfig("c1", "https://10.5.0.2:6443", "QQ==")).unwrap();
        // Another cluster of the same name (a rebuilt one): new server and cert.
        let m = merge(
            &old.text,
            &kubeconfig("c1", "https://10.5.0.9:6443", "Qg=="),
        )
        .unwrap();
        let v = doc(&m.text);
        assert_eq!(names(&v, "clusters"), vec!["c1", "c1-1"]);
        assert_eq!(names(&v, "users"), vec!["admin", "admin-1"]);
        assert_eq!(names(&v, "contexts"), vec!["admin@c1", "admin@c1-1"]);
        assert_eq!(v["contexts"][1]["context"]["cluster"], "c1-1");
        assert_eq!(v["contexts"][1]["context"]["user"], "admin-1");
        assert_eq!(v["current-context"], "admin@c1-1");
        assert_eq!(
            v["contexts"][0]["context"]["cluster"], "c1",
            "the old context is untouched"
        );
        assert_eq!(
            m.renamed,
            vec![
                Renamed {
                    section: "clusters",
                    from: "c1".into(),
                    to: "c1-1".into()
                },
                Renamed {
                    section: "users",
                    from: "admin".into(),
                    to: "admin-1".into()
                },
                Renamed {
                    section: "contexts",
                    from: "admin@c1".into(),
                    to: "admin@c1-1".into()
                },
            ]
        );
        // A third, different one: -2; the second again: reused.
        let third = merge(&m.text, &kubeconfig("c1", "https://10.5.0.10:6443", "Qw==")).unwrap();
        assert_eq!(
            names(&doc(&third.text), "clusters"),
            vec!["c1", "c1-1", "c1-2"]
        );
        let again = merge(
            &third.text,
            &kubeconfig("c1", "https://10.5.0.9:6443", "Qg=="),
        )
        .unwrap();
        assert_eq!(names(&doc(&again.text), "clusters").len(), 3);
        assert_eq!(again.context, "admin@c1-1");
    }

    #[test]
    fn a_broken_existing_file_is_not_overwritten_by_a_merge() {
        let err = merge(
            "clusters: [unclosed",
            &kubeconfig("c1", "https://x:6443", "QQ=="),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not valid YAML"), "{err}");
    }

    #[test]
    fn targets() {
        let home = || Ok(PathBuf::from("/home/u/.kube/config"));
        let args = |path: Option<&str>, force, merge| Args {
            path: path.map(str::to_string),
            force,
            merge,
        };
        assert_eq!(
            target(&args(None, false, false), home).unwrap(),
            Target::Merge("/home/u/.kube/config".into())
        );
        assert_eq!(
            target(&args(Some("-"), false, false), home).unwrap(),
            Target::Stdout
        );
        assert_eq!(
            target(&args(Some("/tmp/nonexistent-k"), false, false), home).unwrap(),
            Target::Write {
                path: "/tmp/nonexistent-k".into(),
                force: false
            }
        );
        let merge_into = "/nonexistent-cairn-dir/kubeconfig";
        assert_eq!(
            target(&args(Some(merge_into), false, true), home).unwrap(),
            Target::Merge(merge_into.into())
        );
        let dir = tempfile::tempdir().unwrap();
        let t = target(&args(Some(dir.path().to_str().unwrap()), true, false), home).unwrap();
        assert_eq!(
            t,
            Target::Write {
                path: dir.path().join("kubeconfig"),
                force: true
            }
        );
        assert_eq!(
            default_path(Some(":/a/b:/c"), None).unwrap(),
            PathBuf::from("/a/b")
        );
        assert_eq!(
            default_path(None, Some(Path::new("/h"))).unwrap(),
            PathBuf::from("/h/.kube/config")
        );
        assert!(default_path(None, None).is_err());
    }

    #[test]
    fn writes_are_private_and_refuse_to_clobber_without_force() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/kubeconfig");
        write(&p, b"a", false).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(p.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let err = write(&p, b"b", false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        write(&p, b"c", true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"c");
    }
}
