//! What apid enforces on a request it forwards without decoding it: a
//! size limit per gRPC message, an idle limit on client streams, and a
//! deadline for the upstream's answer.
//!
//! gRPC frames each message as a compressed flag, a 4-byte big-endian
//! length and the message. [`FrameScanner`] reads those headers as the
//! body streams through and [`RequestBody`] fails the body as soon as one
//! announces a message over the limit, so an oversized payload is refused
//! after its first 5 bytes and is never buffered. (A decoding server does
//! the same with its max message size; apid forwards bytes, so the check
//! is written here.)
//!
//! A client that stops sending in the middle of a stream (an upload that
//! stalls) would hold the call, and machined's work behind it, forever:
//! [`RequestBody`] fails it after [`REQUEST_IDLE`] without data. And once
//! the request has been sent whole, machined or the peer node must start
//! answering within [`answer_deadline`], so a hung upstream does not pin
//! apid's tasks and memory.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Sleep;

use crate::authz::Rpc;

/// The default per-message limit, as tonic's.
pub const DEFAULT_LIMIT: usize = 4 * 1024 * 1024;
/// ApplyConfiguration's limit: larger than any config may be, so that an
/// oversized config still reaches machined's validation and is refused
/// with a message naming the size.
pub const APPLY_LIMIT: usize = 32 * 1024 * 1024;
/// A request stream that sends nothing for this long is failed.
pub const REQUEST_IDLE: Duration = Duration::from_secs(60);

/// The per-message limit for `rpc`'s requests.
pub fn request_limit(rpc: Rpc) -> usize {
    match rpc {
        Rpc::ApplyConfiguration => APPLY_LIMIT,
        _ => DEFAULT_LIMIT,
    }
}

/// How long machined or a peer may take, once the request has been sent
/// whole, to start answering `rpc` (response headers; a stream's messages
/// may take as long as they need after that). Generous bounds: they exist
/// so that a hung upstream cannot hold apid's resources, not to hurry
/// slow work.
pub fn answer_deadline(rpc: Rpc) -> Duration {
    const MINUTE: u64 = 60;
    Duration::from_secs(match rpc {
        // Uploads are imported or written to a slot after the last byte.
        Rpc::Upgrade | Rpc::ImageImport => 30 * MINUTE,
        // Work that waits on etcd, disks or services.
        Rpc::Reset
        | Rpc::Bootstrap
        | Rpc::ApplyConfiguration
        | Rpc::EtcdSnapshot
        | Rpc::ClusterHealth
        | Rpc::ServiceStop
        | Rpc::ServiceRestart => 10 * MINUTE,
        _ => 2 * MINUTE,
    })
}

/// Calls that stream (server or client streaming): they may stay open for
/// long (`logs -f`, watches, uploads), so how many run at once is limited
/// per client address ([`STREAMS_PER_SOURCE`]) and in all ([`STREAMS`]).
pub fn long_lived(rpc: Rpc) -> bool {
    use Rpc::*;
    matches!(
        rpc,
        Kubeconfig
            | Logs
            | Dmesg
            | Upgrade
            | ResourceWatch
            | ListFiles
            | ReadFile
            | Events
            | EtcdSnapshot
            | ImageImport
    )
}

/// Long-lived calls at once, per client address and in all. With the
/// windows of the channels to machined and to peers
/// ([`UPSTREAM_STREAM_WINDOW`], [`UPSTREAM_CONNECTION_WINDOW`]), streams
/// whose readers stall can hold at most `STREAMS` stream windows of the
/// shared connection's window, which is larger: the other calls on it
/// always get through. (The load test found that with hyper's defaults, a
/// 2 MiB stream window and a 5 MiB connection window, three slow `logs -f`
/// readers stopped every other call to machined.)
pub const STREAMS_PER_SOURCE: usize = 16;
pub const STREAMS: usize = 128;
/// Flow-control windows of apid's HTTP/2 connections to machined and peers
/// (stalled streams hold at most `STREAMS` x 128 KiB = 16 MiB in apid).
pub const UPSTREAM_STREAM_WINDOW: u32 = 128 << 10;
pub const UPSTREAM_CONNECTION_WINDOW: u32 = 32 << 20;
const _: () = assert!(
    (STREAMS as u64) * (UPSTREAM_STREAM_WINDOW as u64) * 2 <= UPSTREAM_CONNECTION_WINDOW as u64
);

/// Why apid failed a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A message over the limit (the message says which and how large).
    TooLarge(String),
    /// The client sent nothing for [`REQUEST_IDLE`].
    Idle(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Refusal::TooLarge(m) | Refusal::Idle(m) => f.write_str(m),
        }
    }
}

