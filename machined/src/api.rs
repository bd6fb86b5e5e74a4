//! machined's internal API: the MachineService on a unix socket, for apid
//! (which authorizes callers and forwards) and nothing else. Handlers stay
//! thin: read node state, delegate, map the error in [`to_status`].

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use api::machine::machine_service_server::{MachineService, MachineServiceServer};
use api::machine::*;
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status, Streaming};

use crate::shutdown::PowerAction;
use crate::state::Node;
use host::dmesg::{DmesgError, Kmsg};
use host::files::FilesError;
use host::procfs::ProcError;
use runtime::resources::{kind, proto, Filter, Kind, Secrets, Watch, WatchKind};
use runtime::supervisor::logbuf::LogRing;
use runtime::supervisor::{Health, ServiceHandle, SupervisorError};

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Request metadata carrying the caller's role; apid sets it from the
/// client certificate (and drops whatever the client sent).
pub const ROLE_METADATA: &str = "x-cairn-role";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no service named {0:?}; `cairnctl services` lists them")]
    NoSuchService(String),
    #[error("machined is already shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Lifecycle(#[from] crate::lifecycle::LifecycleError),
    #[error(
        "stopping apid would cut the node off from the API; `cairnctl service apid restart` restarts it"
    )]
    WouldCutOffApi,
    #[error("service {0} is already running; `cairnctl service {0} restart` restarts it")]
    AlreadyRunning(String),
    #[error("service {0} did not stop within {1:?}")]
    StopTimeout(String, Duration),
    #[error("service {0} has no running process; `cairnctl service {0}` shows its state")]
    NotRunning(String),
    #[error("unknown signal {0:?}; one of KILL, TERM, INT, QUIT, HUP, USR1, USR2")]
    UnknownSignal(String),
    #[error("signalling service {0} (pid {1}): {2}")]
    Signal(String, i32, nix::Error),
    #[error("unknown resource type {0:?}; the types are: {types}", types = Kind::names())]
    UnknownResourceType(String),
    #[error("{kind} live in namespace {expected:?}, not {namespace:?}")]
    WrongNamespace {
        kind: &'static str,
        namespace: String,
        expected: &'static str,
    },
    #[error("no {kind} with id {id:?}; `cairnctl get {kind}` lists them")]
    NoSuchResource { kind: &'static str, id: String },
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error(transparent)]
    Dmesg(#[from] DmesgError),
    #[error("machined could not finish the request: {0}")]
    Task(String),
    #[error(transparent)]
    Etcd(#[from] kubernetes::etcd::EtcdError),
    #[error(transparent)]
    Pki(#[from] kubernetes::k8s_pki::K8sPkiError),
}

impl From<SupervisorError> for ApiError {
    fn from(e: SupervisorError) -> Self {
        match e {
            SupervisorError::NotFound(id) => ApiError::NoSuchService(id),
            SupervisorError::AlreadyRunning(id) => ApiError::AlreadyRunning(id),
            SupervisorError::StopTimeout(id, d) => ApiError::StopTimeout(id, d),
            SupervisorError::NotRunning(id) => ApiError::NotRunning(id),
            SupervisorError::Signal(id, pid, e) => ApiError::Signal(id, pid, e),
            // Only registration says this; the API never registers.
            SupervisorError::AlreadyRegistered(id) => ApiError::AlreadyRunning(id),
        }
    }
}

/// The one place machined's API errors become gRPC statuses.
/// PermissionDenied is left to apid's role checks: cairnctl reads it as
/// "your role may not do this".
pub fn to_status(e: ApiError) -> Status {
    let msg = e.to_string();
    match e {
        ApiError::NoSuchService(_)
        | ApiError::NoSuchResource { .. }
        | ApiError::WrongNamespace { .. } => Status::not_found(msg),
        ApiError::ShuttingDown => Status::unavailable(msg),
        // The node is going away: the caller should try another or later.
        ApiError::Lifecycle(crate::lifecycle::LifecycleError::PoweringOff(_)) => {
            Status::unavailable(msg)
        }
        ApiError::Lifecycle(_) => Status::failed_precondition(msg),
        ApiError::WouldCutOffApi | ApiError::AlreadyRunning(_) | ApiError::NotRunning(_) => {
            Status::failed_precondition(msg)
        }
        ApiError::UnknownSignal(_) => Status::invalid_argument(msg),
        ApiError::Signal(..) => Status::internal(msg),
        ApiError::StopTimeout(..) => Status::deadline_exceeded(msg),
        ApiError::UnknownResourceType(_) => Status::invalid_argument(msg),
        ApiError::Files(f) => match f {
            FilesError::NotAbsolute(_)
            | FilesError::IsDirectory(_)
            | FilesError::NotRegular { .. } => Status::invalid_argument(msg),
            FilesError::NotFound(_) => Status::not_found(msg),
            FilesError::Refused { .. } | FilesError::PermissionDenied(_) => {
                Status::failed_precondition(msg)
            }
            FilesError::Io { .. } => Status::internal(msg),
            FilesError::TooManyStreams(_) => Status::resource_exhausted(msg),
        },
        ApiError::Proc(ProcError::Read { .. }) => Status::internal(msg),
        ApiError::Dmesg(d) => match d {
            DmesgError::Open { .. } | DmesgError::Read(_) => Status::internal(msg),
        },
        ApiError::Task(_) => Status::internal(msg),
        ApiError::Etcd(e) => {
            use kubernetes::etcd::EtcdError as E;
            match e {
                E::AlreadyBootstrapped(_) | E::AlreadyRunning => Status::already_exists(msg),
                E::NoConfig | E::NotControlPlane | E::NotRunning => {
                    Status::failed_precondition(msg)
                }
                E::Pki(p) => pki_status(&p, msg),
                E::Client(_) => Status::unavailable(msg),
                E::Read { .. } | E::Supervisor(_) => Status::internal(msg),
            }
        }
        ApiError::Pki(p) => pki_status(&p, msg),
    }
}

fn pki_status(e: &kubernetes::k8s_pki::K8sPkiError, msg: String) -> Status {
    use kubernetes::k8s_pki::K8sPkiError as E;
    match e {
        E::Missing { .. } | E::NoConfig | E::NotControlPlane | E::ServiceAccountKey(_) => {
            Status::failed_precondition(msg)
        }
        E::Issue { .. } | E::Write(_) | E::Dir { .. } | E::Read { .. } | E::Task(_) => {
            Status::internal(msg)
        }
    }
}

/// Whether the caller may see secrets: only `os:admin`, as apid says.
pub fn secrets_for<T>(req: &Request<T>) -> Secrets {
    match req
        .metadata()
        .get(ROLE_METADATA)
        .and_then(|v| v.to_str().ok())
    {
        Some(config::constants::role::ADMIN) => Secrets::Show,
        _ => Secrets::Redact,
    }
}

/// Who calls: apid sets the role of every authenticated caller and none
/// in maintenance mode, where nobody is authenticated.
pub fn caller_of<T>(req: &Request<T>) -> crate::apply::Caller {
    if req.metadata().get(ROLE_METADATA).is_some() {
        crate::apply::Caller::Authenticated
    } else {
        crate::apply::Caller::Anonymous
    }
}

/// The type named in a request, checked against the namespace if given.
fn resource_kind(namespace: &str, name: &str) -> Result<&'static Kind, ApiError> {
    let k = Kind::named(name).ok_or_else(|| ApiError::UnknownResourceType(name.to_string()))?;
    if !namespace.is_empty() && namespace != k.namespace {
        return Err(ApiError::WrongNamespace {
            kind: k.name,
            namespace: namespace.to_string(),
            expected: k.namespace,
        });
    }
    Ok(k)
}

/// Runs blocking work (reading /proc, probing disks) off the runtime thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Task(e.to_string()))?
}

