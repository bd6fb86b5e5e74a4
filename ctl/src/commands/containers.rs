//! `cairnctl containers [-k]`: containerd's containers on nodes, in the
//! system namespace or (`-k`) Kubernetes' `k8s.io` namespace.

use std::process::ExitCode;

use api::machine::{ContainersRequest, ContainersResponse};
use serde::Serialize;

use crate::global::GlobalArgs;
use crate::output::{self, Format, Table};
use crate::session::{self, Session};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  cairnctl -n 10.5.0.2 containers -k
  cairnctl -n 10.5.0.2 containers -k -o json

With -k the pods and containers the kubelet runs (POD is a pod's sandbox);
`cairnctl logs -k namespace/pod/container` prints a container's log.")]
pub struct Args {
    /// Kubernetes containers (containerd namespace k8s.io) instead of the
    /// system ones.
    #[arg(short = 'k', long)]
    pub kubernetes: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    pub node: String,
    pub namespace: String,
    pub pod: String,
    pub name: String,
    pub image: String,
    pub state: String,
    pub pid: u32,
    pub id: String,
}

pub fn records(node: &str, r: &ContainersResponse) -> Vec<ContainerRecord> {
    r.containers
        .iter()
        .map(|c| ContainerRecord {
            node: node.to_string(),
            namespace: c.namespace.clone(),
            pod: c.pod.clone(),
            name: c.name.clone(),
            image: c.image.clone(),
            state: c.state.clone(),
            pid: c.pid,
            id: c.id.clone(),
        })
        .collect()
}

pub fn table(records: &[ContainerRecord]) -> Table {
    let mut t = Table::new([
        "NODE",
        "NAMESPACE",
        "POD",
        "CONTAINER",
        "IMAGE",
        "STATE",
        "PID",
    ]);
    for r in records {
        t.row([
            r.node.clone(),
            r.namespace.clone(),
            if r.pod.is_empty() {
                "-".to_string()
            } else {
                r.pod.clone()
            },
            r.name.clone(),
            r.image.clone(),
            r.state.clone(),
            if r.pid > 0 {
                r.pid.to_string()
            } else {
                "-".to_string()
            },
        ]);
    }
    t
}

pub async fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(global).await?;
    let kubernetes = args.kubernetes;
    let results = session
        .each(|c| async move {
            c.call(
                "Containers",
                ContainersRequest { kubernetes },
                |mut m, r| async move { m.containers(r).await },
            )
            .await
        })
        .await;
    let all: Vec<ContainerRecord> = session::successes(&results)
        .flat_map(|(node, r)| records(node, r))
        .collect();
    output::print_records(args.output, || table(&all), &all)?;
    Ok(session::report_errors(&results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::machine::Container;

    #[test]
    fn pods_and_sandboxes() {
        let r = ContainersResponse {
            containers: vec![
                Container {
                    namespace: "k8s.io".into(),
                    id: "abc".into(),
                    image: "cairn.local/pause:v1.20.2".into(),
                    pod: "kube-system/kube-apiserver-cp1".into(),
                    name: "POD".into(),
                    state: "RUNNING".into(),
                    pid: 42,
                },
                Container {
                    namespace: "k8s.io".into(),
                    id: "def".into(),
                    name: "def".into(),
                    state: "NONE".into(),
                    ..Default::default()
                },
            ],
        };
        let recs = records("10.5.0.2", &r);
        assert_eq!(recs[0].pod, "kube-system/kube-apiserver-cp1");
        let text = table(&recs).render();
        assert!(
            text.contains("POD") && text.contains("42") && text.contains(" - "),
            "{text}"
        );
    }
}
