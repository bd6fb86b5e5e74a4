//! machined's internal API: the MachineService on a unix socket, for apid
//! (which authorizes callers and forwards) and nothing else. Handlers stay
//! thin: read node state, delegate, map the error in [`to_status`].

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use api::machine::machine_service_server::{MachineService, MachineServiceServer};
use api::machine::*;
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status, Streaming};

use crate::shutdown::PowerAction;
use crate::state::Node;
use crate::supervisor::logbuf::LogRing;
use crate::supervisor::{Health, ServiceHandle};

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0} is not implemented by machined yet")]
    NotImplemented(&'static str),
    #[error("no service named {0:?}; `cairnctl services` lists them")]
    NoSuchService(String),
    #[error("Kubernetes container logs are not available yet")]
    NoKubernetesLogs,
    #[error("machined is already shutting down")]
    ShuttingDown,
}

/// The one place machined's API errors become gRPC statuses.
fn to_status(e: ApiError) -> Status {
    let msg = e.to_string();
    match e {
        ApiError::NotImplemented(_) | ApiError::NoKubernetesLogs => Status::unimplemented(msg),
        ApiError::NoSuchService(_) => Status::not_found(msg),
        ApiError::ShuttingDown => Status::unavailable(msg),
    }
}

fn unimplemented<T>(rpc: &'static str) -> Result<T, Status> {
    Err(to_status(ApiError::NotImplemented(rpc)))
}

pub struct MachineApi {
    node: Arc<Node>,
}

