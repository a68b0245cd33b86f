//! incident.io webhooks (v2 events), signed the Standard Webhooks (Svix) way: `webhook-signature: v1,<base64
//! HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`, several space-separated during a rotation, keyed
//! by the endpoint's `whsec_<base64>` secret, the timestamp inside the replay window. Named by `webhook-id`,
//! which a retry repeats. An incident counts once it is accepted: one created or kept in triage, or declined,
//! merged or cancelled from it, is no incident (docs/providers/incident-io.md).

use em_core::domain::{Fact, IncidentEvent, IncidentEventKind};
use em_core::time::{Millis, Timestamp};
use serde::Deserialize;

use crate::auth::{
    Algorithm, Auth, Encoding, Hmac, Key, SignedContent, TimeUnit, Timestamp as Signed,
    TimestampSource,
};
use crate::{parse_error, IdSource, ParseError, Provider};

const NAME: &str = "incident-io";

const CREATED: &str = "public_incident.incident_created_v2";
const UPDATED: &str = "public_incident.incident_updated_v2";
const STATUS_UPDATED: &str = "public_incident.incident_status_updated_v2";

pub const PROVIDER: Provider = Provider {
    name: NAME,
    title: "IncidentIo",
    auth: Auth::Hmac(Hmac {
        header: "webhook-signature",
        algorithm: Algorithm::Sha256,
        encoding: Encoding::Base64,
        prefix: "v1,",
        separator: Some(' '),
        message: SignedContent::IdTimestampAndBody {
            id_header: "webhook-id",
        },
        timestamp: Some(Signed {
            source: TimestampSource::Header("webhook-timestamp"),
            unit: TimeUnit::Seconds,
        }),
        key: Key::WhsecBase64,
    }),
    delivery_id: &[IdSource::Header("webhook-id")],
    event_header: None,
    events: &[CREATED, UPDATED, STATUS_UPDATED],
    parse,
    sample: "incident_status_updated_v2-accepted",
    validate: false,
};

/// Where an incident stands, by its status's category (incident.io's own; a status's name is the team's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Reported, not yet accepted.
    Triage,
    /// Declined, merged into another or cancelled from triage: never an incident.
    Dismissed,
    /// Accepted and under way (`live`, `paused`).
    Active,
    /// Impact over (`learning`: post-incident, `closed`).
    Over,
}

impl Stage {
    fn of(category: &str) -> Stage {
        match category {
            "triage" => Stage::Triage,
            "declined" | "merged" | "canceled" | "cancelled" => Stage::Dismissed,
            "learning" | "closed" => Stage::Over,
            // `live`, `paused`, and a category added later: an incident someone works on.
            _ => Stage::Active,
        }
    }
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    category: String,
}

#[derive(Deserialize)]
struct Named {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
struct Value {
    #[serde(default)]
    value_catalog_entry: Option<Named>,
    #[serde(default)]
    value_option: Option<Choice>,
    #[serde(default)]
    value_text: Option<String>,
}

#[derive(Deserialize)]
struct FieldEntry {
    custom_field: Named,
    #[serde(default)]
    values: Vec<Value>,
}

#[derive(Deserialize)]
struct Incident {
    id: String,
    #[serde(default)]
    name: String,
    created_at: Timestamp,
    updated_at: Timestamp,
    incident_status: Status,
    #[serde(default)]
    severity: Option<Named>,
    #[serde(default)]
    custom_field_entries: Vec<FieldEntry>,
}

#[derive(Deserialize)]
struct StatusChange {
    incident: Incident,
    previous_status: Status,
    new_status: Status,
}

#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    event_type: String,
}

impl Incident {
    /// The affected service: the first value of a custom field whose name says "service" (incident.io's
    /// catalog-backed "Affected services", or a team's own field), as the catalog entry's name, the option's
    /// value or the text written; `""` without one.
    fn service(&self) -> String {
        self.custom_field_entries
            .iter()
            .filter(|f| f.custom_field.name.to_ascii_lowercase().contains("service"))
            .flat_map(|f| &f.values)
            .find_map(|v| {
                let name = v
                    .value_catalog_entry
                    .as_ref()
                    .map(|c| c.name.as_str())
                    .or(v.value_option.as_ref().map(|o| o.value.as_str()))
                    .or(v.value_text.as_deref())?
                    .trim();
                (!name.is_empty()).then(|| name.to_string())
            })
            .unwrap_or_default()
    }

    fn event(&self, kind: IncidentEventKind, time: Millis, event_id: String) -> Fact {
        Fact::Incident(IncidentEvent {
            provider: NAME.into(),
            incident_id: self.id.clone(),
            event_id,
            kind,
            time,
            service_name: self.service(),
            title: self.name.clone(),
            severity: self
                .severity
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default(),
        })
    }

    /// The opening: at the incident's creation, whichever delivery first shows it accepted (one event id,
    /// so that every such delivery stores it once).
    fn opened(&self) -> Fact {
        self.event(
            IncidentEventKind::Opened,
            self.created_at.0,
            format!("{}:opened", self.id),
        )
    }

