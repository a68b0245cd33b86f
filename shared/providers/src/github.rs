//! GitHub webhooks: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, named by
//! `X-GitHub-Delivery`, the event in `X-GitHub-Event`.

use em_core::domain::{
    Build, BuildOutcome, Deployment, DeploymentOutcome, Fact, PullRequestEvent,
    PullRequestEventKind, WorkItem, WorkItemAction,
};
use em_core::time::{Id, Timestamp};
use serde::Deserialize;

use crate::auth::{Auth, Hmac};
use crate::git::PushEvent;
use crate::{parse_error, EventHeader, IdSource, ParseError, Provider};

const NAME: &str = "github";

pub const PROVIDER: Provider = Provider {
    name: NAME,
    title: "GitHub",
    auth: Auth::Hmac(Hmac::sha256_hex_of_body("X-Hub-Signature-256", "sha256=", None)),
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
        "workflow_run",
        "workflow_job",
        "check_run",
        "check_suite",
        "issues",
    ],
    parse,
    sample: "scenario-push",
    validate: false,
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
    #[serde(default)]
    closed_at: Option<Timestamp>,
    #[serde(default)]
    merge_commit_sha: Option<String>,
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
    #[serde(default)]
    state: String,
}

#[derive(Deserialize)]
struct WorkflowRun {
    id: Id,
    #[serde(default)]
    run_attempt: Option<u32>,
    #[serde(default)]
    name: Option<String>,
    head_sha: String,
    #[serde(default)]
    head_branch: Option<String>,
    #[serde(default)]
    conclusion: Option<String>,
    #[serde(default)]
    run_started_at: Option<Timestamp>,
    updated_at: Timestamp,
}

#[derive(Deserialize)]
struct Workflow {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct WorkflowRunPayload {
    action: String,
    workflow_run: WorkflowRun,
    #[serde(default)]
    workflow: Option<Workflow>,
    repository: Repository,
}

#[derive(Deserialize)]
struct WorkflowJob {
    id: Id,
    #[serde(default)]
    run_attempt: Option<u32>,
    name: String,
    head_sha: String,
    #[serde(default)]
    head_branch: Option<String>,
    #[serde(default)]
    conclusion: Option<String>,
    #[serde(default)]
    started_at: Option<Timestamp>,
    #[serde(default)]
    completed_at: Option<Timestamp>,
}

#[derive(Deserialize)]
struct WorkflowJobPayload {
    action: String,
    workflow_job: WorkflowJob,
    repository: Repository,
}

#[derive(Deserialize)]
struct App {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct CheckSuite {
    id: Id,
    head_sha: String,
    #[serde(default)]
    head_branch: Option<String>,
    #[serde(default)]
    conclusion: Option<String>,
    #[serde(default)]
    app: Option<App>,
    #[serde(default)]
    created_at: Option<Timestamp>,
    #[serde(default)]
    updated_at: Option<Timestamp>,
}

#[derive(Deserialize)]
struct CheckSuitePayload {
    action: String,
    check_suite: CheckSuite,
    repository: Repository,
}

#[derive(Deserialize)]
struct SuiteRef {
    #[serde(default)]
    head_branch: Option<String>,
}

#[derive(Deserialize)]
struct CheckRun {
    id: Id,
    name: String,
    head_sha: String,
    #[serde(default)]
    conclusion: Option<String>,
    #[serde(default)]
    started_at: Option<Timestamp>,
    #[serde(default)]
    completed_at: Option<Timestamp>,
    #[serde(default)]
    check_suite: Option<SuiteRef>,
}

#[derive(Deserialize)]
struct CheckRunPayload {
    action: String,
    check_run: CheckRun,
    repository: Repository,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    #[serde(default)]
    title: String,
    created_at: Timestamp,
    #[serde(default)]
    updated_at: Option<Timestamp>,
    #[serde(default)]
    closed_at: Option<Timestamp>,
}

#[derive(Deserialize)]
struct IssuesPayload {
    action: String,
    issue: Issue,
    repository: Repository,
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
        "workflow_run" => parse_workflow_run(serde_json::from_slice(body).map_err(err)?),
        "workflow_job" => parse_workflow_job(serde_json::from_slice(body).map_err(err)?),
        "check_suite" => parse_check_suite(serde_json::from_slice(body).map_err(err)?),
        "check_run" => parse_check_run(serde_json::from_slice(body).map_err(err)?),
        "issues" => parse_issue(serde_json::from_slice(body).map_err(err)?),
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
        // GitHub lists up to 2,048 commits and sends no total.
        unlisted: 0,
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
        rollback: false,
        rework: false,
    })])
}

