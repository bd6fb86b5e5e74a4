//! Reaching the target nodes: connect to the endpoints, name the target
//! node in gRPC metadata so the endpoint's apid forwards the call one to
//! one, fan calls out over several nodes, and turn failures into advice.
//!
//! A node that is its own endpoint (no endpoints given, or the node is one
//! of them) is called directly, without metadata: apid then serves the call
//! itself.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use api::machine::machine_service_client::MachineServiceClient;
use api::machine::VersionResponse;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::client::{self, Credentials, Node};
use crate::global::GlobalArgs;

/// The metadata key naming the node a request is for (apid's contract).
pub const NODES_METADATA: &str = config::constants::metadata::NODES;

/// How a node is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Route {
    /// The node is the endpoint.
    Direct,
    /// Through the first of these endpoints that answers.
    Via(Vec<Node>),
}

/// A client for one target node.
#[derive(Clone)]
pub struct NodeClient {
    pub node: Node,
    machine: MachineServiceClient<Channel>,
    route: Route,
    credentials: Arc<Credentials>,
    /// The role in our client certificate (`os:admin`, ...), for messages.
    role: Option<String>,
    /// `sha256:<hex>` of the certificate the endpoint presented.
    pub fingerprint: Option<String>,
}

/// One node's outcome.
#[derive(Debug)]
pub struct NodeResult<R> {
    pub node: String,
    pub result: Result<R, String>,
}

/// A node we could not connect to, and why.
#[derive(Debug, Clone)]
pub struct Unreachable {
    pub node: String,
    pub message: String,
}

/// The clients for every target node, or why a node cannot be reached.
pub struct Session {
    pub clients: Vec<Result<NodeClient, Unreachable>>,
}

impl Session {
    /// Connects to every target node of `global` (concurrently).
    pub async fn open(global: &GlobalArgs) -> anyhow::Result<Session> {
        let target = global.target()?;
        let credentials = Arc::new(target.credentials);
        let role = client_role(&credentials);
        let routes: Vec<(Node, Route)> = target
            .nodes
            .into_iter()
            .map(|node| {
                let route = if target.endpoints.is_empty() || target.endpoints.contains(&node) {
                    Route::Direct
                } else {
                    Route::Via(target.endpoints.clone())
                };
                (node, route)
            })
            .collect();
        let opens = routes
            .into_iter()
            .map(|(node, route)| open_one(node, route, credentials.clone(), role.clone()));
        Ok(Session {
            clients: futures::future::join_all(opens).await,
        })
    }

    /// How many nodes the session targets.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Runs `f` for every node concurrently; nodes that could not be
    /// reached keep their connection error.
    pub async fn each<R, F, Fut>(&self, f: F) -> Vec<NodeResult<R>>
    where
        F: Fn(NodeClient) -> Fut,
        Fut: Future<Output = Result<R, String>>,
    {
        let calls = self.clients.iter().map(|c| {
            let call = c.as_ref().map(|c| (c.node.to_string(), f(c.clone())));
            async move {
                match call {
                    Ok((node, call)) => NodeResult {
                        node,
                        result: call.await,
                    },
                    Err(e) => NodeResult {
                        node: e.node.clone(),
                        result: Err(e.message.clone()),
                    },
                }
            }
        });
        futures::future::join_all(calls).await
    }

    /// The clients of the nodes whose call in `results` succeeded (for
    /// verbs that go on to wait for those nodes).
    pub fn accepted<R>(&self, results: &[NodeResult<R>]) -> Vec<NodeClient> {
        self.clients
            .iter()
            .flatten()
            .filter(|c| {
                results
                    .iter()
                    .any(|r| r.node == c.node.to_string() && r.result.is_ok())
            })
            .cloned()
            .collect()
    }

    /// Exactly one node, for verbs whose output cannot interleave (`read`).
    pub fn single(&self, verb: &str) -> anyhow::Result<NodeClient> {
        match self.clients.as_slice() {
            [Ok(c)] => Ok(c.clone()),
            [Err(e)] => anyhow::bail!("{}", e.message),
            _ => anyhow::bail!("{verb} works on one node at a time; pass a single node with -n"),
        }
    }
}

