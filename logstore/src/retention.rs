//! Retention: which records to delete, by age and by size.
//!
//! - By age: records whose `time` is older than `--max-age` go.
//! - By size: when the live records take more than `--max-size`, the
//!   oldest go until they take about 80 % of it, except records younger
//!   than `--protect-recent`: the logs of the last minutes are the ones an
//!   operator is reading, so when only those are left the store refuses new
//!   data (HTTP 507) instead of eating them, and the collectors hold their
//!   lines (their disk buffer, then the kubelet's files) until room returns.
//!
//! Deletion is tantivy's delete-by-query on the `time` range, committed like
//! any batch; segments left a fifth deleted are rewritten and the files no
//! commit refers to any more are removed (see `compaction`).

use std::ops::Bound;
use std::time::Duration;

use tantivy::collector::Count;
use tantivy::query::{Query, RangeQuery};
use tantivy::schema::Term;
use tantivy::Searcher;

use crate::schema::Fields;
use crate::size::MinFree;

/// The retention settings.
#[derive(Debug, Clone)]
pub struct Policy {
    pub max_age: Option<Duration>,
    pub max_size: u64,
    pub protect_recent: Duration,
    pub min_free: MinFree,
}

/// What one retention pass decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Delete records with `time` strictly before this.
    pub delete_before: Option<i64>,
    /// Records that will go.
    pub records: u64,
    /// The live records exceed the size limit.
    pub over_size: bool,
    pub reason: &'static str,
}

/// Records with `time < cutoff`.
pub fn older_than(fields: &Fields, cutoff: i64) -> Box<dyn Query> {
    Box::new(RangeQuery::new(
        Bound::Unbounded,
        Bound::Excluded(Term::from_field_i64(fields.time, cutoff)),
    ))
}

fn count_before(searcher: &Searcher, fields: &Fields, t: i64) -> tantivy::Result<u64> {
    Ok(searcher.search(&*older_than(fields, t), &Count)? as u64)
}

/// The smallest and largest `time` of the snapshot (None when empty).
fn time_bounds(searcher: &Searcher) -> tantivy::Result<Option<(i64, i64)>> {
    let mut bounds: Option<(i64, i64)> = None;
    for s in searcher.segment_readers() {
        if s.num_docs() == 0 {
            continue;
        }
        let col = s.fast_fields().i64("time")?;
        let (lo, hi) = (col.min_value(), col.max_value());
        bounds = Some(match bounds {
            None => (lo, hi),
            Some((a, b)) => (a.min(lo), b.max(hi)),
        });
    }
    Ok(bounds)
}

/// Decides what to delete now. `live_bytes` is the size of the live records.
pub fn plan(
    searcher: &Searcher,
    fields: &Fields,
    policy: &Policy,
    now: i64,
    live_bytes: u64,
) -> tantivy::Result<Plan> {
    let mut plan = Plan {
        delete_before: None,
        records: 0,
        over_size: live_bytes > policy.max_size,
        reason: "",
    };
    let Some((oldest, _)) = time_bounds(searcher)? else {
        return Ok(plan);
    };
    if let Some(age) = policy.max_age {
        let cutoff = now.saturating_sub(age.as_nanos().min(i64::MAX as u128) as i64);
        if oldest < cutoff {
            let n = count_before(searcher, fields, cutoff)?;
            if n > 0 {
                plan.delete_before = Some(cutoff);
                plan.records = n;
                plan.reason = "older than --max-age";
            }
        }
    }
    if plan.over_size {
        let docs = searcher.num_docs();
        let target = policy.max_size / 10 * 8;
        let drop_fraction = 1.0 - target as f64 / live_bytes as f64;
        let want = ((docs as f64 * drop_fraction).ceil() as u64).clamp(1, docs);
        let protected =
            now.saturating_sub(policy.protect_recent.as_nanos().min(i64::MAX as u128) as i64);
        // The smallest cutoff that deletes at least `want` records, found by
        // bisection on counts (bounded memory, a few dozen range counts).
        let (mut lo, mut hi) = (oldest, protected.max(oldest));
        if count_before(searcher, fields, hi)? >= want {
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if count_before(searcher, fields, mid)? >= want {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
        }
        let cutoff = hi.min(protected);
        let n = count_before(searcher, fields, cutoff)?;
        if n > 0 && plan.delete_before.is_none_or(|c| cutoff > c) {
            plan.delete_before = Some(cutoff);
            plan.records = n;
            plan.reason = "over --max-size";
        }
        if n == 0 && plan.delete_before.is_none() {
            plan.reason = "over --max-size, but every record is younger than --protect-recent";
        }
    }
    Ok(plan)
}
