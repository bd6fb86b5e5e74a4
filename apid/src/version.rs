//! Version, answered by apid itself rather than forwarded to machined.
//!
//! Why: Version is the API's most frequent call (health checks, `cairnctl
//! version`, every client's first call), and everything in it is apid's to
//! know: apid is built from the same sources as machined (version, build
//! id), shares its kernel, command line (booted slot) and UTS namespace
//! (hostname, read at each call, so a hostname change shows at once), and
//! knows its own mode (maintenance or not). Forwarding it cost a second
//! HTTP/2 hop, about three times the CPU of the call itself.

use std::future::{ready, Ready};

use api::machine::VersionResponse;
use config::apid::ApidMode;
use tonic::body::Body;
use tonic::{Request, Response, Status};

/// The node's version, as machined would answer it.
pub fn current(mode: ApidMode) -> VersionResponse {
    VersionResponse {
        version: config::version::running().version.clone(),
        build_id: config::version::running().build_id.clone(),
        git_commit: String::new(),
        arch: config::version::arch().to_string(),
        kernel: config::version::kernel_release(),
        booted_slot: config::version::booted_slot(),
        maintenance: mode == ApidMode::Maintenance,
        hostname: rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
    }
}

struct Unary(ApidMode);

impl tonic::server::UnaryService<()> for Unary {
    type Response = VersionResponse;
    type Future = Ready<Result<Response<VersionResponse>, Status>>;

    fn call(&mut self, _: Request<()>) -> Self::Future {
        ready(Ok(Response::new(current(self.0))))
    }
}

/// Serves one Version call (the request is decoded and checked like any
/// gRPC request: a malformed one gets the usual gRPC error).
pub async fn serve(mode: ApidMode, req: http::Request<Body>) -> http::Response<Body> {
    let mut grpc =
        tonic::server::Grpc::new(tonic_prost::ProstCodec::<VersionResponse, ()>::default());
    grpc.unary(Unary(mode), req).await
}