/// Shared between a [`RequestBody`] and the proxy: set when the body is
/// refused (so the proxy can answer at once rather than wait for the
/// forwarded call to fail) and when it has ended.
#[derive(Default)]
pub struct Tripwire {
    refusal: OnceLock<Refusal>,
    notify: Notify,
    ended: AtomicBool,
    ended_notify: Notify,
}

impl Tripwire {
    fn trip(&self, refusal: Refusal) {
        let _ = self.refusal.set(refusal);
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    fn end(&self) {
        if !self.ended.swap(true, Ordering::SeqCst) {
            self.ended_notify.notify_waiters();
            self.ended_notify.notify_one();
        }
    }

    /// The refusal, if the body was refused.
    pub fn refusal(&self) -> Option<Refusal> {
        self.refusal.get().cloned()
    }

    /// Waits until tripped; returns why.
    pub async fn tripped(&self) -> Refusal {
        loop {
            let notified = self.notify.notified();
            if let Some(r) = self.refusal.get() {
                return r.clone();
            }
            notified.await;
        }
    }

    /// Waits until the request body has ended (sent whole).
    pub async fn ended(&self) {
        loop {
            let notified = self.ended_notify.notified();
            if self.ended.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// Follows gRPC message headers through a byte stream cut anywhere.
#[derive(Debug, Clone)]
pub struct FrameScanner {
    limit: usize,
    /// Header bytes of the next message seen so far.
    header: [u8; 5],
    header_len: usize,
    /// Bytes of the current message still to come.
    remaining: usize,
    /// Messages whose header was read.
    messages: u64,
}

impl FrameScanner {
    pub fn new(limit: usize) -> FrameScanner {
        FrameScanner {
            limit,
            header: [0; 5],
            header_len: 0,
            remaining: 0,
            messages: 0,
        }
    }

    /// Advances over `data`; the announced length of a message over the
    /// limit on error (the scanner is then no longer meaningful).
    pub fn scan(&mut self, mut data: &[u8]) -> Result<(), usize> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let skip = self.remaining.min(data.len());
                self.remaining -= skip;
                data = &data[skip..];
                continue;
            }
            let take = (5 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
            self.header_len += take;
            data = &data[take..];
            if self.header_len == 5 {
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]) as usize;
                if len > self.limit {
                    return Err(len);
                }
                self.remaining = len;
                self.header_len = 0;
                self.messages += 1;
            }
        }
        Ok(())
    }

    /// Whether the bytes so far end exactly after a whole message.
    pub fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.remaining == 0
    }

    /// How many message headers were read.
    pub fn messages(&self) -> u64 {
        self.messages
    }
}

/// A request body that fails when a gRPC message in it exceeds the limit
/// or when the client sends nothing for the idle time, and that tells its
/// [`Tripwire`] when it has ended.
pub struct RequestBody<B> {
    inner: B,
    scanner: FrameScanner,
    wire: Arc<Tripwire>,
    rpc: Rpc,
    idle: Duration,
    /// Armed while the client keeps apid waiting.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> RequestBody<B> {
    pub fn new(inner: B, rpc: Rpc, limit: usize, wire: Arc<Tripwire>) -> Self {
        RequestBody::with_idle(inner, rpc, limit, REQUEST_IDLE, wire)
    }

    pub fn with_idle(
        inner: B,
        rpc: Rpc,
        limit: usize,
        idle: Duration,
        wire: Arc<Tripwire>,
    ) -> Self {
        RequestBody {
            inner,
            scanner: FrameScanner::new(limit),
            wire,
            rpc,
            idle,
            timer: None,
        }
    }

