//! The short window the metrics API answers from: for every node and
//! every container, the last two samples of its cumulative CPU counter
//! (a rate needs two) and its last memory working set. Nothing older is
//! kept, so memory stays proportional to the number of containers.
//!
//! A scrape of a node replaces that node's containers: a container that is
//! gone from the kubelet's answer is gone here too. A counter that went
//! down (a restarted container) starts over, and a sample with the same
//! timestamp as the last one (the kubelet serves cached stats between
//! housekeeping runs) does not move the window.

use std::collections::BTreeMap;

use crate::prom_text::Sample;

/// A counter's or gauge's value at a time (milliseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub value: f64,
    pub at_ms: i64,
}

/// The last two points of a cumulative CPU counter (core-seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counter {
    pub prev: Option<Point>,
    pub last: Point,
}

impl Counter {
    fn new(p: Point) -> Self {
        Counter {
            prev: None,
            last: p,
        }
    }

    /// The counter after a new point arrives.
    fn advance(self, p: Point) -> Self {
        if p.at_ms <= self.last.at_ms {
            return self;
        }
        if p.value < self.last.value {
            return Counter::new(p);
        }
        Counter {
            prev: Some(self.last),
            last: p,
        }
    }

    /// Cores used between the two points, the window's length in
    /// milliseconds and its end.
    pub fn rate(&self) -> Option<Usage> {
        let prev = self.prev?;
        let window_ms = self.last.at_ms - prev.at_ms;
        if window_ms <= 0 {
            return None;
        }
        let cores = (self.last.value - prev.value) / (window_ms as f64 / 1000.0);
        cores.is_finite().then_some(Usage {
            nanocores: (cores * 1e9).round().max(0.0) as u64,
            window_ms,
            at_ms: self.last.at_ms,
        })
    }
}

/// CPU usage over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub nanocores: u64,
    pub window_ms: i64,
    pub at_ms: i64,
}

/// One series' state.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Series {
    pub cpu: Option<Counter>,
    pub memory: Option<Point>,
}

impl Series {
    fn cpu_point(&mut self, p: Point) {
        self.cpu = Some(match self.cpu {
            Some(c) => c.advance(p),
            None => Counter::new(p),
        });
    }
}

/// A container, as the kubelet names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerKey {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

/// (namespace, pod name).
pub type PodKey = (String, String);

/// The window of one node: the node itself and its containers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeWindow {
    pub node: Series,
    pub containers: BTreeMap<ContainerKey, Series>,
}

/// Figures for one node or container, ready to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    pub nanocores: u64,
    pub memory_bytes: u64,
    pub window_ms: i64,
    pub at_ms: i64,
}

fn figures(s: &Series) -> Option<Figures> {
    let cpu = s.cpu?.rate()?;
    let mem = s.memory?;
    Some(Figures {
        nanocores: cpu.nanocores,
        memory_bytes: if mem.value.is_finite() && mem.value > 0.0 {
            mem.value as u64
        } else {
            0
        },
        window_ms: cpu.window_ms,
        at_ms: cpu.at_ms,
    })
}