async fn open_one(
    node: Node,
    route: Route,
    credentials: Arc<Credentials>,
    role: Option<String>,
) -> Result<NodeClient, Unreachable> {
    match connect_route(&node, &route, &credentials).await {
        Ok(conn) => Ok(NodeClient {
            node,
            machine: conn.machine,
            route,
            credentials,
            role,
            fingerprint: conn.server_fingerprint,
        }),
        Err(message) => Err(Unreachable {
            node: node.to_string(),
            message,
        }),
    }
}

/// A connection for `node`: to the node itself, or to the first endpoint
/// that answers.
async fn connect_route(
    node: &Node,
    route: &Route,
    credentials: &Credentials,
) -> Result<client::Connection, String> {
    let endpoints = match route {
        Route::Direct => std::slice::from_ref(node),
        Route::Via(endpoints) => endpoints.as_slice(),
    };
    let mut failures = Vec::new();
    for endpoint in endpoints {
        match client::connect(endpoint, credentials).await {
            Ok(conn) => return Ok(conn),
            Err(e) => failures.push((endpoint, advise(endpoint, credentials, e.to_string()).await)),
        }
    }
    Err(match (route, failures.as_slice()) {
        (Route::Direct, [(_, message)]) => message.clone(),
        // Say which endpoint failed: the user named only the node.
        (Route::Via(_), [(endpoint, message)]) => {
            format!("through endpoint {endpoint}: {message}")
        }
        _ => {
            let each: Vec<String> = failures.iter().map(|(e, m)| format!("{e}: {m}")).collect();
            format!("no endpoint answered: {}", each.join("; "))
        }
    })
}

/// The first advice for a failed mTLS connection: a node that is still in
/// maintenance mode presents a self-signed certificate, which fails
/// verification like an unknown authority would; ask it insecurely before
/// blaming the cairnconfig. Nodes that did not answer at all are not asked
/// again.
async fn advise(endpoint: &Node, credentials: &Credentials, message: String) -> String {
    let unanswered = ["connection refused", "timed out"]
        .iter()
        .any(|m| message.starts_with(m));
    if !matches!(credentials, Credentials::Mutual { .. }) || unanswered {
        return message;
    }
    let probe = async {
        let mut conn = client::connect(endpoint, &Credentials::Insecure)
            .await
            .ok()?;
        conn.machine.version(()).await.ok().map(|r| r.into_inner())
    };
    match tokio::time::timeout(Duration::from_secs(5), probe).await {
        Ok(Some(v)) if v.maintenance => MAINTENANCE_ADVICE.to_string(),
        _ => message,
    }
}

/// What to do with a node in maintenance mode.
pub const MAINTENANCE_ADVICE: &str =
    "node is in maintenance mode: use --insecure to apply a config (cairnctl apply-config --insecure -f FILE)";

impl NodeClient {
    /// `message` as a request for this node: with the `nodes` metadata
    /// when an endpoint must forward it.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Route::Via(_) = self.route {
            if let Ok(value) = MetadataValue::try_from(self.node.to_string()) {
                request.metadata_mut().insert(NODES_METADATA, value);
            }
        }
        request
    }

    /// The generated client, to call with [`NodeClient::request`].
    pub fn machine(&self) -> MachineServiceClient<Channel> {
        self.machine.clone()
    }

    /// Calls `rpc` (its name is for messages) with `message`, explaining
    /// failures.
    pub async fn call<Req, Resp, F, Fut>(
        &self,
        rpc: &str,
        message: Req,
        f: F,
    ) -> Result<Resp, String>
    where
        F: FnOnce(MachineServiceClient<Channel>, Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        match f(self.machine(), self.request(message)).await {
            Ok(r) => Ok(r.into_inner()),
            // Without a client certificate, a node past maintenance mode
            // refuses with a TLS alert after the handshake, which the HTTP/2
            // client may report only as a canceled call: ask the node once
            // more, bare, for the alert itself.
            Err(s)
                if self.insecure()
                    && matches!(
                        s.code(),
                        Code::Cancelled | Code::Unknown | Code::Unavailable
                    ) =>
            {
                match client::refusal_alert(&self.node).await {
                    Some(why) => Err(format!("{}: {why}", self.node)),
                    None => Err(self.explain(&s, rpc)),
                }
            }
            Err(s) => Err(self.explain(&s, rpc)),
        }
    }

    /// A failed call as advice. `rpc` names the call.
    pub fn explain(&self, status: &Status, rpc: &str) -> String {
        explain_status(status, rpc, self.role.as_deref(), &self.node)
    }

    /// Version over a fresh connection with a short deadline: for waiting
    /// on a node that reboots (the old connection dies with it).
    pub async fn probe_version(&self, deadline: Duration) -> Result<VersionResponse, String> {
        let attempt = async {
            let conn = connect_route(&self.node, &self.route, &self.credentials).await?;
            let fresh = NodeClient {
                machine: conn.machine,
                ..self.clone()
            };
            fresh
                .call("Version", (), |mut m, r| async move { m.version(r).await })
                .await
        };
        tokio::time::timeout(deadline, attempt)
            .await
            .unwrap_or_else(|_| Err(format!("{} did not answer in time", self.node)))
    }

    /// The same node over a fresh connection whose calls have no time
    /// limit (uploads that take as long as the network needs).
    pub async fn without_call_timeout(&self) -> Result<NodeClient, String> {
        let endpoints = match &self.route {
            Route::Direct => std::slice::from_ref(&self.node),
            Route::Via(endpoints) => endpoints.as_slice(),
        };
        let mut last = String::new();
        for endpoint in endpoints {
            match client::connect_with_timeout(endpoint, &self.credentials, None).await {
                Ok(conn) => {
                    return Ok(NodeClient {
                        machine: conn.machine,
                        ..self.clone()
                    })
                }
                Err(e) => last = format!("{endpoint}: {e}"),
            }
        }
        Err(last)
    }

    /// Whether this client connects without certificates.
    pub fn insecure(&self) -> bool {
        matches!(
            *self.credentials,
            Credentials::Insecure | Credentials::Pinned(_)
        )
    }
}

