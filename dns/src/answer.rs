//! Turns one DNS query into one response: cluster names from the zone snapshot (with
//! authority), everything else from the upstream forwarder.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, RData, Record, RecordType};
use tokio::sync::watch;

use crate::upstream::{Forwarder, EDNS_PAYLOAD};
use crate::zone::{Lookup, Zone};

/// The largest UDP answer for a client without EDNS (RFC 1035).
const PLAIN_UDP_PAYLOAD: usize = 512;

/// How the query arrived: UDP answers must fit the client's payload size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The current zone snapshot; `None` until the watchers completed their first sync.
pub type ZoneHandle = watch::Receiver<Option<Arc<Zone>>>;

pub struct Resolver {
    origin: LowerName,
    zone: ZoneHandle,
    forwarder: Forwarder,
    started: Instant,
    /// Seconds after `started` of the last forwarding warning (0: none yet).
    last_warning: AtomicU64,
    suppressed: AtomicU64,
}

/// Forwarding failures are logged at warn level at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);

impl Resolver {
    pub fn new(origin: &hickory_proto::rr::Name, zone: ZoneHandle, forwarder: Forwarder) -> Self {
        Self {
            origin: LowerName::new(origin),
            zone,
            forwarder,
            started: Instant::now(),
            last_warning: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Answers the query in `request` (wire format). Returns `None` for input that must
    /// not be answered (responses, garbage too short to carry an id).
    pub async fn answer(&self, request: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let request = match Message::from_vec(request) {
            Ok(request) => request,
            Err(_) if request.len() >= 12 && request[2] & 0x80 == 0 => {
                let id = u16::from_be_bytes([request[0], request[1]]);
                let reply = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
                return reply.to_vec().ok();
            }
            Err(_) => return None,
        };
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let response = self.respond(&request).await;
        encode(&request, response, transport)
    }

    /// Builds the response message for a parsed query.
    pub async fn respond(&self, request: &Message) -> Message {
        let mut response = Message::new(
            request.metadata.id,
            MessageType::Response,
            request.metadata.op_code,
        );
        response.metadata = Metadata::response_from_request(&request.metadata);
        response.metadata.recursion_available = true;
        response.queries = request.queries.clone();
        if request.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_PAYLOAD);
            response.set_edns(edns);
        }
        if request.metadata.op_code != OpCode::Query {
            response.metadata.response_code = ResponseCode::NotImp;
            return response;
        }
        let [query] = request.queries.as_slice() else {
            response.metadata.response_code = ResponseCode::FormErr;
            return response;
        };
        let name = LowerName::new(query.name());
        let qtype = query.query_type();

        let zone = self.zone.borrow().clone();
        let lookup = match &zone {
            Some(zone) if query.query_class() == DNSClass::IN => zone.lookup(&name, qtype),
            Some(zone) if zone.contains(&name) => {
                response.metadata.response_code = ResponseCode::Refused;
                return response;
            }
            Some(_) => Lookup::NotAuthoritative,
            // Before the first sync an empty zone would deny names that exist: fail
            // cluster names instead, so clients retry rather than cache NXDOMAIN.
            None if self.origin.zone_of(&name) => {
                response.metadata.response_code = ResponseCode::ServFail;
                return response;
            }
            None => Lookup::NotAuthoritative,
        };

        match lookup {
            Lookup::Records(records) => {
                response.metadata.authoritative = true;
                let alias = match records.as_slice() {
                    [Record {
                        data: RData::CNAME(target),
                        ..
                    }] if qtype != RecordType::CNAME && qtype != RecordType::ANY => {
                        Some(target.0.clone())
                    }
                    _ => None,
                };
                response.answers = records;
                if let (Some(target), Some(zone)) = (alias, &zone) {
                    self.follow_alias(
                        &mut response,
                        zone,
                        target,
                        qtype,
                        request.metadata.checking_disabled,
                    )
                    .await;
                }
            }
            Lookup::NoData | Lookup::NxDomain => {
                response.metadata.authoritative = true;
                if lookup == Lookup::NxDomain {
                    response.metadata.response_code = ResponseCode::NXDomain;
                }
                if let Some(zone) = &zone {
                    response.authorities.push(zone.soa().clone());
                }
            }
            Lookup::NotAuthoritative => match self
                .forwarder
                .resolve(query, request.metadata.checking_disabled)
                .await
            {
                Ok(upstream) => {
                    response.metadata.response_code = upstream.metadata.response_code;
                    response.metadata.authentic_data = upstream.metadata.authentic_data;
                    response.answers = upstream.answers;
                    response.authorities = upstream.authorities;
                    response.additionals = upstream.additionals;
                }
                Err(err) => {
                    self.warn_forwarding(&err);
                    response.metadata.response_code = ResponseCode::ServFail;
                }
            },
        }
        response
    }

    /// Logs a forwarding failure at most once per [`WARN_EVERY`]: with the upstream down
    /// every query fails, and one line per query would drown the log.
    fn warn_forwarding(&self, err: &crate::upstream::UpstreamError) {
        let now = self.started.elapsed().as_secs();
        let last = self.last_warning.load(Ordering::Relaxed);
        let suppressed = self.suppressed.fetch_add(1, Ordering::Relaxed);
        if (last == 0 || now >= last + WARN_EVERY.as_secs())
            && self
                .last_warning
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.suppressed.store(0, Ordering::Relaxed);
            tracing::warn!(%err, similar_failures_since_last_warning = suppressed, "forwarding failed");
        } else {
            tracing::debug!(%err, "forwarding failed");
        }
    }

    /// An ExternalName Service answered with a CNAME: add the target's records (from
    /// the zone when the target is a cluster name, upstream otherwise), as a recursive
    /// resolver does, so stub resolvers get addresses in one round trip.
    async fn follow_alias(
        &self,
        response: &mut Message,
        zone: &Zone,
        target: hickory_proto::rr::Name,
        qtype: RecordType,
        checking_disabled: bool,
    ) {
        let lower = LowerName::new(&target);
        if zone.contains(&lower) {
            if let Lookup::Records(records) = zone.lookup(&lower, qtype) {
                response
                    .answers
                    .extend(records.into_iter().filter(|r| r.record_type() == qtype));
            }
            return;
        }
        let query = hickory_proto::op::Query::query(target, qtype);
        match self.forwarder.resolve(&query, checking_disabled).await {
            Ok(upstream) => response.answers.extend(upstream.answers),
            Err(err) => tracing::debug!(%err, "following an ExternalName alias upstream failed"),
        }
    }
}

/// Serializes `response`; over UDP an answer larger than the client accepts is replaced
/// by its truncated form (TC set, no records) so the client retries over TCP.
fn encode(request: &Message, response: Message, transport: Transport) -> Option<Vec<u8>> {
    let bytes = match response.to_vec() {
        Ok(bytes) => bytes,
        Err(err) => {
            tracing::warn!(%err, "encoding a response failed");
            let fail = Message::error_msg(
                request.metadata.id,
                request.metadata.op_code,
                ResponseCode::ServFail,
            );
            return fail.to_vec().ok();
        }
    };
    if transport == Transport::Udp {
        let limit = match &request.edns {
            Some(edns) => usize::from(edns.max_payload().min(EDNS_PAYLOAD)).max(PLAIN_UDP_PAYLOAD),
            None => PLAIN_UDP_PAYLOAD,
        };
        if bytes.len() > limit {
            return response.truncate().to_vec().ok();
        }
    }
    Some(bytes)
}
