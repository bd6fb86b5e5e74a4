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

#[test]
fn committed_schema_matches_the_types() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/machineconfig.schema.json");
    check_golden(&path, &config::schema::machine_config_schema_text());
}

#[test]
fn every_schema_property_is_documented() {
    // Walk the schema: every object property must carry a description
    // (from the field's doc comment), directly or through its $ref.
    let schema = config::schema::machine_config_schema();
    let defs = schema["$defs"].as_object().unwrap();
    let mut missing = Vec::new();
    for (name, def) in defs {
        if let Some(props) = def.get("properties").and_then(|p| p.as_object()) {
            for (prop, body) in props {
                if body.get("description").is_none() {
                    missing.push(format!("{name}.{prop}"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "undocumented fields: {missing:?}");
}
