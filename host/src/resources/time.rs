//! Time resources: the servers the SNTP client uses (`timeservers`) and
//! where the clock stands (`timestatus`, with the `synced` condition that
//! etcd and kubelet wait for).

use serde::Serialize;

use runtime::resources::{kind, yaml_of, Kind, Secrets, Spec};

/// The time servers in use (id `timeservers`), in the order they are tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TimeServersSpec {
    pub servers: Vec<String>,
}

impl TimeServersSpec {
    pub const ID: &'static str = "timeservers";
}

impl Spec for TimeServersSpec {
    const KIND: &'static Kind = kind::TIME_SERVERS;
    fn to_yaml(&self, _: Secrets) -> String {
        yaml_of(self)
    }
}

/// The clock's synchronisation state (id `node`).
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TimeStatusSpec {
    /// The clock was set from a time server at least once since boot (or
    /// time synchronisation is disabled, so nothing waits for it).
    pub synced: bool,
    /// `machine.time.disabled` is set.
    pub disabled: bool,
    /// The server of the last good answer.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub server: String,
    /// The clock's offset from that server before it was corrected, in
    /// seconds (positive: the clock was behind).
    pub offset_seconds: f64,
    /// Round-trip time of that answer, in seconds.
    pub roundtrip_seconds: f64,
    /// `step` (set at once) or `slew` (adjusted gradually).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub last_correction: String,
    /// RFC 3339 time of the last good answer.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub last_sync: String,
    /// Why the clock is not synchronised, for people.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl TimeStatusSpec {
    pub const ID: &'static str = "node";
}

impl Spec for TimeStatusSpec {
    const KIND: &'static Kind = kind::TIME_STATUS;
    fn to_yaml(&self, _: Secrets) -> String {
        yaml_of(self)
    }
}
