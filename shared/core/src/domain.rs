//! Normalised facts: what the providers' payloads mean, independent of who sent them.
//!
//! Their JSON is the documented fact format (`docs/facts.md`): one object per fact with a `kind`, times in
//! RFC 3339 UTC. `em-agent parse` prints it and the providers' expected-facts files are written in it.

use serde::{Deserialize, Serialize};

use crate::time::Millis;

/// A commit on a repository's default branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commit {
    pub sha: String,
    /// The commit's own timestamp, as the push reports it.
    #[serde(with = "crate::time::rfc3339")]
    pub time: Millis,
    pub message: String,
}

/// A push to a repository's default branch, carrying its commits oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Push {
    pub provider: String,
    pub repo: String,
    pub before: String,
    pub after: String,
    pub commits: Vec<Commit>,
    /// Commits the push carried but did not list (GitLab lists the latest 20 of `total_commits_count`):
    /// shipped with the oldest listed commit, without a commit time of their own.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unlisted: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentOutcome {
    Success,
    /// A failed deployment attempt: recorded, never counted as a deployment.
    Failure,
}

impl DeploymentOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentOutcome::Success => "success",
            DeploymentOutcome::Failure => "failure",
        }
    }
}

/// A deployment outcome reported by the provider, before the configuration decides whether it is production.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    pub provider: String,
    pub repo: String,
    /// The provider's own deployment id.
    pub deployment_id: String,
    pub environment: String,
    /// The provider's own production flag, where it sends one.
    pub production: Option<bool>,
    /// A full sha (GitHub) or a prefix of one (GitLab `short_sha`).
    pub sha: String,
    #[serde(with = "crate::time::rfc3339")]
    pub time: Millis,
    pub outcome: DeploymentOutcome,
    /// The provider says this deployment rolls the previous one back (a rollback release, a circuit
    /// breaker's): it is rework and the deployment before it failed, whatever the shas say.
    #[serde(default, skip_serializing_if = "is_false")]
    pub rollback: bool,
    /// The provider says this deployment restores an earlier version after a failed attempt (an ECS
    /// circuit breaker's rollback): it is rework, and no deployment before it failed (the attempt did).
    #[serde(default, skip_serializing_if = "is_false")]
    pub rework: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentEventKind {
    Opened,
    Acknowledged,
    /// Acknowledgement withdrawn (timed out, or undone): the incident is waiting again.
    Unacknowledged,
    /// Passed to the next level of its escalation policy.
    Escalated,
    Resolved,
    /// Opened again after a resolution: recovery runs until the next resolution.
    Reopened,
}

impl IncidentEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentEventKind::Opened => "opened",
            IncidentEventKind::Acknowledged => "acknowledged",
            IncidentEventKind::Unacknowledged => "unacknowledged",
            IncidentEventKind::Escalated => "escalated",
            IncidentEventKind::Resolved => "resolved",
            IncidentEventKind::Reopened => "reopened",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "opened" => Some(IncidentEventKind::Opened),
            "acknowledged" => Some(IncidentEventKind::Acknowledged),
            "unacknowledged" => Some(IncidentEventKind::Unacknowledged),
            "escalated" => Some(IncidentEventKind::Escalated),
            "resolved" => Some(IncidentEventKind::Resolved),
            "reopened" => Some(IncidentEventKind::Reopened),
            _ => None,
        }
    }
}

/// One change of an incident's state.
///
/// Folding them into an incident does not depend on their order: it opens at its earliest trigger, is
/// acknowledged at its earliest acknowledgement, and is resolved at its earliest resolution after its latest
/// reopening (at its earliest resolution when never reopened; still open when reopened and not resolved since).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentEvent {
    pub provider: String,
    pub incident_id: String,
    /// The provider's id of this event: re-deliveries repeat it.
    pub event_id: String,
    #[serde(rename = "action")]
    pub kind: IncidentEventKind,
    #[serde(with = "crate::time::rfc3339")]
    pub time: Millis,
    /// The provider's name of the affected service, mapped to a service by `aliases`.
    pub service_name: String,
    pub title: String,
    /// The tool's severity or priority of the alert, as it says it (`critical`, `P1`), or `""` when it
    /// gives none. Kept as sent: which severities count is decided when counting
    /// ([`crate::config::Config::counts_incident`]), so a changed setting needs no re-delivery.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub severity: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullRequestEventKind {
    Opened,
    /// A review was submitted (the earliest is the first review).
    Reviewed,
    Approved,
    Merged,
    /// Closed without being merged.
    Closed,
}

