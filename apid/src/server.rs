//! apid's MachineService: each RPC goes through the access table, then is
//! forwarded to machined or refused. Errors become statuses in one place,
//! [`to_status`].

use std::pin::Pin;

use api::machine::machine_service_client::MachineServiceClient;
use api::machine::machine_service_server::MachineService;
use api::machine::*;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use crate::policy::{self, Access, Rpc};

type Stream_<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum ApidError {
    #[error("{0:?} is not available in maintenance mode: apply a machine config first (client certificates are needed)")]
    NotInMaintenance(Rpc),
    #[error("{0:?} is not implemented yet in maintenance mode; it arrives with a later release")]
    NotYet(Rpc),
    #[error("apid cannot reach machined: {0}")]
    MachinedUnreachable(String),
    #[error("machined: {0}")]
    Machined(Status),
}

/// The one place apid's errors become gRPC statuses.
pub fn to_status(e: ApidError) -> Status {
    match e {
        ApidError::NotInMaintenance(_) => Status::failed_precondition(e.to_string()),
        ApidError::NotYet(_) => Status::unimplemented(e.to_string()),
        ApidError::MachinedUnreachable(_) => Status::unavailable(e.to_string()),
        // machined's own code and message are already written for the user.
        ApidError::Machined(s) => s,
    }
}

/// Distinguishes "machined never answered" from machined's own errors.
fn from_machined(s: Status) -> ApidError {
    if s.code() == tonic::Code::Unavailable
        || s.code() == tonic::Code::Unknown && s.message().contains("transport")
    {
        ApidError::MachinedUnreachable(s.message().to_string())
    } else {
        ApidError::Machined(s)
    }
}

pub struct MaintenanceApi {
    machined: MachineServiceClient<Channel>,
}

impl MaintenanceApi {
    pub fn new(machined: MachineServiceClient<Channel>) -> Self {
        Self { machined }
    }

    /// Refuses `rpc` unless the table forwards it.
    fn gate(rpc: Rpc) -> Result<(), Status> {
        match policy::maintenance(rpc) {
            Access::Forward => Ok(()),
            Access::NotYet => Err(to_status(ApidError::NotYet(rpc))),
            Access::NotInMaintenance => Err(to_status(ApidError::NotInMaintenance(rpc))),
        }
    }

    /// For RPCs the table never forwards in maintenance mode: the gate's
    /// refusal is the answer.
    fn refuse<T>(rpc: Rpc) -> Result<T, Status> {
        Self::gate(rpc)?;
        // The table forwards an RPC this server does not: a bug here.
        Err(Status::internal(format!(
            "{rpc:?} is allowed but apid has no forwarding for it"
        )))
    }
}

#[tonic::async_trait]
impl MachineService for MaintenanceApi {
    async fn version(&self, _: Request<()>) -> Result<Response<VersionResponse>, Status> {
        Self::gate(Rpc::Version)?;
        let mut c = self.machined.clone();
        c.version(()).await.map_err(|s| to_status(from_machined(s)))
    }

    async fn apply_configuration(
        &self,
        _: Request<ApplyConfigurationRequest>,
    ) -> Result<Response<ApplyConfigurationResponse>, Status> {
        Self::refuse(Rpc::ApplyConfiguration)
    }

    async fn confirm_configuration(&self, _: Request<()>) -> Result<Response<()>, Status> {
        Self::refuse(Rpc::ConfirmConfiguration)
    }

    async fn bootstrap(&self, _: Request<BootstrapRequest>) -> Result<Response<()>, Status> {
        Self::refuse(Rpc::Bootstrap)
    }

    type KubeconfigStream = Stream_<Data>;
    async fn kubeconfig(&self, _: Request<()>) -> Result<Response<Self::KubeconfigStream>, Status> {
        Self::refuse(Rpc::Kubeconfig)
    }

    async fn service_list(&self, _: Request<()>) -> Result<Response<ServiceListResponse>, Status> {
        Self::refuse(Rpc::ServiceList)
    }

    async fn service_start(
        &self,
        _: Request<ServiceRequest>,
    ) -> Result<Response<ServiceActionResponse>, Status> {
        Self::refuse(Rpc::ServiceStart)
    }