impl NodeWindow {
    /// The window after a scrape of this node at `now_ms` (used for
    /// samples without a timestamp).
    pub fn update(&self, samples: &[Sample], now_ms: i64) -> NodeWindow {
        let mut next = NodeWindow {
            node: self.node,
            containers: BTreeMap::new(),
        };
        for s in samples {
            let p = Point {
                value: s.value,
                at_ms: s.timestamp_ms.unwrap_or(now_ms),
            };
            if !p.value.is_finite() {
                continue;
            }
            match s.name.as_str() {
                "node_cpu_usage_seconds_total" => next.node.cpu_point(p),
                "node_memory_working_set_bytes" => next.node.memory = Some(p),
                "container_cpu_usage_seconds_total" | "container_memory_working_set_bytes" => {
                    let (Some(namespace), Some(pod), Some(container)) =
                        (s.label("namespace"), s.label("pod"), s.label("container"))
                    else {
                        continue;
                    };
                    // The pod-level cgroup and the sandbox are not containers.
                    if container.is_empty() || container == "POD" {
                        continue;
                    }
                    let key = ContainerKey {
                        namespace: namespace.to_string(),
                        pod: pod.to_string(),
                        container: container.to_string(),
                    };
                    // (A container's CPU line carries its old counter forward;
                    // one whose CPU line is missing this time keeps none.)
                    let old = self.containers.get(&key).and_then(|old| old.cpu);
                    let series = next.containers.entry(key).or_default();
                    if s.name == "container_cpu_usage_seconds_total" {
                        series.cpu = Some(match old {
                            Some(c) => c.advance(p),
                            None => Counter::new(p),
                        });
                    } else {
                        series.memory = Some(p);
                    }
                }
                _ => {}
            }
        }
        next
    }

    /// The node's figures, once it has two CPU points and a memory figure.
    /// A node whose kubelet reports no CPU time and no memory at all is
    /// not measured (a kubelet that cannot read the root cgroup says 0),
    /// and is left out rather than served as idle.
    pub fn node_figures(&self) -> Option<Figures> {
        let f = figures(&self.node)?;
        let unmeasured = f.memory_bytes == 0 && self.node.cpu.is_some_and(|c| c.last.value == 0.0);
        (!unmeasured).then_some(f)
    }

    /// Every pod of this node with its containers' figures. A pod one of
    /// whose containers has no figures yet is left out (a partial sum
    /// would mislead an autoscaler).
    pub fn pods(&self) -> BTreeMap<PodKey, Vec<(String, Figures)>> {
        let mut pods: BTreeMap<PodKey, Option<Vec<(String, Figures)>>> = BTreeMap::new();
        for (key, series) in &self.containers {
            let entry = pods
                .entry((key.namespace.clone(), key.pod.clone()))
                .or_insert_with(|| Some(Vec::new()));
            match (entry.as_mut(), figures(series)) {
                (Some(list), Some(f)) => list.push((key.container.clone(), f)),
                _ => *entry = None,
            }
        }
        pods.into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom_text::parse;

    fn scrape(cpu: f64, mem: f64, c_cpu: f64, at: i64) -> Vec<Sample> {
        parse(&format!(
            "node_cpu_usage_seconds_total {cpu} {at}\n\
             node_memory_working_set_bytes {mem} {at}\n\
             container_cpu_usage_seconds_total{{container=\"app\",namespace=\"default\",pod=\"web\"}} {c_cpu} {at}\n\
             container_memory_working_set_bytes{{container=\"app\",namespace=\"default\",pod=\"web\"}} 1048576 {at}\n\
             container_cpu_usage_seconds_total{{container=\"\",namespace=\"default\",pod=\"web\"}} 99 {at}\n"
        ))
        .unwrap()
    }

    #[test]
    fn one_sample_is_not_a_rate() {
        let w = NodeWindow::default().update(&scrape(10.0, 5e8, 1.0, 1_000), 0);
        assert_eq!(w.node_figures(), None);
        assert!(w.pods().is_empty());
        assert_eq!(
            w.containers.len(),
            1,
            "the pod cgroup line is not a container"
        );
    }

    #[test]
    fn rates_over_the_window() {
        let w = NodeWindow::default().update(&scrape(10.0, 5e8, 1.0, 1_000), 0);
        // 15 s later: node used 3 core-seconds (0.2 cores), the container 0.75 (50m).
        let w = w.update(&scrape(13.0, 6e8, 1.75, 16_000), 0);
        let n = w.node_figures().unwrap();
        assert_eq!(n.nanocores, 200_000_000);
        assert_eq!(n.memory_bytes, 600_000_000);
        assert_eq!((n.window_ms, n.at_ms), (15_000, 16_000));
        let pods = w.pods();
        let c = &pods[&("default".to_string(), "web".to_string())];
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, "app");
        assert_eq!(c[0].1.nanocores, 50_000_000);
        assert_eq!(c[0].1.memory_bytes, 1_048_576);
        // A third scrape slides the window: only the last two count.
        let w = w.update(&scrape(14.0, 6e8, 1.75, 26_000), 0);
        assert_eq!(w.node_figures().unwrap().nanocores, 100_000_000);
        assert_eq!(
            w.pods()[&("default".into(), "web".into())][0].1.nanocores,
            0
        );
    }

