//! META as resources: one `meta` resource per key (`cairnctl get meta`).

use serde::Serialize;

use runtime::resources::{kind, yaml_of, Kind, Secrets, Spec};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetaSpec {
    pub value: String,
}

impl Spec for MetaSpec {
    const KIND: &'static Kind = kind::META;
    fn to_yaml(&self, _: Secrets) -> String {
        yaml_of(self)
    }
}
