//! Queries: the parameters of `/api/v1/query` and `/api/v1/tail` turned
//! into one tantivy query, and the two ways of reading results: a page,
//! newest first, with a cursor for the next one; and the records committed
//! after a sequence number, oldest first, for the live tail.
//!
//! Ordering is by `(time, seq)`: `seq` is unique, so a cursor
//! `(time, seq)` names an exact position and pages never skip or repeat a
//! record, even when many share a timestamp.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::Duration;

use tantivy::collector::TopDocs;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery, TermQuery};
use tantivy::schema::{IndexRecordOption, Term, Value};
use tantivy::{DocAddress, Searcher, SegmentReader, TantivyDocument};

use crate::record::{now_nanos, parse_time, Stream};
use crate::schema::{Fields, FILTER_FIELDS};

/// Most records one page may hold.
pub const MAX_LIMIT: usize = 5000;
/// Records per page without `limit`.
pub const DEFAULT_LIMIT: usize = 100;

/// A request the store cannot run; the message names the parameter.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("q: {0}")]
    Syntax(String),
    #[error("{param}: {problem}")]
    Param { param: String, problem: String },
    #[error("search failed: {0}")]
    Search(String),
}

fn param(param: &str, problem: impl Into<String>) -> QueryError {
    QueryError::Param {
        param: param.to_string(),
        problem: problem.into(),
    }
}

/// A position in newest-first order: the last record of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub time: i64,
    pub seq: u64,
}

impl Cursor {
    pub fn encode(self) -> String {
        format!("{}.{}", self.time, self.seq)
    }

    pub fn decode(s: &str) -> Result<Cursor, QueryError> {
        let bad = || {
            param(
                "cursor",
                format!("{s:?} is not a cursor this store returned"),
            )
        };
        let (t, q) = s.split_once('.').ok_or_else(bad)?;
        Ok(Cursor {
            time: t.parse().map_err(|_| bad())?,
            seq: q.parse().map_err(|_| bad())?,
        })
    }
}

/// A parsed request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// tantivy query syntax over `message` (and `field:value` for others).
    pub q: String,
    /// Exact filters: (field name, value).
    pub filters: Vec<(String, String)>,
    /// Nanoseconds, inclusive.
    pub start: Option<i64>,
    /// Nanoseconds, exclusive.
    pub end: Option<i64>,
    pub limit: usize,
    pub cursor: Option<Cursor>,
    /// Tail: records with a larger sequence number.
    pub after_seq: Option<u64>,
}

const PARAMS: [&str; 7] = ["q", "start", "end", "since", "limit", "cursor", "after_seq"];

impl Request {
    /// Reads the query-string parameters; unknown ones are refused so a
    /// typo does not silently widen a search.
    pub fn from_params(params: &BTreeMap<String, String>) -> Result<Request, QueryError> {
        let mut r = Request {
            limit: DEFAULT_LIMIT,
            ..Request::default()
        };
        for (k, v) in params {
            match k.as_str() {
                "q" => r.q = v.clone(),
                "start" => r.start = Some(parse_time(v).map_err(|p| param("start", p))?),
                "end" => r.end = Some(parse_time(v).map_err(|p| param("end", p))?),
                "since" => {
                    let d: Duration = humantime::parse_duration(v).map_err(|e| {
                        param(
                            "since",
                            format!("{v:?} is not a duration such as 1h or 30m ({e})"),
                        )
                    })?;
                    let nanos = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
                    let since = now_nanos().saturating_sub(nanos);
                    r.start = Some(r.start.map_or(since, |s| s.max(since)));
                }
                "limit" => {
                    r.limit = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            param(
                                "limit",
                                format!("{v:?} is not a number from 1 to {MAX_LIMIT}"),
                            )
                        })?;
                }
                "cursor" => r.cursor = Some(Cursor::decode(v)?),
                "after_seq" => {
                    r.after_seq = Some(v.parse().map_err(|_| {
                        param("after_seq", format!("{v:?} is not a sequence number"))
                    })?)
                }
                // kubectl (--request-timeout) and client-go add `timeout`
                // to every request, and the API server's service proxy
                // passes it on; the API server enforces it, not the store.
                "timeout" => {}
                f if FILTER_FIELDS.contains(&f) => {
                    if f == "stream" && Stream::parse(v).is_none() {
                        return Err(param(
                            "stream",
                            format!("{v:?} is neither stdout nor stderr"),
                        ));
                    }
                    r.filters.push((f.to_string(), v.clone()));
                }
                other => {
                    return Err(param(
                        other,
                        format!(
                            "unknown parameter (known: {}, {})",
                            PARAMS.join(", "),
                            FILTER_FIELDS.join(", ")
                        ),
                    ))
                }
            }
        }
        if let (Some(s), Some(e)) = (r.start, r.end) {
            if s >= e {
                return Err(param(
                    "end",
                    "the time range is empty (end is not after start)",
                ));
            }
        }
        Ok(r)
    }

    /// The tantivy query: the text query AND the filters AND the time range
    /// AND the cursor or `after_seq` position.
    pub fn to_query(
        &self,
        fields: &Fields,
        parser: &QueryParser,
    ) -> Result<Box<dyn Query>, QueryError> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if !self.q.trim().is_empty() {
            let q = parser
                .parse_query(&self.q)
                .map_err(|e| QueryError::Syntax(e.to_string()))?;
            clauses.push((Occur::Must, q));
        }
        for (name, value) in &self.filters {
            // `from_params` only lets filter fields through.
            if let Some(field) = fields.filter(name) {
                clauses.push((
                    Occur::Must,
                    Box::new(TermQuery::new(
                        Term::from_field_text(field, value),
                        IndexRecordOption::Basic,
                    )),
                ));
            }
        }
        if self.start.is_some() || self.end.is_some() {
            let lower = self.start.map_or(Bound::Unbounded, |s| {
                Bound::Included(Term::from_field_i64(fields.time, s))
            });
            let upper = self.end.map_or(Bound::Unbounded, |e| {
                Bound::Excluded(Term::from_field_i64(fields.time, e))
            });
            clauses.push((Occur::Must, Box::new(RangeQuery::new(lower, upper))));
        }
        if let Some(c) = self.cursor {
            clauses.push((Occur::Must, before_cursor(fields, c)));
        }
        if let Some(after) = self.after_seq {
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    Bound::Excluded(Term::from_field_u64(fields.seq, after)),
                    Bound::Unbounded,
                )),
            ));
        }
        Ok(match clauses.len() {
            0 => Box::new(AllQuery),
            1 if matches!(clauses[0].0, Occur::Must) => clauses.remove(0).1,
            _ => Box::new(BooleanQuery::new(clauses)),
        })
    }
}

