//! Datadog's Webhooks integration: monitor notifications in a payload the user templates, with the secret in
//! a custom header (`X-EM-Agent-Token`) or as the password of basic auth in the URL. Datadog signs nothing.
//! The recommended template (docs/providers/datadog.md) names every field; the default template and the
//! commonly published ones are read too, the missing fields taken from the title and the body's links.

use em_core::domain::{Fact, IncidentEvent, IncidentEventKind};
use em_core::time::Millis;
use serde_json::{Map, Value};

use crate::auth::Auth;
use crate::{parse_error, IdSource, ParseError, Provider};

const NAME: &str = "datadog";

pub const PROVIDER: Provider = Provider {
    name: NAME,
    title: "Datadog",
    auth: Auth::TokenOrBasic {
        header: "X-EM-Agent-Token",
    },
    delivery_id: &[IdSource::Body(&["id"]), IdSource::Body(&["event_id"])],
    event_header: None,
    events: &[
        "Triggered",
        "Re-Triggered",
        "Renotify",
        "Warn",
        "Re-Warn",
        "Recovered",
    ],
    parse,
    sample: "monitor-triggered-custom",
    validate: false,
};

/// The first of `keys` the payload has as a non-empty string or a number, as text.
fn field(p: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match p.get(*k)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// The title's leading bracketed groups (`[Triggered on {host:a}]`, `[TEST]`, `[P1]`) and the name after them.
fn title_parts(title: &str) -> (Vec<&str>, &str) {
    let mut groups = Vec::new();
    let mut rest = title.trim_start();
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(end) = inner.find(']') else { break };
        groups.push(&inner[..end]);
        rest = inner[end + 1..].trim_start();
    }
    (groups, rest.trim_end())
}

/// The transition a title's first group names: `Triggered` of `[Triggered on {host:a}]`.
fn transition_of(first_group: &str) -> &str {
    first_group
        .split_once(" on ")
        .map_or(first_group, |(t, _)| t)
        .trim()
}

/// The scope a title's first group names: `host:a` of `[Triggered on {host:a}]`.
fn scope_of(first_group: &str) -> Option<&str> {
    let start = first_group.find('{')?;
    let end = first_group.rfind('}')?;
    (start < end).then(|| first_group[start + 1..end].trim())
}

/// The monitor's id in the body's links (`…/monitors#309811…`).
fn monitor_in(body: &str) -> Option<String> {
    let at = body.find("monitors#")? + "monitors#".len();
    let digits: String = body[at..].chars().take_while(char::is_ascii_digit).collect();
    (!digits.is_empty()).then_some(digits)
}

/// The value of the first `service:` tag of a comma-separated tag list.
fn service_tag(tags: &str) -> Option<String> {
    tags.split(',')
        .find_map(|t| t.trim().strip_prefix("service:").map(str::trim))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn parse(_event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
    let payload: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| parse_error(NAME, "notification", e))?;
    let title = field(&payload, &["title"]).unwrap_or_default();
    let (groups, name) = title_parts(&title);
    let first = groups.first().copied().unwrap_or("");
    let transition = field(&payload, &["alert_transition", "alerttransition"])
        .unwrap_or_else(|| transition_of(first).to_string());
    let (kind, warn) = match transition.as_str() {
        "Triggered" | "Re-Triggered" | "Renotify" => (IncidentEventKind::Opened, false),
        "Warn" | "Re-Warn" => (IncidentEventKind::Opened, true),
        "Recovered" => (IncidentEventKind::Resolved, false),
        // No Data, and anything else: not a change of an incident.
        _ => return Ok(Vec::new()),
    };
    let monitor = field(&payload, &["alert_id", "alertid", "monitor_id"])
        .or_else(|| field(&payload, &["body"]).and_then(|b| monitor_in(&b)));
    let scope = field(&payload, &["alert_scope", "scope"])
        .or_else(|| scope_of(first).map(str::to_string))
        .unwrap_or_default();
    let incident_id = match (field(&payload, &["alert_cycle_key"]), monitor) {
        (Some(cycle), _) => cycle,
        (None, Some(monitor)) => format!("{monitor}:{scope}"),
        // Nothing names the monitor: the notification cannot be told from another one's.
        (None, None) => return Ok(Vec::new()),
    };
    let time: Millis = match field(&payload, &["date", "last_updated"]) {
        Some(t) => t.parse().map_err(|e| parse_error(NAME, &transition, e))?,
        None => return Err(parse_error(NAME, &transition, "no date")),
    };
    let event_id = field(&payload, &["id", "event_id"])
        .unwrap_or_else(|| format!("{incident_id}/{}/{time}", kind.as_str()));
    let service_name = field(&payload, &["tags", "event_tags"])
        .and_then(|t| service_tag(&t))
        .unwrap_or_else(|| name.to_string());
    let severity = field(&payload, &["alert_type", "alerttype"])
        .or_else(|| warn.then(|| "warning".to_string()))
        .unwrap_or_default();
    Ok(vec![Fact::Incident(IncidentEvent {
        provider: NAME.into(),
        incident_id,
        event_id,
        kind,
        time,
        service_name,
        title: name.to_string(),
        severity,
    })])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_name_the_transition_the_scope_and_the_monitor() {
        let (groups, name) = title_parts("[Triggered on {host:a,role:b}] [TEST] CPU is high ");
        assert_eq!(groups, ["Triggered on {host:a,role:b}", "TEST"]);
        assert_eq!(name, "CPU is high");
        assert_eq!(transition_of(groups[0]), "Triggered");
        assert_eq!(scope_of(groups[0]), Some("host:a,role:b"));
        assert_eq!(transition_of("Recovered"), "Recovered");
        assert_eq!(scope_of("Recovered"), None);
        assert_eq!(title_parts("no brackets"), (vec![], "no brackets"));
        assert_eq!(monitor_in("x monitors#25562336?group"), Some("25562336".into()));
        assert_eq!(service_tag("host:a, service:checkout ,monitor"), Some("checkout".into()));
    }
}
