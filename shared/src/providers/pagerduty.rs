//! PagerDuty v3 webhooks: `X-PagerDuty-Signature: v1=<hex HMAC-SHA256>[,v1=<hex>…]`, one signature per active
//! secret so that any one matching authenticates (that is how PagerDuty rotates secrets). The delivery is named
//! by the body's `event.id`.

use http::HeaderMap;
use serde::Deserialize;

use super::{
    body_digest, check_json_object, header, hmac_matches_any, hmac_sha256, parse_error, AuthError,
    BodyError, Inspection, ParseError, Provider,
};
use crate::domain::{Fact, IncidentEvent, IncidentEventKind};
use crate::time::{Id, Timestamp};

pub struct PagerDuty;

const NAME: &str = "pagerduty";
const SIGNATURE: &str = "x-pagerduty-signature";

#[derive(Deserialize)]
struct Envelope<T> {
    event: T,
}

#[derive(Deserialize)]
struct EventHead {
    #[serde(default)]
    id: Option<Id>,
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

impl Provider for PagerDuty {
    fn name(&self) -> &'static str {
        NAME
    }

    fn authenticate(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        secrets: &[Vec<u8>],
    ) -> Result<(), AuthError> {
        let value =
            header(headers, SIGNATURE).ok_or(AuthError::Missing("X-PagerDuty-Signature"))?;
        let mut seen = false;
        let mut ok = false;
        for part in value.split(',') {
            if let Some(hex) = part.trim().strip_prefix("v1=") {
                seen = true;
                // Check every listed signature so the time does not depend on which one matched.
                ok |= hmac_matches_any(secrets, body, hex);
            }
        }
        match (seen, ok) {
            (_, true) => Ok(()),
            (false, _) => Err(AuthError::Malformed("X-PagerDuty-Signature")),
            (true, false) => Err(AuthError::Mismatch("X-PagerDuty-Signature")),
        }
    }

    fn inspect(&self, _headers: &HeaderMap, body: &[u8]) -> Result<Inspection, BodyError> {
        check_json_object(body)?;
        let id = serde_json::from_slice::<Envelope<EventHead>>(body)
            .ok()
            .and_then(|e| e.event.id)
            .map(|id| id.0)
            .filter(|id| !id.is_empty());
        Ok(Inspection {
            delivery_id: id.unwrap_or_else(|| body_digest(body)),
            event: None,
        })
    }

    fn parse(&self, _event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
        let head: Head = serde_json::from_slice(body).map_err(|e| parse_error(NAME, "event", e))?;
        let event_type = head.event.map(|e| e.event_type).unwrap_or_default();
        let kind = match event_type.as_str() {
            "incident.triggered" => IncidentEventKind::Opened,
            "incident.acknowledged" => IncidentEventKind::Acknowledged,
            "incident.resolved" => IncidentEventKind::Resolved,
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
        })])
    }

    fn sign(&self, secret: &[u8], body: &[u8]) -> Vec<(&'static str, String)> {
        vec![(
            "X-PagerDuty-Signature",
            format!("v1={}", hex::encode(hmac_sha256(secret, body))),
        )]
    }
}
