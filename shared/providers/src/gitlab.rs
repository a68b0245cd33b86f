//! GitLab webhooks: the shared secret comes back verbatim in `X-Gitlab-Token`; the delivery is named by
//! `Idempotency-Key` (stable across GitLab's retries), else `X-Gitlab-Event-UUID`; the event is the body's
//! `object_kind` (`X-Gitlab-Event` names the hook, and is passed along but not needed).

use em_core::domain::{
    Build, BuildOutcome, Deployment, DeploymentOutcome, Fact, PullRequestEvent,
    PullRequestEventKind, WorkItem, WorkItemAction,
};
use em_core::time::{Id, Timestamp};
use serde::Deserialize;

use crate::auth::Auth;
use crate::git::PushEvent;
use crate::{parse_error, EventHeader, IdSource, ParseError, Provider};

const NAME: &str = "gitlab";

pub const PROVIDER: Provider = Provider {
    name: NAME,
    title: "GitLab",
    auth: Auth::Token {
        header: "X-Gitlab-Token",
    },
    delivery_id: &[
        IdSource::Header("Idempotency-Key"),
        IdSource::Header("X-Gitlab-Event-UUID"),
    ],
    event_header: Some(EventHeader {
        header: "X-Gitlab-Event",
        guess: hook_name,
    }),
    events: &["push", "deployment", "merge_request", "pipeline", "build", "issue"],
    parse,
    sample: "scenario-deployment",
    validate: false,
};

#[derive(Deserialize)]
struct Kind {
    #[serde(default)]
    object_kind: Option<String>,
}

#[derive(Deserialize)]
struct Project {
    path_with_namespace: String,
    #[serde(default)]
    default_branch: Option<String>,
}

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
    project: Project,
    #[serde(default)]
    commits: Vec<crate::git::PushCommit>,
    /// How many commits the push carried: GitLab lists only the latest 20 of them. Read loosely: a value
    /// that is not a count only loses the note of unlisted commits, not the push.
    #[serde(default)]
    total_commits_count: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct DeploymentPayload {
    status: String,
    status_changed_at: Timestamp,
    deployment_id: Id,
    #[serde(default)]
    environment: String,
    #[serde(default)]
    environment_tier: Option<String>,
    short_sha: String,
    project: Project,
}

/// A merge request's or an issue's attributes (the two share their shape).
#[derive(Deserialize)]
struct MergeRequestAttributes {
    iid: u64,
    #[serde(default)]
    title: String,
    #[serde(default)]
    action: Option<String>,
    created_at: Timestamp,
    #[serde(default)]
    updated_at: Option<Timestamp>,
    #[serde(default)]
    merged_at: Option<Timestamp>,
    #[serde(default)]
    closed_at: Option<Timestamp>,
    #[serde(default)]
    merge_commit_sha: Option<String>,
}

#[derive(Deserialize)]
struct PipelineAttributes {
    id: Id,
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "ref", default)]
    git_ref: Option<String>,
    sha: String,
    status: String,
    #[serde(default)]
    created_at: Option<Timestamp>,
    #[serde(default)]
    finished_at: Option<Timestamp>,
}

#[derive(Deserialize)]
struct PipelinePayload {
    object_attributes: PipelineAttributes,
    project: Project,
}

/// A Job Hook's repository: its web page names the project (older job hooks carry no `project`).
#[derive(Deserialize)]
struct JobRepository {
    #[serde(default)]
    homepage: Option<String>,
    #[serde(default)]
    git_http_url: Option<String>,
}

#[derive(Deserialize)]
struct JobPayload {
    #[serde(rename = "ref", default)]
    git_ref: Option<String>,
    #[serde(default)]
    tag: bool,
    sha: String,
    build_id: Id,
    #[serde(default)]
    build_name: String,
    build_status: String,
    #[serde(default)]
    build_started_at: Option<Timestamp>,
    #[serde(default)]
    build_finished_at: Option<Timestamp>,
    #[serde(default)]
    retries_count: Option<u32>,
    #[serde(default)]
    project: Option<Project>,
    #[serde(default)]
    repository: Option<JobRepository>,
}

