//! apid's gRPC frame limit (apid::limit::FrameScanner), which reads message
//! headers out of request bodies it forwards undecoded. Whatever the bytes
//! and however the body is cut into chunks, the scanner agrees with a
//! plain one-pass reading of the frames: the same count, the same end
//! state, and the same refusal of the first message over the limit.

use apid::limit::FrameScanner;

/// (messages read, ends on a boundary) or the oversized length.
fn reference(data: &[u8], limit: usize) -> Result<(u64, bool), usize> {
    let mut at = 0;
    let mut messages = 0;
    loop {
        if at == data.len() {
            return Ok((messages, true));
        }
        let Some(h) = data.get(at..at + 5) else {
            return Ok((messages, false));
        };
        let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
        if len > limit {
            return Err(len);
        }
        messages += 1;
        at += 5;
        if data.len() - at < len {
            return Ok((messages, len == 0));
        }
        at += len;
    }
}

/// One input, as the fuzzer gives it.
pub fn run(input: &[u8]) {
    // [limit: 2 bytes][cuts: 1 byte n][n cut offsets, 2 bytes each][body]
    if input.len() < 3 {
        return;
    }
    let limit = usize::from(u16::from_be_bytes([input[0], input[1]]));
    let n = usize::from(input[2] % 8);
    let Some(cuts) = input.get(3..3 + 2 * n) else {
        return;
    };
    let body = &input[3 + 2 * n..];
    let mut points: Vec<usize> = cuts
        .chunks(2)
        .map(|c| usize::from(u16::from_be_bytes([c[0], c[1]])) % (body.len() + 1))
        .collect();
    points.sort_unstable();

    let mut scanner = FrameScanner::new(limit);
    let mut last = 0;
    let mut result = Ok(());
    for p in points.into_iter().chain([body.len()]) {
        result = scanner.scan(&body[last..p]);
        last = p;
        if result.is_err() {
            break;
        }
    }
    match (result, reference(body, limit)) {
        (Ok(()), Ok((messages, boundary))) => {
            assert_eq!(scanner.messages(), messages);
            assert_eq!(scanner.at_boundary(), boundary);
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("scanner {a:?}, reference {b:?}"),
    }
}
