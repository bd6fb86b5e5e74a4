//! cairn-logstore: Cairn's cluster log store. Container lines from the
//! per-node collectors (HTTP, acknowledged once durable) and machined's own
//! logs (TCP JSON lines) go into one tantivy index on a control-plane
//! node's disk; the HTTP API searches it (full text plus node / namespace /
//! pod / container / stream / service filters and a time range, newest
//! first, paged) and tails it live. Retention by age and size keeps it
//! bounded; out of room, it refuses new data and keeps answering queries.
//! See logstore/README.md.

pub mod compaction;
pub mod http;
pub mod record;
pub mod retention;
pub mod schema;
pub mod search;
pub mod server;
pub mod size;
pub mod store;
pub mod tcp;
pub mod writer;
