//! Test helpers shared by the Kubernetes modules: golden files and a
//! generated machine config.

use std::path::PathBuf;

/// `kubernetes/testdata/golden/<name>`.
fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/golden")
        .join(name)
}

/// Compares `actual` with the golden file `name`; with `UPDATE_GOLDEN=1`
/// writes it instead (review the diff before committing).
pub fn golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (create it with UPDATE_GOLDEN=1 cargo test -p kubernetes)",
            path.display()
        )
    });
    if expected != actual {
        let diff = similar::TextDiff::from_lines(expected.as_str(), actual)
            .unified_diff()
            .header("golden", "actual")
            .to_string();
        panic!(
            "{} differs (if intended: UPDATE_GOLDEN=1 cargo test -p kubernetes):\n{diff}",
            path.display()
        );
    }
}

/// A generated control-plane config for https://10.5.0.2:6443, with the
/// hostname `cp1`.
pub fn machine_config() -> config::MachineConfig {
    let secrets = config::generate::generate_secrets().unwrap();
    let input = config::generate::GenerateInput::new(
        "test".parse().unwrap(),
        "https://10.5.0.2:6443".parse().unwrap(),
        secrets,
    );
    let (mut cp, _, _) = config::generate::generate_configs(&input).unwrap();
    cp.machine.network.hostname = Some("cp1".parse().unwrap());
    cp
}

/// The same config as a worker.
pub fn worker_config() -> config::MachineConfig {
    let secrets = config::generate::generate_secrets().unwrap();
    let input = config::generate::GenerateInput::new(
        "test".parse().unwrap(),
        "https://10.5.0.2:6443".parse().unwrap(),
        secrets,
    );
    let (_, mut w, _) = config::generate::generate_configs(&input).unwrap();
    w.machine.network.hostname = Some("w1".parse().unwrap());
    w
}
