//! The tantivy schema of the log index and the conversion of a record into
//! a tantivy document.
//!
//! Only the record's JSON is stored (one stored field, so a query answer is
//! the stored strings joined, no re-serialisation); the rest is indexed for
//! search: `message` tokenized with positions (phrases work), the labels of
//! the producer (`node`, `namespace`, `pod`, `container`, `stream`,
//! `service`) as exact terms, extra labels under `labels.<name>`, and `time`
//! and `seq` as fast fields for ranges and ordering.

use tantivy::schema::{
    Field, IndexRecordOption, JsonObjectOptions, NumericOptions, Schema, TextFieldIndexing,
    TextOptions, STORED, STRING, TEXT,
};
use tantivy::TantivyDocument;

use crate::record::Record;

/// The fields filters may name (exact terms).
pub const FILTER_FIELDS: [&str; 6] = ["node", "namespace", "pod", "container", "stream", "service"];

/// Handles of every field of the schema.
#[derive(Debug, Clone)]
pub struct Fields {
    pub time: Field,
    pub seq: Field,
    pub node: Field,
    pub namespace: Field,
    pub pod: Field,
    pub container: Field,
    pub stream: Field,
    pub service: Field,
    pub message: Field,
    pub labels: Field,
    pub record: Field,
}

/// Builds the schema.
pub fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let numeric = NumericOptions::default().set_indexed().set_fast();
    let time = b.add_i64_field("time", numeric.clone());
    let seq = b.add_u64_field("seq", numeric);
    let node = b.add_text_field("node", STRING);
    let namespace = b.add_text_field("namespace", STRING);
    let pod = b.add_text_field("pod", STRING);
    let container = b.add_text_field("container", STRING);
    let stream = b.add_text_field("stream", STRING);
    let service = b.add_text_field("service", STRING);
    let message = b.add_text_field("message", TEXT);
    let labels = b.add_json_field(
        "labels",
        JsonObjectOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("raw")
                .set_index_option(IndexRecordOption::Basic),
        ),
    );
    let record = b.add_text_field("record", TextOptions::default() | STORED);
    (
        b.build(),
        Fields {
            time,
            seq,
            node,
            namespace,
            pod,
            container,
            stream,
            service,
            message,
            labels,
            record,
        },
    )
}

impl Fields {
    /// Resolves the fields of an opened index's schema (it must be ours).
    pub fn of(schema: &Schema) -> tantivy::Result<Fields> {
        let f = |name: &str| schema.get_field(name);
        Ok(Fields {
            time: f("time")?,
            seq: f("seq")?,
            node: f("node")?,
            namespace: f("namespace")?,
            pod: f("pod")?,
            container: f("container")?,
            stream: f("stream")?,
            service: f("service")?,
            message: f("message")?,
            labels: f("labels")?,
            record: f("record")?,
        })
    }

    /// The field a filter name stands for.
    pub fn filter(&self, name: &str) -> Option<Field> {
        Some(match name {
            "node" => self.node,
            "namespace" => self.namespace,
            "pod" => self.pod,
            "container" => self.container,
            "stream" => self.stream,
            "service" => self.service,
            _ => return None,
        })
    }

    /// The document of `record` under sequence number `seq`.
    pub fn document(&self, record: &Record, seq: u64) -> TantivyDocument {
        let mut d = TantivyDocument::new();
        d.add_i64(self.time, record.time);
        d.add_u64(self.seq, seq);
        for (field, value) in [
            (self.node, &record.node),
            (self.namespace, &record.namespace),
            (self.pod, &record.pod),
            (self.container, &record.container),
            (self.service, &record.service),
        ] {
            if let Some(v) = value {
                d.add_text(field, v);
            }
        }
        if let Some(s) = record.stream {
            d.add_text(self.stream, s.as_str());
        }
        d.add_text(self.message, &record.message);
        if !record.labels.is_empty() {
            d.add_object(
                self.labels,
                record
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), tantivy::schema::OwnedValue::Str(v.clone())))
                    .collect(),
            );
        }
        d.add_text(self.record, record.to_stored_json(seq));
        d
    }
}
