//! The control plane's side: the `cairn.security.v1.Security` service on
//! machined's socket, which apid serves on :50001 to machines without a
//! certificate. It checks the rate, the join token (in constant time) and
//! the names asked for, then signs with the OS CA; every refusal is on the
//! console and in the event log, so a wrong token is seen where it lands.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use api::security::security_server::Security;
use api::security::{CertificateRequest, CertificateResponse};
use config::join::{self, JoinError, JOIN_CERT_VALIDITY};
use runtime::resources::specs::EventType;
use tonic::{Request, Response, Status};

use super::limit::RateLimit;
use super::PEER_METADATA;
use crate::state::Node;

pub struct SecurityApi {
    node: Arc<Node>,
    limit: RateLimit,
}

impl SecurityApi {
    pub fn new(node: Arc<Node>) -> Self {
        Self {
            node,
            limit: RateLimit::default(),
        }
    }

    fn refuse(&self, peer: IpAddr, why: &str, status: Status) -> Status {
        runtime::console!("join: refused a certificate request from {peer}: {why}");
        self.node
            .events
            .record(EventType::Join, format!("refused {peer}: {why}"));
        status
    }
}

/// The caller's address, as apid saw the connection.
fn peer_of<T>(req: &Request<T>) -> Result<IpAddr, Status> {
    req.metadata()
        .get(PEER_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            Status::invalid_argument(
                "no caller address: certificate requests come through apid's port 50001",
            )
        })
}

#[tonic::async_trait]
impl Security for SecurityApi {
    async fn certificate(
        &self,
        req: Request<CertificateRequest>,
    ) -> Result<Response<CertificateResponse>, Status> {
        let peer = peer_of(&req)?;
        if !self.limit.allow(peer, Instant::now()) {
            return Err(self.refuse(
                peer,
                "too many requests",
                Status::resource_exhausted("too many certificate requests; try again in a minute"),
            ));
        }
        let cfg = self
            .node
            .running_config()
            .ok_or_else(|| Status::unavailable("this node has no machine config yet"))?;
        let Some(ca) = cfg.machine.ca.certified_key() else {
            return Err(Status::failed_precondition(
                "this node holds no OS CA key (a worker); ask a control-plane node",
            ));
        };
        let req = req.into_inner();
        if !join::token_matches(&req.token, cfg.machine.token.as_str()) {
            return Err(self.refuse(
                peer,
                "wrong join token",
                Status::permission_denied(
                    "the join token is wrong: machine.token must be the cluster's (from `cairnctl gen secrets`)",
                ),
            ));
        }
        let csr = req.csr;
        let signed = tokio::task::spawn_blocking(move || {
            let names = join::requested_names(&csr)?;
            let crt = join::sign_server_csr(
                &ca,
                &csr,
                |s| join::allowed_for_peer(peer, s),
                JOIN_CERT_VALIDITY,
            )?;
            Ok::<_, JoinError>((crt, names, ca.crt))
        })
        .await
        .map_err(|e| Status::internal(format!("the signing task failed: {e}")))?;
        match signed {
            Ok((crt, names, ca)) => {
                let names: Vec<String> = names.iter().map(ToString::to_string).collect();
                runtime::console!(
                    "join: issued an apid certificate to {peer} ({})",
                    names.join(", ")
                );
                self.node.events.record(
                    EventType::Join,
                    format!(
                        "issued an apid certificate to {peer} ({})",
                        names.join(", ")
                    ),
                );
                Ok(Response::new(CertificateResponse {
                    crt: crt.pem().to_string(),
                    ca: ca.pem().to_string(),
                }))
            }
            Err(e) => Err(self.refuse(
                peer,
                &e.to_string(),
                Status::invalid_argument(e.to_string()),
            )),
        }
    }
}
