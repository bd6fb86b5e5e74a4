//! Hostile HTTP/2 and gRPC input, written frame by frame over a mutual-TLS
//! connection (so it gets past the handshake and reaches the HTTP/2 and
//! gRPC layers): garbage instead of the preface, bad HPACK, oversized and
//! truncated gRPC messages, frames on stream 0, flow-control overflow,
//! rapid resets (CVE-2023-44487), CONTINUATION floods, SETTINGS and PING
//! floods. Each attack reads what apid answers until it closes or 2 s
//! pass.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::conn::Tls;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK: a literal header field without indexing, name from the static
/// table (`index` < 15), value without Huffman coding.
fn literal(index: u8, value: &str) -> Vec<u8> {
    let mut v = vec![index, value.len() as u8];
    v.extend_from_slice(value.as_bytes());
    v
}

/// The request headers of a gRPC call to `method`.
fn request_headers(method: &str) -> Vec<u8> {
    // :method POST (static 3), :scheme http (static 6).
    let mut h = vec![0x83, 0x86];
    h.extend(literal(
        4,
        &format!("/cairn.machine.v1.MachineService/{method}"),
    ));
    h.extend(literal(1, "apid"));
    // content-type (static 31: 4-bit prefix 15, then 16).
    h.extend([0x0f, 0x10, 16]);
    h.extend_from_slice(b"application/grpc");
    // te: trailers (a new name).
    h.extend([0x00, 2]);
    h.extend_from_slice(b"te");
    h.extend([8]);
    h.extend_from_slice(b"trailers");
    h
}

fn start() -> Vec<u8> {
    let mut v = PREFACE.to_vec();
    v.extend(frame(SETTINGS, 0, 0, &[]));
    v
}

/// The attacks, by name.
pub const ATTACKS: &[&str] = &[
    "garbage-preface",
    "bad-hpack",
    "grpc-length-2GiB",
    "grpc-truncated",
    "data-on-stream-0",
    "window-overflow",
    "rapid-reset",
    "continuation-flood",
    "settings-flood",
    "ping-flood",
];

/// The bytes of attack `name`.
pub fn bytes(name: &str) -> Vec<u8> {
    let mut v = start();
    match name {
        "garbage-preface" => {
            return (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
                .collect()
        }
        "bad-hpack" => v.extend(frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff, 0x7f])),
        "grpc-length-2GiB" => {
            v.extend(frame(
                HEADERS,
                END_HEADERS,
                1,
                &request_headers("ServiceList"),
            ));
            let mut m = vec![0u8];
            m.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
            m.extend_from_slice(&[0; 1000]);
            v.extend(frame(DATA, 0, 1, &m));
        }
        "grpc-truncated" => {
            v.extend(frame(HEADERS, END_HEADERS, 1, &request_headers("Logs")));
            let mut m = vec![0u8];
            m.extend_from_slice(&100u32.to_be_bytes());
            m.extend_from_slice(&[8; 10]);
            v.extend(frame(DATA, END_STREAM, 1, &m));
        }
        "data-on-stream-0" => v.extend(frame(DATA, 0, 0, &[1, 2, 3])),
        "window-overflow" => {
            v.extend(frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes()));
            v.extend(frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes()));
        }
        "rapid-reset" => {
            let headers = request_headers("ServiceList");
            for i in 0..2000u32 {
                let stream = 2 * i + 1;
                v.extend(frame(HEADERS, END_HEADERS, stream, &headers));
                v.extend(frame(RST_STREAM, 0, stream, &8u32.to_be_bytes()));
            }
        }
        "continuation-flood" => {
            v.extend(frame(HEADERS, 0, 1, &request_headers("ServiceList")));
            let filler = literal(1, &"x".repeat(120));
            for _ in 0..20_000 {
                v.extend(frame(CONTINUATION, 0, 1, &filler));
            }
        }
        "settings-flood" => {
            for _ in 0..5000 {
                v.extend(frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
            }
        }
        "ping-flood" => {
            for i in 0..5000u64 {
                v.extend(frame(PING, 0, 0, &i.to_be_bytes()));
            }
        }
        _ => {}
    }
    v
}

/// Sends attack `name` on `conn` and reads until apid closes it or 2 s
/// pass; returns the bytes apid answered with.
pub async fn run(mut conn: Tls, name: &str) -> std::io::Result<usize> {
    let data = bytes(name);
    // apid may close in the middle of a flood: that is a good answer.
    let _ = conn.write_all(&data).await;
    let _ = conn.flush().await;
    let mut got = 0;
    let mut buf = vec![0u8; 64 << 10];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got += n,
        }
    }
    Ok(got)
}
