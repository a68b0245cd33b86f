//! Prometheus Alertmanager's webhook receiver (`webhook_configs`): `Authorization: Bearer <secret>` or basic
//! auth with the secret as the password (`http_config`). No delivery id is sent: a delivery is named by its
//! body, and a re-sent notification repeats its events' ids. Each alert of a group is one incident per
//! firing episode (docs/providers/alertmanager.md).

use std::collections::BTreeMap;

use em_core::domain::{Fact, IncidentEvent, IncidentEventKind};
use em_core::time::{Millis, Timestamp};
use serde::Deserialize;

use crate::auth::Auth;
use crate::{parse_error, ParseError, Provider};

const NAME: &str = "alertmanager";

pub const PROVIDER: Provider = Provider {
    name: NAME,
    title: "Alertmanager",
    auth: Auth::BearerOrBasic,
    delivery_id: &[],
    event_header: None,
    events: &["firing", "resolved"],
    parse,
    sample: "resolved-two-alerts",
    validate: false,
};

#[derive(Deserialize)]
struct Notification {
    alerts: Vec<Alert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    #[serde(default)]
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: Timestamp,
    /// Go's zero time (`0001-01-01T00:00:00Z`) while the alert fires; absent from some senders' bodies.
    #[serde(default)]
    ends_at: Option<Timestamp>,
    /// Alertmanager 0.19 and later.
    #[serde(default)]
    fingerprint: Option<String>,
}

/// Prometheus's fingerprint of a label set (`model.LabelSet.Fingerprint`): FNV-1a 64 over the labels sorted
/// by name, each name and value followed by the byte 0xFF, as 16 hex digits. Alertmanager sends the same
/// value as `fingerprint`, so an alert keeps its incident across an upgrade that starts sending it.
fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut h = OFFSET;
    for (name, value) in labels {
        for part in [name.as_bytes(), &[0xFF], value.as_bytes(), &[0xFF]] {
            for b in part {
                h ^= u64::from(*b);
                h = h.wrapping_mul(PRIME);
            }
        }
    }
    format!("{h:016x}")
}

fn label<'a>(labels: &'a BTreeMap<String, String>, names: &[&str]) -> &'a str {
    names
        .iter()
        .find_map(|n| labels.get(*n).filter(|v| !v.is_empty()))
        .map_or("", String::as_str)
}

fn parse(_event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
    alert_facts(NAME, body)
}

/// The facts of an Alertmanager-shaped notification (Alertmanager's own, Grafana's), as `provider`'s.
pub(crate) fn alert_facts(provider: &'static str, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
    let n: Notification =
        serde_json::from_slice(body).map_err(|e| parse_error(provider, "notification", e))?;
    let mut facts = Vec::new();
    for a in n.alerts {
        let fingerprint = match a.fingerprint.filter(|f| !f.is_empty()) {
            Some(f) => f,
            None => fingerprint(&a.labels),
        };
        let started: Millis = a.starts_at.0;
        let incident_id = format!("{fingerprint}@{started}");
        let title = match a.annotations.get("summary").filter(|s| !s.is_empty()) {
            Some(s) => s.clone(),
            None => label(&a.labels, &["alertname"]).to_string(),
        };
        let event = |kind: IncidentEventKind, time: Millis| {
            Fact::Incident(IncidentEvent {
                provider: provider.into(),
                event_id: format!("{incident_id}/{}", kind.as_str()),
                incident_id: incident_id.clone(),
                kind,
                time,
                service_name: label(&a.labels, &["service", "job", "alertname"]).to_string(),
                title: title.clone(),
                severity: label(&a.labels, &["severity"]).to_string(),
            })
        };
        // Every alert says when its episode started, whether or not its firing notification came.
        facts.push(event(IncidentEventKind::Opened, started));
        // A resolution needs its time: a resolved alert still carrying the zero time (or none) has none.
        let ended = a.ends_at.map(|t| t.0).filter(|&t| t >= started);
        if let ("resolved", Some(ended)) = (a.status.as_str(), ended) {
            facts.push(event(IncidentEventKind::Resolved, ended));
        }
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_prometheus_label_set_fingerprints() {
        // Labels and fingerprint of an alert Alertmanager sent (google/alertmanager-irc-relay's test data).
        let labels = BTreeMap::from(
            [
                ("alertname", "airDown"),
                ("instance", "instance1:3456"),
                ("job", "air"),
                ("service", "prometheus"),
                ("severity", "ticket"),
                ("zone", "global"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        assert_eq!(fingerprint(&labels), "66214a361160fb6f");
        assert_eq!(fingerprint(&BTreeMap::new()), "cbf29ce484222325");
    }
}
