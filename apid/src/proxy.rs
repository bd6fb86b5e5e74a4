//! apid's request path: every call is authorized with the role table, then
//! forwarded as it is (bytes, not decoded messages; streams included)
//! either to machined's unix socket with the caller's role in metadata, or
//! to the node that `nodes` metadata names. Errors become gRPC statuses in
//! one place, [`to_status`].
//!
//! Forwarding between nodes, and why it is safe:
//! - apid forwards with its own client certificate, whose Organization is
//!   `os:impersonator`, and names the original caller's role in the
//!   `x-cairn-role` metadata. The receiving apid believes that metadata
//!   ONLY from a peer presenting an `os:impersonator` certificate signed by
//!   the OS CA; from anyone else it is overwritten with the role of their
//!   own certificate. An impersonator request without a role is refused.
//! - Both apids check the role table, so a node never does for a forwarded
//!   caller what it would not do for a direct one.
//! - The role forwarded is the one the caller's certificate names, never
//!   the admin role `machine.features.rbac: false` grants on the first
//!   node; the receiving node applies its own `rbac` setting to it.
//! - `nodes` is removed when forwarding, and a request from an
//!   impersonator that still names `nodes` is refused: a call crosses at
//!   most one hop, so no loop can form.
//! - apid forwards only to members of the cluster (see `members`), so no
//!   caller can make it connect to other addresses or ports.
//! - Consequence: anyone holding a node's forwarding certificate and key
//!   can act with any role on every node of the cluster. They live only in
//!   apid's memory and in machined's 0600 settings file on each control
//!   plane.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue};
use tonic::body::Body;
use tonic::transport::Channel;
use tonic::Status;
use tower::{Service, ServiceExt};

use crate::authz::{self, Role, Rpc};
use crate::gate::{Full, Gate, Ticket};
use crate::limit::{self, Refusal, RequestBody, Tripwire};
use crate::listener::ConnInfo;
use crate::members::{Members, NotAMember};
use crate::peers::{NodeAddr, PeerError, Peers};
use crate::settings::{Current, Trust};
use crate::tls::Peer;
use config::apid::ApidMode;
use config::constants::metadata;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("unknown method {0}")]
    UnknownMethod(String),
    #[error("this connection was made under earlier settings (before leaving maintenance mode or a CA change); reconnect")]
    StaleConnection,
    #[error("node is in maintenance mode: apply a config first ({0} is served once the node has a machine config, with client certificates)")]
    Maintenance(Rpc),
    #[error("node is in maintenance mode: apply a config first (it cannot forward calls to other nodes until then)")]
    MaintenanceForward,
    #[error("a client certificate signed by the cluster's OS CA is required")]
    NoCertificate,
    #[error("certificate {name:?} carries no Cairn role: its Organization must be os:admin, os:operator or os:reader")]
    NoRole { name: String },
    #[error("role {} may not call {rpc}: it needs {} or higher", role.organization(), authz::min_role(*rpc).organization())]
    Denied { role: Role, rpc: Rpc },
    #[error(
        "{node} forwarded a request that names nodes again; apid forwards a call at most once"
    )]
    ForwardedTwice { node: String },
    #[error(
        "{node} forwarded a request without the caller's role ({})",
        metadata::ROLE
    )]
    ForwardedWithoutRole { node: String },
    #[error("the nodes metadata names {0} nodes; apid forwards each call to one node (cairnctl -n a,b,c sends one call per node)")]
    SeveralNodes(usize),
    #[error("the nodes metadata: {0}")]
    BadNode(PeerError),
    #[error("cannot forward to {node}: {error}")]
    NoForwarding { node: String, error: PeerError },
    #[error(transparent)]
    NotAMember(#[from] NotAMember),
    #[error("apid cannot reach machined: {0}")]
    MachinedUnreachable(String),
    #[error("cannot reach the apid of {node}: {error}")]
    NodeUnreachable { node: String, error: String },
    #[error("{0}")]
    TooLarge(String),
    #[error("{}", too_many_streams(*.0))]
    TooManyStreams(Full),
    #[error("{0}")]
    Idle(String),
    #[error("{upstream} did not answer {rpc} within {} s", after.as_secs())]
    NoAnswer {
        upstream: String,
        rpc: Rpc,
        after: std::time::Duration,
    },
}

