//! Everything asked of the API server, always with the signed-in user's
//! client: lists for the pages, SelfSubjectAccessReviews for the buttons,
//! and the actions. Errors keep the API server's own message, which is
//! what the user is shown.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Node, Pod, Secret, Service};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams,
    PostParams,
};
use kube::Client;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The API server answered with a Status: its message is for the user.
    #[error("{0}")]
    Refused(String),
    #[error("the API server could not be reached: {0}")]
    Unreachable(String),
    #[error("{0}")]
    BadInput(String),
}

impl ClusterError {
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ClusterError::Refused(m) if m.starts_with("Unauthorized"))
    }
}

impl From<kube::Error> for ClusterError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) if !status.message.is_empty() => {
                ClusterError::Refused(status.message)
            }
            kube::Error::Api(status) => {
                ClusterError::Refused(format!("{} ({})", status.reason, status.code))
            }
            other => ClusterError::Unreachable(other.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, ClusterError>;

/// What the overview shows.
pub struct Overview {
    pub nodes: Result<Vec<Node>>,
    pub events: Result<Vec<Event>>,
    /// The API server's /readyz?verbose.
    pub health: Result<String>,
    pub can_cordon: Permission,
    /// Current usage per node (metrics API).
    pub usage: Result<std::collections::BTreeMap<String, crate::usage::Usage>>,
}

/// What a namespace's page shows.
pub struct Workloads {
    pub deployments: Result<Vec<Deployment>>,
    pub daemonsets: Result<Vec<DaemonSet>>,
    pub statefulsets: Result<Vec<StatefulSet>>,
    pub jobs: Result<Vec<Job>>,
    pub pods: Result<Vec<Pod>>,
    pub services: Result<Vec<Service>>,
    pub configmaps: Result<Vec<ConfigMap>>,
    /// Names, types and key names only: values never leave this module.
    pub secrets: Result<Vec<SecretSummary>>,
    pub can_scale: Permission,
    pub can_restart: Permission,
    pub can_delete_pods: Permission,
    /// Current usage per Pod (metrics API).
    pub pod_usage: Result<crate::usage::PodUsage>,
}

pub struct SecretSummary {
    pub name: String,
    pub kind: String,
    pub keys: Vec<String>,
    pub created: Option<i64>,
}

/// Ok, or why not (for the button's title).
pub type Permission = std::result::Result<(), String>;

async fn list<K>(api: Api<K>) -> Result<Vec<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api.list(&ListParams::default()).await?.items)
}

/// May the user `verb` `resource` (`group`, `subresource`) in `namespace`?
pub async fn may(
    client: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    subresource: Option<&str>,
    namespace: Option<&str>,
) -> Permission {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource: subresource.map(Into::into),
                namespace: namespace.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let what = match subresource {
        Some(s) => format!("{resource}/{s}"),
        None => resource.to_string(),
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    match api.create(&PostParams::default(), &review).await {
        Ok(r) => match r.status {
            Some(s) if s.allowed => Ok(()),
            _ => Err(format!("RBAC: you may not {verb} {what}")),
        },
        Err(e) => Err(format!(
            "cannot ask the API server: {}",
            ClusterError::from(e)
        )),
    }
}

/// Checks that the token is accepted at all (any authenticated user may
/// create a SelfSubjectAccessReview).
pub async fn check_token(client: &Client) -> Result<()> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            non_resource_attributes: Some(Default::default()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &review).await?;
    Ok(())
}

pub async fn namespaces(client: &Client) -> Result<Vec<String>> {
    let mut names: Vec<String> = list(Api::<Namespace>::all(client.clone()))
        .await?
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    names.sort();
    Ok(names)
}

/// Newest first, at most `n`.
fn newest_events(mut events: Vec<Event>, n: usize) -> Vec<Event> {
    let when = |e: &Event| {
        e.last_timestamp
            .as_ref()
            .or(e.first_timestamp.as_ref())
            .map(|t| t.0.as_second())
            .or_else(|| {
                e.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second())
            })
            .unwrap_or(0)
    };
    events.sort_by_key(|e| std::cmp::Reverse(when(e)));
    events.truncate(n);
    events
}

