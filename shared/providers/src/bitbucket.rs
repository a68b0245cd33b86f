//! Bitbucket Cloud webhooks: `X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>` (the webhook's
//! secret), the event in `X-Event-Key`, named by `X-Request-UUID`. A `repo:push` to the default branch is a
//! push of each branch change's new commits; a commit status (Bitbucket Pipelines, or any CI reporting one)
//! that finished is a build of its commit; pull requests opened, approved, merged (`fulfilled`) and
//! declined (`rejected`) are pull request events.

use em_core::domain::{
    Build, BuildOutcome, Commit, Fact, PullRequestEvent, PullRequestEventKind, Push, NULL_SHA,
};
use em_core::time::Timestamp;
use serde::Deserialize;

use crate::auth::{Auth, Hmac};
use crate::{parse_error, EventHeader, IdSource, ParseError, Provider};

const NAME: &str = "bitbucket";

pub const PROVIDER: Provider = Provider {
    name: NAME,
    title: "Bitbucket",
    auth: Auth::Hmac(Hmac::sha256_hex_of_body("X-Hub-Signature", "sha256=", None)),
    delivery_id: &[IdSource::Header("X-Request-UUID")],
    event_header: Some(EventHeader {
        header: "X-Event-Key",
        guess: guess_event,
    }),
    events: &[
        "repo:push",
        "repo:commit_status_created",
        "repo:commit_status_updated",
        "pullrequest:created",
        "pullrequest:approved",
        "pullrequest:fulfilled",
        "pullrequest:rejected",
    ],
    parse,
    sample: "repo-push",
    validate: false,
};

fn guess_event(payload: &serde_json::Value) -> Option<String> {
    let key = if payload.get("push").is_some() {
        "repo:push"
    } else if payload.get("commit_status").is_some() {
        "repo:commit_status_updated"
    } else if payload.get("approval").is_some() {
        "pullrequest:approved"
    } else {
        match payload["pullrequest"]["state"].as_str()? {
            "MERGED" => "pullrequest:fulfilled",
            "DECLINED" => "pullrequest:rejected",
            _ => "pullrequest:created",
        }
    };
    Some(key.into())
}

/// Bitbucket sends the main branch's name only in some payloads; without it, `main` or `master`.
const DEFAULT_BRANCHES: &[&str] = &["main", "master"];

#[derive(Deserialize)]
struct Branch {
    name: String,
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
    #[serde(default)]
    mainbranch: Option<Branch>,
}

#[derive(Deserialize)]
struct Target {
    hash: String,
}

#[derive(Deserialize)]
struct Ref {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    target: Option<Target>,
}

#[derive(Deserialize)]
struct PushedCommit {
    hash: String,
    date: Timestamp,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    old: Option<Ref>,
    #[serde(default)]
    new: Option<Ref>,
    /// Newest first, and only the latest few (`truncated` says there were more).
    #[serde(default)]
    commits: Vec<PushedCommit>,
}