fn timestamp(t: std::time::SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

pub fn service_info(h: &ServiceHandle) -> ServiceInfo {
    let s = h.snapshot();
    ServiceInfo {
        id: h.id.clone(),
        state: s.state.to_string(),
        health: match s.health {
            Health::Ok => "ok",
            Health::Failing => "failing",
            Health::Unknown => "unknown",
        }
        .to_string(),
        health_message: s.health_message.clone(),
        events: s
            .events
            .iter()
            .map(|e| ServiceEvent {
                state: e.state.to_string(),
                message: e.message.clone(),
                time: Some(timestamp(e.time)),
            })
            .collect(),
        restarts: s.restarts,
        pid: s.pid.unwrap_or(0),
        depends_on: h.depends_on.clone(),
    }
}

/// The ring's tail, then (when following) each new batch of lines.
pub fn log_stream(ring: Arc<LogRing>, tail: Option<usize>, follow: bool) -> Stream_<Data> {
    let (lines, seq) = ring.tail(tail);
    let mut first = lines.join("\n");
    if !first.is_empty() {
        first.push('\n');
    }
    let head = futures::stream::once(async move {
        Ok(Data {
            bytes: first.into_bytes(),
        })
    });
    if !follow {
        return Box::pin(head);
    }
    let rest = futures::stream::unfold((ring, seq), |(ring, mut seq)| async move {
        loop {
            let appended = ring.appended();
            let (lines, next) = ring.since(seq);
            seq = next;
            if !lines.is_empty() {
                let mut bytes = lines.join("\n").into_bytes();
                bytes.push(b'\n');
                return Some((Ok(Data { bytes }), (ring.clone(), seq)));
            }
            appended.await;
        }
    });
    Box::pin(head.chain(rest))
}

#[tonic::async_trait]
impl MachineService for MachineApi {
    async fn version(&self, _: Request<()>) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(self.node.version()))
    }

    async fn apply_configuration(
        &self,
        _: Request<ApplyConfigurationRequest>,
    ) -> Result<Response<ApplyConfigurationResponse>, Status> {
        unimplemented("ApplyConfiguration")
    }

    async fn confirm_configuration(&self, _: Request<()>) -> Result<Response<()>, Status> {
        unimplemented("ConfirmConfiguration")
    }

    async fn bootstrap(&self, _: Request<BootstrapRequest>) -> Result<Response<()>, Status> {
        unimplemented("Bootstrap")
    }

    type KubeconfigStream = Stream_<Data>;
    async fn kubeconfig(&self, _: Request<()>) -> Result<Response<Self::KubeconfigStream>, Status> {
        unimplemented("Kubeconfig")
    }

    async fn service_list(&self, _: Request<()>) -> Result<Response<ServiceListResponse>, Status> {
        let services = self
            .node
            .supervisor
            .list()
            .iter()
            .map(|h| service_info(h))
            .collect();
        Ok(Response::new(ServiceListResponse { services }))
    }

    async fn service_start(
        &self,
        _: Request<ServiceRequest>,
    ) -> Result<Response<ServiceActionResponse>, Status> {
        unimplemented("ServiceStart")
    }

    async fn service_stop(
        &self,
        _: Request<ServiceRequest>,
    ) -> Result<Response<ServiceActionResponse>, Status> {
        unimplemented("ServiceStop")
    }

    async fn service_restart(
        &self,
        _: Request<ServiceRequest>,
    ) -> Result<Response<ServiceActionResponse>, Status> {
        unimplemented("ServiceRestart")
    }

    type LogsStream = Stream_<Data>;
    async fn logs(&self, req: Request<LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        let req = req.into_inner();
        if req.kubernetes {
            return Err(to_status(ApiError::NoKubernetesLogs));
        }
        let ring = if req.id == "machined" {
            self.node.logs.clone()
        } else {
            self.node
                .supervisor
                .handle(&req.id)
                .ok_or_else(|| to_status(ApiError::NoSuchService(req.id.clone())))?
                .logs
                .clone()
        };
        let tail = usize::try_from(req.tail_lines).ok();
        Ok(Response::new(log_stream(ring, tail, req.follow)))
    }

    type DmesgStream = Stream_<Data>;
    async fn dmesg(&self, _: Request<DmesgRequest>) -> Result<Response<Self::DmesgStream>, Status> {
        unimplemented("Dmesg")
    }

    async fn reboot(&self, _: Request<RebootRequest>) -> Result<Response<()>, Status> {
        self.power(PowerAction::Reboot).await
    }

    async fn shutdown(&self, _: Request<ShutdownRequest>) -> Result<Response<()>, Status> {
        self.power(PowerAction::PowerOff).await
    }

    async fn reset(&self, _: Request<ResetRequest>) -> Result<Response<()>, Status> {
        unimplemented("Reset")
    }

    async fn upgrade(
        &self,
        _: Request<Streaming<UpgradeRequest>>,
    ) -> Result<Response<UpgradeResponse>, Status> {
        unimplemented("Upgrade")
    }

    async fn rollback(&self, _: Request<()>) -> Result<Response<()>, Status> {
        unimplemented("Rollback")
    }

    async fn resource_get(
        &self,
        _: Request<ResourceGetRequest>,
    ) -> Result<Response<Resource>, Status> {
        unimplemented("ResourceGet")
    }

    async fn resource_list(
        &self,
        _: Request<ResourceListRequest>,
    ) -> Result<Response<ResourceListResponse>, Status> {
        unimplemented("ResourceList")
    }

    type ResourceWatchStream = Stream_<ResourceEvent>;
    async fn resource_watch(
        &self,
        _: Request<ResourceWatchRequest>,
    ) -> Result<Response<Self::ResourceWatchStream>, Status> {
        unimplemented("ResourceWatch")
    }

    type ListFilesStream = Stream_<FileInfo>;
    async fn list_files(
        &self,
        _: Request<ListFilesRequest>,
    ) -> Result<Response<Self::ListFilesStream>, Status> {
        unimplemented("ListFiles")
    }

    type ReadFileStream = Stream_<Data>;
    async fn read_file(
        &self,
        _: Request<ReadFileRequest>,
    ) -> Result<Response<Self::ReadFileStream>, Status> {
        unimplemented("ReadFile")
    }

    async fn processes(&self, _: Request<()>) -> Result<Response<ProcessesResponse>, Status> {
        unimplemented("Processes")
    }

    async fn memory(&self, _: Request<()>) -> Result<Response<MemoryResponse>, Status> {
        unimplemented("Memory")
    }

    async fn mounts(&self, _: Request<()>) -> Result<Response<MountsResponse>, Status> {
        unimplemented("Mounts")
    }

    async fn disks(&self, _: Request<()>) -> Result<Response<DisksResponse>, Status> {
        unimplemented("Disks")
    }

    type EventsStream = Stream_<Event>;
    async fn events(
        &self,
        _: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        unimplemented("Events")
    }

    async fn etcd_member_list(
        &self,
        _: Request<()>,
    ) -> Result<Response<EtcdMemberListResponse>, Status> {
        unimplemented("EtcdMemberList")
    }

    type EtcdSnapshotStream = Stream_<Data>;
    async fn etcd_snapshot(
        &self,
        _: Request<()>,
    ) -> Result<Response<Self::EtcdSnapshotStream>, Status> {
        unimplemented("EtcdSnapshot")
    }
}