    fn refuse(&self, refusal: Refusal) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let message = refusal.to_string();
        self.wire.trip(refusal);
        Poll::Ready(Some(Err(message.into())))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => f,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                self.timer = None;
                self.wire.end();
                return Poll::Ready(None);
            }
            Poll::Pending => {
                // The client keeps us waiting: time it (only while apid
                // asks for data, never while the upstream holds it back).
                let idle = self.idle;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if timer.as_mut().poll(cx).is_ready() {
                    let message = format!(
                        "the client sent no {} request data for {} s; apid ended the call",
                        self.rpc,
                        idle.as_secs()
                    );
                    return self.refuse(Refusal::Idle(message));
                }
                return Poll::Pending;
            }
        };
        self.timer = None;
        if let Some(data) = frame.data_ref() {
            // A Bytes clone is a reference count, not a copy.
            let chunk = data.clone();
            if let Err(len) = self.scanner.scan(chunk.chunk()) {
                let message = format!(
                    "{} request message is {len} bytes; apid accepts at most {} bytes for {}",
                    self.rpc, self.scanner.limit, self.rpc
                );
                return self.refuse(Refusal::TooLarge(message));
            }
        }
        if self.inner.is_end_stream() {
            self.wire.end();
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.wire.end();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn frame(len: u32) -> Vec<u8> {
        let mut v = vec![0u8];
        v.extend_from_slice(&len.to_be_bytes());
        v.extend(std::iter::repeat_n(7u8, len as usize));
        v
    }

    async fn run(chunks: Vec<Vec<u8>>, limit: usize) -> (Result<Vec<u8>, String>, Arc<Tripwire>) {
        let wire = Arc::new(Tripwire::default());
        let stream = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(c)))),
        );
        let body = RequestBody::new(StreamBody::new(stream), Rpc::Version, limit, wire.clone());
        let r = body
            .collect()
            .await
            .map(|c| c.to_bytes().to_vec())
            .map_err(|e| e.to_string());
        (r, wire)
    }

    #[tokio::test]
    async fn passes_messages_within_the_limit_split_anywhere() {
        let mut all = frame(10);
        all.extend(frame(0));
        all.extend(frame(100));
        // Split at every possible point, header bytes included.
        for cut in 0..all.len() {
            let (r, wire) = run(vec![all[..cut].to_vec(), all[cut..].to_vec()], 100).await;
            assert_eq!(r.unwrap(), all);
            assert!(wire.refusal().is_none());
            // The proxy learns that the request was sent whole.
            wire.ended().await;
        }
        let mut s = FrameScanner::new(100);
        s.scan(&all).unwrap();
        assert!(s.at_boundary());
        assert_eq!(s.messages(), 3);
    }

    #[tokio::test]
    async fn refuses_an_oversized_message_from_its_header() {
        let mut all = frame(10);
        // Only the header of a 20 MB message: refused before any payload.
        all.extend(&frame(20_000_000)[..5]);
        let (r, wire) = run(vec![all], DEFAULT_LIMIT).await;
        let e = r.unwrap_err();
        assert!(e.contains("20000000 bytes"), "{e}");
        assert!(e.contains("Version"), "{e}");
        assert_eq!(wire.tripped().await, Refusal::TooLarge(e));
    }

    /// A client stream that stalls is ended after the idle time, and a
    /// slow one that keeps sending is not.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_client_stream_is_ended() {
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
        let wire = Arc::new(Tripwire::default());
        let body = RequestBody::with_idle(
            StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
            Rpc::Upgrade,
            DEFAULT_LIMIT,
            Duration::from_secs(60),
            wire.clone(),
        );
        let reader = tokio::spawn(body.collect());
        // One frame every 50 s: slow, never idle for 60 s.
        for _ in 0..4 {
            tx.send(Ok(Frame::data(Bytes::from(frame(3)))))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(50)).await;
        }
        assert!(wire.refusal().is_none());
        // Then nothing: ended 60 s after the last frame.
        tokio::time::sleep(Duration::from_secs(11)).await;
        let e = match reader.await.unwrap() {
            Ok(_) => panic!("the stalled body ended normally"),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            e,
            "the client sent no Upgrade request data for 60 s; apid ended the call"
        );
        assert!(matches!(wire.refusal(), Some(Refusal::Idle(_))));
        drop(tx);
    }

    /// Every streaming method of the service, and only those, is
    /// long-lived (checked against the compiled descriptor).
    #[test]
    fn long_lived_calls_are_the_streaming_methods() {
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet::decode(api::FILE_DESCRIPTOR_SET).unwrap();
        let service = set
            .file
            .iter()
            .flat_map(|f| f.service.iter())
            .find(|s| s.name() == "MachineService")
            .unwrap();
        for m in &service.method {
            let rpc =
                Rpc::from_path(&format!("{}{}", crate::authz::SERVICE_PATH, m.name())).unwrap();
            assert_eq!(
                long_lived(rpc),
                m.server_streaming() || m.client_streaming(),
                "{}",
                m.name()
            );
        }
    }

    #[test]
    fn uploads_get_longer_to_be_answered() {
        assert!(answer_deadline(Rpc::Upgrade) > answer_deadline(Rpc::Reboot));
        assert!(answer_deadline(Rpc::ImageImport) >= Duration::from_secs(1800));
        assert_eq!(answer_deadline(Rpc::Version), Duration::from_secs(120));
    }
}
