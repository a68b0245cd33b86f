//! Heroku app webhooks: `Heroku-Webhook-Hmac-SHA256: <base64 HMAC-SHA256 of the body>`, named by the body's
//! `webhook_metadata.delivery.id` (else the event's `id`). An `api:release` that reaches `succeeded` is a
//! deployment of the app, `failed` a failed attempt; a pending release counts nothing until it finishes.

use em_core::domain::{Deployment, DeploymentOutcome, Fact};
use em_core::time::{Id, Timestamp};
use serde::Deserialize;

use crate::auth::{Algorithm, Auth, Encoding, Hmac, Key, SignedContent};
use crate::{parse_error, IdSource, ParseError, Provider};

const NAME: &str = "heroku";

pub const PROVIDER: Provider = Provider {
    name: NAME,
    title: "Heroku",
    auth: Auth::Hmac(Hmac {
        header: "Heroku-Webhook-Hmac-SHA256",
        algorithm: Algorithm::Sha256,
        encoding: Encoding::Base64,
        prefix: "",
        separator: None,
        message: SignedContent::Body,
        timestamp: None,
        key: Key::Raw,
    }),
    delivery_id: &[
        IdSource::Body(&["webhook_metadata", "delivery", "id"]),
        IdSource::Body(&["id"]),
    ],
    event_header: None,
    events: &["api:release"],
    parse,
    sample: "api-release-update",
    validate: false,
};

#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    resource: String,
}

#[derive(Deserialize)]
struct App {
    name: String,
}

#[derive(Deserialize)]
struct Slug {
    #[serde(default)]
    commit: Option<String>,
}

#[derive(Deserialize)]
struct Release {
    id: Id,
    app: App,
    #[serde(default)]
    slug: Option<Slug>,
    status: String,
    created_at: Timestamp,
    #[serde(default)]
    updated_at: Option<Timestamp>,
    /// What made the release: `Deploy 48AKJH`, `Rollback to v46` (`heroku rollback`), `Set FOO config vars`.
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
struct ReleaseEvent {
    data: Release,
}

fn parse(_event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
    let head: Head =
        serde_json::from_slice(body).map_err(|e| parse_error(NAME, "resource", e))?;
    if head.resource != "release" {
        return Ok(Vec::new());
    }
    let e: ReleaseEvent =
        serde_json::from_slice(body).map_err(|e| parse_error(NAME, "api:release", e))?;
    let r = e.data;
    let outcome = match r.status.as_str() {
        "succeeded" => DeploymentOutcome::Success,
        "failed" => DeploymentOutcome::Failure,
        _ => return Ok(Vec::new()),
    };
    // Heroku has no environments: the app is where a release goes, so it names both the source and the
    // environment (docs/providers/heroku.md).
    Ok(vec![Fact::Deployment(Deployment {
        provider: NAME.into(),
        repo: r.app.name.clone(),
        deployment_id: r.id.0,
        environment: r.app.name,
        production: None,
        // A slug's commit that is no git sha (Heroku's own examples show `48AKJH48758769671293ALFKJHL`)
        // names no commit: the release still counts as a deployment, shipping no change.
        sha: r
            .slug
            .and_then(|s| s.commit)
            .filter(|c| crate::git::is_sha(c))
            .unwrap_or_default(),
        time: r.updated_at.unwrap_or(r.created_at).0,
        outcome,
        // `heroku rollback` makes a release described `Rollback to v<N>` (Dev Center, Releases): the release
        // it replaces is rolled back.
        rollback: r.description.starts_with("Rollback to v"),
        rework: false,
    })])
}
