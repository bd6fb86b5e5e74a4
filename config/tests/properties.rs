//! Property tests: the parser never panics, whatever the bytes, and
//! rendering then parsing a generated config gives the same config.

mod common;

use std::sync::OnceLock;

use config::generate::{generate_configs, GenerateInput};
use config::patch::Patch;
use config::types::FileMode;
use config::validate::{validate, Mode};
use config::{MachineConfig, SecretsBundle};
use proptest::prelude::*;

fn secrets() -> &'static SecretsBundle {
    static S: OnceLock<SecretsBundle> = OnceLock::new();
    S.get_or_init(common::fixed_secrets)
}

fn valid_text() -> &'static str {
    static T: OnceLock<String> = OnceLock::new();
    T.get_or_init(|| common::demo_configs().0.render())
}

/// Parse and, when that works, validate: neither may panic.
fn exercise(bytes: &[u8]) {
    if let Ok(c) = MachineConfig::parse(bytes) {
        let _ = validate(&c, Mode::Metal);
        let again = MachineConfig::parse(c.render().as_bytes())
            .expect("a parsed config renders to a parsable one");
        assert_eq!(again, c);
    }
    let _ = SecretsBundle::parse(bytes);
    if let Ok(p) = Patch::parse(bytes, "fuzz") {
        let _ = p.apply(&common::demo_configs().0);
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipByte(usize, u8),
    Delete(usize, usize),
    Insert(usize, String),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Indent(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::FlipByte(p, b)),
        (any::<usize>(), 1usize..200).prop_map(|(p, n)| Mutation::Delete(p, n)),
        (
            any::<usize>(),
            prop::sample::select(vec![
                ": ",
                "- ",
                "\t",
                "---\n",
                "&a ",
                "*a",
                "!!binary ",
                "[",
                "{",
                "\"",
                "'",
                "\n",
                "null",
                "~",
                "10.244.0.0/33",
                "99999999999999999999",
                "-1",
                "0x1F",
                ".inf",
                "? ",
                "|",
                ">",
                "#",
                "\u{0}",
                "é",
            ])
            .prop_map(String::from)
        )
            .prop_map(|(p, s)| Mutation::Insert(p, s)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (
            any::<usize>(),
            prop::sample::select(vec![" ", "  ", "\t", "    "]).prop_map(String::from)
        )
            .prop_map(|(p, s)| Mutation::Indent(p, s)),
    ]
}

fn apply(text: &[u8], m: &Mutation) -> Vec<u8> {
    let mut bytes = text.to_vec();
    let len = bytes.len().max(1);
    match m {
        Mutation::FlipByte(p, b) => {
            if !bytes.is_empty() {
                let i = p % bytes.len();
                bytes[i] ^= b | 1;
            }
        }
        Mutation::Delete(p, n) => {
            let start = p % len;
            let end = (start + n).min(bytes.len());
            if start < end {
                bytes.drain(start..end);
            }
        }
        Mutation::Insert(p, s) => {
            let at = p % (bytes.len() + 1);
            bytes.splice(at..at, s.bytes());
        }
        Mutation::DuplicateLine(p) | Mutation::Indent(p, _) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let mut lines: Vec<String> = text.lines().map(String::from).collect();
            if !lines.is_empty() {
                let i = p % lines.len();
                match m {
                    Mutation::Indent(_, pre) => lines[i] = format!("{pre}{}", lines[i]),
                    _ => lines.insert(i, lines[i].clone()),
                }
            }
            bytes = (lines.join("\n") + "\n").into_bytes();
        }
        Mutation::SwapLines(a, b) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let mut lines: Vec<String> = text.lines().map(String::from).collect();
            if !lines.is_empty() {
                let (i, j) = (a % lines.len(), b % lines.len());
                lines.swap(i, j);
            }
            bytes = (lines.join("\n") + "\n").into_bytes();
        }
    }
    bytes
}

fn cluster_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,30}[a-z0-9]"
}

fn endpoint() -> impl Strategy<Value = String> {
    let host = prop_oneof![
        (1u8..=223, any::<u8>(), any::<u8>(), 1u8..=254)
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        "[a-z]{1,10}(\\.[a-z]{2,5}){0,2}",
        any::<[u16; 8]>().prop_map(|s| format!("[{}]", std::net::Ipv6Addr::from(s))),
    ];
    (host, prop::option::of(1u16..=65535)).prop_map(|(h, p)| match p {
        Some(p) => format!("https://{h}:{p}"),
        None => format!("https://{h}"),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&bytes);
    }

    #[test]
    fn random_text_never_panics(text in "(\\PC|[\n\t:\\-\\[\\]{}&*!|>'\"#%@`,?]){0,400}") {
        exercise(text.as_bytes());
    }

    #[test]
    fn mutated_configs_never_panic(mutations in prop::collection::vec(mutation(), 1..5)) {
        let mut bytes = valid_text().as_bytes().to_vec();
        for m in &mutations {
            bytes = apply(&bytes, m);
        }
        exercise(&bytes);
    }

    #[test]
    fn generated_configs_round_trip(
        name in cluster_name(),
        endpoint in endpoint(),
        minor in 0u32..40,
        patch in 0u32..20,
        disk in prop::option::of("/dev/(vd|sd|xvd)[a-z]"),
        hostname in prop::option::of("[a-z][a-z0-9]{0,10}"),
        sysctls in prop::collection::btree_map("[a-z]{1,8}(\\.[a-z_]{1,8}){0,3}", "[0-9a-z ]{0,8}", 0..4),
        labels in prop::collection::btree_map("([a-z]{1,8}\\.[a-z]{2,4}/)?[a-z][a-z0-9]{0,8}", "([a-z0-9]{0,8})", 0..4),
        mode in 0u32..0o7777,
        content in "\\PC{0,200}",
    ) {
        let mut input = GenerateInput::new(name.parse().unwrap(), endpoint.parse().unwrap(), secrets().clone());
        input.kubernetes_version = format!("v1.{minor}.{patch}").parse().unwrap();
        input.install_disk = disk.map(|d| d.parse().unwrap());
        let (mut cp, worker, client) = generate_configs(&input).unwrap();
        cp.machine.network.hostname = hostname.map(|h| h.parse().unwrap());
        cp.machine.sysctls = sysctls.into_iter().map(|(k, v)| (k.parse().unwrap(), config::types::ScalarString::new(v))).collect();
        cp.machine.kubelet.node_labels = labels.into_iter().map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap())).collect();
        cp.machine.files.push(config::spec::File {
            path: "/var/etc/x.conf".parse().unwrap(),
            content,
            permissions: FileMode::new(mode).unwrap(),
            op: config::spec::FileOp::Append,
        });
        for c in [&cp, &worker] {
            let text = c.render();
            let parsed = MachineConfig::parse(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            prop_assert_eq!(&parsed, c);
        }
        validate(&worker, Mode::Cloud).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let client_again = config::client::ClientConfig::parse(client.render().as_bytes(), "cairnconfig").unwrap();
        prop_assert_eq!(client_again, client);
    }
}
