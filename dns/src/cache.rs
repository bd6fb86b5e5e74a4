//! A small cache of upstream answers that honours their TTLs.
//!
//! Hand-written on a HashMap: the cache is bounded and short-lived (TTLs are capped),
//! so a full LRU crate buys nothing; when full, expired entries go first, then an
//! arbitrary one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, RData, RecordType};

/// Longest time a positive answer is kept, whatever its TTL says.
pub const MAX_TTL: u32 = 3600;
/// Longest time a negative answer (NXDOMAIN, NODATA) is kept.
pub const MAX_NEGATIVE_TTL: u32 = 300;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    name: LowerName,
    qtype: RecordType,
    class: DNSClass,
    checking_disabled: bool,
}

impl CacheKey {
    pub fn new(query: &Query, checking_disabled: bool) -> Self {
        Self {
            name: LowerName::new(query.name()),
            qtype: query.query_type(),
            class: query.query_class(),
            checking_disabled,
        }
    }
}

struct Entry {
    message: Message,
    stored: Instant,
    ttl: u32,
}

pub struct Cache {
    entries: HashMap<CacheKey, Entry>,
    capacity: usize,
}

impl Cache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The cached answer with every TTL lowered by the time it spent in the cache.
    pub fn get(&mut self, key: &CacheKey, now: Instant) -> Option<Message> {
        let entry = self.entries.get(key)?;
        let age = now.saturating_duration_since(entry.stored).as_secs();
        if age >= u64::from(entry.ttl) {
            self.entries.remove(key);
            return None;
        }
        let mut message = entry.message.clone();
        let age = age as u32;
        for record in message
            .answers
            .iter_mut()
            .chain(&mut message.authorities)
            .chain(&mut message.additionals)
        {
            record.decrement_ttl(age);
        }
        Some(message)
    }

    /// Stores `message` if it is cacheable (see [`cache_ttl`]).
    pub fn insert(&mut self, key: CacheKey, message: &Message, now: Instant) {
        let Some(ttl) = cache_ttl(message) else {
            return;
        };
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, e| {
                now.saturating_duration_since(e.stored) < Duration::from_secs(e.ttl.into())
            });
            if self.entries.len() >= self.capacity {
                if let Some(victim) = self.entries.keys().next().cloned() {
                    self.entries.remove(&victim);
                }
            }
        }
        self.entries.insert(
            key,
            Entry {
                message: message.clone(),
                stored: now,
                ttl,
            },
        );
    }
}

/// How long an upstream answer may be cached: the smallest answer TTL for positive
/// answers, the SOA's negative TTL (RFC 2308: min of its TTL and MINIMUM) for NXDOMAIN
/// and NODATA. Errors, truncated answers and negative answers without SOA are not cached.
pub fn cache_ttl(message: &Message) -> Option<u32> {
    if message.metadata.truncation {
        return None;
    }
    let rcode = message.metadata.response_code;
    if rcode == ResponseCode::NoError && !message.answers.is_empty() {
        let ttl = message.answers.iter().map(|r| r.ttl).min()?;
        return (ttl > 0).then_some(ttl.min(MAX_TTL));
    }
    if rcode != ResponseCode::NoError && rcode != ResponseCode::NXDomain {
        return None;
    }
    let ttl = message.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
        _ => None,
    })?;
    (ttl > 0).then_some(ttl.min(MAX_NEGATIVE_TTL))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::rdata::SOA;
    use hickory_proto::rr::{Name, Record};
    use std::net::Ipv4Addr;

    fn query() -> Query {
        Query::query(Name::from_ascii("Example.COM.").unwrap(), RecordType::A)
    }

    fn answer(ttl: u32) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.add_query(query());
        m.add_answer(Record::from_rdata(
            query().name().clone(),
            ttl,
            RData::from(Ipv4Addr::new(192, 0, 2, 1)),
        ));
        m
    }

    fn negative(rcode: ResponseCode, soa_ttl: u32, minimum: u32) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.metadata.response_code = rcode;
        let soa = SOA::new(Name::root(), Name::root(), 1, 1, 1, 1, minimum);
        m.add_authority(Record::from_rdata(
            Name::from_ascii("com.").unwrap(),
            soa_ttl,
            RData::SOA(soa),
        ));
        m
    }

    #[test]
    fn ttls_decide_how_long_answers_stay() {
        assert_eq!(cache_ttl(&answer(60)), Some(60));
        assert_eq!(cache_ttl(&answer(86400 * 7)), Some(MAX_TTL));
        assert_eq!(cache_ttl(&answer(0)), None);
        assert_eq!(
            cache_ttl(&negative(ResponseCode::NXDomain, 900, 30)),
            Some(30)
        );
        assert_eq!(
            cache_ttl(&negative(ResponseCode::NoError, 20, 600)),
            Some(20)
        );
        assert_eq!(
            cache_ttl(&negative(ResponseCode::NXDomain, 9000, 9000)),
            Some(MAX_NEGATIVE_TTL)
        );
        assert_eq!(cache_ttl(&negative(ResponseCode::ServFail, 60, 60)), None);
        let mut truncated = answer(60);
        truncated.metadata.truncation = true;
        assert_eq!(cache_ttl(&truncated), None);
    }

    #[test]
    fn entries_age_and_expire() {
        let mut cache = Cache::new(8);
        let t0 = Instant::now();
        let key = CacheKey::new(&query(), false);
        cache.insert(key.clone(), &answer(10), t0);
        // Names compare without case.
        let lower = CacheKey::new(
            &Query::query(Name::from_ascii("example.com.").unwrap(), RecordType::A),
            false,
        );
        let hit = cache
            .get(&lower, t0 + Duration::from_secs(4))
            .expect("cached");
        assert_eq!(hit.answers[0].ttl, 6);
        assert!(cache.get(&key, t0 + Duration::from_secs(10)).is_none());
        assert!(cache.is_empty(), "an expired entry is dropped on read");
    }

    #[test]
    fn capacity_is_kept() {
        let mut cache = Cache::new(2);
        let t0 = Instant::now();
        for (i, name) in ["a.test.", "b.test.", "c.test."].iter().enumerate() {
            let q = Query::query(Name::from_ascii(name).unwrap(), RecordType::A);
            cache.insert(CacheKey::new(&q, false), &answer(10 + i as u32), t0);
        }
        assert_eq!(cache.len(), 2);
    }
}
