//! Containers and their tasks in one containerd namespace, for
//! `cairnctl containers [-k]`: the CRI labels name the pod, its namespace
//! and the container.

use std::collections::HashMap;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{ListContainersRequest, ListTasksRequest};
use containerd_client::types::v1::Status as TaskStatus;
use tonic::transport::Channel;
use tonic::Request;

use super::ContainerdError;

/// One container as `cairnctl containers` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub namespace: String,
    pub id: String,
    pub image: String,
    /// `<pod namespace>/<pod name>` for CRI containers, else empty.
    pub pod: String,
    /// The container's name in its pod (or `POD` for a sandbox), else the id.
    pub name: String,
    /// Task state: RUNNING, STOPPED, CREATED, PAUSED, or NONE without a task.
    pub state: String,
    pub pid: u32,
}

fn ns<T>(msg: T, namespace: &str) -> Request<T> {
    let mut r = Request::new(msg);
    if let Ok(v) = namespace.parse() {
        r.metadata_mut().insert("containerd-namespace", v);
    }
    r
}

fn state_name(status: i32) -> &'static str {
    match TaskStatus::try_from(status) {
        Ok(TaskStatus::Created) => "CREATED",
        Ok(TaskStatus::Running) => "RUNNING",
        Ok(TaskStatus::Stopped) => "STOPPED",
        Ok(TaskStatus::Paused) => "PAUSED",
        Ok(TaskStatus::Pausing) => "PAUSING",
        _ => "UNKNOWN",
    }
}

/// Names a container from its CRI labels.
fn describe(labels: &HashMap<String, String>, id: &str) -> (String, String) {
    let pod = match (
        labels.get("io.kubernetes.pod.namespace"),
        labels.get("io.kubernetes.pod.name"),
    ) {
        (Some(n), Some(p)) => format!("{n}/{p}"),
        _ => String::new(),
    };
    let name = match (
        labels.get("io.cri-containerd.kind").map(String::as_str),
        labels.get("io.kubernetes.container.name"),
    ) {
        (Some("sandbox"), _) => "POD".to_string(),
        (_, Some(c)) => c.clone(),
        _ => id.to_string(),
    };
    (pod, name)
}

/// Every container in `namespace` with its task's state, sorted by pod
/// and name.
pub async fn containers(
    channel: &Channel,
    namespace: &str,
) -> Result<Vec<ContainerInfo>, ContainerdError> {
    let list = ContainersClient::new(channel.clone())
        .list(ns(
            ListContainersRequest {
                filters: Vec::new(),
            },
            namespace,
        ))
        .await
        .map_err(ContainerdError::call("Containers.List"))?
        .into_inner()
        .containers;
    let tasks: HashMap<String, (i32, u32)> = TasksClient::new(channel.clone())
        .list(ns(
            ListTasksRequest {
                filter: String::new(),
            },
            namespace,
        ))
        .await
        .map_err(ContainerdError::call("Tasks.List"))?
        .into_inner()
        .tasks
        .into_iter()
        .map(|t| (t.id.clone(), (t.status, t.pid)))
        .collect();
    let mut out: Vec<ContainerInfo> = list
        .into_iter()
        .map(|c| {
            let (pod, name) = describe(&c.labels, &c.id);
            let (state, pid) = match tasks.get(&c.id) {
                Some((s, pid)) => (state_name(*s).to_string(), *pid),
                None => ("NONE".to_string(), 0),
            };
            ContainerInfo {
                namespace: namespace.to_string(),
                image: c.image,
                pod,
                name,
                state,
                pid,
                id: c.id,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.pod, &a.name, &a.id).cmp(&(&b.pod, &b.name, &b.id)));
    Ok(out)
}

/// The Containers RPC: this node's containerd, in the system namespace
/// or (`kubernetes`) in `k8s.io`.
pub async fn handle(kubernetes: bool) -> Result<api::machine::ContainersResponse, tonic::Status> {
    let namespace = if kubernetes {
        config::constants::k8s::CONTAINERD_NAMESPACE
    } else {
        super::SYSTEM_NAMESPACE
    };
    let socket = std::path::Path::new(config::constants::k8s::CONTAINERD_SOCKET);
    if !socket.exists() {
        return Err(tonic::Status::failed_precondition(
            "containerd is not running on this node (it starts once the node has a config and the payload is mounted)",
        ));
    }
    let unavailable = |e: ContainerdError| tonic::Status::unavailable(e.to_string());
    let channel = super::connect(socket).await.map_err(unavailable)?;
    let list = containers(&channel, namespace).await.map_err(unavailable)?;
    Ok(api::machine::ContainersResponse {
        containers: list
            .into_iter()
            .map(|c| api::machine::Container {
                namespace: c.namespace,
                id: c.id,
                image: c.image,
                pod: c.pod,
                name: c.name,
                state: c.state,
                pid: c.pid,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_labels_name_pod_and_container() {
        let labels = HashMap::from([
            (
                "io.kubernetes.pod.namespace".to_string(),
                "kube-system".to_string(),
            ),
            (
                "io.kubernetes.pod.name".to_string(),
                "kube-apiserver-cp1".to_string(),
            ),
            (
                "io.kubernetes.container.name".to_string(),
                "kube-apiserver".to_string(),
            ),
            (
                "io.cri-containerd.kind".to_string(),
                "container".to_string(),
            ),
        ]);
        assert_eq!(
            describe(&labels, "abc"),
            (
                "kube-system/kube-apiserver-cp1".into(),
                "kube-apiserver".into()
            )
        );
        let mut sandbox = labels.clone();
        sandbox.insert("io.cri-containerd.kind".into(), "sandbox".into());
        assert_eq!(describe(&sandbox, "abc").1, "POD");
        assert_eq!(
            describe(&HashMap::new(), "abc"),
            (String::new(), "abc".into())
        );
        assert_eq!(state_name(TaskStatus::Running as i32), "RUNNING");
    }
}