    async fn service_stop(
        &self,
        _: Request<ServiceRequest>,
    ) -> Result<Response<ServiceActionResponse>, Status> {
        Self::refuse(Rpc::ServiceStop)
    }

    async fn service_restart(
        &self,
        _: Request<ServiceRequest>,
    ) -> Result<Response<ServiceActionResponse>, Status> {
        Self::refuse(Rpc::ServiceRestart)
    }

    type LogsStream = Stream_<Data>;
    async fn logs(&self, _: Request<LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        Self::refuse(Rpc::Logs)
    }

    type DmesgStream = Stream_<Data>;
    async fn dmesg(&self, _: Request<DmesgRequest>) -> Result<Response<Self::DmesgStream>, Status> {
        Self::refuse(Rpc::Dmesg)
    }

    async fn reboot(&self, _: Request<RebootRequest>) -> Result<Response<()>, Status> {
        Self::refuse(Rpc::Reboot)
    }

    async fn shutdown(&self, _: Request<ShutdownRequest>) -> Result<Response<()>, Status> {
        Self::refuse(Rpc::Shutdown)
    }

    async fn reset(&self, _: Request<ResetRequest>) -> Result<Response<()>, Status> {
        Self::refuse(Rpc::Reset)
    }

    async fn upgrade(
        &self,
        _: Request<Streaming<UpgradeRequest>>,
    ) -> Result<Response<UpgradeResponse>, Status> {
        Self::refuse(Rpc::Upgrade)
    }

    async fn rollback(&self, _: Request<()>) -> Result<Response<()>, Status> {
        Self::refuse(Rpc::Rollback)
    }

    async fn resource_get(
        &self,
        _: Request<ResourceGetRequest>,
    ) -> Result<Response<Resource>, Status> {
        Self::refuse(Rpc::ResourceGet)
    }

    async fn resource_list(
        &self,
        _: Request<ResourceListRequest>,
    ) -> Result<Response<ResourceListResponse>, Status> {
        Self::refuse(Rpc::ResourceList)
    }

    type ResourceWatchStream = Stream_<ResourceEvent>;
    async fn resource_watch(
        &self,
        _: Request<ResourceWatchRequest>,
    ) -> Result<Response<Self::ResourceWatchStream>, Status> {
        Self::refuse(Rpc::ResourceWatch)
    }

    type ListFilesStream = Stream_<FileInfo>;
    async fn list_files(
        &self,
        _: Request<ListFilesRequest>,
    ) -> Result<Response<Self::ListFilesStream>, Status> {
        Self::refuse(Rpc::ListFiles)
    }

    type ReadFileStream = Stream_<Data>;
    async fn read_file(
        &self,
        _: Request<ReadFileRequest>,
    ) -> Result<Response<Self::ReadFileStream>, Status> {
        Self::refuse(Rpc::ReadFile)
    }

    async fn processes(&self, _: Request<()>) -> Result<Response<ProcessesResponse>, Status> {
        Self::refuse(Rpc::Processes)
    }

    async fn memory(&self, _: Request<()>) -> Result<Response<MemoryResponse>, Status> {
        Self::refuse(Rpc::Memory)
    }

    async fn mounts(&self, _: Request<()>) -> Result<Response<MountsResponse>, Status> {
        Self::refuse(Rpc::Mounts)
    }

    async fn disks(&self, _: Request<()>) -> Result<Response<DisksResponse>, Status> {
        Self::refuse(Rpc::Disks)
    }

    type EventsStream = Stream_<Event>;
    async fn events(
        &self,
        _: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        Self::refuse(Rpc::Events)
    }

    async fn etcd_member_list(
        &self,
        _: Request<()>,
    ) -> Result<Response<EtcdMemberListResponse>, Status> {
        Self::refuse(Rpc::EtcdMemberList)
    }

    type EtcdSnapshotStream = Stream_<Data>;
    async fn etcd_snapshot(
        &self,
        _: Request<()>,
    ) -> Result<Response<Self::EtcdSnapshotStream>, Status> {
        Self::refuse(Rpc::EtcdSnapshot)
    }
}
