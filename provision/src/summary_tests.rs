use super::*;
use crate::cluster::{plan, MergedContext, Request, NETWORK};

fn state(merged: bool) -> ClusterState {
    let mut nodes = plan(&Request {
        name: "local".into(),
        controlplanes: 1,
        workers: 1,
        controlplane_memory_mib: 4096,
        worker_memory_mib: 2048,
        cpus: 2,
    })
    .unwrap();
    nodes[0].apid_port = 40715;
    nodes[0].api_port = Some(40716);
    nodes[0].join_port = Some(40717);
    nodes[1].apid_port = 40718;
    ClusterState {
        name: "local".into(),
        network: NETWORK.into(),
        endpoint: "https://10.5.0.2:6443".into(),
        image_dir: "/home/me/cairn/_out".into(),
        nodes,
        merged_context: merged.then(|| MergedContext {
            path: "/home/me/.kube/config".into(),
            context: "admin@local".into(),
        }),
    }
}

fn programs(dir: &str) -> Programs {
    Programs {
        cairnctl: Path::new(dir).join("cairnctl"),
        kubectl: Path::new(dir).join("kubectl"),
    }
}

const HOME_CLUSTERS: &str = "/home/me/.cache/cairn/clusters";

/// What `make cluster` prints on a fresh machine (neither program on PATH).
fn make_cluster() -> String {
    render(
        &state(true),
        &Layout::new(format!("{HOME_CLUSTERS}/local")),
        &programs("/home/me/cairn/_out"),
        Some(Path::new(HOME_CLUSTERS)),
    )
}

/// The words a shell makes of `line`, comment dropped.
fn split(line: &str) -> Vec<String> {
    shlex::split(line).unwrap_or_else(|| panic!("a shell cannot read {line:?}"))
}

fn words(c: &NextCommand) -> Vec<String> {
    c.env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .chain(c.argv.iter().cloned())
        .collect()
}

#[test]
fn the_files_are_aligned_and_the_commands_name_programs_and_files_by_absolute_paths() {
    let text = make_cluster();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "  kubeconfig:   /home/me/.cache/cairn/clusters/local/kubeconfig",
            "  cairnconfig:  /home/me/.cache/cairn/clusters/local/cairnconfig",
            "  kube context: admin@local (merged into /home/me/.kube/config)",
        ]
    );
    let cfg = "/home/me/.cache/cairn/clusters/local/cairnconfig";
    let ctl = "/home/me/cairn/_out/cairnctl";
    assert_eq!(
        lines[3..],
        [
            "".to_string(),
            "next:".into(),
            "  /home/me/cairn/_out/kubectl get nodes -o wide".into(),
            format!("  {ctl} --cairnconfig {cfg} services"),
            format!(
                "  {ctl} --cairnconfig {cfg} -e 127.0.0.1:40718 -n 127.0.0.1:40718 services    # worker-1"
            ),
            format!("  {ctl} cluster show --name local"),
            format!("  {ctl} cluster destroy --name local"),
        ]
    );
}

#[test]
fn without_a_merged_context_kubectl_is_given_the_kubeconfig() {
    let next = next_commands(
        &state(false),
        &Layout::new(format!("{HOME_CLUSTERS}/local")),
        &programs("/o"),
        Some(Path::new(HOME_CLUSTERS)),
    );
    assert_eq!(
        next[0].line(),
        "/o/kubectl --kubeconfig /home/me/.cache/cairn/clusters/local/kubeconfig get nodes -o wide"
    );
    let text = render(
        &state(false),
        &Layout::new(format!("{HOME_CLUSTERS}/local")),
        &programs("/o"),
        Some(Path::new(HOME_CLUSTERS)),
    );
    assert!(!text.contains("kube context"), "{text}");
    // Two labels: aligned on the longer one.
    assert!(text.starts_with("  kubeconfig:  /home"), "{text}");
}