impl From<Refusal> for ProxyError {
    fn from(r: Refusal) -> ProxyError {
        match r {
            Refusal::TooLarge(m) => ProxyError::TooLarge(m),
            Refusal::Idle(m) => ProxyError::Idle(m),
        }
    }
}

fn too_many_streams(full: Full) -> String {
    match full {
        Full::Source => format!(
            "this client already has {} streams open (logs -f, watches, file reads, uploads); close one and retry",
            limit::STREAMS_PER_SOURCE
        ),
        Full::Total => format!(
            "the node already serves {} streams (logs -f, watches, file reads, uploads); retry later",
            limit::STREAMS
        ),
    }
}

/// The one place apid's errors become gRPC statuses.
pub fn to_status(e: &ProxyError) -> Status {
    let msg = e.to_string();
    match e {
        ProxyError::UnknownMethod(_) => Status::unimplemented(msg),
        ProxyError::StaleConnection | ProxyError::NoCertificate => Status::unauthenticated(msg),
        ProxyError::Maintenance(_)
        | ProxyError::MaintenanceForward
        | ProxyError::NoForwarding { .. } => Status::failed_precondition(msg),
        ProxyError::NoRole { .. }
        | ProxyError::Denied { .. }
        | ProxyError::ForwardedWithoutRole { .. } => Status::permission_denied(msg),
        ProxyError::ForwardedTwice { .. }
        | ProxyError::SeveralNodes(_)
        | ProxyError::BadNode(_) => Status::invalid_argument(msg),
        ProxyError::MachinedUnreachable(_) | ProxyError::NodeUnreachable { .. } => {
            Status::unavailable(msg)
        }
        ProxyError::NotAMember(_) => Status::not_found(msg),
        ProxyError::TooLarge(_) | ProxyError::TooManyStreams(_) => Status::resource_exhausted(msg),
        ProxyError::Idle(_) | ProxyError::NoAnswer { .. } => Status::deadline_exceeded(msg),
    }
}

/// Where an authorized call goes, and the role it carries there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// machined on this node; `None` in maintenance mode (no caller role).
    Machined { role: Option<Role> },
    /// Another node's apid, with the role the caller's certificate names
    /// (`None`: it names none). Never the role `rbac: false` grants here:
    /// the receiving node decides by its own setting, so one node's
    /// `rbac: false` does not make a reader an admin everywhere.
    Node { node: NodeAddr, role: Option<Role> },
}

/// The `nodes` metadata: none, or exactly one node.
fn target_node(headers: &HeaderMap) -> Result<Option<NodeAddr>, ProxyError> {
    let names: Vec<&str> = headers
        .get_all(metadata::NODES)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    match names.as_slice() {
        [] => Ok(None),
        [one] => NodeAddr::parse(one).map(Some).map_err(ProxyError::BadNode),
        many => Err(ProxyError::SeveralNodes(many.len())),
    }
}

