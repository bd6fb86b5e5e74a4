//! Golden files guard the config format: rendering configs generated from a
//! fixed secrets bundle must give exactly the committed files, and the JSON
//! Schema generated from the types must equal the committed schema.
//! Regenerate with `UPDATE_GOLDEN=1 cargo test -p config`.

mod common;

use common::*;
use config::MachineConfig;

#[test]
fn rendered_configs_match_golden_files() {
    let (cp, worker) = demo_configs();
    check_golden(&golden_dir().join("controlplane.yaml"), &cp.render());
    check_golden(&golden_dir().join("worker.yaml"), &worker.render());
}

#[test]
fn golden_files_parse_back() {
    let (cp, worker) = demo_configs();
    for (name, expected) in [("controlplane.yaml", cp), ("worker.yaml", worker)] {
        let bytes = std::fs::read(golden_dir().join(name)).unwrap();
        assert_eq!(MachineConfig::parse(&bytes).unwrap(), expected, "{name}");
    }
}
