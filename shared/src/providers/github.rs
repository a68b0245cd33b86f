//! GitHub webhooks: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, `X-GitHub-Delivery`,
//! `X-GitHub-Event`.

use http::HeaderMap;
use serde::Deserialize;

use super::{
    body_digest, check_json_object, header, hmac_matches_any, hmac_sha256, parse_error, AuthError,
    BodyError, Inspection, ParseError, Provider,
};
use crate::domain::{
    is_null_sha, Commit, Deployment, DeploymentOutcome, Fact, PullRequestEvent,
    PullRequestEventKind, Push,
};
use crate::time::{Id, Timestamp};

pub struct GitHub;

const NAME: &str = "github";
const SIGNATURE: &str = "x-hub-signature-256";
const DELIVERY: &str = "x-github-delivery";
const EVENT: &str = "x-github-event";

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
struct PushCommit {
    id: String,
    timestamp: Timestamp,
    #[serde(default)]
    message: String,
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
    commits: Vec<PushCommit>,
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

impl Provider for GitHub {
    fn name(&self) -> &'static str {
        NAME
    }

    fn authenticate(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        secrets: &[Vec<u8>],
    ) -> Result<(), AuthError> {
        let value = header(headers, SIGNATURE).ok_or(AuthError::Missing("X-Hub-Signature-256"))?;
        let hex = value
            .strip_prefix("sha256=")
            .ok_or(AuthError::Malformed("X-Hub-Signature-256"))?;
        if hmac_matches_any(secrets, body, hex) {
            Ok(())
        } else {
            Err(AuthError::Mismatch("X-Hub-Signature-256"))
        }
    }

    fn inspect(&self, headers: &HeaderMap, body: &[u8]) -> Result<Inspection, BodyError> {
        check_json_object(body)?;
        let delivery_id = header(headers, DELIVERY)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| body_digest(body));
        Ok(Inspection {
            delivery_id,
            event: header(headers, EVENT).map(str::to_string),
        })
    }

    fn parse(&self, event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
        let event = event.unwrap_or_default();
        let err = |e: serde_json::Error| parse_error(NAME, event, e);
        match event {
            "push" => parse_push(serde_json::from_slice(body).map_err(err)?),
            "deployment_status" => {
                parse_deployment_status(serde_json::from_slice(body).map_err(err)?)
            }
            "pull_request" => parse_pull_request(serde_json::from_slice(body).map_err(err)?),
            "pull_request_review" => parse_review(serde_json::from_slice(body).map_err(err)?),
            _ => Ok(Vec::new()),
        }
    }

    fn sign(&self, secret: &[u8], body: &[u8]) -> Vec<(&'static str, String)> {
        vec![(
            "X-Hub-Signature-256",
            format!("sha256={}", hex::encode(hmac_sha256(secret, body))),
        )]
    }
}

fn default_branch(repo: &Repository) -> Option<&str> {
    repo.default_branch
        .as_deref()
        .or(repo.master_branch.as_deref())
}

fn parse_push(p: PushPayload) -> Result<Vec<Fact>, ParseError> {
    let Some(branch) = default_branch(&p.repository) else {
        return Ok(Vec::new());
    };
    let on_default = p
        .git_ref
        .strip_prefix("refs/heads/")
        .is_some_and(|b| b == branch);
    if !on_default || p.deleted || is_null_sha(&p.after) {
        return Ok(Vec::new());
    }
    Ok(vec![Fact::Push(Push {
        provider: NAME.into(),
        repo: p.repository.full_name,
        before: p.before,
        after: p.after,
        commits: p
            .commits
            .into_iter()
            .map(|c| Commit {
                sha: c.id,
                time: c.timestamp.0,
                message: c.message,
            })
            .collect(),
    })])
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

/// The event a raw payload file most likely is, for `em-agent send` when no event is given.
pub fn guess_event(body: &serde_json::Value) -> &'static str {
    let has = |k: &str| body.get(k).is_some();
    if has("deployment_status") {
        "deployment_status"
    } else if has("deployment") {
        "deployment"
    } else if has("review") && has("pull_request") {
        "pull_request_review"
    } else if has("pull_request") {
        "pull_request"
    } else if has("zen") {
        "ping"
    } else if has("workflow_run") {
        "workflow_run"
    } else if has("workflow_job") {
        "workflow_job"
    } else if has("check_suite") {
        "check_suite"
    } else if has("release") {
        "release"
    } else if has("issue") {
        "issues"
    } else if has("ref") && has("before") && has("after") {
        "push"
    } else {
        "unknown"
    }
}