pub async fn overview(client: &Client) -> Overview {
    let health = async {
        let request = http::Request::get("/readyz?verbose")
            .body(Vec::new())
            .map_err(|e| ClusterError::BadInput(e.to_string()))?;
        Ok::<_, ClusterError>(client.request_text(request).await?)
    };
    let (nodes, events, health, can_cordon, usage) = tokio::join!(
        list(Api::<Node>::all(client.clone())),
        list(Api::<Event>::all(client.clone())),
        health,
        may(client, "patch", "", "nodes", None, None),
        crate::usage::nodes(client),
    );
    Overview {
        nodes,
        events: events.map(|e| newest_events(e, 30)),
        health,
        can_cordon,
        usage,
    }
}

pub async fn workloads(client: &Client, ns: &str) -> Workloads {
    let c = || client.clone();
    let secrets = async {
        let all = list(Api::<Secret>::namespaced(c(), ns)).await?;
        Ok(all
            .into_iter()
            .map(|s| SecretSummary {
                name: s.metadata.name.unwrap_or_default(),
                kind: s.type_.unwrap_or_default(),
                keys: s.data.map(|d| d.into_keys().collect()).unwrap_or_default(),
                created: s.metadata.creation_timestamp.map(|t| t.0.as_second()),
            })
            .collect())
    };
    let (deployments, daemonsets, statefulsets, jobs, pods, services, configmaps, secrets) = tokio::join!(
        list(Api::<Deployment>::namespaced(c(), ns)),
        list(Api::<DaemonSet>::namespaced(c(), ns)),
        list(Api::<StatefulSet>::namespaced(c(), ns)),
        list(Api::<Job>::namespaced(c(), ns)),
        list(Api::<Pod>::namespaced(c(), ns)),
        list(Api::<Service>::namespaced(c(), ns)),
        list(Api::<ConfigMap>::namespaced(c(), ns)),
        secrets,
    );
    let (can_scale, can_restart, can_delete_pods, pod_usage) = tokio::join!(
        may(
            client,
            "patch",
            "apps",
            "deployments",
            Some("scale"),
            Some(ns)
        ),
        may(client, "patch", "apps", "deployments", None, Some(ns)),
        may(client, "delete", "", "pods", None, Some(ns)),
        crate::usage::pods(client, ns),
    );
    Workloads {
        deployments,
        daemonsets,
        statefulsets,
        jobs,
        pods,
        services,
        configmaps,
        secrets,
        can_scale,
        can_restart,
        can_delete_pods,
        pod_usage,
    }
}

pub struct PodPage {
    pub pod: Result<Pod>,
    pub events: Result<Vec<Event>>,
    pub can_delete: Permission,
    /// Current usage per container (metrics API).
    pub usage: Result<Vec<(String, crate::usage::Usage)>>,
    /// CPU and memory over the last hour (Prometheus).
    pub history: Result<(Vec<crate::usage::Series>, Vec<crate::usage::Series>)>,
}

pub async fn pod(client: &Client, ns: &str, name: &str, now: i64) -> PodPage {
    let events_api: Api<Event> = Api::namespaced(client.clone(), ns);
    let selector = format!("involvedObject.kind=Pod,involvedObject.name={name}");
    let events = async {
        Ok::<_, ClusterError>(
            events_api
                .list(&ListParams::default().fields(&selector))
                .await?
                .items,
        )
    };
    let (pod, events, can_delete, usage, history) = tokio::join!(
        async {
            Ok::<_, ClusterError>(Api::<Pod>::namespaced(client.clone(), ns).get(name).await?)
        },
        events,
        may(client, "delete", "", "pods", None, Some(ns)),
        crate::usage::pod(client, ns, name),
        crate::usage::pod_history(client, ns, name, now),
    );
    PodPage {
        pod,
        events: events.map(|e| newest_events(e, 50)),
        can_delete,
        usage,
        history,
    }
}

/// The last `lines` of a container's log.
pub async fn pod_log(
    client: &Client,
    ns: &str,
    name: &str,
    container: Option<String>,
    lines: i64,
) -> Result<String> {
    let params = LogParams {
        container,
        tail_lines: Some(lines),
        ..Default::default()
    };
    Ok(Api::<Pod>::namespaced(client.clone(), ns)
        .logs(name, &params)
        .await?)
}

pub async fn scale(client: &Client, ns: &str, name: &str, replicas: i32) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    api.patch_scale(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
    )
    .await?;
    Ok(())
}