pub struct MachineApi {
    node: Arc<Node>,
    /// Bounds the ListFiles and ReadFile streams open at once.
    file_streams: host::files::Streams,
}

fn timestamp(t: std::time::SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

pub fn service_info(h: &ServiceHandle) -> ServiceInfo {
    let s = h.snapshot();
    let privileges = s.pid.and_then(Privileges::of);
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
        uid: privileges.as_ref().map(|p| p.uid),
        capabilities: privileges.map(|p| p.capabilities).unwrap_or_default(),
    }
}

/// Who a running process is: its real user id and its effective
/// capabilities.
#[derive(Debug, PartialEq)]
pub struct Privileges {
    pub uid: u32,
    pub capabilities: String,
}

impl Privileges {
    /// From `/proc/<pid>/status`.
    pub fn of(pid: i32) -> Option<Privileges> {
        // "all" means every capability this kernel has; the kernel's
        // count does not change while it runs, so it is read once.
        static LAST_CAP: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        let last_cap = *LAST_CAP.get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(40)
        });
        Self::parse(
            &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
            last_cap,
        )
    }

    pub fn parse(status: &str, last_cap: u32) -> Option<Privileges> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
        };
        let uid = field("Uid:")?.parse().ok()?;
        let eff = u64::from_str_radix(field("CapEff:")?, 16).ok()?;
        let all: u64 = u64::MAX >> (63 - last_cap.min(63));
        let capabilities = if eff == 0 {
            "none".to_string()
        } else if eff & all == all {
            "all".to_string()
        } else {
            let mut names: Vec<String> = caps::all()
                .into_iter()
                .filter(|c| eff & c.bitmask() != 0)
                .map(|c| c.to_string())
                .collect();
            names.sort();
            names.join(",")
        };
        Some(Privileges { uid, capabilities })
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