#[derive(Deserialize)]
struct PushBody {
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct PushPayload {
    repository: Repository,
    push: PushBody,
}

#[derive(Deserialize)]
struct StatusCommit {
    hash: String,
}

#[derive(Deserialize)]
struct CommitStatus {
    key: String,
    #[serde(default)]
    name: String,
    state: String,
    #[serde(default)]
    refname: Option<String>,
    commit: StatusCommit,
    #[serde(default)]
    created_on: Option<Timestamp>,
    updated_on: Timestamp,
}

#[derive(Deserialize)]
struct StatusPayload {
    repository: Repository,
    commit_status: CommitStatus,
}

#[derive(Deserialize)]
struct PullRequest {
    id: u64,
    #[serde(default)]
    title: String,
    created_on: Timestamp,
    #[serde(default)]
    updated_on: Option<Timestamp>,
    #[serde(default)]
    closed_on: Option<Timestamp>,
    #[serde(default)]
    merge_commit: Option<CommitRef>,
}

#[derive(Deserialize)]
struct CommitRef {
    hash: String,
}

#[derive(Deserialize)]
struct Approval {
    date: Timestamp,
}

#[derive(Deserialize)]
struct PullRequestPayload {
    repository: Repository,
    pullrequest: PullRequest,
    #[serde(default)]
    approval: Option<Approval>,
}

fn pull_request(event: &str, p: PullRequestPayload) -> Result<Vec<Fact>, ParseError> {
    let pr = p.pullrequest;
    let ended = pr.closed_on.or(pr.updated_on).unwrap_or(pr.created_on);
    let (kind, time) = match event {
        "pullrequest:created" => (PullRequestEventKind::Opened, pr.created_on),
        "pullrequest:fulfilled" => (PullRequestEventKind::Merged, ended),
        "pullrequest:rejected" => (PullRequestEventKind::Closed, ended),
        _ => match p.approval {
            Some(a) => (PullRequestEventKind::Approved, a.date),
            None => return Err(parse_error(NAME, event, "missing field `approval`")),
        },
    };
    let sha = match kind {
        PullRequestEventKind::Merged => pr.merge_commit.map(|c| c.hash),
        _ => None,
    };
    Ok(vec![Fact::PullRequest(PullRequestEvent {
        provider: NAME.into(),
        repo: p.repository.full_name,
        number: pr.id,
        kind,
        time: time.0,
        title: pr.title,
        sha,
    })])
}

fn parse(event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
    match event {
        Some("repo:push") => {
            let p: PushPayload =
                serde_json::from_slice(body).map_err(|e| parse_error(NAME, "repo:push", e))?;
            Ok(pushes(p))
        }
        Some(e @ ("repo:commit_status_created" | "repo:commit_status_updated")) => {
            let p: StatusPayload =
                serde_json::from_slice(body).map_err(|err| parse_error(NAME, e, err))?;
            Ok(build(p).into_iter().collect())
        }
        Some(
            e @ ("pullrequest:created"
            | "pullrequest:approved"
            | "pullrequest:fulfilled"
            | "pullrequest:rejected"),
        ) => {
            let p: PullRequestPayload =
                serde_json::from_slice(body).map_err(|err| parse_error(NAME, e, err))?;
            pull_request(e, p)
        }
        _ => Ok(Vec::new()),
    }
}

fn pushes(p: PushPayload) -> Vec<Fact> {
    let default = p.repository.mainbranch.as_ref().map(|b| b.name.as_str());
    let on_default = |name: &str| match default {
        Some(d) => name == d,
        None => DEFAULT_BRANCHES.contains(&name),
    };
    p.push
        .changes
        .into_iter()
        .filter_map(|c| {
            // A branch that moved or was created on the default branch; deletions (no `new`) and tags are
            // no change.
            let new = c.new?;
            let after = new.target?.hash;
            if new.kind != "branch" || !on_default(&new.name) {
                return None;
            }
            let before = c
                .old
                .and_then(|o| o.target)
                .map_or_else(|| NULL_SHA.to_string(), |t| t.hash);
            let commits = c
                .commits
                .into_iter()
                .rev()
                .map(|c| Commit {
                    sha: c.hash,
                    time: c.date.0,
                    message: c.message,
                })
                .collect();
            Some(Fact::Push(Push {
                provider: NAME.into(),
                repo: p.repository.full_name.clone(),
                before,
                after,
                commits,
                // Bitbucket says only that it left some out (`truncated`), not how many.
                unlisted: 0,
            }))
        })
        .collect()
}

fn build(p: StatusPayload) -> Option<Fact> {
    let s = p.commit_status;
    let outcome = match s.state.as_str() {
        "SUCCESSFUL" => BuildOutcome::Success,
        "FAILED" => BuildOutcome::Failure,
        "STOPPED" => BuildOutcome::Cancelled,
        // INPROGRESS, and anything newer: not finished.
        _ => return None,
    };
    Some(Fact::Build(Build {
        provider: NAME.into(),
        repo: p.repository.full_name,
        run_id: s.key,
        attempt: 1,
        name: s.name,
        sha: s.commit.hash,
        branch: s.refname.unwrap_or_default(),
        outcome,
        started: s.created_on.map(|t| t.0),
        finished: s.updated_on.0,
    }))
}