/// Decides who may call `rpc` and where it goes. Pure, so the whole
/// policy is unit-tested without sockets.
/// `rbac` false (`machine.features.rbac: false`) makes every client with a
/// certificate from the OS CA an admin; `members` are the nodes a call may
/// be forwarded to.
pub fn decide(
    rpc: Rpc,
    conn: &ConnInfo,
    now: &Trust,
    rbac: bool,
    members: &Members,
    headers: &HeaderMap,
) -> Result<Route, ProxyError> {
    if conn.trust != *now {
        return Err(ProxyError::StaleConnection);
    }
    let node = target_node(headers)?;
    if now.mode == ApidMode::Maintenance {
        if !authz::served_in_maintenance(rpc) {
            return Err(ProxyError::Maintenance(rpc));
        }
        if node.is_some() {
            return Err(ProxyError::MaintenanceForward);
        }
        return Ok(Route::Machined { role: None });
    }
    // The role the caller's certificate (or the forwarding peer) vouches
    // for, and the role it has here.
    let (certified, role) = match conn.peer.as_ref() {
        Peer::Anonymous => return Err(ProxyError::NoCertificate),
        Peer::Client { role, .. } if !rbac => (*role, Role::Admin),
        Peer::Client {
            role: Some(role), ..
        } => (Some(*role), *role),
        Peer::Client { name, role: None } => return Err(ProxyError::NoRole { name: name.clone() }),
        Peer::Impersonator { name } => {
            if node.is_some() {
                return Err(ProxyError::ForwardedTwice { node: name.clone() });
            }
            let forwarded = headers
                .get(metadata::ROLE)
                .and_then(|v| v.to_str().ok())
                .and_then(Role::from_organization);
            match forwarded {
                // This node grants any certified caller admin.
                _ if !rbac => (forwarded, Role::Admin),
                Some(r) => (Some(r), r),
                None => return Err(ProxyError::ForwardedWithoutRole { node: name.clone() }),
            }
        }
    };
    if !authz::allows(role, rpc) {
        return Err(ProxyError::Denied { role, rpc });
    }
    if let Some(node) = &node {
        members.check(node)?;
    }
    Ok(match node {
        Some(node) => Route::Node {
            node,
            role: certified,
        },
        None => Route::Machined { role: Some(role) },
    })
}

/// Sets the metadata the next hop sees: no `nodes`, and exactly the role
/// apid vouches for (whatever the caller sent under that key is dropped).
fn rewrite_headers(headers: &mut HeaderMap, role: Option<Role>) {
    headers.remove(metadata::NODES);
    headers.remove(metadata::ROLE);
    if let Some(role) = role {
        headers.insert(
            metadata::ROLE,
            HeaderValue::from_static(role.organization()),
        );
    }
}

/// An error's message with its causes (transport errors nest the
/// interesting part, e.g. the certificate problem, several levels deep).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        source = inner.source();
    }
    s
}

struct Inner {
    current: Arc<Current>,
    machined: Channel,
    peers: Peers,
    /// Long-lived calls in flight (`limit::long_lived`).
    streams: Arc<Gate>,
}

