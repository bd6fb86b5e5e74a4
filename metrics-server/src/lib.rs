//! cairn-metrics-server: the resource metrics API (`metrics.k8s.io/v1beta1`)
//! of a Cairn cluster, behind the API server's aggregation layer, so that
//! `kubectl top` and the Horizontal Pod Autoscaler work. It scrapes every
//! kubelet's `/metrics/resource` over verified TLS, keeps the last two
//! samples of each series, and answers NodeMetrics and PodMetrics from them.
//!
//! `discovery` is the other binary of this crate, `cairn-prometheus-sd`:
//! Prometheus's targets from the Kubernetes API (Debian's Prometheus is
//! built without Kubernetes service discovery).
//!
//! Modules: `prom_text` (the exposition format), `store` (the window and
//! rates), `kubelet` (the TLS client), `scraper` (the loop), `selector`
//! (label selectors), `api` (the API's answers), `authn` (the front proxy),
//! `authz` (SubjectAccessReview), `server` (HTTPS).

pub mod api;
pub mod authn;
pub mod authz;
pub mod discovery;
pub mod kubelet;
pub mod prom_text;
pub mod scraper;
pub mod selector;
pub mod server;
pub mod store;

/// A kube-rs client from a kubeconfig file, or the in-cluster / default
/// configuration when `None`.
pub async fn kube_client(
    kubeconfig: Option<&std::path::Path>,
) -> Result<kube::Client, kube::Error> {
    let config = match kubeconfig {
        Some(path) => {
            let kc =
                kube::config::Kubeconfig::read_from(path).map_err(kube::Error::InferKubeconfig)?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(kube::Error::InferKubeconfig)?
        }
        None => kube::Config::infer()
            .await
            .map_err(kube::Error::InferConfig)?,
    };
    kube::Client::try_from(config)
}