#[derive(Deserialize)]
struct IssuePayload {
    object_attributes: MergeRequestAttributes,
    project: Project,
}

#[derive(Deserialize)]
struct MergeRequestPayload {
    object_attributes: MergeRequestAttributes,
    project: Project,
}

fn parse(_event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
    let kind: Kind =
        serde_json::from_slice(body).map_err(|e| parse_error(NAME, "object_kind", e))?;
    let kind = kind.object_kind.unwrap_or_default();
    let err = |e: serde_json::Error| parse_error(NAME, &kind, e);
    match kind.as_str() {
        "push" => parse_push(serde_json::from_slice(body).map_err(err)?),
        "deployment" => parse_deployment(serde_json::from_slice(body).map_err(err)?),
        "merge_request" => parse_merge_request(serde_json::from_slice(body).map_err(err)?),
        "pipeline" => parse_pipeline(serde_json::from_slice(body).map_err(err)?),
        "build" => parse_job(serde_json::from_slice(body).map_err(err)?),
        "issue" | "work_item" => parse_issue(serde_json::from_slice(body).map_err(err)?),
        _ => Ok(Vec::new()),
    }
}

/// The `X-Gitlab-Event` value GitLab sends with a payload of this `object_kind`.
fn hook_name(body: &serde_json::Value) -> Option<String> {
    let hook = match body.get("object_kind")?.as_str()? {
        "push" => "Push Hook",
        "tag_push" => "Tag Push Hook",
        "merge_request" => "Merge Request Hook",
        "deployment" => "Deployment Hook",
        "pipeline" => "Pipeline Hook",
        "build" => "Job Hook",
        "issue" | "work_item" => "Issue Hook",
        "note" => "Note Hook",
        "release" => "Release Hook",
        _ => "System Hook",
    };
    Some(hook.to_string())
}

fn parse_push(p: PushPayload) -> Result<Vec<Fact>, ParseError> {
    Ok(PushEvent {
        provider: NAME,
        git_ref: &p.git_ref,
        default_branch: p.project.default_branch.as_deref(),
        repo: p.project.path_with_namespace,
        before: p.before,
        after: p.after,
        deleted: false,
        unlisted: p
            .total_commits_count
            .and_then(|total| total.as_u64())
            .and_then(|total| total.checked_sub(p.commits.len() as u64))
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        commits: p.commits,
    }
    .into_facts())
}

fn parse_deployment(p: DeploymentPayload) -> Result<Vec<Fact>, ParseError> {
    let outcome = match p.status.as_str() {
        "success" => DeploymentOutcome::Success,
        "failed" => DeploymentOutcome::Failure,
        _ => return Ok(Vec::new()),
    };
    Ok(vec![Fact::Deployment(Deployment {
        provider: NAME.into(),
        repo: p.project.path_with_namespace,
        deployment_id: p.deployment_id.0,
        environment: p.environment,
        production: p.environment_tier.map(|t| t == "production"),
        sha: p.short_sha,
        time: p.status_changed_at.0,
        outcome,
        rollback: false,
        rework: false,
    })])
}