/// A response body that holds its call's place among the long-lived calls
/// until the stream ends or the client goes away.
struct Held {
    body: Body,
    _ticket: Ticket,
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Status>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The tower service tonic's server runs for every request.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

impl Proxy {
    pub fn new(current: Arc<Current>, machined: Channel) -> Proxy {
        Proxy {
            inner: Arc::new(Inner {
                current,
                machined,
                peers: Peers::default(),
                streams: Gate::new(limit::STREAMS_PER_SOURCE, limit::STREAMS),
            }),
        }
    }
}

impl Inner {
    async fn handle(&self, req: http::Request<Body>) -> Result<http::Response<Body>, ProxyError> {
        let path = req.uri().path();
        let rpc =
            Rpc::from_path(path).ok_or_else(|| ProxyError::UnknownMethod(path.to_string()))?;
        let settings = self.current.get();
        let conn = req
            .extensions()
            .get::<ConnInfo>()
            .ok_or(ProxyError::NoCertificate)?;
        let route = decide(
            rpc,
            conn,
            &settings.trust,
            settings.rbac,
            &settings.members,
            req.headers(),
        )
        .inspect_err(|e| {
            tracing::info!(remote = %conn.remote, rpc = rpc.name(), "refused: {e}");
        })?;
        if rpc == Rpc::Version && matches!(route, Route::Machined { .. }) {
            return Ok(crate::version::serve(settings.trust.mode, req).await);
        }
        let ticket = if limit::long_lived(rpc) {
            Some(
                self.streams
                    .enter(conn.remote.ip())
                    .map_err(ProxyError::TooManyStreams)?,
            )
        } else {
            None
        };
        let (mut parts, body) = req.into_parts();
        let wire = Arc::new(Tripwire::default());
        let body = Body::new(RequestBody::new(
            body,
            rpc,
            limit::request_limit(rpc),
            wire.clone(),
        ));
        let (channel, role, node) = match &route {
            Route::Machined { role } => (self.machined.clone(), *role, None),
            Route::Node { node, role } => {
                let channel = self.peers.channel(node, &settings).map_err(|error| {
                    ProxyError::NoForwarding {
                        node: node.to_string(),
                        error,
                    }
                })?;
                (channel, *role, Some(node.to_string()))
            }
        };
        rewrite_headers(&mut parts.headers, role);
        // Connection details belong to this hop only.
        parts.extensions = http::Extensions::new();
        let call = async move {
            let mut channel = channel;
            channel.ready().await?;
            channel.call(http::Request::from_parts(parts, body)).await
        };
        let upstream = node.clone().unwrap_or_else(|| "machined".to_string());
        let after = limit::answer_deadline(rpc);
        let deadline = async {
            wire.ended().await;
            tokio::time::sleep(after).await;
        };
        let response = tokio::select! {
            r = call => r.map_err(|e| {
                // The body's limits may have failed it, which fails the call.
                if let Some(r) = wire.refusal() {
                    return r.into();
                }
                let error = chain(&e);
                match node {
                    Some(node) => ProxyError::NodeUnreachable { node, error },
                    None => ProxyError::MachinedUnreachable(error),
                }
            }),
            r = wire.tripped() => Err(r.into()),
            () = deadline => Err(ProxyError::NoAnswer { upstream, rpc, after }),
        }?;
        Ok(match ticket {
            Some(t) => response.map(|body| Body::new(Held { body, _ticket: t })),
            None => response,
        })
    }
}

impl Service<http::Request<Body>> for Proxy {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            Ok(inner
                .handle(req)
                .await
                .unwrap_or_else(|e| to_status(&e).into_http()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(peer: Peer, trust: &Trust) -> ConnInfo {
        ConnInfo {
            remote: "127.0.0.1:1".parse().unwrap(),
            peer: Arc::new(peer),
            trust: trust.clone(),
        }
    }

    fn secure() -> Trust {
        Trust {
            mode: ApidMode::Secure,
            ca: Some("ab".into()),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    /// This node and node B (10.5.0.3) at the apid port.
    fn members() -> Members {
        Members::for_node(["10.5.0.2"], None, &[NodeAddr::parse("10.5.0.3").unwrap()])
    }

    fn client(role: Role) -> Peer {
        Peer::Client {
            name: "c".into(),
            role: Some(role),
        }
    }

    #[test]
    fn maintenance_serves_three_rpcs_and_never_forwards() {
        let t = Trust {
            mode: ApidMode::Maintenance,
            ca: None,
        };
        let c = conn(Peer::Anonymous, &t);
        for rpc in [Rpc::Version, Rpc::ApplyConfiguration, Rpc::Disks] {
            assert_eq!(
                decide(rpc, &c, &t, true, &members(), &HeaderMap::new()).unwrap(),
                Route::Machined { role: None }
            );
        }
        let e = decide(Rpc::Reboot, &c, &t, true, &members(), &HeaderMap::new()).unwrap_err();
        assert_eq!(to_status(&e).code(), tonic::Code::FailedPrecondition);
        assert!(
            e.to_string()
                .starts_with("node is in maintenance mode: apply a config first"),
            "{e}"
        );
        let e = decide(
            Rpc::Version,
            &c,
            &t,
            true,
            &members(),
            &headers(&[("nodes", "10.0.0.2")]),
        )
        .unwrap_err();
        assert!(matches!(e, ProxyError::MaintenanceForward));
    }

    #[test]
    fn roles_come_from_the_certificate_not_from_metadata() {
        let t = secure();
        let reader = conn(client(Role::Reader), &t);
        // A reader claiming admin in metadata is still a reader.
        let h = headers(&[("x-cairn-role", "os:admin")]);
        let e = decide(Rpc::Reboot, &reader, &t, true, &members(), &h).unwrap_err();
        assert_eq!(to_status(&e).code(), tonic::Code::PermissionDenied);
        assert_eq!(
            e.to_string(),
            "role os:reader may not call Reboot: it needs os:operator or higher"
        );
        assert_eq!(
            decide(Rpc::Version, &reader, &t, true, &members(), &h).unwrap(),
            Route::Machined {
                role: Some(Role::Reader)
            }
        );
        let none = conn(
            Peer::Client {
                name: "x".into(),
                role: None,
            },
            &t,
        );
        assert!(matches!(
            decide(Rpc::Version, &none, &t, true, &members(), &HeaderMap::new()),
            Err(ProxyError::NoRole { .. })
        ));
        let anon = conn(Peer::Anonymous, &t);
        assert!(matches!(
            decide(Rpc::Version, &anon, &t, true, &members(), &HeaderMap::new()),
            Err(ProxyError::NoCertificate)
        ));
        // machine.features.rbac: false makes every certified client an admin.
        assert_eq!(
            decide(Rpc::Reboot, &reader, &t, false, &members(), &h).unwrap(),
            Route::Machined {
                role: Some(Role::Admin)
            }
        );
        assert_eq!(
            decide(Rpc::ReadFile, &none, &t, false, &members(), &h).unwrap(),
            Route::Machined {
                role: Some(Role::Admin)
            }
        );
    }

    /// Hole 5 of the hardening issue: `rbac: false` on the first node made
    /// a reader an admin on every node it forwarded to. The certificate's
    /// role travels; the receiving node applies its own setting.
    #[test]
    fn rbac_off_here_does_not_raise_a_forwarded_role() {
        let t = secure();
        let reader = conn(client(Role::Reader), &t);
        let to_b = headers(&[("nodes", "10.5.0.3")]);
        // Here (rbac off) the reader may reboot, and the call goes on...
        let route = decide(Rpc::Reboot, &reader, &t, false, &members(), &to_b).unwrap();
        assert_eq!(
            route,
            Route::Node {
                node: NodeAddr::parse("10.5.0.3").unwrap(),
                role: Some(Role::Reader)
            }
        );
        // ...as a reader, which node B (rbac on) refuses.
        let imp = conn(
            Peer::Impersonator {
                name: "node-a".into(),
            },
            &t,
        );
        let fwd = headers(&[("x-cairn-role", "os:reader")]);
        assert!(matches!(
            decide(Rpc::Reboot, &imp, &t, true, &members(), &fwd),
            Err(ProxyError::Denied {
                role: Role::Reader,
                ..
            })
        ));
        // A node with rbac off itself grants what it grants anyone certified.
        assert_eq!(
            decide(Rpc::Reboot, &imp, &t, false, &members(), &fwd).unwrap(),
            Route::Machined {
                role: Some(Role::Admin)
            }
        );
        // A certificate without a role forwards none: refused where rbac is on.
        let none = conn(
            Peer::Client {
                name: "x".into(),
                role: None,
            },
            &t,
        );
        assert_eq!(
            decide(Rpc::Version, &none, &t, false, &members(), &to_b).unwrap(),
            Route::Node {
                node: NodeAddr::parse("10.5.0.3").unwrap(),
                role: None
            }
        );
        assert!(matches!(
            decide(Rpc::Version, &imp, &t, true, &members(), &HeaderMap::new()),
            Err(ProxyError::ForwardedWithoutRole { .. })
        ));
    }

    /// Hole 6 of the hardening issue: `-n host:port` made apid connect
    /// anywhere, and its errors told open, closed and filtered ports apart.
    /// Non-members are refused before any connection, all alike.
    #[test]
    fn forwards_only_to_members_and_refuses_the_rest_alike() {
        let t = secure();
        for role in [Role::Reader, Role::Admin] {
            let c = conn(client(role), &t);
            let to = |n: &'static str| headers(&[("nodes", n)]);
            assert!(matches!(
                decide(Rpc::Version, &c, &t, true, &members(), &to("10.5.0.3")),
                Ok(Route::Node { .. })
            ));
            for (node, shown) in [
                ("10.5.0.3:22", "10.5.0.3:22"),
                ("10.5.0.2:2379", "10.5.0.2:2379"),
                ("127.0.0.1:1", "127.0.0.1:1"),
                ("10.9.9.9", "10.9.9.9:50000"),
                ("[fd00::9]:443", "[fd00::9]:443"),
                ("metadata.internal", "metadata.internal:50000"),
            ] {
                let e = decide(Rpc::Version, &c, &t, true, &members(), &to(node)).unwrap_err();
                let status = to_status(&e);
                assert_eq!(status.code(), tonic::Code::NotFound);
                assert_eq!(
                    status.message(),
                    format!("node {shown} is not a member of this cluster")
                );
            }
        }
        // A call for this node itself (no forwarding) needs no membership.
        let c = conn(client(Role::Reader), &t);
        assert!(matches!(
            decide(
                Rpc::Version,
                &c,
                &t,
                true,
                &Members::default(),
                &HeaderMap::new()
            ),
            Ok(Route::Machined { .. })
        ));
    }

    #[test]
    fn forwarding_is_one_hop_and_keeps_the_callers_role() {
        let t = secure();
        let op = conn(client(Role::Operator), &t);
        let to_b = headers(&[("nodes", "10.5.0.3")]);
        assert_eq!(
            decide(Rpc::Reboot, &op, &t, true, &members(), &to_b).unwrap(),
            Route::Node {
                node: NodeAddr::parse("10.5.0.3").unwrap(),
                role: Some(Role::Operator)
            }
        );
        // Checked before forwarding too.
        assert!(matches!(
            decide(Rpc::ApplyConfiguration, &op, &t, true, &members(), &to_b),
            Err(ProxyError::Denied { .. })
        ));
        let two = headers(&[("nodes", "a"), ("nodes", "b")]);
        assert!(matches!(
            decide(Rpc::Version, &op, &t, true, &members(), &two),
            Err(ProxyError::SeveralNodes(2))
        ));
        assert!(matches!(
            decide(
                Rpc::Version,
                &op,
                &t,
                true,
                &members(),
                &headers(&[("nodes", "a,b")])
            ),
            Err(ProxyError::SeveralNodes(2))
        ));

        // On the receiving node: the impersonator's role metadata counts.
        let imp = conn(
            Peer::Impersonator {
                name: "node-a".into(),
            },
            &t,
        );
        let fwd = headers(&[("x-cairn-role", "os:operator")]);
        assert_eq!(
            decide(Rpc::Reboot, &imp, &t, true, &members(), &fwd).unwrap(),
            Route::Machined {
                role: Some(Role::Operator)
            }
        );
        assert!(matches!(
            decide(Rpc::ReadFile, &imp, &t, true, &members(), &fwd),
            Err(ProxyError::Denied { .. })
        ));
        // ... but it may not forward again, nor come without a role.
        let again = headers(&[("x-cairn-role", "os:admin"), ("nodes", "10.5.0.4")]);
        assert!(matches!(
            decide(Rpc::Version, &imp, &t, true, &members(), &again),
            Err(ProxyError::ForwardedTwice { .. })
        ));
        assert!(matches!(
            decide(Rpc::Version, &imp, &t, true, &members(), &HeaderMap::new()),
            Err(ProxyError::ForwardedWithoutRole { .. })
        ));
    }

    #[test]
    fn connections_from_before_a_trust_change_are_refused() {
        let maint = Trust {
            mode: ApidMode::Maintenance,
            ca: None,
        };
        let old = conn(Peer::Anonymous, &maint);
        let e = decide(
            Rpc::ApplyConfiguration,
            &old,
            &secure(),
            true,
            &members(),
            &HeaderMap::new(),
        )
        .unwrap_err();
        assert_eq!(to_status(&e).code(), tonic::Code::Unauthenticated);
        let other_ca = conn(
            client(Role::Admin),
            &Trust {
                mode: ApidMode::Secure,
                ca: Some("cd".into()),
            },
        );
        assert!(matches!(
            decide(
                Rpc::Version,
                &other_ca,
                &secure(),
                true,
                &members(),
                &HeaderMap::new()
            ),
            Err(ProxyError::StaleConnection)
        ));
    }

    #[test]
    fn next_hop_sees_only_the_vouched_role() {
        let mut h = headers(&[
            ("x-cairn-role", "os:admin"),
            ("x-cairn-role", "os:admin"),
            ("nodes", "b"),
        ]);
        rewrite_headers(&mut h, Some(Role::Reader));
        assert_eq!(
            h.get_all("x-cairn-role").iter().collect::<Vec<_>>(),
            vec!["os:reader"]
        );
        assert!(h.get("nodes").is_none());
        rewrite_headers(&mut h, None);
        assert!(h.get("x-cairn-role").is_none());
    }
}
