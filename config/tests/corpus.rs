//! The broken-config corpus: every file under tests/broken/ must be
//! rejected with exactly the problems listed in its `.expect` file, one per
//! line, each naming the document and field (or line and column). A name
//! ending in `.metal.yaml` is validated in metal mode, others in cloud mode.
//! Regenerate the expectations with `UPDATE_GOLDEN=1 cargo test -p config`
//! and review the diff.

mod common;

use std::path::PathBuf;

use config::validate::{validate, Mode};
use config::MachineConfig;

/// All problems for one file, as `cairnctl validate` prints them.
fn problems(bytes: &[u8], mode: Mode) -> Vec<String> {
    match MachineConfig::parse(bytes) {
        Err(errors) => errors.into_iter().map(|e| e.to_string()).collect(),
        Ok(config) => match validate(&config, mode) {
            Err(errors) => errors
                .locate(bytes)
                .iter()
                .map(ToString::to_string)
                .collect(),
            Ok(()) => Vec::new(),
        },
    }
}

fn corpus() -> Vec<PathBuf> {
    let dir = common::golden_dir().parent().unwrap().join("broken");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_broken_config_is_rejected_with_the_expected_problems() {
    let files = corpus();
    assert!(
        files.len() >= 30,
        "the corpus must hold at least 30 broken configs, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let mode = if file.to_string_lossy().ends_with(".metal.yaml") {
            Mode::Metal
        } else {
            Mode::Cloud
        };
        let bytes = std::fs::read(file).unwrap();
        let got = problems(&bytes, mode);
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if got.is_empty() {
            failures.push(format!("{name}: accepted, but it is broken"));
            continue;
        }
        for line in &got {
            assert!(
                !line.contains('\n') && !line.trim().is_empty(),
                "{name}: bad problem line {line:?}"
            );
        }
        let expect_path = file.with_extension("expect");
        let actual = got.join("\n") + "\n";
        if common::update_golden() {
            std::fs::write(&expect_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expect_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!("{name}:\n  expected:\n{expected}  got:\n{actual}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(if intended: UPDATE_GOLDEN=1 cargo test -p config, then review the .expect diffs)",
        failures.join("\n")
    );
}

#[test]
fn the_valid_golden_configs_are_not_in_the_corpus_by_mistake() {
    for name in ["controlplane.yaml", "worker.yaml"] {
        let bytes = std::fs::read(common::golden_dir().join(name)).unwrap();
        assert!(
            problems(&bytes, Mode::Cloud).is_empty(),
            "{name} must be valid"
        );
    }
}