fn parse_merge_request(p: MergeRequestPayload) -> Result<Vec<Fact>, ParseError> {
    let a = p.object_attributes;
    let updated = a.updated_at.map(|t| t.0).unwrap_or(a.created_at.0);
    let (kind, time) = match a.action.as_deref() {
        Some("open") => (PullRequestEventKind::Opened, a.created_at.0),
        Some("merge") => (
            PullRequestEventKind::Merged,
            a.merged_at.map(|t| t.0).unwrap_or(updated),
        ),
        Some("approved") | Some("approval") => (PullRequestEventKind::Approved, updated),
        Some("close") => (PullRequestEventKind::Closed, updated),
        _ => return Ok(Vec::new()),
    };
    // An approval is also a review (the first review is the earliest of either).
    let mut kinds = vec![kind];
    if kind == PullRequestEventKind::Approved {
        kinds.insert(0, PullRequestEventKind::Reviewed);
    }
    Ok(kinds
        .into_iter()
        .map(|kind| {
            Fact::PullRequest(PullRequestEvent {
                provider: NAME.into(),
                repo: p.project.path_with_namespace.clone(),
                number: a.iid,
                kind,
                time,
                title: a.title.clone(),
                sha: a
                    .merge_commit_sha
                    .clone()
                    .filter(|_| kind == PullRequestEventKind::Merged),
            })
        })
        .collect())
}

/// A pipeline that finished is a build; one created, pending or running is not a fact yet.
fn parse_pipeline(p: PipelinePayload) -> Result<Vec<Fact>, ParseError> {
    let a = p.object_attributes;
    let Some(outcome) = finished(&a.status) else {
        return Ok(Vec::new());
    };
    let Some(finished) = a.finished_at else {
        return Ok(Vec::new());
    };
    Ok(vec![Fact::Build(Build {
        provider: NAME.into(),
        repo: p.project.path_with_namespace,
        run_id: a.id.0,
        attempt: 1,
        name: a.name.unwrap_or_default(),
        sha: a.sha,
        branch: a.git_ref.unwrap_or_default(),
        outcome,
        started: a.created_at.map(|t| t.0),
        finished: finished.0,
    })])
}

/// A finished pipeline status's outcome; running and other unfinished ones count nothing.
fn finished(status: &str) -> Option<BuildOutcome> {
    match status {
        "success" => Some(BuildOutcome::Success),
        "failed" => Some(BuildOutcome::Failure),
        "canceled" | "cancelled" => Some(BuildOutcome::Cancelled),
        "skipped" => Some(BuildOutcome::Skipped),
        _ => None,
    }
}

/// A job of a pipeline (`object_kind: build`): a build of its own, `job:<id>` so it never meets a
/// pipeline's id; its retries are later attempts.
fn parse_job(p: JobPayload) -> Result<Vec<Fact>, ParseError> {
    let (Some(outcome), Some(done)) = (finished(&p.build_status), p.build_finished_at) else {
        return Ok(Vec::new());
    };
    let repo = p
        .project
        .map(|project| project.path_with_namespace)
        .or_else(|| {
            let r = p.repository?;
            [r.homepage, r.git_http_url]
                .into_iter()
                .flatten()
                .find_map(|u| crate::git::repo_of_url(&u))
        })
        .ok_or_else(|| parse_error(NAME, "build", "neither `project` nor a repository URL"))?;
    Ok(vec![Fact::Build(Build {
        provider: NAME.into(),
        repo,
        run_id: format!("job:{}", p.build_id.0),
        attempt: p.retries_count.unwrap_or(0).saturating_add(1),
        name: p.build_name,
        sha: p.sha,
        branch: if p.tag { String::new() } else { p.git_ref.unwrap_or_default() },
        outcome,
        started: p.build_started_at.map(|t| t.0),
        finished: done.0,
    })])
}

fn parse_issue(p: IssuePayload) -> Result<Vec<Fact>, ParseError> {
    let a = p.object_attributes;
    let updated = a.updated_at.map_or(a.created_at.0, |t| t.0);
    let (action, time) = match a.action.as_deref() {
        Some("open") => (WorkItemAction::Opened, a.created_at.0),
        Some("close") => (WorkItemAction::Closed, a.closed_at.map_or(updated, |t| t.0)),
        Some("reopen") => (WorkItemAction::Reopened, updated),
        _ => return Ok(Vec::new()),
    };
    Ok(vec![Fact::WorkItem(WorkItem {
        provider: NAME.into(),
        repo: p.project.path_with_namespace,
        number: a.iid,
        action,
        time,
        title: a.title,
    })])
}
