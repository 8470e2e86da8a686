//! Publish the Events of a reconcile: the one place Events are reported.

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use super::status::{Severity, Transition};

/// The operator's Event recorder: reported by `mooring-operator`, instance `$POD_NAME`.
pub fn recorder(client: Client) -> Recorder {
    let reporter = Reporter {
        controller: "mooring-operator".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    Recorder::new(client, reporter)
}

/// Publish `transitions` about `object` (a ModelDeployment, a DriftMonitor, a ChatService). A failure to
/// publish is logged, not returned: Events are for people, and must not fail or repeat a
/// reconcile.
pub async fn publish<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    object: &K,
    transitions: &[Transition],
) {
    let reference = object.object_ref(&());
    for t in transitions {
        let event = Event {
            type_: match t.severity {
                Severity::Normal => EventType::Normal,
                Severity::Warning => EventType::Warning,
            },
            reason: t.reason.clone(),
            // The API server caps the note at 1 kB.
            note: Some(t.note.chars().take(1000).collect()),
            action: t.action.clone(),
            secondary: None,
        };
        if let Err(err) = recorder.publish(&event, &reference).await {
            tracing::warn!(reason = %t.reason, error = %err, "could not publish event");
        }
    }
}
