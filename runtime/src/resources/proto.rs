//! Resources as the API sends them.

use api::machine as pb;

use super::specs::EventSpec;
use super::{Resource, Secrets, WatchEvent, WatchKind};

fn timestamp(t: std::time::SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

/// A resource with its spec as YAML; secrets redacted unless `secrets`
/// says to show them (and only types marked sensitive hold any).
pub fn resource(r: &Resource, secrets: Secrets) -> pb::Resource {
    let m = &r.metadata;
    pb::Resource {
        metadata: Some(pb::ResourceMetadata {
            namespace: m.namespace.to_string(),
            r#type: m.kind.to_string(),
            id: m.id.clone(),
            version: m.version,
            created: Some(timestamp(m.created)),
            updated: Some(timestamp(m.updated)),
        }),
        spec: r.spec.to_yaml(secrets),
    }
}

pub fn watch_event(e: &WatchEvent, secrets: Secrets) -> pb::ResourceEvent {
    use pb::resource_event::Kind;
    let kind = match e.kind {
        WatchKind::Created => Kind::Created,
        WatchKind::Updated => Kind::Updated,
        WatchKind::Destroyed => Kind::Destroyed,
        WatchKind::Bootstrapped => Kind::Bootstrapped,
    };
    pb::ResourceEvent {
        kind: kind as i32,
        resource: e.resource.as_ref().map(|r| resource(r, secrets)),
    }
}

/// An `events` resource as an `Event`; `None` for other types.
pub fn event(r: &Resource, node: &str) -> Option<pb::Event> {
    let spec = r.spec_as::<EventSpec>()?;
    Some(pb::Event {
        id: r.metadata.id.clone(),
        time: Some(timestamp(r.metadata.created)),
        r#type: spec.event_type.as_str().to_string(),
        message: spec.message.clone(),
        node: node.to_string(),
    })
}