impl PullRequestEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PullRequestEventKind::Opened => "opened",
            PullRequestEventKind::Reviewed => "reviewed",
            PullRequestEventKind::Approved => "approved",
            PullRequestEventKind::Merged => "merged",
            PullRequestEventKind::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            PullRequestEventKind::Opened,
            PullRequestEventKind::Reviewed,
            PullRequestEventKind::Approved,
            PullRequestEventKind::Merged,
            PullRequestEventKind::Closed,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullRequestEvent {
    pub provider: String,
    pub repo: String,
    pub number: u64,
    #[serde(rename = "action")]
    pub kind: PullRequestEventKind,
    #[serde(with = "crate::time::rfc3339")]
    pub time: Millis,
    pub title: String,
    /// On a merge: the commit it put on the target branch (a merge, squash or the last rebased commit),
    /// what a deployment ships; a prefix where the provider sends one (Bitbucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildOutcome {
    Success,
    /// Failed, errored or timed out.
    Failure,
    Cancelled,
    Skipped,
}

impl BuildOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildOutcome::Success => "success",
            BuildOutcome::Failure => "failure",
            BuildOutcome::Cancelled => "cancelled",
            BuildOutcome::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            BuildOutcome::Success,
            BuildOutcome::Failure,
            BuildOutcome::Cancelled,
            BuildOutcome::Skipped,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// A pipeline or workflow run that finished (runs in progress are not facts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    pub provider: String,
    pub repo: String,
    /// The provider's run or pipeline id.
    pub run_id: String,
    /// Re-runs of one run are attempts 2, 3, ...; 1 where the provider has no attempts.
    pub attempt: u32,
    /// The workflow's name, where the provider sends one.
    pub name: String,
    pub sha: String,
    pub branch: String,
    pub outcome: BuildOutcome,
    #[serde(with = "crate::time::rfc3339::option", default)]
    pub started: Option<Millis>,
    #[serde(with = "crate::time::rfc3339")]
    pub finished: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkItemAction {
    Opened,
    Closed,
    Reopened,
}

impl WorkItemAction {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkItemAction::Opened => "opened",
            WorkItemAction::Closed => "closed",
            WorkItemAction::Reopened => "reopened",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            WorkItemAction::Opened,
            WorkItemAction::Closed,
            WorkItemAction::Reopened,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// An issue (a work item) of a repository changing state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkItem {
    pub provider: String,
    pub repo: String,
    pub number: u64,
    pub action: WorkItemAction,
    #[serde(with = "crate::time::rfc3339")]
    pub time: Millis,
    pub title: String,
}

/// A code-quality or coverage analysis of one commit of a repository (SonarQube, Codecov and the like).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityReport {
    pub provider: String,
    pub repo: String,
    /// The provider's analysis id: a report is stored once per provider and analysis.
    pub analysis_id: String,
    pub sha: String,
    pub branch: String,
    #[serde(with = "crate::time::rfc3339")]
    pub time: Millis,
    /// Whether the provider's quality gate passed, where it has one.
    pub passed: Option<bool>,
    /// Line coverage in hundredths of a percent (8125 is 81.25 %), where reported.
    pub coverage_bp: Option<u32>,
    /// Issues the analysis found new in this commit (bugs, vulnerabilities, smells), where reported.
    pub new_issues: Option<u64>,
}

/// Everything the product takes from a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fact {
    Push(Push),
    Deployment(Deployment),
    Incident(IncidentEvent),
    PullRequest(PullRequestEvent),
    Build(Build),
    WorkItem(WorkItem),
    QualityReport(QualityReport),
}

/// Facts are kept when every instant they carry lies in [`EARLIEST_FACT`, `LATEST_FACT`): 1970 to 2100 (UTC).
/// Outside that, a timestamp is a provider's mistake or a hostile body, and arithmetic on it could overflow.
pub const EARLIEST_FACT: Millis = 0;
pub const LATEST_FACT: Millis = 4_102_444_800_000;