    /// A change of status at the incident's `updated_at`, the time of the change.
    fn changed(&self, kind: IncidentEventKind, label: &str) -> Fact {
        let at = self.updated_at.0;
        self.event(kind, at, format!("{}:{label}:{at}", self.id))
    }
}

fn parse(_event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
    let head: Head = serde_json::from_slice(body).map_err(|e| parse_error(NAME, "event", e))?;
    let event = head.event_type.as_str();
    match event {
        CREATED | UPDATED => {
            #[derive(Deserialize)]
            struct Envelope {
                #[serde(rename = "public_incident.incident_created_v2", alias = "public_incident.incident_updated_v2")]
                incident: Incident,
            }
            let e: Envelope = serde_json::from_slice(body).map_err(|e| parse_error(NAME, event, e))?;
            let i = e.incident;
            Ok(match Stage::of(&i.incident_status.category) {
                Stage::Active | Stage::Over => vec![i.opened()],
                Stage::Triage | Stage::Dismissed => Vec::new(),
            })
        }
        STATUS_UPDATED => {
            #[derive(Deserialize)]
            struct Envelope {
                #[serde(rename = "public_incident.incident_status_updated_v2")]
                change: StatusChange,
            }
            let e: Envelope = serde_json::from_slice(body).map_err(|e| parse_error(NAME, event, e))?;
            Ok(status_change(&e.change))
        }
        _ => Ok(Vec::new()),
    }
}

/// What a move from one status to another says: accepted from triage (opened, acknowledged), impact over
/// (resolved), back under way after being over (reopened).
fn status_change(c: &StatusChange) -> Vec<Fact> {
    use IncidentEventKind::{Acknowledged, Reopened, Resolved};
    let i = &c.incident;
    let (from, to) = (
        Stage::of(&c.previous_status.category),
        Stage::of(&c.new_status.category),
    );
    let mut out = Vec::new();
    if matches!(to, Stage::Active | Stage::Over) {
        out.push(i.opened());
    }
    match (from, to) {
        (Stage::Triage, Stage::Active) => out.push(i.changed(Acknowledged, "acknowledged")),
        (Stage::Triage | Stage::Active, Stage::Over) => out.push(i.changed(Resolved, "resolved")),
        (Stage::Over, Stage::Active) => out.push(i.changed(Reopened, "reopened")),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(from: &str, to: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "event_type": STATUS_UPDATED,
            STATUS_UPDATED: {
                "incident": {
                    "id": "01H", "name": "Checkout down",
                    "created_at": "2024-05-01T10:00:00Z", "updated_at": "2024-05-01T10:30:00.5Z",
                    "incident_status": {"category": to},
                    "severity": {"name": "Critical", "rank": 3},
                    "custom_field_entries": [
                        {"custom_field": {"name": "Affected Team"}, "values": [{"value_option": {"value": "Payments"}}]},
                        {"custom_field": {"name": "Affected services"}, "values": [{"value_catalog_entry": {"name": "checkout"}}]}
                    ]
                },
                "previous_status": {"category": from},
                "new_status": {"category": to}
            }
        }))
        .unwrap()
    }

    fn kinds(body: &[u8]) -> Vec<(IncidentEventKind, Millis, String)> {
        parse(None, body)
            .unwrap()
            .into_iter()
            .map(|f| match f {
                Fact::Incident(i) => {
                    assert_eq!((i.service_name.as_str(), i.severity.as_str()), ("checkout", "Critical"));
                    (i.kind, i.time, i.event_id)
                }
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_status_change_opens_acknowledges_resolves_or_reopens_by_category() {
        use IncidentEventKind::*;
        let created = 1_714_557_600_000;
        let at = created + 1_800_500;
        let opened = (Opened, created, "01H:opened".to_string());
        assert_eq!(
            kinds(&change("triage", "live")),
            vec![opened.clone(), (Acknowledged, at, format!("01H:acknowledged:{at}"))]
        );
        assert_eq!(
            kinds(&change("live", "closed")),
            vec![opened.clone(), (Resolved, at, format!("01H:resolved:{at}"))]
        );
        assert_eq!(
            kinds(&change("paused", "learning")),
            vec![opened.clone(), (Resolved, at, format!("01H:resolved:{at}"))]
        );
        assert_eq!(
            kinds(&change("learning", "live")),
            vec![opened.clone(), (Reopened, at, format!("01H:reopened:{at}"))]
        );
        assert_eq!(kinds(&change("live", "paused")), vec![opened.clone()]);
        assert_eq!(kinds(&change("learning", "closed")), vec![opened]);
        for dismissed in ["declined", "merged", "canceled"] {
            assert_eq!(kinds(&change("triage", dismissed)), vec![], "{dismissed}");
        }
        assert_eq!(kinds(&change("triage", "triage")), vec![]);
    }
}
