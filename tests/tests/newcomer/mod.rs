//! A newcomer's path (issue 18): the commands `cairnctl cluster create`
//! prints under "next:" (`provision::summary`), run as printed, the way
//! someone pasting them into a fresh shell would. Shared by the Kubernetes
//! and the multi-node VM tests.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The command lines under "next:" in `printed`.
pub fn next_lines(printed: &str) -> Vec<&str> {
    printed
        .lines()
        .skip_while(|l| l.trim() != "next:")
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

/// A command line as a shell reads it: the `NAME=value` words before the
/// program, and the program with its arguments (a `# comment` dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellLine {
    pub env: Vec<(String, String)>,
    pub argv: Vec<String>,
}

/// Splits `line` as a shell would (quotes, escapes, comments).
pub fn parse(line: &str) -> ShellLine {
    let words = shlex::split(line).unwrap_or_else(|| panic!("a shell cannot read {line:?}"));
    let is_assignment = |w: &str| {
        w.split_once('=').is_some_and(|(name, _)| {
            name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    };
    let split = words
        .iter()
        .position(|w| !is_assignment(w))
        .unwrap_or(words.len());
    let env = words[..split]
        .iter()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ShellLine {
        env,
        argv: words[split..].to_vec(),
    }
}

/// Runs `line` as printed, in the environment of someone who has just
/// cloned the repository: HOME is `home`, and nothing of ours (CAIRN_CACHE,
/// KUBECONFIG, CAIRNCONFIG, XDG cache or config directories) is set
/// unless the line sets it.
pub fn run(line: &str, home: &Path) -> Output {
    let parsed = parse(line);
    assert!(!parsed.argv.is_empty(), "no program in {line:?}");
    let mut cmd = Command::new(&parsed.argv[0]);
    cmd.args(&parsed.argv[1..])
        .env("HOME", home)
        .env_remove("CAIRN_CACHE")
        .env_remove("KUBECONFIG")
        .env_remove("CAIRNCONFIG")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .envs(parsed.env.iter().map(|(k, v)| (k, v)));
    cmd.output()
        .unwrap_or_else(|e| panic!("running {line:?}: {e}"))
}

#[test]
fn lines_split_as_a_shell_splits_them() {
    let l = parse("CAIRN_CACHE='/a b' /o/cairnctl cluster show --name local    # x");
    assert_eq!(l.env, [("CAIRN_CACHE".to_string(), "/a b".to_string())]);
    assert_eq!(
        l.argv,
        ["/o/cairnctl", "cluster", "show", "--name", "local"]
    );
    let l = parse("'/my tools/kubectl' get nodes -o wide");
    assert!(l.env.is_empty());
    assert_eq!(l.argv[0], "/my tools/kubectl");
    assert_eq!(
        next_lines("x\n\nnext:\n  a b\n  c    # d\n"),
        ["a b", "c    # d"]
    );
}
