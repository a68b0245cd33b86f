//! CircleCI webhooks: `circleci-signature: v1=<hex HMAC-SHA256 of the body>` (a comma-separated list when
//! several secrets sign), the event in `circleci-event-type` and the body's `type`, named by the body's
//! `id`. A `workflow-completed` or `job-completed` is a build of the pipeline's revision; the aggregator
//! makes a deployment of it when its name matches the service's deploy pattern (docs/providers/circleci.md).
//! Projects on GitHub, Bitbucket and GitLab alike: the repository is read from the pipeline's VCS URL.

use em_core::domain::{Build, BuildOutcome, Fact};
use em_core::time::Timestamp;
use serde::Deserialize;

use crate::auth::{Auth, Hmac};
use crate::{parse_error, EventHeader, IdSource, ParseError, Provider};

const NAME: &str = "circleci";

pub const PROVIDER: Provider = Provider {
    name: NAME,
    title: "CircleCI",
    auth: Auth::Hmac(Hmac::sha256_hex_of_body("circleci-signature", "v1=", Some(','))),
    delivery_id: &[IdSource::Body(&["id"])],
    event_header: Some(EventHeader {
        header: "circleci-event-type",
        guess: guess_event,
    }),
    events: &["workflow-completed", "job-completed"],
    parse,
    sample: "workflow-completed",
    validate: false,
};

fn guess_event(payload: &serde_json::Value) -> Option<String> {
    payload["type"].as_str().map(str::to_string)
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Deserialize)]
struct Project {
    #[serde(default)]
    slug: String,
}

#[derive(Deserialize)]
struct Vcs {
    #[serde(default)]
    target_repository_url: Option<String>,
    #[serde(default)]
    origin_repository_url: Option<String>,
    #[serde(default)]
    revision: String,
    #[serde(default)]
    branch: Option<String>,
}

/// Where GitLab and GitHub App pipelines say what `vcs` says for the others.
#[derive(Deserialize, Default)]
struct GitParameters {
    #[serde(default)]
    checkout_sha: Option<String>,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    checkout_url: Option<String>,
}

#[derive(Deserialize, Default)]
struct WebUrl {
    #[serde(default)]
    web_url: Option<String>,
}

#[derive(Deserialize, Default)]
struct TriggerParameters {
    #[serde(default)]
    git: GitParameters,
    #[serde(default)]
    gitlab: WebUrl,
}

#[derive(Deserialize)]
struct Pipeline {
    #[serde(default)]
    vcs: Option<Vcs>,
    #[serde(default)]
    trigger_parameters: TriggerParameters,
}

#[derive(Deserialize)]
struct Workflow {
    id: String,
    name: String,
    #[serde(default)]
    created_at: Option<Timestamp>,
    #[serde(default)]
    stopped_at: Option<Timestamp>,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize)]
struct Job {
    id: String,
    name: String,
    #[serde(default)]
    started_at: Option<Timestamp>,
    #[serde(default)]
    stopped_at: Option<Timestamp>,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
struct Event {
    happened_at: Timestamp,
    project: Project,
    pipeline: Pipeline,
    #[serde(default)]
    workflow: Option<Workflow>,
    #[serde(default)]
    job: Option<Job>,
}

/// The slug `github/owner/name` (or `gh/`, `bitbucket/`, `bb/`) names the repository after its first part;
/// GitLab and GitHub App projects' slugs are ids (`circleci/<org id>/<project id>`), hence the URL first.
fn repo(e: &Event) -> String {
    let vcs = e.pipeline.vcs.as_ref();
    let t = &e.pipeline.trigger_parameters;
    [
        vcs.and_then(|v| v.target_repository_url.as_deref()),
        vcs.and_then(|v| v.origin_repository_url.as_deref()),
        t.gitlab.web_url.as_deref(),
        t.git.checkout_url.as_deref(),
    ]
    .into_iter()
    .flatten()
    .find_map(crate::git::repo_of_url)
        .or_else(|| {
            e.project
                .slug
                .split_once('/')
                .map(|(_, r)| r.to_string())
        })
        .unwrap_or_else(|| e.project.slug.clone())
}

/// A finished status's outcome; statuses of work still running count nothing.
fn outcome(status: &str) -> Option<BuildOutcome> {
    match status {
        "success" => Some(BuildOutcome::Success),
        "failed" | "error" | "failing" | "unauthorized" | "infrastructure_fail" | "timedout" => {
            Some(BuildOutcome::Failure)
        }
        "canceled" | "cancelled" => Some(BuildOutcome::Cancelled),
        "not_run" | "skipped" => Some(BuildOutcome::Skipped),
        _ => None,
    }
}

fn parse(event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
    let head: Head = serde_json::from_slice(body).map_err(|e| parse_error(NAME, "type", e))?;
    let kind = if head.kind.is_empty() {
        event.unwrap_or_default().to_string()
    } else {
        head.kind
    };
    if kind != "workflow-completed" && kind != "job-completed" {
        return Ok(Vec::new());
    }
    let e: Event = serde_json::from_slice(body).map_err(|err| parse_error(NAME, &kind, err))?;
    let repo = repo(&e);
    let (sha, branch) = match &e.pipeline.vcs {
        Some(v) => (v.revision.clone(), v.branch.clone()),
        None => {
            let g = &e.pipeline.trigger_parameters.git;
            (g.checkout_sha.clone().unwrap_or_default(), g.branch.clone())
        }
    };
    let branch = branch.unwrap_or_default();
    // The payload's shape decides: a `job` is a job's completion (CircleCI's own GitLab sample is typed
    // `workflow-completed` but carries a job and no workflow).
    let (run_id, name, status, started, stopped) = match (e.job, e.workflow) {
        (Some(j), _) => (j.id, j.name, Some(j.status), j.started_at, j.stopped_at),
        (None, Some(w)) => (w.id, w.name, w.status, w.created_at, w.stopped_at),
        (None, None) => return Err(parse_error(NAME, &kind, "neither `workflow` nor `job`")),
    };
    let Some(outcome) = status.as_deref().and_then(outcome) else {
        return Ok(Vec::new());
    };
    Ok(vec![Fact::Build(Build {
        provider: NAME.into(),
        repo,
        run_id,
        attempt: 1,
        name,
        sha,
        branch,
        outcome,
        started: started.map(|t| t.0),
        finished: stopped.unwrap_or(e.happened_at).0,
    })])
}
