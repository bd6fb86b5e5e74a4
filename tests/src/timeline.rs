//! The bring-up timeline a node records (`bringup` events, see
//! `kubernetes::timeline`), read with `cairnctl events -o json` and
//! checked: every phase of the node's kind is there, once, and the chains
//! of phases that wait for one another are in order.

use kubernetes::timeline::{phase_of, seconds_of, Phase};

/// A phase and the seconds since boot it was reached at.
pub type Timeline = Vec<(String, f64)>;

/// The timeline in the output of `cairnctl events -o json` (a JSON array
/// of events, oldest first).
pub fn parse(events_json: &str) -> Result<Timeline, String> {
    let events: serde_json::Value =
        serde_json::from_str(events_json).map_err(|e| format!("events -o json: {e}"))?;
    let rows = events.as_array().ok_or("events -o json: not an array")?;
    Ok(rows
        .iter()
        .filter(|e| e["type"] == "bringup")
        .filter_map(|e| {
            let m = e["message"].as_str()?;
            Some((phase_of(m)?.to_string(), seconds_of(m)?))
        })
        .collect())
}

/// Checks `timeline`: every phase of the node's kind once, each chain in
/// order. Says what is missing or out of order.
pub fn check(timeline: &Timeline, control_plane: bool) -> Result<(), String> {
    let at = |p: Phase| {
        let name = p.name();
        let found: Vec<f64> = timeline
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .collect();
        match found[..] {
            [s] => Ok(s),
            [] => Err(format!("{name} is missing")),
            _ => Err(format!("{name} is there {} times", found.len())),
        }
    };
    let problems: Vec<String> = Phase::all(control_plane)
        .into_iter()
        .filter_map(|p| at(p).err())
        .collect();
    if !problems.is_empty() {
        return Err(format!("{}\n{}", problems.join("; "), render(timeline)));
    }
    for chain in Phase::chains(control_plane) {
        for pair in chain.windows(2) {
            let (a, b) = (at(pair[0])?, at(pair[1])?);
            if a > b {
                return Err(format!(
                    "{} at {a} s comes after {} at {b} s\n{}",
                    pair[0].name(),
                    pair[1].name(),
                    render(timeline)
                ));
            }
        }
    }
    Ok(())
}

/// The timeline as aligned lines, with the gap to the previous phase.
pub fn render(timeline: &Timeline) -> String {
    let mut sorted = timeline.clone();
    sorted.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut out = String::new();
    let mut last = None;
    for (name, s) in &sorted {
        let gap = last.map_or(String::new(), |l: f64| format!("+{:.1}", s - l));
        out.push_str(&format!("  {name:<32} {s:>7.1} s  {gap:>7}\n"));
        last = Some(*s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(phases: &[(&str, f64)]) -> String {
        let rows: Vec<serde_json::Value> = phases
            .iter()
            .map(|(p, s)| {
                serde_json::json!({"node": "n", "id": "1", "time": "", "type": "bringup",
                    "message": format!("{p} at {s:.1} s: seen")})
            })
            .chain([serde_json::json!({"type": "service", "message": "kubelet at 3 s"})])
            .collect();
        serde_json::to_string(&rows).unwrap()
    }

    #[test]
    fn a_worker_timeline_in_order_passes_and_a_missing_or_late_phase_fails() {
        let names: Vec<String> = Phase::all(false).iter().map(|p| p.name()).collect();
        let good: Vec<(&str, f64)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i as f64))
            .collect();
        let t = parse(&events(&good)).unwrap();
        assert_eq!(t.len(), names.len(), "the service event is not a phase");
        check(&t, false).unwrap();
        assert!(check(&t, true)
            .unwrap_err()
            .contains("etcd-healthy is missing"));

        let mut late = good.clone();
        late.iter_mut()
            .find(|(n, _)| *n == "cni-written")
            .unwrap()
            .1 = 100.0;
        let err = check(&parse(&events(&late)).unwrap(), false).unwrap_err();
        assert!(
            err.contains("cni-written at 100 s comes after node-ready"),
            "{err}"
        );

        let mut twice = good.clone();
        twice.push(("node-ready", 50.0));
        let err = check(&parse(&events(&twice)).unwrap(), false).unwrap_err();
        assert!(err.contains("node-ready is there 2 times"), "{err}");
    }
}
