//! Machine-config parsing (YAML: anchors, aliases, tags, several
//! documents, anything): never panics, never blows up (aliases are refused
//! before anything expands them), and a config that parses renders to text
//! that parses back to the same config and validates without panicking.

/// One input, as the fuzzer gives it.
pub fn run(data: &[u8]) {
    let Ok(cfg) = config::MachineConfig::parse(data) else {
        return;
    };
    for mode in [config::validate::Mode::Cloud, config::validate::Mode::Metal] {
        let _ = config::validate::validate(&cfg, mode);
    }
    let text = cfg.render();
    let again = match config::MachineConfig::parse(text.as_bytes()) {
        Ok(c) => c,
        Err(e) => panic!("a rendered config does not parse: {e}\n{text}"),
    };
    assert_eq!(again, cfg, "render then parse changed the config");
}
