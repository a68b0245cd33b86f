//! The generic provider: any script or tool reports changes, deployments and incidents in EM Agent's own
//! versioned JSON (`docs/providers/generic.md`, JSON Schema in `docs/schemas/generic-v1.schema.json`),
//! signed `X-EM-Agent-Signature: sha256=<hex HMAC-SHA256 of the body>` and named by the body's `id`.
//!
//! The schema is ours, so it is strict: an unknown field, a missing one or a time that is not RFC 3339 is
//! the sender's mistake, refused at the door with a 400 that names it ([`Provider::validate`]), rather than
//! accepted and dead-lettered later.

use em_core::domain::{
    Commit, Deployment, DeploymentOutcome, Fact, IncidentEvent, IncidentEventKind, Push, NULL_SHA,
};
use em_core::time::Millis;
use serde::Deserialize;

use crate::auth::{Auth, Hmac};
use crate::{parse_error, IdSource, ParseError, Provider};

const NAME: &str = "generic";

/// The schema version this build reads.
pub const VERSION: u32 = 1;

pub const PROVIDER: Provider = Provider {
    name: NAME,
    title: "Generic",
    auth: Auth::Hmac(Hmac::sha256_hex_of_body("X-EM-Agent-Signature", "sha256=", None)),
    delivery_id: &[IdSource::Body(&["id"])],
    event_header: None,
    events: &["change", "deployment", "incident"],
    parse,
    sample: "deployment",
    validate: true,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitReport {
    sha: String,
    #[serde(with = "em_core::time::rfc3339")]
    time: Millis,
    #[serde(default)]
    message: String,
}

/// Commits that reached the repository's default branch, oldest first.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    repository: String,
    /// The branch's sha before these commits, where known.
    #[serde(default)]
    before: Option<String>,
    commits: Vec<CommitReport>,
    /// How many commits reached the branch beyond those listed, where the sender lists only some.
    #[serde(default)]
    unlisted: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Success,
    Failure,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploymentReport {
    /// The repository (or any name mapped to a service by `aliases`, such as an app's) it deploys.
    repository: String,
    /// The deployment's own id, where the sender reports one deployment more than once (its failure, then
    /// a retry's success are two deployments); the report's `id` otherwise.
    #[serde(default)]
    deployment_id: Option<String>,
    environment: String,
    #[serde(default)]
    production: Option<bool>,
    sha: String,
    status: Status,
    /// When it finished.
    #[serde(with = "em_core::time::rfc3339")]
    time: Millis,
    /// The sender rolled the previous deployment back with this one.
    #[serde(default)]
    rollback: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Incident {
    incident_id: String,
    /// The affected service's name, mapped to a service by `aliases` (or its own name).
    service: String,
    status: IncidentEventKind,
    #[serde(with = "em_core::time::rfc3339")]
    time: Millis,
    #[serde(default)]
    title: String,
    /// The alert's severity or priority, as the sending tool names it.
    #[serde(default)]
    severity: String,
}

fn non_empty(provider: &'static str, what: &str, v: &str) -> Result<(), ParseError> {
    if v.trim().is_empty() {
        return Err(parse_error(provider, what, format!("`{what}` is empty")));
    }
    Ok(())
}

/// The fields every report has; the rest is read by its `type`, strictly.
const ENVELOPE: [&str; 3] = ["version", "id", "type"];

enum Event {
    Change(Change),
    Deployment(DeploymentReport),
    Incident(Incident),
}

/// Reads `rest` as a `T`, naming the report's type in the error.
fn read<T: serde::de::DeserializeOwned>(
    provider: &'static str,
    kind: &str,
    rest: serde_json::Map<String, serde_json::Value>,
) -> Result<T, ParseError> {
    serde_json::from_value(serde_json::Value::Object(rest)).map_err(|e| parse_error(provider, kind, e))
}

fn parse(_event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
    parse_as(NAME, body)
}

/// A report of the schema, as facts of `provider`: the generic provider's, or a provider that sends the
/// same schema (ArgoCD, through EM Agent's notification template).
pub(crate) fn parse_as(provider: &'static str, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
    let mut report: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| parse_error(provider, "report", e))?;
    match report.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return Err(parse_error(
                provider,
                "report",
                format!("`version` {v} is not {VERSION}, the one this server reads"),
            ))
        }
        None => return Err(parse_error(provider, "report", "`version` (a number) is missing")),
    }
    let Some(id) = report.get("id").and_then(serde_json::Value::as_str) else {
        return Err(parse_error(provider, "report", "`id` (a string) is missing"));
    };
    let id = id.to_string();
    non_empty(provider, "id", &id)?;
    let kind = match report.get("type").and_then(serde_json::Value::as_str) {
        Some(k @ ("change" | "deployment" | "incident")) => k.to_string(),
        Some(other) => {
            return Err(parse_error(
                provider,
                "report",
                format!("`type` {other:?} is not one of change, deployment, incident"),
            ))
        }
        None => return Err(parse_error(provider, "report", "`type` (a string) is missing")),
    };
    for name in ENVELOPE {
        report.remove(name);
    }
    let event = match kind.as_str() {
        "change" => Event::Change(read(provider, &kind, report)?),
        "deployment" => Event::Deployment(read(provider, &kind, report)?),
        _ => Event::Incident(read(provider, &kind, report)?),
    };
    Ok(match event {
        Event::Change(c) => {
            non_empty(provider, "repository", &c.repository)?;
            let Some(last) = c.commits.last() else {
                return Err(parse_error(provider, "change", "`commits` is empty"));
            };
            for commit in &c.commits {
                non_empty(provider, "commits[].sha", &commit.sha)?;
            }
            vec![Fact::Push(Push {
                provider: provider.into(),
                repo: c.repository,
                before: c.before.unwrap_or_else(|| NULL_SHA.into()),
                after: last.sha.clone(),
                commits: c
                    .commits
                    .into_iter()
                    .map(|c| Commit {
                        sha: c.sha,
                        time: c.time,
                        message: c.message,
                    })
                    .collect(),
                unlisted: c.unlisted,
            })]
        }
        Event::Deployment(d) => {
            non_empty(provider, "repository", &d.repository)?;
            non_empty(provider, "environment", &d.environment)?;
            non_empty(provider, "sha", &d.sha)?;
            vec![Fact::Deployment(Deployment {
                provider: provider.into(),
                repo: d.repository,
                deployment_id: d.deployment_id.unwrap_or(id),
                environment: d.environment,
                production: d.production,
                sha: d.sha,
                time: d.time,
                outcome: match d.status {
                    Status::Success => DeploymentOutcome::Success,
                    Status::Failure => DeploymentOutcome::Failure,
                },
                rollback: d.rollback,
                rework: false,
            })]
        }
        Event::Incident(i) => {
            non_empty(provider, "incident_id", &i.incident_id)?;
            non_empty(provider, "service", &i.service)?;
            vec![Fact::Incident(IncidentEvent {
                provider: provider.into(),
                incident_id: i.incident_id,
                event_id: id,
                kind: i.status,
                time: i.time,
                service_name: i.service,
                title: i.title,
                severity: i.severity,
            })]
        }
    })
}