/// A watch as a stream of API events.
fn watch_stream(watch: Watch, secrets: Secrets) -> Stream_<ResourceEvent> {
    Box::pin(futures::stream::unfold(watch, move |mut w| async move {
        let e = w.next().await;
        Some((Ok(proto::watch_event(&e, secrets)), w))
    }))
}

/// The event log's last `tail` events (all for a negative `tail`), then
/// (when following) each new one.
fn events_stream(node: &Arc<Node>, tail: i32, follow: bool) -> Stream_<Event> {
    let mut watch = Watch::new(&node.store, Filter::kind(kind::EVENTS), true);
    let mut current = Vec::new();
    // The listing is queued in the watch already: take it without waiting.
    while let Some(e) = futures::FutureExt::now_or_never(watch.next()) {
        match (e.kind, e.resource) {
            (WatchKind::Bootstrapped, _) => break,
            (_, Some(r)) => current.push(r),
            (_, None) => {}
        }
    }
    let skip = usize::try_from(tail).map_or(0, |n| current.len().saturating_sub(n));
    let hostname = node.hostname();
    let head: Vec<Result<Event, Status>> = current
        .iter()
        .skip(skip)
        .filter_map(|r| proto::event(r, &hostname).map(Ok))
        .collect();
    let head = futures::stream::iter(head);
    if !follow {
        return Box::pin(head);
    }
    let node = node.clone();
    let rest = futures::stream::unfold(watch, move |mut w| {
        let node = node.clone();
        async move {
            loop {
                let e = w.next().await;
                if e.kind != WatchKind::Created {
                    continue;
                }
                if let Some(ev) = e
                    .resource
                    .as_ref()
                    .and_then(|r| proto::event(r, &node.hostname()))
                {
                    return Some((Ok(ev), w));
                }
            }
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
        req: Request<ApplyConfigurationRequest>,
    ) -> Result<Response<ApplyConfigurationResponse>, Status> {
        let caller = caller_of(&req);
        crate::apply::handle_apply(&self.node, req.into_inner(), caller).await
    }

    async fn confirm_configuration(&self, _: Request<()>) -> Result<Response<()>, Status> {
        crate::apply::handle_confirm(&self.node).await
    }

    async fn bootstrap(&self, _: Request<BootstrapRequest>) -> Result<Response<()>, Status> {
        // Under the lifecycle: no bootstrap beside a reset wiping etcd's
        // data, an install or another bootstrap.
        let _bootstrap = (self.node.lifecycle)
            .begin(crate::lifecycle::Action::Bootstrap)
            .map_err(|e| to_status(e.into()))?;
        kubernetes::etcd::bootstrap(&self.node)
            .await
            .map_err(|e| to_status(e.into()))?;
        Ok(Response::new(()))
    }

    async fn generate_client_configuration(
        &self,
        req: Request<GenerateClientConfigurationRequest>,
    ) -> Result<Response<GenerateClientConfigurationResponse>, Status> {
        crate::role_certs::generate(&self.node, req.into_inner())
            .await
            .map(Response::new)
    }

    type KubeconfigStream = Stream_<Data>;
    async fn kubeconfig(&self, _: Request<()>) -> Result<Response<Self::KubeconfigStream>, Status> {
        let bytes = kubernetes::k8s_pki::admin_kubeconfig(&self.node)
            .await
            .map_err(|e| to_status(e.into()))?;
        Ok(Response::new(Box::pin(futures::stream::once(async {
            Ok(Data { bytes })
        }))))
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
        req: Request<ServiceRequest>,
    ) -> Result<Response<ServiceActionResponse>, Status> {
        let id = req.into_inner().id;
        self.node
            .supervisor
            .start_again(&id)
            .map_err(|e| to_status(e.into()))?;
        Ok(Response::new(ServiceActionResponse {
            message: format!("service {id} starting"),
        }))
    }

    async fn service_stop(
        &self,
        req: Request<ServiceRequest>,
    ) -> Result<Response<ServiceActionResponse>, Status> {
        let id = req.into_inner().id;
        if id == "apid" {
            return Err(to_status(ApiError::WouldCutOffApi));
        }
        self.node
            .supervisor
            .stop(&id)
            .await
            .map_err(|e| to_status(e.into()))?;
        Ok(Response::new(ServiceActionResponse {
            message: format!("service {id} stopped"),
        }))
    }

    async fn service_restart(
        &self,
        req: Request<ServiceRequest>,
    ) -> Result<Response<ServiceActionResponse>, Status> {
        let id = req.into_inner().id;
        if self.node.supervisor.handle(&id).is_none() {
            return Err(to_status(ApiError::NoSuchService(id)));
        }
        // In the background: restarting apid ends the connection this
        // reply travels on.
        let supervisor = self.node.supervisor.clone();
        let service = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(REPLY_FIRST).await;
            if let Err(e) = supervisor.restart(&service).await {
                runtime::console!("service {service}: restart failed: {e}");
            }
        });
        Ok(Response::new(ServiceActionResponse {
            message: format!("service {id} restarting"),
        }))
    }

    async fn service_kill(
        &self,
        req: Request<ServiceKillRequest>,
    ) -> Result<Response<ServiceActionResponse>, Status> {
        let ServiceKillRequest { id, signal } = req.into_inner();
        let sig = parse_signal(&signal).map_err(to_status)?;
        if id == "apid" {
            // apid carries this reply: signal it once the reply is out.
            let supervisor = self.node.supervisor.clone();
            tokio::spawn(async move {
                tokio::time::sleep(REPLY_FIRST).await;
                if let Err(e) = supervisor.kill("apid", sig) {
                    runtime::console!("service apid: kill failed: {e}");
                }
            });
            return Ok(Response::new(ServiceActionResponse {
                message: format!("service apid: sending {sig}"),
            }));
        }
        let pid = self
            .node
            .supervisor
            .kill(&id, sig)
            .map_err(|e| to_status(e.into()))?;
        runtime::console!("service {id}: sent {sig} to pid {pid} (API)");
        Ok(Response::new(ServiceActionResponse {
            message: format!("service {id}: sent {sig} to pid {pid}"),
        }))
    }

    type LogsStream = Stream_<Data>;
    async fn logs(&self, req: Request<LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        let req = req.into_inner();
        if req.kubernetes {
            return kubernetes::podlogs::handle(&req).map(Response::new);
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
    async fn dmesg(
        &self,
        req: Request<DmesgRequest>,
    ) -> Result<Response<Self::DmesgStream>, Status> {
        let req = req.into_inner();
        let kmsg = Kmsg::open(Path::new("/dev/kmsg"), req.follow, req.tail)
            .map_err(|e| to_status(e.into()))?;
        let stream = kmsg.into_stream().map(|chunk| {
            chunk
                .map(|text| Data {
                    bytes: text.into_bytes(),
                })
                .map_err(|e| to_status(e.into()))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn reboot(&self, _: Request<RebootRequest>) -> Result<Response<()>, Status> {
        self.power(PowerAction::Reboot).await
    }

    async fn shutdown(&self, _: Request<ShutdownRequest>) -> Result<Response<()>, Status> {
        self.power(PowerAction::PowerOff).await
    }

    async fn reset(&self, req: Request<ResetRequest>) -> Result<Response<()>, Status> {
        crate::reset::handle_reset(&self.node, req.into_inner()).await
    }

    async fn upgrade(
        &self,
        req: Request<Streaming<UpgradeRequest>>,
    ) -> Result<Response<UpgradeResponse>, Status> {
        crate::upgrade::handle_upgrade(&self.node, req.into_inner()).await
    }

    async fn rollback(&self, _: Request<()>) -> Result<Response<()>, Status> {
        crate::upgrade::handle_rollback(&self.node).await
    }

    async fn resource_get(
        &self,
        req: Request<ResourceGetRequest>,
    ) -> Result<Response<Resource>, Status> {
        let secrets = secrets_for(&req);
        let req = req.into_inner();
        let k = resource_kind(&req.namespace, &req.r#type).map_err(to_status)?;
        let r = self.node.store.get(k, &req.id).ok_or_else(|| {
            to_status(ApiError::NoSuchResource {
                kind: k.name,
                id: req.id.clone(),
            })
        })?;
        Ok(Response::new(proto::resource(&r, secrets)))
    }

    async fn resource_list(
        &self,
        req: Request<ResourceListRequest>,
    ) -> Result<Response<ResourceListResponse>, Status> {
        let secrets = secrets_for(&req);
        let req = req.into_inner();
        let k = resource_kind(&req.namespace, &req.r#type).map_err(to_status)?;
        let resources = self
            .node
            .store
            .list(k)
            .iter()
            .map(|r| proto::resource(r, secrets))
            .collect();
        Ok(Response::new(ResourceListResponse { resources }))
    }

    type ResourceWatchStream = Stream_<ResourceEvent>;
    async fn resource_watch(
        &self,
        req: Request<ResourceWatchRequest>,
    ) -> Result<Response<Self::ResourceWatchStream>, Status> {
        let secrets = secrets_for(&req);
        let req = req.into_inner();
        let k = resource_kind(&req.namespace, &req.r#type).map_err(to_status)?;
        let filter = Filter {
            kinds: vec![k],
            id: (!req.id.is_empty()).then_some(req.id),
        };
        let watch = Watch::new(&self.node.store, filter, req.bootstrap);
        Ok(Response::new(watch_stream(watch, secrets)))
    }

    type ListFilesStream = Stream_<FileInfo>;
    async fn list_files(
        &self,
        req: Request<ListFilesRequest>,
    ) -> Result<Response<Self::ListFilesStream>, Status> {
        let req = req.into_inner();
        let depth = host::files::max_depth(req.recurse, req.recursion_depth);
        let permit = self.file_streams.open().map_err(|e| to_status(e.into()))?;
        let stream =
            host::files::list(&req.root, depth, permit).map_err(|e| to_status(e.into()))?;
        Ok(Response::new(Box::pin(stream.map(Ok))))
    }

    type ReadFileStream = Stream_<Data>;
    async fn read_file(
        &self,
        req: Request<ReadFileRequest>,
    ) -> Result<Response<Self::ReadFileStream>, Status> {
        let path = req.into_inner().path;
        let permit = self.file_streams.open().map_err(|e| to_status(e.into()))?;
        let stream = host::files::read(&path, permit).map_err(|e| to_status(e.into()))?;
        let stream = stream.map(|chunk| {
            chunk
                .map(|bytes| Data { bytes })
                .map_err(|e| to_status(e.into()))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn processes(&self, _: Request<()>) -> Result<Response<ProcessesResponse>, Status> {
        let processes = blocking(|| Ok(host::procfs::processes(Path::new("/proc"))?))
            .await
            .map_err(to_status)?;
        Ok(Response::new(ProcessesResponse { processes }))
    }

    async fn netstat(
        &self,
        req: Request<NetstatRequest>,
    ) -> Result<Response<NetstatResponse>, Status> {
        let listening = req.into_inner().listening;
        let sockets = blocking(move || {
            Ok(host::network::netstat::sockets(
                Path::new("/proc"),
                listening,
            ))
        })
        .await
        .map_err(to_status)?;
        Ok(Response::new(NetstatResponse { sockets }))
    }

    async fn time(&self, _: Request<()>) -> Result<Response<TimeResponse>, Status> {
        Ok(Response::new(host::time::time_response(&self.node)))
    }

    async fn containers(
        &self,
        req: Request<ContainersRequest>,
    ) -> Result<Response<ContainersResponse>, Status> {
        kubernetes::containerd::list::handle(req.into_inner().kubernetes)
            .await
            .map(Response::new)
    }

    async fn image_list(
        &self,
        req: Request<ImageListRequest>,
    ) -> Result<Response<ImageListResponse>, Status> {
        kubernetes::images::handle_list(req.into_inner().kubernetes)
            .await
            .map(Response::new)
    }

    async fn image_import(
        &self,
        req: Request<Streaming<ImageImportRequest>>,
    ) -> Result<Response<ImageImportResponse>, Status> {
        kubernetes::images::handle_import(req.into_inner())
            .await
            .map(Response::new)
    }

    async fn image_remove(
        &self,
        req: Request<ImageRemoveRequest>,
    ) -> Result<Response<ImageRemoveResponse>, Status> {
        let req = req.into_inner();
        kubernetes::images::handle_remove(&req.name, req.kubernetes)
            .await
            .map(Response::new)
    }

    async fn memory(&self, _: Request<()>) -> Result<Response<MemoryResponse>, Status> {
        host::procfs::memory(Path::new("/proc"))
            .map(Response::new)
            .map_err(|e| to_status(e.into()))
    }

    async fn mounts(&self, _: Request<()>) -> Result<Response<MountsResponse>, Status> {
        let mounts = blocking(|| Ok(host::procfs::mounts(Path::new("/proc/self/mountinfo"))?))
            .await
            .map_err(to_status)?;
        Ok(Response::new(MountsResponse { mounts }))
    }

    async fn disks(&self, _: Request<()>) -> Result<Response<DisksResponse>, Status> {
        let disks = blocking(|| {
            let all =
                host::resources::disks::inventory(Path::new("/sys/class/block"), Path::new("/dev"));
            Ok(all
                .iter()
                .map(|(_, d)| host::resources::disks::to_proto(d))
                .collect())
        })
        .await
        .map_err(to_status)?;
        Ok(Response::new(DisksResponse { disks }))
    }

    type EventsStream = Stream_<Event>;
    async fn events(
        &self,
        req: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        let req = req.into_inner();
        Ok(Response::new(events_stream(
            &self.node,
            req.tail_events,
            req.follow,
        )))
    }

    async fn etcd_member_list(
        &self,
        _: Request<()>,
    ) -> Result<Response<EtcdMemberListResponse>, Status> {
        let members = kubernetes::etcd::members(&self.node)
            .await
            .map_err(|e| to_status(e.into()))?;
        Ok(Response::new(EtcdMemberListResponse { members }))
    }

    type EtcdSnapshotStream = Stream_<Data>;
    async fn etcd_snapshot(
        &self,
        _: Request<()>,
    ) -> Result<Response<Self::EtcdSnapshotStream>, Status> {
        let chunks = kubernetes::etcd::snapshot(&self.node)
            .await
            .map_err(|e| to_status(e.into()))?;
        let stream = chunks.map(|c| {
            c.map(|bytes| Data { bytes })
                .map_err(|e| to_status(e.into()))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn cluster_health(
        &self,
        _: Request<()>,
    ) -> Result<Response<ClusterHealthResponse>, Status> {
        let checks = kubernetes::cluster_health::checks(&self.node).await;
        Ok(Response::new(ClusterHealthResponse { checks }))
    }
}

/// How long a power action or apid restart waits, so that its reply
/// leaves first.
const REPLY_FIRST: Duration = Duration::from_millis(250);

impl MachineApi {
    /// Replies, then asks the boot sequence for an orderly reboot or
    /// shutdown.
    async fn power(&self, action: PowerAction) -> Result<Response<()>, Status> {
        self.node
            .lifecycle
            .power(action, "requested over the API")
            .map(|()| Response::new(()))
            .map_err(|e| to_status(ApiError::Lifecycle(e)))
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
        // apid limits each RPC's messages before forwarding (32 MiB for
        // ApplyConfiguration, whose size machined's validation then reports).
        .add_service(api::security::security_server::SecurityServer::new(
            crate::join::signer::SecurityApi::new(node.clone()),
        ))
        .add_service(
            MachineServiceServer::new(MachineApi {
                node,
                file_streams: host::files::Streams::default(),
            })
            .max_decoding_message_size(32 << 20),
        )
        .serve_with_incoming(UnixListenerStream::new(listener))
        .await
        .map_err(|source| ServeError::Serve {
            path: path.to_path_buf(),
            source,
        })
}

/// The signals `ServiceKill` sends: those that stop or poke a daemon, by
/// name with or without `SIG`; empty means SIGKILL.
fn parse_signal(name: &str) -> Result<nix::sys::signal::Signal, ApiError> {
    use nix::sys::signal::Signal::*;
    let upper = name.trim().to_ascii_uppercase();
    Ok(match upper.strip_prefix("SIG").unwrap_or(&upper) {
        "" | "KILL" => SIGKILL,
        "TERM" => SIGTERM,
        "INT" => SIGINT,
        "QUIT" => SIGQUIT,
        "HUP" => SIGHUP,
        "USR1" => SIGUSR1,
        "USR2" => SIGUSR2,
        _ => return Err(ApiError::UnknownSignal(name.to_string())),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn privileges_name_the_user_and_the_effective_capabilities() {
        use super::Privileges;
        let status = |uid: &str, eff: &str| {
            format!("Name:\tetcd\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nCapInh:\t0000000000000000\nCapEff:\t{eff}\n")
        };
        let p = |uid, eff| Privileges::parse(&status(uid, eff), 40).unwrap();
        let p_ = |eff, last| {
            Privileges::parse(&status("0", eff), last)
                .unwrap()
                .capabilities
        };
        assert_eq!(
            p("60", "0000000000000000"),
            Privileges {
                uid: 60,
                capabilities: "none".into()
            }
        );
        assert_eq!(p("0", "000001ffffffffff").capabilities, "all");
        // CAP_NET_BIND_SERVICE (10) and CAP_NET_ADMIN (12).
        assert_eq!(
            p("0", "0000000000001400").capabilities,
            "CAP_NET_ADMIN,CAP_NET_BIND_SERVICE"
        );
        assert_eq!(Privileges::parse("Name:\tx\n", 40), None);
        // A kernel without CAP_CHECKPOINT_RESTORE (40): 0..=39 is all.
        assert_eq!(p_("000000ffffffffff", 39), "all");
        // This test's own process.
        assert!(Privileges::of(std::process::id() as i32).is_some());
    }

    #[test]
    fn api_statuses_say_what_to_do() {
        use super::{to_status, ApiError};
        use kubernetes::etcd::EtcdError;
        use kubernetes::k8s_pki;
        let s = to_status(ApiError::Etcd(EtcdError::AlreadyBootstrapped(
            "/var/lib/etcd".into(),
        )));
        assert_eq!(s.code(), tonic::Code::AlreadyExists);
        assert!(
            s.message().contains("already bootstrapped"),
            "{}",
            s.message()
        );
        let s = to_status(ApiError::Etcd(EtcdError::NotRunning));
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert!(s.message().contains("cairnctl bootstrap"));
        let s = to_status(ApiError::Pki(k8s_pki::K8sPkiError::NotControlPlane));
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
    }
}