fn parse_pull_request(p: PullRequestPayload) -> Result<Vec<Fact>, ParseError> {
    let merged = p.pull_request.merged_at.is_some() && p.action == "closed";
    let (kind, time) = match (p.action.as_str(), p.pull_request.merged_at) {
        ("opened", _) => (PullRequestEventKind::Opened, p.pull_request.created_at.0),
        ("closed", Some(merged)) => (PullRequestEventKind::Merged, merged.0),
        ("closed", None) => match p.pull_request.closed_at {
            Some(closed) => (PullRequestEventKind::Closed, closed.0),
            None => return Ok(Vec::new()),
        },
        _ => return Ok(Vec::new()),
    };
    Ok(vec![Fact::PullRequest(PullRequestEvent {
        provider: NAME.into(),
        repo: p.repository.full_name,
        number: p.pull_request.number,
        kind,
        time,
        title: p.pull_request.title,
        sha: p.pull_request.merge_commit_sha.filter(|_| merged),
    })])
}

fn parse_review(p: ReviewPayload) -> Result<Vec<Fact>, ParseError> {
    let Some(at) = p.review.submitted_at.filter(|_| p.action == "submitted") else {
        return Ok(Vec::new());
    };
    // An approving review is a review and an approval.
    let mut kinds = vec![PullRequestEventKind::Reviewed];
    if p.review.state.eq_ignore_ascii_case("approved") {
        kinds.push(PullRequestEventKind::Approved);
    }
    Ok(kinds
        .into_iter()
        .map(|kind| {
            Fact::PullRequest(PullRequestEvent {
                provider: NAME.into(),
                repo: p.repository.full_name.clone(),
                number: p.pull_request.number,
                kind,
                time: at.0,
                title: p.pull_request.title.clone(),
                sha: None,
            })
        })
        .collect())
}

/// A finished workflow run is a build; runs still queued or in progress are not facts yet.
/// The outcome of a completed run, job, check run or suite; `None` for actions before completion and for
/// conclusions that are no verdict (`neutral`, `action_required`, `stale`).
fn completed(action: &str, conclusion: Option<&str>) -> Option<BuildOutcome> {
    match (action, conclusion) {
        ("completed", Some("success")) => Some(BuildOutcome::Success),
        ("completed", Some("failure" | "timed_out" | "startup_failure")) => {
            Some(BuildOutcome::Failure)
        }
        ("completed", Some("cancelled")) => Some(BuildOutcome::Cancelled),
        ("completed", Some("skipped")) => Some(BuildOutcome::Skipped),
        _ => None,
    }
}

/// A job, check run or suite as its event reports it: a build once it completed.
struct Finished {
    event: &'static str,
    action: String,
    conclusion: Option<String>,
    /// Prefixed with the kind (`job:`, `check_run:`, `check_suite:`) so it never meets a workflow run's
    /// id in the builds' keys.
    run_id: String,
    attempt: u32,
    name: String,
    sha: String,
    branch: Option<String>,
    started: Option<Timestamp>,
    finished: Option<Timestamp>,
}

