//! Opsgenie's Webhook integration: alert actions posted with the secret in a custom header
//! (`X-EM-Agent-Token`) or as the password of basic auth in the URL. Opsgenie signs nothing and sends no
//! delivery id: an action is named by its alert, its kind and its time (docs/providers/opsgenie.md).

use em_core::domain::{Fact, IncidentEvent, IncidentEventKind};
use em_core::time::{Id, Millis};
use serde::Deserialize;

use crate::auth::Auth;
use crate::{parse_error, IdSource, ParseError, Provider};

const NAME: &str = "opsgenie";

pub const PROVIDER: Provider = Provider {
    name: NAME,
    title: "Opsgenie",
    auth: Auth::TokenOrBasic {
        header: "X-EM-Agent-Token",
    },
    delivery_id: &[IdSource::Derived(action_id)],
    event_header: None,
    events: &[
        "Create",
        "Acknowledge",
        "UnAcknowledge",
        "Escalate",
        "Close",
        "Delete",
    ],
    parse,
    sample: "alert-create",
    validate: false,
};

#[derive(Deserialize)]
struct Action {
    #[serde(default)]
    action: String,
    alert: Alert,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    alert_id: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    entity: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    teams: Vec<String>,
    /// Epoch milliseconds.
    created_at: i64,
    /// Epoch nanoseconds (19 digits), the time of this action.
    #[serde(default)]
    updated_at: Option<i64>,
    /// `P1`…`P5`, or a number in some payloads.
    #[serde(default)]
    priority: Option<Id>,
}

/// An epoch time in nanoseconds, microseconds or milliseconds, by its magnitude, in milliseconds.
fn epoch_millis(v: i64) -> Millis {
    match v.unsigned_abs() {
        n if n >= 100_000_000_000_000_000 => v / 1_000_000,
        n if n >= 100_000_000_000_000 => v / 1_000,
        _ => v,
    }
}

impl Alert {
    /// When the action happened: `updatedAt`, else (a body without it) the alert's creation.
    fn action_time(&self) -> Millis {
        self.updated_at.map_or(self.created_at, epoch_millis)
    }
}

/// What names an action's delivery: its alert, its kind and its time, the same for every retry (`:`, as a
/// delivery id takes no `/`).
fn action_id(body: &[u8]) -> Option<String> {
    let a: Action = serde_json::from_slice(body).ok()?;
    Some(format!(
        "{}:{}:{}",
        a.alert.alert_id,
        a.action.to_ascii_lowercase(),
        a.alert.updated_at.unwrap_or(a.alert.created_at)
    ))
}

fn parse(_event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
    #[derive(Deserialize)]
    struct Head {
        #[serde(default)]
        action: String,
    }
    let head: Head = serde_json::from_slice(body).map_err(|e| parse_error(NAME, "action", e))?;
    let kind = match head.action.as_str() {
        "Create" => IncidentEventKind::Opened,
        "Acknowledge" => IncidentEventKind::Acknowledged,
        "UnAcknowledge" => IncidentEventKind::Unacknowledged,
        "Escalate" => IncidentEventKind::Escalated,
        // A deleted alert is over as surely as a closed one.
        "Close" | "Delete" => IncidentEventKind::Resolved,
        _ => return Ok(Vec::new()),
    };
    let a: Action = serde_json::from_slice(body).map_err(|e| parse_error(NAME, &head.action, e))?;
    let alert = a.alert;
    // An opening is the alert's creation; every other action happens at its own time.
    let time = match kind {
        IncidentEventKind::Opened => alert.created_at,
        _ => alert.action_time(),
    };
    let service_name = Some(alert.entity.trim())
        .filter(|e| !e.is_empty())
        .or_else(|| {
            alert
                .tags
                .iter()
                .find_map(|t| t.strip_prefix("service:").map(str::trim))
                .filter(|s| !s.is_empty())
        })
        .or_else(|| alert.teams.iter().map(|t| t.trim()).find(|t| !t.is_empty()))
        .unwrap_or_default()
        .to_string();
    let severity = match alert.priority {
        Some(Id(p)) if p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty() => format!("P{p}"),
        Some(Id(p)) => p,
        None => String::new(),
    };
    Ok(vec![Fact::Incident(IncidentEvent {
        provider: NAME.into(),
        event_id: format!(
            "{}/{}/{}",
            alert.alert_id,
            a.action.to_ascii_lowercase(),
            alert.updated_at.unwrap_or(alert.created_at)
        ),
        incident_id: alert.alert_id,
        kind,
        time,
        service_name,
        title: alert.message,
        severity,
    })])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_times_are_cut_from_nanoseconds_to_milliseconds() {
        assert_eq!(epoch_millis(1_420_452_224_764_002_246), 1_420_452_224_764);
        assert_eq!(epoch_millis(1_420_452_224_764_002), 1_420_452_224_764);
        assert_eq!(epoch_millis(1_420_452_224_764), 1_420_452_224_764);
    }
}