/// A gRPC status as advice for the user; `rpc` names the call and `role`
/// is the client certificate's role, when known.
pub fn explain_status(status: &Status, rpc: &str, role: Option<&str>, node: &Node) -> String {
    let message = status.message();
    match status.code() {
        // apid's role check says "may not call" (or "carries no Cairn
        // role"); any other refusal is the node's own (a system image, an
        // unsigned upgrade) and its message is the advice.
        Code::PermissionDenied
            if !message.contains(" may not call ")
                && !message.contains("carries no Cairn role") =>
        {
            message.to_string()
        }
        Code::PermissionDenied => match role {
            Some(role) => format!(
                "your certificate's role {role} may not call {rpc}; use an admin cairnconfig"
            ),
            None => format!("this client may not call {rpc} ({message}); use an admin cairnconfig"),
        },
        Code::FailedPrecondition if message.contains("maintenance mode") => format!(
            "node is in maintenance mode: only version, apply-config and disks work there; \
             apply a config first (cairnctl apply-config --insecure -f FILE) ({message})"
        ),
        Code::Unauthenticated => format!(
            "the node did not accept this client ({message}): is this the right cairnconfig?"
        ),
        Code::Unimplemented => format!("{node} does not serve {rpc}: {message}"),
        Code::DeadlineExceeded => format!("{node} did not answer {rpc} in time"),
        // Transport failures carry their cause: the connection explains it.
        Code::Unavailable | Code::Unknown | Code::Cancelled => client::explain(status, node),
        // The server writes these for people (field paths, limits).
        _ => message.to_string(),
    }
}

/// The Organization of our client certificate: the API role.
fn client_role(credentials: &Credentials) -> Option<String> {
    let Credentials::Mutual { chain, .. } = credentials else {
        return None;
    };
    let (_, cert) = x509_parser::parse_x509_certificate(chain.first()?).ok()?;
    let role = cert
        .subject()
        .iter_organization()
        .find_map(|o| o.as_str().ok().map(str::to_string));
    role
}

/// Prints each failed node's error on stderr (prefixed with the node when
/// several are targeted) and returns the exit code: failure if any failed.
pub fn report_errors<R>(results: &[NodeResult<R>]) -> ExitCode {
    let several = results.len() > 1;
    let mut failed = false;
    for r in results {
        if let Err(e) = &r.result {
            failed = true;
            if several {
                eprintln!("error: {}: {e}", r.node);
            } else {
                eprintln!("error: {e}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The successful results, with their node.
pub fn successes<R>(results: &[NodeResult<R>]) -> impl Iterator<Item = (&str, &R)> {
    results
        .iter()
        .filter_map(|r| r.result.as_ref().ok().map(|v| (r.node.as_str(), v)))
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
