//! New Relic alerts: a workflow's webhook destination (the default payload template: an issue `ACTIVATED`,
//! acknowledged, `CLOSED`) and the legacy webhook notification channel (an incident `open`, `acknowledged`,
//! `closed`). New Relic signs nothing: a destination authenticates with a bearer token or basic auth, a
//! legacy channel with a custom header (`X-EM-Agent-Token`). It sends no delivery id: a delivery is named by
//! its issue, state and time (docs/providers/newrelic.md).

use em_core::domain::{Fact, IncidentEvent, IncidentEventKind};
use em_core::time::{Id, Millis, Timestamp};
use serde::Deserialize;

use crate::auth::Auth;
use crate::{parse_error, IdSource, ParseError, Provider};

const NAME: &str = "newrelic";

pub const PROVIDER: Provider = Provider {
    name: NAME,
    title: "NewRelic",
    auth: Auth::FirstOf(&[
        Auth::Token {
            header: "X-EM-Agent-Token",
        },
        Auth::BearerOrBasic,
    ]),
    delivery_id: &[IdSource::Derived(delivery_id)],
    event_header: None,
    events: &[
        "ACTIVATED",
        "CREATED",
        "CLOSED",
        "open",
        "acknowledged",
        "closed",
    ],
    parse,
    sample: "workflow-activated",
    validate: false,
};

/// A workflow's issue, as the default payload template (or one that keeps its keys) writes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Issue {
    id: Id,
    #[serde(default)]
    title: String,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    impacted_entities: Vec<String>,
    state: String,
    #[serde(default)]
    trigger: Option<String>,
    created_at: Timestamp,
    #[serde(default)]
    updated_at: Option<Timestamp>,
    #[serde(default)]
    acknowledged_at: Option<Timestamp>,
    #[serde(default)]
    closed_at: Option<Timestamp>,
    #[serde(default)]
    alert_policy_names: Vec<String>,
    #[serde(default)]
    alert_condition_names: Vec<String>,
}

#[derive(Deserialize)]
struct Target {
    #[serde(default)]
    name: String,
}

/// A legacy channel's incident.
#[derive(Deserialize)]
struct Incident {
    incident_id: Id,
    current_state: String,
    timestamp: Timestamp,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    policy_name: Option<String>,
    #[serde(default)]
    condition_name: Option<String>,
    #[serde(default)]
    targets: Vec<Target>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    #[serde(default)]
    issue_url: Option<serde_json::Value>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default, rename = "current_state")]
    current_state: Option<String>,
}

/// The first name that is not blank.
fn first<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(str::trim)
        .find(|n| !n.is_empty())
        .unwrap_or_default()
        .to_string()
}

/// What names a delivery: its issue or incident, its state and its time, the same for every retry.
fn delivery_id(body: &[u8]) -> Option<String> {
    if let Ok(i) = serde_json::from_slice::<Issue>(body) {
        let at = i.updated_at.unwrap_or(i.created_at).0;
        return Some(format!("{}:{}:{at}", i.id.0, i.state.to_ascii_lowercase()));
    }
    let i: Incident = serde_json::from_slice(body).ok()?;
    Some(format!(
        "{}:{}:{}",
        i.incident_id.0,
        i.current_state.to_ascii_lowercase(),
        i.timestamp.0
    ))
}

fn parse(_event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
    let head: Head = serde_json::from_slice(body).map_err(|e| parse_error(NAME, "payload", e))?;
    if head.issue_url.is_some() || head.state.is_some() {
        let event = head.state.unwrap_or_default();
        let issue: Issue =
            serde_json::from_slice(body).map_err(|e| parse_error(NAME, &event, e))?;
        return Ok(issue_facts(issue));
    }
    match head.current_state {
        Some(state) => {
            let incident: Incident =
                serde_json::from_slice(body).map_err(|e| parse_error(NAME, &state, e))?;
            Ok(incident_facts(incident))
        }
        None => Ok(Vec::new()),
    }
}

fn issue_facts(i: Issue) -> Vec<Fact> {
    use IncidentEventKind::{Acknowledged, Opened, Resolved};
    let id = i.id.0.clone();
    let updated = i.updated_at.unwrap_or(i.created_at).0;
    let service_name = first(
        i.impacted_entities
            .iter()
            .chain(&i.alert_condition_names)
            .chain(&i.alert_policy_names)
            .map(String::as_str),
    );
    let event = |kind: IncidentEventKind, time: Millis, event_id: String| {
        Fact::Incident(IncidentEvent {
            provider: NAME.into(),
            incident_id: id.clone(),
            event_id,
            kind,
            time,
            service_name: service_name.clone(),
            title: i.title.clone(),
            severity: i.priority.clone().unwrap_or_default(),
        })
    };
    let mut out = Vec::new();
    match i.state.to_ascii_uppercase().as_str() {
        "CREATED" | "ACTIVATED" | "CLOSED" => {
            out.push(event(Opened, i.created_at.0, format!("{id}:opened")));
        }
        _ => return out,
    }
    // The default template says nothing of an acknowledgement but the user action that made it; a template
    // that adds `acknowledgedAt` says when.
    let acknowledged = match (i.acknowledged_at, i.trigger.as_deref(), i.state.as_str()) {
        (Some(t), _, _) => Some(t.0),
        (None, Some("USER_ACTION"), "ACTIVATED") => Some(updated),
        _ => None,
    };
    if let Some(t) = acknowledged {
        out.push(event(Acknowledged, t, format!("{id}:acknowledged:{t}")));
    }
    if i.state.eq_ignore_ascii_case("CLOSED") {
        let t = i.closed_at.map_or(updated, |c| c.0);
        out.push(event(Resolved, t, format!("{id}:resolved:{t}")));
    }
    out
}

fn incident_facts(i: Incident) -> Vec<Fact> {
    let kind = match i.current_state.to_ascii_lowercase().as_str() {
        "open" => IncidentEventKind::Opened,
        "acknowledged" => IncidentEventKind::Acknowledged,
        "closed" => IncidentEventKind::Resolved,
        _ => return Vec::new(),
    };
    let at = i.timestamp.0;
    let condition = i.condition_name.as_deref().unwrap_or_default();
    vec![Fact::Incident(IncidentEvent {
        provider: NAME.into(),
        event_id: format!("{}:{}:{at}", i.incident_id.0, kind.as_str()),
        incident_id: i.incident_id.0,
        kind,
        time: at,
        service_name: first(
            i.targets
                .iter()
                .map(|t| t.name.as_str())
                .chain([condition, i.policy_name.as_deref().unwrap_or_default()]),
        ),
        title: first([i.details.as_deref().unwrap_or_default(), condition]),
        severity: i.severity.unwrap_or_default(),
    })]
}
