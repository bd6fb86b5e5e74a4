//! Shared helpers for the config integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use config::generate::{generate_configs, GenerateInput};
use config::{MachineConfig, SecretsBundle};

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

pub fn update_golden() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

/// Compare `actual` with the committed file, or rewrite it when
/// UPDATE_GOLDEN=1.
pub fn check_golden(path: &Path, actual: &str) {
    if update_golden() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `UPDATE_GOLDEN=1 cargo test -p config` to create it",
            path.display()
        )
    });
    if expected != actual {
        let diff_line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .map_or(
                expected.lines().count().min(actual.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "{} differs from the generated output (first difference at line {diff_line}).\n\
             If the change is intended, regenerate with `UPDATE_GOLDEN=1 cargo test -p config` and commit.",
            path.display()
        );
    }
}

/// The committed, fixed secrets bundle (deterministic input).
pub fn fixed_secrets() -> SecretsBundle {
    let path = golden_dir().join("secrets.yaml");
    if !path.exists() && update_golden() {
        std::fs::write(&path, SecretsBundle::generate().unwrap().render()).unwrap();
    }
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    SecretsBundle::parse(&bytes).unwrap()
}

/// Control-plane and worker configs for `demo` at https://10.5.0.2:6443
/// from the fixed bundle.
pub fn demo_configs() -> (MachineConfig, MachineConfig) {
    let input = GenerateInput::new(
        "demo".parse().unwrap(),
        "https://10.5.0.2:6443".parse().unwrap(),
        fixed_secrets(),
    );
    let (cp, worker, _) = generate_configs(&input).unwrap();
    (cp, worker)
}
