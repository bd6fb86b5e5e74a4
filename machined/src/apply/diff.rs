//! What a new machine config changes, for people: a unified diff of the
//! running config against the new one, both rendered the same way and
//! with their secrets redacted (the diff is shown to whoever may apply,
//! and printed to terminals and logs).

use config::MachineConfig;

use runtime::resources::machineconfig::redact_yaml;

/// A unified diff (`--- running` / `+++ new`), empty when nothing changes.
/// Without a running config (maintenance mode) every line is added.
pub fn diff(running: Option<&MachineConfig>, new: &MachineConfig) -> String {
    let old = running
        .map(|c| redact_yaml(&c.render()))
        .unwrap_or_default();
    let new = redact_yaml(&new.render());
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header("running", "new")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::tests::generated;

    #[test]
    fn shows_changed_lines_and_never_secrets() {
        let (cfg, secrets) = generated();
        let mut changed = cfg.clone();
        changed.machine.network.hostname = Some("renamed".parse().unwrap());
        let d = diff(Some(&cfg), &changed);
        assert!(d.starts_with("--- running\n+++ new\n"), "{d}");
        assert!(
            d.lines()
                .any(|l| l.starts_with('+') && l.contains("hostname: renamed")),
            "{d}"
        );
        assert!(diff(Some(&cfg), &cfg).is_empty());
        // From maintenance mode: everything is new, and still redacted.
        let all = diff(None, &cfg);
        assert!(all.contains("+apiVersion: cairn.dev/v1alpha1"), "{all}");
        for secret in secrets {
            assert!(!all.contains(&secret), "a secret leaked into the diff");
        }
        assert!(!all.contains("PRIVATE KEY"));
    }
}
