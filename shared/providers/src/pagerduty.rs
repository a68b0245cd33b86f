//! PagerDuty v3 webhooks: `X-PagerDuty-Signature: v1=<hex HMAC-SHA256>[,v1=<hex>…]`, one signature per active
//! secret so that any one matching authenticates (that is how PagerDuty rotates secrets). The delivery is named
//! by the body's `event.id`.

use em_core::domain::{Fact, IncidentEvent, IncidentEventKind};
use em_core::time::{Id, Timestamp};
use serde::Deserialize;

use crate::auth::{Auth, Hmac};
use crate::{parse_error, IdSource, ParseError, Provider};

const NAME: &str = "pagerduty";

pub const PROVIDER: Provider = Provider {
    name: NAME,
    title: "PagerDuty",
    auth: Auth::Hmac(Hmac::sha256_hex_of_body("X-PagerDuty-Signature", "v1=", Some(','))),
    delivery_id: &[IdSource::Body(&["event", "id"])],
    event_header: None,
    events: &[
        "incident.triggered",
        "incident.acknowledged",
        "incident.unacknowledged",
        "incident.escalated",
        "incident.resolved",
        "incident.reopened",
    ],
    parse,
    sample: "scenario-incident",
    validate: false,
};

#[derive(Deserialize)]
struct Envelope<T> {
    event: T,
}

#[derive(Deserialize)]
struct EventKind {
    #[serde(default)]
    event_type: String,
}

/// Bodies without a v3 `event` (v2 `messages`, pings) are deliveries the product does not use, not errors.
#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    event: Option<EventKind>,
}

#[derive(Deserialize)]
struct ServiceRef {
    summary: String,
}

#[derive(Deserialize)]
struct IncidentData {
    id: Id,
    service: ServiceRef,
    #[serde(default)]
    title: Option<String>,
}

#[derive(Deserialize)]
struct IncidentEventPayload {
    id: Id,
    event_type: String,
    occurred_at: Timestamp,
    data: IncidentData,
}

fn parse(_event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
    let head: Head = serde_json::from_slice(body).map_err(|e| parse_error(NAME, "event", e))?;
    let event_type = head.event.map(|e| e.event_type).unwrap_or_default();
    let kind = match event_type.as_str() {
        "incident.triggered" => IncidentEventKind::Opened,
        "incident.acknowledged" => IncidentEventKind::Acknowledged,
        "incident.unacknowledged" => IncidentEventKind::Unacknowledged,
        "incident.escalated" => IncidentEventKind::Escalated,
        "incident.resolved" => IncidentEventKind::Resolved,
        "incident.reopened" => IncidentEventKind::Reopened,
        _ => return Ok(Vec::new()),
    };
    let e: Envelope<IncidentEventPayload> =
        serde_json::from_slice(body).map_err(|e| parse_error(NAME, &event_type, e))?;
    let e = e.event;
    debug_assert!(e.event_type.starts_with("incident."));
    Ok(vec![Fact::Incident(IncidentEvent {
        provider: NAME.into(),
        incident_id: e.data.id.0,
        event_id: e.id.0,
        kind,
        time: e.occurred_at.0,
        service_name: e.data.service.summary,
        title: e.data.title.unwrap_or_default(),
        // An incident tool: every incident counts, whatever its urgency.
        severity: String::new(),
    })])
}