/// What `kubectl rollout restart` does: a new annotation on the template.
pub async fn restart(client: &Client, ns: &str, name: &str, now: &str) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let patch = json!({ "spec": { "template": { "metadata": { "annotations": {
        "kubectl.kubernetes.io/restartedAt": now
    }}}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

pub async fn delete_pod(client: &Client, ns: &str, name: &str) -> Result<()> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .delete(name, &DeleteParams::default())
        .await?;
    Ok(())
}

pub async fn cordon(client: &Client, name: &str, unschedulable: bool) -> Result<()> {
    let patch = json!({ "spec": { "unschedulable": unschedulable } });
    Api::<Node>::all(client.clone())
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

/// The kinds whose YAML can be viewed and edited (Secrets are not: their
/// values would be on the page).
pub fn kind(name: &str) -> Option<(ApiResource, bool)> {
    fn ar<K: k8s_openapi::Resource + k8s_openapi::Metadata>() -> ApiResource {
        ApiResource {
            group: K::GROUP.into(),
            version: K::VERSION.into(),
            api_version: K::API_VERSION.into(),
            kind: K::KIND.into(),
            plural: K::URL_PATH_SEGMENT.into(),
        }
    }
    // (resource, namespaced)
    Some(match name {
        "deployments" => (ar::<Deployment>(), true),
        "daemonsets" => (ar::<DaemonSet>(), true),
        "statefulsets" => (ar::<StatefulSet>(), true),
        "jobs" => (ar::<Job>(), true),
        "pods" => (ar::<Pod>(), true),
        "services" => (ar::<Service>(), true),
        "configmaps" => (ar::<ConfigMap>(), true),
        "nodes" => (ar::<Node>(), false),
        _ => return None,
    })
}

fn dynamic(client: &Client, kind_name: &str, ns: &str) -> Result<Api<DynamicObject>> {
    let (ar, namespaced) = kind(kind_name)
        .ok_or_else(|| ClusterError::BadInput(format!("unknown kind {kind_name}")))?;
    Ok(if namespaced {
        Api::namespaced_with(client.clone(), ns, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    })
}

/// A resource as YAML, without managedFields (noise for a person).
pub async fn yaml(client: &Client, kind_name: &str, ns: &str, name: &str) -> Result<String> {
    let mut obj = dynamic(client, kind_name, ns)?.get(name).await?;
    obj.metadata.managed_fields = None;
    serde_yaml::to_string(&obj).map_err(|e| ClusterError::BadInput(e.to_string()))
}

/// Replaces the resource with `text`: always a server-side dry run first;
/// then, unless `dry_run`, the real write. Returns what the server made.
pub async fn apply(
    client: &Client,
    kind_name: &str,
    ns: &str,
    name: &str,
    text: &str,
    dry_run: bool,
) -> Result<String> {
    let api = dynamic(client, kind_name, ns)?;
    let obj: DynamicObject = serde_yaml::from_str(text)
        .map_err(|e| ClusterError::BadInput(format!("the YAML does not parse: {e}")))?;
    if obj.metadata.name.as_deref() != Some(name) {
        return Err(ClusterError::BadInput(format!(
            "metadata.name must stay {name}"
        )));
    }
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let mut result = api.replace(name, &dry, &obj).await?;
    if !dry_run {
        result = api.replace(name, &PostParams::default(), &obj).await?;
    }
    result.metadata.managed_fields = None;
    serde_yaml::to_string(&result).map_err(|e| ClusterError::BadInput(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_their_api_paths_and_secrets_are_not_among_them() {
        let (d, namespaced) = kind("deployments").unwrap();
        assert_eq!(
            (d.api_version.as_str(), d.plural.as_str(), namespaced),
            ("apps/v1", "deployments", true)
        );
        assert_eq!(kind("nodes").unwrap().0.api_version, "v1");
        assert!(!kind("nodes").unwrap().1);
        assert!(kind("secrets").is_none());
    }

    #[test]
    fn api_refusals_keep_the_servers_message() {
        let status = kube::core::Status::failure(
            "deployments.apps \"web\" is forbidden: User \"viewer\" cannot patch resource",
            "Forbidden",
        )
        .with_code(403);
        let e = ClusterError::from(kube::Error::Api(Box::new(status)));
        assert_eq!(
            e.to_string(),
            "deployments.apps \"web\" is forbidden: User \"viewer\" cannot patch resource"
        );
    }
}
