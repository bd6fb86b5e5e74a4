//! `cairnctl dashboard --web`: the cluster's Web UI (the `cairn-webui`
//! add-on) on this machine's loopback, through the Kubernetes API's port
//! forwarding, with no NodePort and nothing exposed beyond 127.0.0.1.
//!
//! The admin kubeconfig comes from the node, as `cairnctl kubeconfig` gets
//! it (or from `--kubeconfig`). Every connection to 127.0.0.1:<port> is
//! forwarded to a ready Pod behind Service kube-system/cairn-webui (kube-rs
//! `portforward`, a WebSocket to the API server). It runs until Ctrl-C.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Endpoints, Pod};
use kube::api::Api;

use crate::global::GlobalArgs;

/// The Web UI's Service.
pub const NAMESPACE: &str = "kube-system";
pub const SERVICE: &str = "cairn-webui";

/// A Pod to forward to and its port, from the Service's Endpoints: the
/// first ready address with a Pod behind it, at the `https` port.
pub fn backend(ep: &Endpoints) -> Option<(String, u16)> {
    ep.subsets.iter().flatten().find_map(|s| {
        let port = s
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some("https"))
            .or_else(|| s.ports.iter().flatten().next())?
            .port;
        let pod = s.addresses.iter().flatten().find_map(|a| {
            a.target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))?
                .name
                .clone()
        })?;
        Some((pod, u16::try_from(port).ok()?))
    })
}

/// What the user reads once the forward is up.
pub fn instructions(port: u16) -> String {
    format!(
        "\
The Web UI is at https://127.0.0.1:{port}/ (Ctrl-C stops the forward).

Its certificate is issued by the cluster CA; trust that CA in your browser
or accept the warning. The CA is in every namespace:
  kubectl -n kube-system get configmap kube-root-ca.crt -o jsonpath='{{.data.ca\\.crt}}' > cluster-ca.crt

Sign in with a bearer token. The admin kubeconfig holds a client
certificate, which is not a token; make a ServiceAccount for yourself and
use its token (Kubernetes 1.20 puts it in a Secret of the account):
  kubectl -n kube-system create serviceaccount dashboard-admin
  kubectl create clusterrolebinding dashboard-admin --clusterrole=cluster-admin \\
    --serviceaccount=kube-system:dashboard-admin
  kubectl -n kube-system get secret \\
    \"$(kubectl -n kube-system get serviceaccount dashboard-admin -o jsonpath='{{.secrets[0].name}}')\" \\
    -o jsonpath='{{.data.token}}' | base64 -d
For a read-only view, bind --clusterrole=view instead of cluster-admin."
    )
}

/// Forwards one local connection to `pod`:`port`.
async fn forward(
    client: kube::Client,
    pod: String,
    port: u16,
    mut local: tokio::net::TcpStream,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let mut pf = pods
        .portforward(&pod, &[port])
        .await
        .with_context(|| format!("port-forwarding to pod {NAMESPACE}/{pod}"))?;
    let mut remote = pf
        .take_stream(port)
        .with_context(|| format!("no stream for port {port}"))?;
    tokio::io::copy_bidirectional(&mut local, &mut remote).await?;
    drop(remote);
    pf.join().await.ok();
    Ok(())
}

pub async fn run(
    port: u16,
    kubeconfig: Option<&Path>,
    global: &GlobalArgs,
) -> anyhow::Result<ExitCode> {
    let cluster = crate::commands::kubeconfig::client(kubeconfig, global).await?;
    let client = cluster.client.clone();
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), NAMESPACE);
    let ep = match endpoints.get(SERVICE).await {
        Ok(ep) => ep,
        Err(kube::Error::Api(s)) if s.code == 404 => anyhow::bail!(
            "Service {NAMESPACE}/{SERVICE} is not there: is the Web UI add-on on (cluster.addons.dashboard.enabled)?"
        ),
        Err(kube::Error::Api(s)) => anyhow::bail!(
            "reading Service {NAMESPACE}/{SERVICE}: the API server answered {}: {}",
            s.code,
            s.message
        ),
        Err(e) => return Err(cluster.unreachable(e)),
    };
    let (pod, pod_port) = backend(&ep).with_context(|| {
        format!("no ready Pod behind Service {NAMESPACE}/{SERVICE}: kubectl -n {NAMESPACE} get pods -l k8s-app={SERVICE}")
    })?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .with_context(|| {
            format!("listening on 127.0.0.1:{port} (another program there? try --port)")
        })?;
    let port = listener.local_addr()?.port();
    println!("{}", instructions(port));
    eprintln!("forwarding 127.0.0.1:{port} to pod {NAMESPACE}/{pod} port {pod_port}");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                eprintln!("stopped");
                return Ok(ExitCode::SUCCESS);
            }
            accepted = listener.accept() => {
                let (conn, from) = accepted.context("accepting a connection")?;
                let (client, pod) = (client.clone(), pod.clone());
                tokio::spawn(async move {
                    if let Err(e) = forward(client, pod, pod_port, conn).await {
                        eprintln!("connection from {from}: {e:#}");
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_is_a_ready_pod_at_the_https_port() {
        let ep: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cairn-webui", "namespace": "kube-system"},
            "subsets": [{
                "notReadyAddresses": [{"ip": "10.244.0.9", "targetRef": {"kind": "Pod", "name": "starting"}}],
                "addresses": [{"ip": "10.244.0.7", "targetRef": {"kind": "Pod", "name": "cairn-webui-abc"}}],
                "ports": [{"name": "metrics", "port": 9000}, {"name": "https", "port": 8443}]
            }]
        }))
        .unwrap();
        assert_eq!(backend(&ep), Some(("cairn-webui-abc".into(), 8443)));
        let none: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cairn-webui"},
            "subsets": [{"notReadyAddresses": [{"ip": "10.244.0.9", "targetRef": {"kind": "Pod", "name": "starting"}}],
                         "ports": [{"name": "https", "port": 8443}]}]
        }))
        .unwrap();
        assert_eq!(backend(&none), None);
    }

    #[test]
    fn the_instructions_name_the_url_and_how_to_get_a_token() {
        let text = instructions(8443);
        assert!(text.contains("https://127.0.0.1:8443/"));
        assert!(text.contains("not a token"));
        assert!(text.contains("kubectl -n kube-system create serviceaccount dashboard-admin"));
        assert!(text.contains("{.data.token}"), "{text}");
        assert!(text.contains("{.data.ca\\.crt}"), "{text}");
    }
}