/// Records strictly before the cursor in newest-first order:
/// `time < c.time OR (time = c.time AND seq < c.seq)`.
fn before_cursor(fields: &Fields, c: Cursor) -> Box<dyn Query> {
    let time = |lo, hi| Box::new(RangeQuery::new(lo, hi)) as Box<dyn Query>;
    let older = time(
        Bound::Unbounded,
        Bound::Excluded(Term::from_field_i64(fields.time, c.time)),
    );
    let same_time = time(
        Bound::Included(Term::from_field_i64(fields.time, c.time)),
        Bound::Included(Term::from_field_i64(fields.time, c.time)),
    );
    let lower_seq = Box::new(RangeQuery::new(
        Bound::Unbounded,
        Bound::Excluded(Term::from_field_u64(fields.seq, c.seq)),
    ));
    Box::new(BooleanQuery::new(vec![
        (Occur::Should, older),
        (
            Occur::Should,
            Box::new(BooleanQuery::new(vec![
                (Occur::Must, same_time),
                (Occur::Must, lower_seq),
            ])),
        ),
    ]))
}

/// One page of results.
#[derive(Debug)]
pub struct Page {
    /// Stored record JSON, newest first.
    pub records: Vec<String>,
    pub next_cursor: Option<Cursor>,
}

fn stored(searcher: &Searcher, fields: &Fields, addr: DocAddress) -> Result<String, QueryError> {
    let doc: TantivyDocument = searcher
        .doc(addr)
        .map_err(|e| QueryError::Search(e.to_string()))?;
    Ok(doc
        .get_first(fields.record)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default())
}

/// `(time, seq)` of each document of a segment.
fn time_and_seq(segment: &SegmentReader) -> impl FnMut(tantivy::DocId) -> (i64, u64) {
    let ff = segment.fast_fields();
    let time = ff.i64("time").ok().map(|c| c.first_or_default_col(0));
    let seq = ff.u64("seq").ok().map(|c| c.first_or_default_col(0));
    move |doc| {
        (
            time.as_ref().map_or(0, |c| c.get_val(doc)),
            seq.as_ref().map_or(0, |c| c.get_val(doc)),
        )
    }
}

/// The newest `limit` records matching `query`.
pub fn page(
    searcher: &Searcher,
    fields: &Fields,
    query: &dyn Query,
    limit: usize,
) -> Result<Page, QueryError> {
    let top = TopDocs::with_limit(limit + 1).order_by(time_and_seq);
    let mut hits = searcher
        .search(query, &top)
        .map_err(|e| QueryError::Search(e.to_string()))?;
    let more = hits.len() > limit;
    hits.truncate(limit);
    let next_cursor = if more {
        hits.last().map(|((time, seq), _)| Cursor {
            time: *time,
            seq: *seq,
        })
    } else {
        None
    };
    let records = hits
        .into_iter()
        .map(|(_, addr)| stored(searcher, fields, addr))
        .collect::<Result<_, _>>()?;
    Ok(Page {
        records,
        next_cursor,
    })
}

/// The `limit` lowest-numbered records matching `query` (which carries an
/// `after_seq` bound), in sequence order, with their sequence numbers.
pub fn after(
    searcher: &Searcher,
    fields: &Fields,
    query: &dyn Query,
    limit: usize,
) -> Result<Vec<(u64, String)>, QueryError> {
    let by_seq = |segment: &SegmentReader| {
        let seq = segment
            .fast_fields()
            .u64("seq")
            .ok()
            .map(|c| c.first_or_default_col(0));
        move |doc| Reverse(seq.as_ref().map_or(0, |c| c.get_val(doc)))
    };
    let hits = searcher
        .search(query, &TopDocs::with_limit(limit).order_by(by_seq))
        .map_err(|e| QueryError::Search(e.to_string()))?;
    hits.into_iter()
        .map(|(Reverse(seq), addr)| Ok((seq, stored(searcher, fields, addr)?)))
        .collect()
}