#[test]
fn words_a_shell_would_split_or_expand_are_quoted_and_read_back_unchanged() {
    let clusters = "/home/Jo Smith/it's $HOME/.cache/cairn/clusters";
    let next = next_commands(
        &state(false),
        &Layout::new(format!("{clusters}/local")),
        &programs("/opt/my tools"),
        None,
    );
    for c in &next {
        let line = c.line();
        assert_eq!(split(&line), words(c), "{line}");
    }
    assert!(
        next[1]
            .line()
            .starts_with("'/opt/my tools/cairnctl' --cairnconfig "),
        "{}",
        next[1].line()
    );
    // The cache is named before the cluster verbs, as an assignment (its
    // value quoted, not the whole word).
    let show = next[3].line();
    assert!(show.starts_with("CAIRN_CACHE="), "{show}");
    assert_eq!(
        split(&show)[0],
        "CAIRN_CACHE=/home/Jo Smith/it's $HOME/.cache/cairn"
    );
}

#[test]
fn cluster_verbs_name_the_cache_only_when_cairnctl_would_not_look_there() {
    let line = |default: Option<&str>| {
        next_commands(
            &state(true),
            &Layout::new("/big/disk/cache/clusters/local"),
            &programs("/o"),
            default.map(Path::new),
        )[3]
        .line()
    };
    let expected = "CAIRN_CACHE=/big/disk/cache /o/cairnctl cluster show --name local";
    assert_eq!(line(None), expected);
    assert_eq!(line(Some(HOME_CLUSTERS)), expected);
    assert_eq!(
        line(Some("/big/disk/cache/clusters")),
        "/o/cairnctl cluster show --name local"
    );
}

#[test]
fn relative_paths_are_printed_absolute() {
    let cwd = std::env::current_dir().unwrap();
    let text = render(
        &state(false),
        &Layout::new("cache/clusters/local"),
        &Programs::find(None, Path::new("_out/cairnctl"), Path::new("_out")),
        Some(Path::new("cache/clusters")),
    );
    let cfg = cwd.join("cache/clusters/local/cairnconfig");
    let ctl = cwd.join("_out/cairnctl");
    assert!(
        text.contains(&format!(
            "  {} --cairnconfig {} services\n",
            ctl.display(),
            cfg.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("  {} cluster show --name local\n", ctl.display())),
        "{text}"
    );
}

#[test]
fn programs_are_named_by_path_unless_path_finds_the_same_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for p in ["bin/cairnctl", "bin/kubectl", "old/cairnctl", "out/kubectl"] {
        std::fs::create_dir_all(d.join(p).parent().unwrap()).unwrap();
        std::fs::write(d.join(p), "").unwrap();
    }
    let path = |dirs: &[&str]| std::env::join_paths(dirs.iter().map(|x| d.join(x))).unwrap();
    let running = d.join("bin/cairnctl");
    let out = d.join("out");

    // On PATH, first: by name.
    let p = Programs::find(Some(&path(&["bin"])), &running, &out);
    assert_eq!(p.cairnctl, Path::new("cairnctl"));
    assert_eq!(p.kubectl, Path::new("kubectl"));
    // PATH finds another cairnctl first: the running one by its path.
    let p = Programs::find(Some(&path(&["old", "bin"])), &running, &out);
    assert_eq!(p.cairnctl, running);
    // Neither on PATH: kubectl from the images' directory.
    let p = Programs::find(None, &running, &out);
    assert_eq!(p.cairnctl, running);
    assert_eq!(p.kubectl, out.join("kubectl"));
    // A relative PATH entry finds programs only from one directory.
    let p = Programs::find(Some(OsStr::new(".")), &running, &out);
    assert_eq!(p.kubectl, out.join("kubectl"));
}

#[test]
fn the_readme_shows_what_make_cluster_prints() {
    let readme = include_str!("../../README.md");
    let printed = make_cluster();
    assert!(
        readme.contains(&printed),
        "README.md should show what `make cluster` prints at the end, for a \
         checkout in /home/me/cairn:\n{printed}"
    );
}