impl MachineApi {
    async fn power(&self, action: PowerAction) -> Result<Response<()>, Status> {
        self.node
            .power
            .send(action)
            .await
            .map_err(|_| to_status(ApiError::ShuttingDown))?;
        Ok(Response::new(()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot prepare {path}: {source}")]
    Prepare {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the API server on {path} failed: {source}")]
    Serve {
        path: std::path::PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
}

/// Binds the socket (0660, group `gid`, in a 0750 directory of the same
/// group, so apid running as that group can connect and nobody else can)
/// and serves until the process ends.
pub fn bind(path: &Path, gid: Option<u32>) -> Result<tokio::net::UnixListener, ServeError> {
    let prep = |source| ServeError::Prepare {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(prep)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)).map_err(prep)?;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(prep(e)),
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(prep)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(prep)?;
    if let Some(gid) = gid {
        let g = Some(nix::unistd::Gid::from_raw(gid));
        for p in [dir, path] {
            nix::unistd::chown(p, None, g)
                .map_err(|e| prep(std::io::Error::from_raw_os_error(e as i32)))?;
        }
    }
    Ok(listener)
}

pub async fn serve(
    node: Arc<Node>,
    listener: tokio::net::UnixListener,
    path: &Path,
) -> Result<(), ServeError> {
    tonic::transport::Server::builder()
        .add_service(MachineServiceServer::new(MachineApi { node }))
        .serve_with_incoming(UnixListenerStream::new(listener))
        .await
        .map_err(|source| ServeError::Serve {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline::Cmdline;
    use crate::supervisor::Supervisor;
    use api::machine::machine_service_client::MachineServiceClient;
    use hyper_util::rt::TokioIo;

    async fn client(path: std::path::PathBuf) -> MachineServiceClient<tonic::transport::Channel> {
        let channel = tonic::transport::Endpoint::try_from("http://machined.invalid")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .unwrap();
        MachineServiceClient::new(channel)
    }

    #[tokio::test]
    async fn serves_version_services_and_logs_over_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("run/machined.sock");
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let sup = Supervisor::new();
        let ring = Arc::new(LogRing::new(4096));
        ring.push("machined: hello");
        let node = Arc::new(Node::new(
            Cmdline::parse("cairn.slot=A"),
            sup.clone(),
            ring.clone(),
            tx,
        ));
        node.set_hostname("test-node");
        node.set_maintenance(true);
        let listener = bind(&sock, None).unwrap();
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let p = sock.clone();
        tokio::spawn(async move { serve(node, listener, &p).await });

        let mut c = client(sock.clone()).await;
        let v = c.version(()).await.unwrap().into_inner();
        assert_eq!(v.hostname, "test-node");
        assert_eq!(v.booted_slot, "A");
        assert!(v.maintenance);

        let h = sup
            .start(crate::supervisor::Service::new(
                "echoer",
                crate::supervisor::process::ProcessRunner::new("/bin/sh")
                    .args(["-c", "echo from-echoer"]),
            ))
            .unwrap();
        let mut st = h.status.subscribe();
        st.wait_for(|s| s.state == crate::supervisor::State::Finished)
            .await
            .unwrap();
        let list = c.service_list(()).await.unwrap().into_inner();
        assert_eq!(list.services[0].id, "echoer");
        assert_eq!(list.services[0].state, "Finished");

        let mut logs = c
            .logs(LogsRequest {
                id: "echoer".into(),
                follow: false,
                tail_lines: -1,
                kubernetes: false,
            })
            .await
            .unwrap()
            .into_inner();
        let first = logs.message().await.unwrap().unwrap();
        assert_eq!(String::from_utf8(first.bytes).unwrap(), "from-echoer\n");

        // Following machined's own ring sees new lines.
        let mut follow = c
            .logs(LogsRequest {
                id: "machined".into(),
                follow: true,
                tail_lines: 1,
                kubernetes: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            follow.message().await.unwrap().unwrap().bytes,
            b"machined: hello\n"
        );
        ring.push("machined: later");
        assert_eq!(
            follow.message().await.unwrap().unwrap().bytes,
            b"machined: later\n"
        );

        let err = c
            .logs(LogsRequest {
                id: "nope".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        let err = c.bootstrap(BootstrapRequest {}).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented);
        assert!(err.message().contains("Bootstrap"));

        c.reboot(RebootRequest::default()).await.unwrap();
        assert_eq!(rx.recv().await, Some(PowerAction::Reboot));
    }
}
