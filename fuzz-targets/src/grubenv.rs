//! GRUB's environment block (BOOT's grub/grubenv), which machined reads to
//! pick boot slots: parsing never panics, and what parses renders to a
//! block (when it fits in 1024 bytes) that parses back to the same values.

use machined::upgrade::grubenv::{GrubEnv, SIZE};

/// One input, as the fuzzer gives it.
pub fn run(data: &[u8]) {
    let Ok(env) = GrubEnv::parse(data) else {
        return;
    };
    let _ = (env.default_slot(), env.next_slot());
    let Ok(block) = env.render() else {
        return;
    };
    assert_eq!(block.len(), SIZE);
    let again = GrubEnv::parse(&block).expect("a rendered block parses");
    assert_eq!(again, env, "render then parse changed the environment");
}
