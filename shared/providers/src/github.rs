//! GitHub webhooks: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, named by
//! `X-GitHub-Delivery`, the event in `X-GitHub-Event`.

use em_core::domain::{
    Deployment, DeploymentOutcome, Fact, PullRequestEvent, PullRequestEventKind,
};
use em_core::time::{Id, Timestamp};
use serde::Deserialize;

use crate::auth::{Algorithm, Auth, Encoding, Hmac, Message};
use crate::git::PushEvent;
use crate::{parse_error, EventHeader, IdSource, ParseError, Provider};

const NAME: &str = "github";

pub const PROVIDER: Provider = Provider {
    name: NAME,
    title: "GitHub",
    auth: Auth::Hmac(Hmac {
        header: "X-Hub-Signature-256",
        algorithm: Algorithm::Sha256,
        encoding: Encoding::Hex,
        prefix: "sha256=",
        separator: None,
        message: Message::Body,
        timestamp: None,
    }),
    delivery_id: &[IdSource::Header("X-GitHub-Delivery")],
    event_header: Some(EventHeader {
        header: "X-GitHub-Event",
        guess: guess_event,
    }),
    events: &[
        "push",
        "deployment_status",
        "pull_request",
        "pull_request_review",
    ],
    parse,
    sample: "scenario-push",
};

#[derive(Deserialize)]
struct Repository {
    full_name: String,
    #[serde(default)]
    default_branch: Option<String>,
    /// Older push payloads name the default branch `master_branch`.
    #[serde(default)]
    master_branch: Option<String>,
}

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
    #[serde(default)]
    deleted: bool,
    repository: Repository,
    #[serde(default)]
    commits: Vec<crate::git::PushCommit>,
}

#[derive(Deserialize)]
struct DeploymentStatus {
    state: String,
    created_at: Timestamp,
    #[serde(default)]
    environment: Option<String>,
}

#[derive(Deserialize)]
struct DeploymentObject {
    id: Id,
    sha: String,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    production_environment: Option<bool>,
}

#[derive(Deserialize)]
struct DeploymentStatusPayload {
    deployment_status: DeploymentStatus,
    deployment: DeploymentObject,
    repository: Repository,
}

#[derive(Deserialize)]
struct PullRequest {
    number: u64,
    #[serde(default)]
    title: String,
    created_at: Timestamp,
    #[serde(default)]
    merged_at: Option<Timestamp>,
}

#[derive(Deserialize)]
struct PullRequestPayload {
    action: String,
    pull_request: PullRequest,
    repository: Repository,
}

#[derive(Deserialize)]
struct Review {
    #[serde(default)]
    submitted_at: Option<Timestamp>,
}

#[derive(Deserialize)]
struct ReviewPayload {
    action: String,
    review: Review,
    pull_request: PullRequest,
    repository: Repository,
}

fn parse(event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
    let event = event.unwrap_or_default();
    let err = |e: serde_json::Error| parse_error(NAME, event, e);
    match event {
        "push" => parse_push(serde_json::from_slice(body).map_err(err)?),
        "deployment_status" => parse_deployment_status(serde_json::from_slice(body).map_err(err)?),
        "pull_request" => parse_pull_request(serde_json::from_slice(body).map_err(err)?),
        "pull_request_review" => parse_review(serde_json::from_slice(body).map_err(err)?),
        _ => Ok(Vec::new()),
    }
}

fn parse_push(p: PushPayload) -> Result<Vec<Fact>, ParseError> {
    Ok(PushEvent {
        provider: NAME,
        git_ref: &p.git_ref,
        default_branch: p
            .repository
            .default_branch
            .as_deref()
            .or(p.repository.master_branch.as_deref()),
        repo: p.repository.full_name,
        before: p.before,
        after: p.after,
        deleted: p.deleted,
        commits: p.commits,
    }
    .into_facts())
}

fn parse_deployment_status(p: DeploymentStatusPayload) -> Result<Vec<Fact>, ParseError> {
    let outcome = match p.deployment_status.state.as_str() {
        "success" => DeploymentOutcome::Success,
        "failure" | "error" => DeploymentOutcome::Failure,
        _ => return Ok(Vec::new()),
    };
    let environment = p
        .deployment_status
        .environment
        .or(p.deployment.environment)
        .unwrap_or_default();
    Ok(vec![Fact::Deployment(Deployment {
        provider: NAME.into(),
        repo: p.repository.full_name,
        deployment_id: p.deployment.id.0,
        environment,
        production: p.deployment.production_environment,
        sha: p.deployment.sha,
        time: p.deployment_status.created_at.0,
        outcome,
    })])
}

fn parse_pull_request(p: PullRequestPayload) -> Result<Vec<Fact>, ParseError> {
    let (kind, time) = match (p.action.as_str(), p.pull_request.merged_at) {
        ("opened", _) => (PullRequestEventKind::Opened, p.pull_request.created_at.0),
        ("closed", Some(merged)) => (PullRequestEventKind::Merged, merged.0),
        _ => return Ok(Vec::new()),
    };
    Ok(vec![Fact::PullRequest(PullRequestEvent {
        provider: NAME.into(),
        repo: p.repository.full_name,
        number: p.pull_request.number,
        kind,
        time,
        title: p.pull_request.title,
    })])
}

fn parse_review(p: ReviewPayload) -> Result<Vec<Fact>, ParseError> {
    let Some(at) = p.review.submitted_at.filter(|_| p.action == "submitted") else {
        return Ok(Vec::new());
    };
    Ok(vec![Fact::PullRequest(PullRequestEvent {
        provider: NAME.into(),
        repo: p.repository.full_name,
        number: p.pull_request.number,
        kind: PullRequestEventKind::Reviewed,
        time: at.0,
        title: p.pull_request.title,
    })])
}

/// The event a payload file most likely is, by the keys only that event carries; the first match wins.
fn guess_event(body: &serde_json::Value) -> Option<String> {
    const BY_KEYS: &[(&[&str], &str)] = &[
        (&["deployment_status"], "deployment_status"),
        (&["deployment"], "deployment"),
        (&["review", "pull_request"], "pull_request_review"),
        (&["pull_request"], "pull_request"),
        (&["zen"], "ping"),
        (&["workflow_run"], "workflow_run"),
        (&["workflow_job"], "workflow_job"),
        (&["check_suite"], "check_suite"),
        (&["check_run"], "check_run"),
        (&["release"], "release"),
        (&["issue"], "issues"),
        (&["ref", "before", "after"], "push"),
    ];
    BY_KEYS
        .iter()
        .find(|(keys, _)| keys.iter().all(|k| body.get(k).is_some()))
        .map(|(_, event)| event.to_string())
}
