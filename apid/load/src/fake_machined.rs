//! A stand-in for machined on a unix socket, so the load falls on apid
//! alone: ServiceList answers one small message, Logs streams 64 chunks of
//! 1 KiB (or, with `follow`, 16 KiB chunks for as long as the reader takes
//! them: a slow reader must be held back by HTTP/2 flow control, not
//! buffered by apid), everything else is Unimplemented.

use std::convert::Infallible;
use std::path::Path;

use api::machine::{Data, LogsRequest, ServiceInfo, ServiceListResponse};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, StreamBody};
use prost::Message as _;
use tonic::body::Body;

const SERVICE: &str = "/cairn.machine.v1.MachineService/";

fn frame(msg: &impl prost::Message) -> Bytes {
    let m = msg.encode_to_vec();
    let mut b = BytesMut::with_capacity(m.len() + 5);
    b.put_u8(0);
    b.put_u32(m.len() as u32);
    b.put_slice(&m);
    b.freeze()
}

fn ok_trailers() -> http::HeaderMap {
    let mut t = http::HeaderMap::new();
    t.insert("grpc-status", http::HeaderValue::from_static("0"));
    t
}

fn response(body: Body) -> http::Response<Body> {
    let mut r = http::Response::new(body);
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/grpc"),
    );
    r
}

type Frames = futures::stream::BoxStream<'static, Result<http_body::Frame<Bytes>, tonic::Status>>;

fn unary(msg: &impl prost::Message) -> http::Response<Body> {
    let frames = futures::stream::iter(vec![
        Ok::<_, tonic::Status>(http_body::Frame::data(frame(msg))),
        Ok(http_body::Frame::trailers(ok_trailers())),
    ]);
    response(Body::new(StreamBody::new(frames)))
}

fn logs(req: &LogsRequest) -> http::Response<Body> {
    let frames: Frames = if req.follow {
        let chunk = frame(&Data {
            bytes: vec![b'f'; 16 << 10],
        });
        Box::pin(futures::stream::repeat_with(move || {
            Ok(http_body::Frame::data(chunk.clone()))
        }))
    } else {
        let chunk = frame(&Data {
            bytes: vec![b'l'; 1 << 10],
        });
        Box::pin(futures::stream::iter(
            std::iter::repeat_n(chunk, 64)
                .map(|c| Ok(http_body::Frame::data(c)))
                .chain([Ok(http_body::Frame::trailers(ok_trailers()))]),
        ))
    };
    response(Body::new(StreamBody::new(frames)))
}

async fn handle(req: http::Request<Body>) -> http::Response<Body> {
    let path = req.uri().path().to_string();
    // Read the request whole first, as tonic's generated servers do (an
    // unread body keeps its DATA frames buffered in HTTP/2, and enough of
    // them make the server drop the connection: too_many_data_frames).
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return tonic::Status::cancelled("the request body failed").into_http(),
    };
    match path.strip_prefix(SERVICE) {
        Some("ServiceList") => unary(&ServiceListResponse {
            services: vec![ServiceInfo {
                id: "apid".into(),
                state: "Running".into(),
                health: "ok".into(),
                ..Default::default()
            }],
        }),
        Some("Logs") => {
            let mut b = &body[..];
            if b.len() < 5 {
                return tonic::Status::invalid_argument("no message").into_http();
            }
            b.advance(5);
            match LogsRequest::decode(b) {
                Ok(r) => logs(&r),
                Err(e) => tonic::Status::invalid_argument(e.to_string()).into_http(),
            }
        }
        _ => tonic::Status::unimplemented("the fake machined serves ServiceList and Logs")
            .into_http(),
    }
}

/// Serves on `socket` until the process ends.
pub fn start(socket: &Path) -> std::io::Result<()> {
    let listener = tokio::net::UnixListener::bind(socket)?;
    let svc = tower::service_fn(|req| async move { Ok::<_, Infallible>(handle(req).await) });
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .serve_with_incoming(
                svc,
                tokio_stream::wrappers::UnixListenerStream::new(listener),
            )
            .await
    });
    Ok(())
}
