//! May this user do this: delegated to the API server with a
//! SubjectAccessReview (our ServiceAccount holds `system:auth-delegator`),
//! so the cluster's RBAC decides, exactly as for built-in resources.
//! Decisions are cached for a few seconds (the autoscaler and `kubectl
//! top` ask in bursts), in a bounded map.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::api::{Attributes, GROUP, VERSION};
use crate::authn::User;

/// Entries kept at most; the cache is emptied when full.
const MAX_ENTRIES: usize = 4096;

/// The API server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Why not, when the authorizer said (RBAC usually says nothing).
    pub reason: String,
}

pub struct Authorizer {
    client: kube::Client,
    ttl: Duration,
    cache: Mutex<HashMap<(User, Attributes), (Decision, Instant)>>,
}

/// The review the API server is asked to decide.
pub fn review(user: &User, attrs: &Attributes) -> SubjectAccessReview {
    let (resource_attributes, non_resource_attributes) = match attrs {
        Attributes::NonResource { path } => (
            None,
            Some(NonResourceAttributes {
                path: Some(path.clone()),
                verb: Some("get".into()),
            }),
        ),
        Attributes::Resource {
            resource,
            verb,
            namespace,
            name,
        } => (
            Some(ResourceAttributes {
                group: Some(GROUP.into()),
                version: Some(VERSION.into()),
                resource: Some((*resource).into()),
                verb: Some((*verb).into()),
                namespace: namespace.clone(),
                name: name.clone(),
                ..Default::default()
            }),
            None,
        ),
    };
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.name.clone()),
            groups: Some(user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            resource_attributes,
            non_resource_attributes,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The message the API server itself would give for a refusal.
pub fn forbidden_message(user: &User, attrs: &Attributes, reason: &str) -> String {
    let why = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    match attrs {
        Attributes::NonResource { path } => {
            format!(
                "forbidden: User \"{}\" cannot get path \"{path}\"{why}",
                user.name
            )
        }
        Attributes::Resource {
            resource,
            verb,
            namespace,
            name,
        } => {
            let what = match name {
                Some(n) => format!("{resource}.{GROUP} \"{n}\""),
                None => format!("{resource}.{GROUP}"),
            };
            let scope = match namespace {
                Some(ns) => format!("in the namespace \"{ns}\""),
                None => "at the cluster scope".into(),
            };
            format!(
                "{what} is forbidden: User \"{}\" cannot {verb} resource \"{resource}\" in API group \"{GROUP}\" {scope}{why}",
                user.name
            )
        }
    }
}

impl Authorizer {
    pub fn new(client: kube::Client, ttl: Duration) -> Self {
        Authorizer {
            client,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, key: &(User, Attributes)) -> Option<Decision> {
        let cache = self.cache.lock().ok()?;
        let (d, at) = cache.get(key)?;
        (at.elapsed() < self.ttl).then(|| d.clone())
    }

    /// Asks the API server (or the cache).
    pub async fn decide(&self, user: &User, attrs: &Attributes) -> Result<Decision, kube::Error> {
        let key = (user.clone(), attrs.clone());
        if let Some(d) = self.cached(&key) {
            return Ok(d);
        }
        let reviews: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = reviews
            .create(&PostParams::default(), &review(user, attrs))
            .await?;
        let status = answer.status.unwrap_or_default();
        let d = Decision {
            allowed: status.allowed && !status.denied.unwrap_or(false),
            reason: status.reason.unwrap_or_default(),
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
            cache.insert(key, (d.clone(), Instant::now()));
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> User {
        User {
            name: "alice".into(),
            groups: vec!["dev".into()],
            extra: Default::default(),
        }
    }

    #[test]
    fn reviews_carry_the_group_version_and_scope() {
        let r = review(
            &alice(),
            &Attributes::Resource {
                resource: "pods",
                verb: "list",
                namespace: Some("web".into()),
                name: None,
            },
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["spec"]["user"], "alice");
        assert_eq!(v["spec"]["groups"][0], "dev");
        let ra = &v["spec"]["resourceAttributes"];
        assert_eq!(
            (ra["group"].as_str(), ra["version"].as_str()),
            (Some("metrics.k8s.io"), Some("v1beta1"))
        );
        assert_eq!(
            (
                ra["resource"].as_str(),
                ra["verb"].as_str(),
                ra["namespace"].as_str()
            ),
            (Some("pods"), Some("list"), Some("web"))
        );
        assert!(v["spec"].get("extra").is_none());
        let n = review(
            &alice(),
            &Attributes::NonResource {
                path: "/apis".into(),
            },
        );
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["spec"]["nonResourceAttributes"]["path"], "/apis");
    }

    #[test]
    fn refusals_read_like_the_api_servers() {
        let m = forbidden_message(
            &alice(),
            &Attributes::Resource {
                resource: "nodes",
                verb: "list",
                namespace: None,
                name: None,
            },
            "",
        );
        assert_eq!(
            m,
            "nodes.metrics.k8s.io is forbidden: User \"alice\" cannot list resource \"nodes\" in API group \"metrics.k8s.io\" at the cluster scope"
        );
    }
}