    #[test]
    fn cached_samples_and_counter_resets() {
        let w = NodeWindow::default().update(&scrape(10.0, 5e8, 5.0, 1_000), 0);
        let w = w.update(&scrape(12.0, 5e8, 6.0, 11_000), 0);
        // The same timestamp again (the kubelet's cache): the window stays.
        let again = w.update(&scrape(12.0, 5e8, 6.0, 11_000), 0);
        assert_eq!(again.node_figures(), w.node_figures());
        // The container restarted: its counter went down, so no rate yet,
        // and its pod is left out rather than shown as idle.
        let restarted = w.update(&scrape(13.0, 5e8, 0.1, 21_000), 0);
        assert!(restarted.pods().is_empty());
        assert_eq!(restarted.node_figures().unwrap().nanocores, 100_000_000);
        let later = restarted.update(&scrape(14.0, 5e8, 0.6, 31_000), 0);
        assert_eq!(
            later.pods()[&("default".into(), "web".into())][0]
                .1
                .nanocores,
            50_000_000
        );
    }

    #[test]
    fn gone_containers_are_dropped_and_untimed_samples_use_the_scrape_time() {
        let w = NodeWindow::default().update(&scrape(1.0, 1.0, 1.0, 1_000), 0);
        let empty =
            parse("node_cpu_usage_seconds_total 2\nnode_memory_working_set_bytes 7\n").unwrap();
        let w = w.update(&empty, 3_000);
        assert!(w.containers.is_empty());
        let n = w.node_figures().unwrap();
        assert_eq!(
            (n.nanocores, n.window_ms, n.memory_bytes),
            (500_000_000, 2_000, 7)
        );
    }

    #[test]
    fn a_node_reported_as_all_zero_is_left_out() {
        let w = NodeWindow::default().update(&scrape(0.0, 0.0, 1.0, 1_000), 0);
        let w = w.update(&scrape(0.0, 0.0, 2.0, 11_000), 0);
        assert_eq!(w.node_figures(), None, "not measured is not idle");
        assert_eq!(w.pods().len(), 1, "its pods are still served");
    }

    #[test]
    fn a_pod_with_a_container_still_warming_up_is_left_out() {
        let text = |at: i64, second: bool| {
            let mut t = format!(
                "container_cpu_usage_seconds_total{{container=\"a\",namespace=\"n\",pod=\"p\"}} {} {at}\n\
                 container_memory_working_set_bytes{{container=\"a\",namespace=\"n\",pod=\"p\"}} 1 {at}\n\
                 container_memory_working_set_bytes{{container=\"b\",namespace=\"n\",pod=\"p\"}} 1 {at}\n",
                at as f64 / 1000.0
            );
            if second {
                t.push_str(&format!(
                    "container_cpu_usage_seconds_total{{container=\"b\",namespace=\"n\",pod=\"p\"}} 1 {at}\n"
                ));
            }
            parse(&t).unwrap()
        };
        let w = NodeWindow::default().update(&text(1_000, false), 0);
        let w = w.update(&text(2_000, true), 0);
        assert!(w.pods().is_empty(), "b has one CPU point only");
        let w = w.update(&text(3_000, true), 0);
        let pods = w.pods();
        let p = &pods[&("n".into(), "p".into())];
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].1.nanocores, 1_000_000_000);
        assert_eq!(p[1].1.nanocores, 0);
    }
}
