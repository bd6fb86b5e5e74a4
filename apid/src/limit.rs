//! Message size limits for requests apid forwards without decoding them.
//!
//! gRPC frames each message as a compressed flag, a 4-byte big-endian
//! length and the message. [`FrameLimit`] reads those headers as the body
//! streams through and fails the body as soon as one announces a message
//! over the limit, so an oversized payload is refused after its first 5
//! bytes and is never buffered. (A decoding server does the same with its
//! max message size; apid forwards bytes, so the check is written here.)

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

use crate::authz::Rpc;

/// The default per-message limit, as tonic's.
pub const DEFAULT_LIMIT: usize = 4 * 1024 * 1024;
/// ApplyConfiguration's limit: larger than any config may be, so that an
/// oversized config still reaches machined's validation and is refused
/// with a message naming the size.
pub const APPLY_LIMIT: usize = 32 * 1024 * 1024;

/// The per-message limit for `rpc`'s requests.
pub fn request_limit(rpc: Rpc) -> usize {
    match rpc {
        Rpc::ApplyConfiguration => APPLY_LIMIT,
        _ => DEFAULT_LIMIT,
    }
}

/// Set when a [`FrameLimit`] refuses a message, so the proxy can answer
/// at once rather than wait for the forwarded call to fail.
#[derive(Default)]
pub struct Tripwire {
    message: OnceLock<String>,
    notify: Notify,
}

impl Tripwire {
    fn trip(&self, message: String) {
        let _ = self.message.set(message);
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Waits until tripped; returns why.
    pub async fn tripped(&self) -> String {
        loop {
            let notified = self.notify.notified();
            if let Some(m) = self.message.get() {
                return m.clone();
            }
            notified.await;
        }
    }
}

/// A request body that fails when a gRPC message in it exceeds `limit`.
pub struct FrameLimit<B> {
    inner: B,
    limit: usize,
    /// Header bytes of the next message seen so far.
    header: [u8; 5],
    header_len: usize,
    /// Bytes of the current message still to come.
    remaining: usize,
    wire: Arc<Tripwire>,
    rpc: Rpc,
}

impl<B> FrameLimit<B> {
    pub fn new(inner: B, rpc: Rpc, limit: usize, wire: Arc<Tripwire>) -> Self {
        FrameLimit {
            inner,
            limit,
            header: [0; 5],
            header_len: 0,
            remaining: 0,
            wire,
            rpc,
        }
    }

    /// Advances over `data`; the length of a message over the limit on error.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), usize> {
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
            }
        }
        Ok(())
    }
}

impl<B> Body for FrameLimit<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => f,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            // A Bytes clone is a reference count, not a copy.
            let chunk = data.clone();
            if let Err(len) = self.scan(chunk.chunk()) {
                let message = format!(
                    "{} request message is {len} bytes; apid accepts at most {} bytes for {}",
                    self.rpc, self.limit, self.rpc
                );
                self.wire.trip(message.clone());
                return Poll::Ready(Some(Err(message.into())));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
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
        let body = FrameLimit::new(StreamBody::new(stream), Rpc::Version, limit, wire.clone());
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
            let (r, _) = run(vec![all[..cut].to_vec(), all[cut..].to_vec()], 100).await;
            assert_eq!(r.unwrap(), all);
        }
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
        assert_eq!(wire.tripped().await, e);
    }
}
