//! Giving the disk space of deleted records back.
//!
//! Retention deletes records by query; their bytes stay in the segment
//! files until the segment is rewritten without them (a merge), and the
//! files of the old segment go only when tantivy's garbage collection finds
//! that no commit and no merge in progress refers to them.
//!
//! tantivy collects garbage after its own commits and after merges that
//! succeed. A merge is dropped when a commit removed one of its segments
//! before it ended (as retention's commits do when they delete a segment's
//! last records); what it wrote is then left on disk until something
//! collects again. Two owners merging the same segments (tantivy's merge
//! policy and the writer) guarantee such drops, so segments with deleted
//! records are rewritten here only, one merge at a time, and the writer
//! collects garbage when that merge ended and on every retention pass.

use tantivy::{FutureResult, Index, IndexWriter, SegmentMeta, TantivyDocument};

/// Segments with more than this share of their records deleted are rewritten.
const DELETED_SHARE: (u64, u64) = (1, 5);

/// The compacting merge in progress, if any.
#[derive(Default)]
pub struct Compaction {
    running: Option<FutureResult<Option<SegmentMeta>>>,
}

impl Compaction {
    /// Forgets the merge in progress (its writer was rolled back or dropped).
    pub fn forget(&mut self) {
        self.running = None;
    }

    /// Whether the merge ended since the last call: it merged, or it was
    /// dropped or failed and left what it wrote behind.
    pub fn ended(&mut self) -> bool {
        let Some(merge) = self.running.as_mut() else {
            return false;
        };
        let Some(result) = futures::FutureExt::now_or_never(merge) else {
            return false;
        };
        self.running = None;
        match result {
            Ok(_) => tracing::debug!("compacting merge done"),
            Err(e) => {
                tracing::debug!(%e, "compacting merge dropped; retried at the next retention pass")
            }
        }
        true
    }

    /// Starts rewriting the committed segments with more than a fifth of
    /// their records deleted, unless a merge started here is still running.
    pub fn start(&mut self, index: &Index, writer: &mut IndexWriter<TantivyDocument>) {
        if self.running.is_some() {
            return;
        }
        let Ok(metas) = index.searchable_segment_metas() else {
            return;
        };
        let (part, whole) = DELETED_SHARE;
        let ids: Vec<_> = metas
            .iter()
            .filter(|m| {
                m.max_doc() > 0
                    && u64::from(m.num_deleted_docs()) * whole > u64::from(m.max_doc()) * part
            })
            .map(|m| m.id())
            .collect();
        if ids.is_empty() {
            return;
        }
        tracing::debug!(
            segments = ids.len(),
            "compacting segments with deleted records"
        );
        // The merge runs on tantivy's merge thread; `ended` sees it end.
        self.running = Some(writer.merge(&ids));
    }
}

/// Removes the index files no commit and no merge in progress refers to.
pub fn collect_garbage(writer: &IndexWriter<TantivyDocument>) {
    match writer.garbage_collect_files().wait() {
        Ok(r) => {
            if !r.deleted_files.is_empty() {
                tracing::debug!(files = r.deleted_files.len(), "removed unused index files");
            }
            if !r.failed_to_delete_files.is_empty() {
                tracing::warn!(
                    files = r.failed_to_delete_files.len(),
                    "unused index files could not be removed; retried at the next retention pass"
                );
            }
        }
        Err(e) => tracing::warn!(%e, "removing unused index files"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::record::Record;
    use crate::retention::older_than;
    use crate::store::Store;

    /// A store with two committed segments of ten records each (times 0 to
    /// 9 and 10 to 19), merged only by hand.
    fn two_segments(dir: &std::path::Path) -> (std::sync::Arc<Store>, IndexWriter) {
        let (store, _) = Store::open(dir).unwrap();
        let mut w: IndexWriter = store.index.writer_with_num_threads(1, 15 << 20).unwrap();
        w.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
        for segment in 0..2 {
            for i in 0..10 {
                let r = Record {
                    time: segment * 10 + i,
                    node: None,
                    namespace: None,
                    pod: None,
                    container: None,
                    stream: None,
                    service: None,
                    message: format!("record {segment}.{i}"),
                    labels: Default::default(),
                };
                w.add_document(store.fields.document(&r, (segment * 10 + i) as u64))
                    .unwrap();
            }
            w.commit().unwrap();
        }
        (store, w)
    }

    /// The segments whose files are in the index directory.
    fn on_disk(store: &Store) -> BTreeSet<String> {
        std::fs::read_dir(&store.dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                let (uuid, _) = name.split_once('.')?;
                (uuid.len() == 32).then(|| uuid.to_string())
            })
            .collect()
    }

    fn committed(store: &Store) -> BTreeSet<String> {
        let metas = store.index.searchable_segment_metas().unwrap();
        metas.iter().map(|m| m.id().uuid_string()).collect()
    }

    fn wait_until_ended(c: &mut Compaction) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !c.ended() {
            assert!(
                Instant::now() < deadline,
                "the compacting merge did not end"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_segment_a_fifth_deleted_is_rewritten_and_its_files_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, mut w) = two_segments(tmp.path());
        // Three of the first segment's ten: more than a fifth.
        w.delete_query(older_than(&store.fields, 3)).unwrap();
        w.commit().unwrap();
        let mut c = Compaction::default();
        c.start(&store.index, &mut w);
        assert!(c.running.is_some());
        // Started once: a second call does not merge the same segment again.
        c.start(&store.index, &mut w);
        wait_until_ended(&mut c);
        collect_garbage(&w);
        let metas = store.index.searchable_segment_metas().unwrap();
        let mut docs: Vec<_> = metas
            .iter()
            .map(|m| (m.num_docs(), m.num_deleted_docs()))
            .collect();
        docs.sort();
        assert_eq!(docs, [(7, 0), (10, 0)]);
        assert_eq!(on_disk(&store), committed(&store));
        // Nothing left to rewrite.
        c.start(&store.index, &mut w);
        assert!(c.running.is_none());
    }

    #[test]
    fn files_of_a_merge_dropped_by_a_commit_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, mut w) = two_segments(tmp.path());
        w.delete_query(older_than(&store.fields, 3)).unwrap();
        w.commit().unwrap();
        let mut c = Compaction::default();
        c.start(&store.index, &mut w);
        // The rest of the first segment goes while it is being merged: when
        // the commit comes first, tantivy drops the merge and keeps what it
        // wrote; either way only the second segment's files may be left.
        w.delete_query(older_than(&store.fields, 10)).unwrap();
        w.commit().unwrap();
        wait_until_ended(&mut c);
        collect_garbage(&w);
        assert_eq!(committed(&store).len(), 1);
        assert_eq!(on_disk(&store), committed(&store));
    }
}
