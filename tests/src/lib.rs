//! Helpers for tests that boot Cairn in QEMU.
