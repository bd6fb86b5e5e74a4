//! The services controller: the supervisor's services as `services`
//! resources, and each state change as an event in the event log.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::controller::{Controller, ControllerError, Input};
use super::events::EventLog;
use super::specs::{EventType, ServiceSpec};
use super::{kind, Kind, Writer};
use crate::supervisor::{ServiceHandle, State, Status, Supervisor};

#[derive(Clone)]
pub struct ServicesController {
    pub supervisor: Arc<Supervisor>,
    pub events: Arc<EventLog>,
}

pub fn spec(h: &ServiceHandle, s: &Status) -> ServiceSpec {
    ServiceSpec {
        state: s.state.to_string(),
        message: s.message.clone(),
        running: s.state == State::Running,
        health: s.health.to_string(),
        health_message: s.health_message.clone(),
        pid: s.pid,
        restarts: s.restarts,
        depends_on: h.depends_on.clone(),
    }
}

/// The event message for one state change: `apid: Running (pid 42)`.
pub fn event_message(id: &str, e: &crate::supervisor::service::Event) -> String {
    if e.message.is_empty() {
        format!("{id}: {}", e.state)
    } else {
        format!("{id}: {} ({})", e.state, e.message)
    }
}

/// Follows one service until machined ends.
async fn follow(handle: Arc<ServiceHandle>, writer: Arc<Writer>, events: Arc<EventLog>) {
    let mut rx = handle.status.subscribe();
    let mut seen_transitions = 0u64;
    loop {
        let status = rx.borrow_and_update().clone();
        // Every state change since the last look, even those a busy
        // moment folded into one update.
        let new = status.transitions.saturating_sub(seen_transitions) as usize;
        let skip = status.events.len().saturating_sub(new);
        for e in status.events.iter().skip(skip) {
            events.record(EventType::Service, event_message(&handle.id, e));
        }
        seen_transitions = status.transitions;
        if let Err(e) = writer.put(handle.id.clone(), spec(&handle, &status)) {
            tracing::warn!(controller = "services", error = %e, "cannot write");
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

impl Controller for ServicesController {
    fn name(&self) -> &'static str {
        "services"
    }

    fn inputs(&self) -> Vec<Input> {
        vec![Input::External("supervisor")]
    }

    fn outputs(&self) -> Vec<&'static Kind> {
        vec![kind::SERVICES]
    }

    fn run(self, writer: Writer) -> BoxFuture<'static, Result<(), ControllerError>> {
        Box::pin(async move {
            let writer = Arc::new(writer);
            let mut registered = self.supervisor.subscribe_registered();
            let mut following = BTreeSet::new();
            loop {
                registered.borrow_and_update();
                for h in self.supervisor.list() {
                    if following.insert(h.id.clone()) {
                        tokio::spawn(follow(h, writer.clone(), self.events.clone()));
                    }
                }
                if registered.changed().await.is_err() {
                    // The supervisor is gone: nothing left to follow.
                    return Ok(());
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::specs::EventSpec;
    use crate::resources::{controller, Filter, Store, Watch};
    use crate::supervisor::process::ProcessRunner;
    use crate::supervisor::Service;
    use std::time::Duration;

    #[tokio::test]
    async fn services_and_their_state_changes_become_resources_and_events() {
        let store = Store::new();
        let events = Arc::new(EventLog::new(&store).unwrap());
        let sup = Supervisor::new();
        // Registered before the controller starts, and one after.
        sup.start(Service::new(
            "early",
            ProcessRunner::new("/bin/sh").args(["-c", "exit 0"]),
        ))
        .unwrap();
        let mut watch = Watch::new(&store, Filter::kind(kind::SERVICES), true);
        controller::spawn(
            &store,
            ServicesController {
                supervisor: sup.clone(),
                events: events.clone(),
            },
        )
        .unwrap();
        sup.start(Service::new(
            "late",
            ProcessRunner::new("/bin/sh").args(["-c", "exit 3"]),
        ))
        .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let early = store.spec::<ServiceSpec>("early");
            let late = store.spec::<ServiceSpec>("late");
            if early.as_ref().is_some_and(|s| s.state == "Finished")
                && late.as_ref().is_some_and(|s| s.state == "Failed")
            {
                assert_eq!(late.unwrap().message, "exited with code 3");
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{early:?} {late:?}");
            let _ = tokio::time::timeout(Duration::from_millis(200), watch.next()).await;
        }
        let log: Vec<String> = store
            .specs::<EventSpec>()
            .into_iter()
            .map(|(_, e)| e.message)
            .collect();
        for expected in [
            "early: Running",
            "early: Finished",
            "late: Failed (exited with code 3)",
        ] {
            assert!(
                log.iter().any(|m| m.starts_with(expected)),
                "{expected} missing from {log:?}"
            );
        }
        // In order for each service.
        let pos = |m: &str| log.iter().position(|l| l.starts_with(m)).unwrap();
        assert!(pos("early: Running") < pos("early: Finished"));
    }
}