impl Fact {
    /// The fact's kind, as docs/facts.md names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Fact::Push(_) => "push",
            Fact::Deployment(_) => "deployment",
            Fact::Incident(_) => "incident",
            Fact::PullRequest(_) => "pull_request",
            Fact::Build(_) => "build",
            Fact::WorkItem(_) => "work_item",
            Fact::QualityReport(_) => "quality_report",
        }
    }

    /// Whether every instant of the fact lies between 1970 and 2100.
    pub fn dated_in_range(&self) -> bool {
        let ok = |t: Millis| (EARLIEST_FACT..LATEST_FACT).contains(&t);
        match self {
            Fact::Push(p) => p.commits.iter().all(|c| ok(c.time)),
            Fact::Deployment(d) => ok(d.time),
            Fact::Incident(i) => ok(i.time),
            Fact::PullRequest(p) => ok(p.time),
            Fact::Build(b) => ok(b.finished) && b.started.is_none_or(ok),
            Fact::WorkItem(w) => ok(w.time),
            Fact::QualityReport(q) => ok(q.time),
        }
    }
}

/// The sha git uses for "no commit" in `before`/`after`.
pub const NULL_SHA: &str = "0000000000000000000000000000000000000000";

pub fn is_null_sha(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}

/// The shortest abbreviation git accepts: a shorter sha names no commit.
pub const MIN_SHA_LEN: usize = 4;

/// Whether two shas name the same commit: equal, or one an abbreviation of the other (a prefix of at least
/// [`MIN_SHA_LEN`] characters, as GitLab's `short_sha`).
pub fn same_sha(a: &str, b: &str) -> bool {
    if a.is_empty() || b.is_empty() {
        return false;
    }
    a == b || (a.len().min(b.len()) >= MIN_SHA_LEN && (a.starts_with(b) || b.starts_with(a)))
}

/// An incident folded from its state changes, in any order (see [`IncidentEvent`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IncidentSpan {
    pub opened: Option<Millis>,
    pub acknowledged: Option<Millis>,
    pub resolved: Option<Millis>,
}

impl IncidentSpan {
    pub fn fold(events: impl IntoIterator<Item = (IncidentEventKind, Millis)>) -> IncidentSpan {
        let min = |slot: &mut Option<Millis>, t: Millis| *slot = Some(slot.map_or(t, |s| s.min(t)));
        let mut span = IncidentSpan::default();
        let mut reopened: Option<Millis> = None;
        let mut resolutions = Vec::new();
        for (kind, t) in events {
            match kind {
                IncidentEventKind::Opened => min(&mut span.opened, t),
                IncidentEventKind::Acknowledged => min(&mut span.acknowledged, t),
                IncidentEventKind::Resolved => resolutions.push(t),
                IncidentEventKind::Reopened => reopened = Some(reopened.map_or(t, |r| r.max(t))),
                IncidentEventKind::Unacknowledged | IncidentEventKind::Escalated => {}
            }
        }
        span.resolved = resolutions
            .into_iter()
            .filter(|&t| reopened.is_none_or(|r| t > r))
            .min();
        span
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use IncidentEventKind::*;

    #[test]
    fn quality_reports_read_back_from_their_json_line() {
        let line = r#"{"kind":"quality_report","provider":"sonarqube","repo":"acme/shop","analysis_id":"AYx1","sha":"3484a3f","branch":"main","time":"2025-03-03T19:55:32Z","passed":true,"coverage_bp":8125,"new_issues":null}"#;
        let f: Fact = serde_json::from_str(line).unwrap();
        let Fact::QualityReport(q) = &f else {
            panic!("{f:?}")
        };
        assert_eq!(
            (q.passed, q.coverage_bp, q.new_issues),
            (Some(true), Some(8125), None)
        );
        assert_eq!(q.time, 1_741_031_732_000);
        assert_eq!(f.kind(), "quality_report");
        let back: Fact = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn incidents_fold_the_same_in_any_order() {
        let events = [
            (Resolved, 50),
            (Opened, 10),
            (Reopened, 60),
            (Acknowledged, 12),
            (Opened, 11),
            (Resolved, 90),
            (Escalated, 20),
            (Resolved, 80),
            (Unacknowledged, 13),
        ];
        let want = IncidentSpan {
            opened: Some(10),
            acknowledged: Some(12),
            resolved: Some(80),
        };
        assert_eq!(IncidentSpan::fold(events), want);
        let mut reversed = events;
        reversed.reverse();
        assert_eq!(IncidentSpan::fold(reversed), want);
        // Reopened and not resolved since: open.
        assert_eq!(
            IncidentSpan::fold([(Opened, 1), (Resolved, 5), (Reopened, 6)]).resolved,
            None
        );
        // Never reopened: the earliest resolution.
        assert_eq!(
            IncidentSpan::fold([(Opened, 1), (Resolved, 7), (Resolved, 5)]).resolved,
            Some(5)
        );
    }
}
