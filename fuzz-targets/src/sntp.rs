//! SNTP answers as machined's time sync reads them: sntpc's packet
//! processing (host::time::sntp uses sntpc::get_time) fed with any
//! bytes as the server's reply, through a socket that answers from the
//! input. With the first input bit set the reply echoes the request's
//! transmit time as its originate time, so the checks behind that one are
//! reached. Also machined's own test responder
//! (host::time::responder::reply) with any request. Never panics.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use sntpc::{NtpContext, NtpUdpSocket, StdTimestampGen};

struct Replay {
    reply: Vec<u8>,
    echo_origin: bool,
    sent: RefCell<Vec<u8>>,
}

const SERVER: &str = "192.0.2.1:123";

impl NtpUdpSocket for Replay {
    async fn send_to(&self, buf: &[u8], _: SocketAddr) -> sntpc::Result<usize> {
        *self.sent.borrow_mut() = buf.to_vec();
        Ok(buf.len())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> sntpc::Result<(usize, SocketAddr)> {
        let mut reply = self.reply.clone();
        let sent = self.sent.borrow();
        if self.echo_origin && reply.len() >= 32 && sent.len() >= 48 {
            reply[24..32].copy_from_slice(&sent[40..48]);
        }
        let n = reply.len().min(buf.len());
        buf[..n].copy_from_slice(&reply[..n]);
        Ok((n, SERVER.parse().expect("a literal address")))
    }
}

/// One input, as the fuzzer gives it.
pub fn run(data: &[u8]) {
    let Some((&flags, reply)) = data.split_first() else {
        return;
    };
    let socket = Replay {
        reply: reply.to_vec(),
        echo_origin: flags & 1 == 1,
        sent: RefCell::new(Vec::new()),
    };
    let server: SocketAddr = SERVER.parse().expect("a literal address");
    let context = NtpContext::new(StdTimestampGen::default());
    let _ = futures::executor::block_on(sntpc::get_time(server, &socket, context));

    let now = UNIX_EPOCH + Duration::from_secs(u64::from(flags) << 24);
    if let Some(answer) = host::time::responder::reply(reply, now) {
        assert_eq!(answer[0] & 7, 4, "a server reply");
        assert_eq!(
            &answer[24..32],
            &reply[40..48],
            "originate = the client's transmit"
        );
    }
}
