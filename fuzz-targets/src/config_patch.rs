//! Config patches: strategic-merge YAML and RFC 6902 JSON patches applied
//! to the golden control-plane and worker configs. Never panics; a patched
//! config renders to text that parses back to it.

use std::sync::OnceLock;

use config::patch::Patch;
use config::MachineConfig;

fn bases() -> &'static [MachineConfig; 2] {
    static BASES: OnceLock<[MachineConfig; 2]> = OnceLock::new();
    BASES.get_or_init(|| {
        let parse = |b: &[u8]| MachineConfig::parse(b).expect("golden configs parse");
        [
            parse(include_bytes!(
                "../../config/tests/golden/controlplane.yaml"
            )),
            parse(include_bytes!("../../config/tests/golden/worker.yaml")),
        ]
    })
}

/// One input, as the fuzzer gives it.
pub fn run(data: &[u8]) {
    let Some((&which, text)) = data.split_first() else {
        return;
    };
    let base = &bases()[usize::from(which & 1)];
    let Ok(patch) = Patch::parse(text, "fuzz.yaml") else {
        return;
    };
    let Ok(patched) = patch.apply(base) else {
        return;
    };
    let rendered = patched.render();
    match MachineConfig::parse(rendered.as_bytes()) {
        Ok(again) => assert_eq!(
            again, patched,
            "render then parse changed the patched config"
        ),
        Err(e) => panic!("a patched config does not render to a valid one: {e}\n{rendered}"),
    }
}
