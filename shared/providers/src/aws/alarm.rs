//! CloudWatch alarms, as EventBridge's `CloudWatch Alarm State Change` events: an alarm in `ALARM` is an
//! incident, one per episode (the alarm and the instant it entered `ALARM`), resolved when the alarm leaves
//! `ALARM`. Every event carries both states with their instants, so the leaving event alone also says when
//! the episode began, whichever arrives first (docs/providers/aws.md).

use em_core::domain::{Fact, IncidentEvent, IncidentEventKind};
use em_core::time::{Millis, Timestamp};
use serde::Deserialize;


#[derive(Deserialize)]
struct State {
    value: String,
    timestamp: Timestamp,
}

#[derive(Deserialize, Default)]
struct Configuration {
    #[serde(default)]
    description: Option<String>,
}

/// The event, with what is read of it.
#[derive(Deserialize)]
pub(super) struct AlarmEvent {
    #[serde(default)]
    resources: Vec<String>,
    detail: AlarmChange,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlarmChange {
    alarm_name: String,
    state: State,
    #[serde(default)]
    previous_state: Option<State>,
    #[serde(default)]
    configuration: Option<Configuration>,
}

/// The incident facts of one state change, as `provider`'s.
pub(super) fn facts(provider: &'static str, e: AlarmEvent) -> Vec<Fact> {
    let d = e.detail;
    // The alarm's ARN names it across renames of nothing; without one, its name.
    let alarm = e
        .resources
        .iter()
        .find(|r| r.contains(":alarm:"))
        .cloned()
        .unwrap_or_else(|| d.alarm_name.clone());
    let title = d
        .configuration
        .and_then(|c| c.description)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| d.alarm_name.clone());
    let event = |began: Millis, kind: IncidentEventKind, time: Millis| {
        let incident_id = format!("{alarm}@{began}");
        Fact::Incident(IncidentEvent {
            provider: provider.into(),
            event_id: format!("{incident_id}/{}", kind.as_str()),
            incident_id,
            kind,
            time,
            service_name: d.alarm_name.clone(),
            title: title.clone(),
            // CloudWatch alarms have no severity: every one counts.
            severity: String::new(),
        })
    };
    let now = d.state.timestamp.0;
    let mut out = Vec::new();
    if d.state.value == "ALARM" {
        out.push(event(now, IncidentEventKind::Opened, now));
    } else if let Some(p) = d.previous_state.filter(|p| p.value == "ALARM") {
        // Leaving ALARM (for OK, or for INSUFFICIENT_DATA: the alarm no longer says anything is wrong).
        let began = p.timestamp.0;
        out.push(event(began, IncidentEventKind::Opened, began));
        out.push(event(began, IncidentEventKind::Resolved, now));
    }
    out
}