impl Finished {
    fn into_facts(self, repo: String) -> Result<Vec<Fact>, ParseError> {
        let Some(outcome) = completed(&self.action, self.conclusion.as_deref()) else {
            return Ok(Vec::new());
        };
        let Some(finished) = self.finished.or(self.started) else {
            return Err(parse_error(NAME, self.event, "completed without a time"));
        };
        Ok(vec![Fact::Build(Build {
            provider: NAME.into(),
            repo,
            run_id: self.run_id,
            attempt: self.attempt,
            name: self.name,
            sha: self.sha,
            branch: self.branch.unwrap_or_default(),
            outcome,
            started: self.started.map(|t| t.0),
            finished: finished.0,
        })])
    }
}

fn parse_workflow_job(p: WorkflowJobPayload) -> Result<Vec<Fact>, ParseError> {
    let j = p.workflow_job;
    Finished {
        event: "workflow_job",
        action: p.action,
        conclusion: j.conclusion,
        run_id: format!("job:{}", j.id.0),
        attempt: j.run_attempt.unwrap_or(1),
        name: j.name,
        sha: j.head_sha,
        branch: j.head_branch,
        started: j.started_at,
        finished: j.completed_at,
    }
    .into_facts(p.repository.full_name)
}

/// A check suite: all of one app's checks of a commit, named by the app.
fn parse_check_suite(p: CheckSuitePayload) -> Result<Vec<Fact>, ParseError> {
    let c = p.check_suite;
    Finished {
        event: "check_suite",
        action: p.action,
        conclusion: c.conclusion,
        run_id: format!("check_suite:{}", c.id.0),
        attempt: 1,
        name: c.app.map(|a| a.name).unwrap_or_default(),
        sha: c.head_sha,
        branch: c.head_branch,
        started: c.created_at,
        finished: c.updated_at,
    }
    .into_facts(p.repository.full_name)
}

fn parse_check_run(p: CheckRunPayload) -> Result<Vec<Fact>, ParseError> {
    let c = p.check_run;
    Finished {
        event: "check_run",
        action: p.action,
        conclusion: c.conclusion,
        run_id: format!("check_run:{}", c.id.0),
        attempt: 1,
        name: c.name,
        sha: c.head_sha,
        branch: c.check_suite.and_then(|s| s.head_branch),
        started: c.started_at,
        finished: c.completed_at,
    }
    .into_facts(p.repository.full_name)
}

fn parse_workflow_run(p: WorkflowRunPayload) -> Result<Vec<Fact>, ParseError> {
    let r = p.workflow_run;
    let Some(outcome) = completed(&p.action, r.conclusion.as_deref()) else {
        return Ok(Vec::new());
    };
    let name = r
        .name
        .filter(|n| !n.is_empty())
        .or(p.workflow.and_then(|w| w.name))
        .unwrap_or_default();
    Ok(vec![Fact::Build(Build {
        provider: NAME.into(),
        repo: p.repository.full_name,
        run_id: r.id.0,
        attempt: r.run_attempt.unwrap_or(1),
        name,
        sha: r.head_sha,
        branch: r.head_branch.unwrap_or_default(),
        outcome,
        started: r.run_started_at.map(|t| t.0),
        finished: r.updated_at.0,
    })])
}

fn parse_issue(p: IssuesPayload) -> Result<Vec<Fact>, ParseError> {
    let i = p.issue;
    let updated = i.updated_at.map_or(i.created_at.0, |t| t.0);
    let (action, time) = match p.action.as_str() {
        "opened" => (WorkItemAction::Opened, i.created_at.0),
        "closed" => (WorkItemAction::Closed, i.closed_at.map_or(updated, |t| t.0)),
        "reopened" => (WorkItemAction::Reopened, updated),
        _ => return Ok(Vec::new()),
    };
    Ok(vec![Fact::WorkItem(WorkItem {
        provider: NAME.into(),
        repo: p.repository.full_name,
        number: i.number,
        action,
        time,
        title: i.title,
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
