//! How much of a delivery a fact keeps: every text field has a maximum length in bytes (UTF-8) and a push
//! lists at most [`MAX_COMMITS`] commits. Providers' parses pass through [`Fact::bounded`] in one place, so a
//! signed body with a 70,000-byte environment or 400,000 commits cannot make a row the stores cannot write or
//! read back. docs/facts.md lists the same numbers.

use crate::domain::Fact;

/// Names of providers, repositories, environments and services.
pub const NAME: usize = 512;
/// Provider ids: deployments, runs, incidents, events, analyses.
pub const ID: usize = 256;
/// Commit shas (git's are 40 or 64 hex digits) and branch names.
pub const SHA: usize = 128;
pub const BRANCH: usize = 512;
/// Titles of incidents, pull requests and work items; build names.
pub const TITLE: usize = 1024;
/// An alert's severity or priority as the tool names it.
pub const SEVERITY: usize = 64;
/// Commit messages: the rework rules read only their start.
pub const MESSAGE: usize = 4096;
/// Commits a push lists (GitHub lists at most 2,048): the newest are kept, the rest count as `unlisted`.
pub const MAX_COMMITS: usize = 2048;

/// Cuts `s` to at most `max` bytes, on a character boundary.
pub fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        s.truncate(floor_boundary(s, max));
    }
}

/// The largest character boundary of `s` at or below `max`.
pub fn floor_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    let mut n = max;
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    n
}

impl Fact {
    /// The fact with every text field cut to its maximum and a push's commits to the newest
    /// [`MAX_COMMITS`], the others counted as unlisted (shipped with the oldest listed one, as GitLab's).
    pub fn bounded(mut self) -> Fact {
        match &mut self {
            Fact::Push(p) => {
                cut(&mut p.provider, NAME);
                cut(&mut p.repo, NAME);
                cut(&mut p.before, SHA);
                cut(&mut p.after, SHA);
                if p.commits.len() > MAX_COMMITS {
                    let extra = p.commits.len() - MAX_COMMITS;
                    p.commits.drain(..extra);
                    p.unlisted = p
                        .unlisted
                        .saturating_add(u32::try_from(extra).unwrap_or(u32::MAX));
                }
                for c in &mut p.commits {
                    cut(&mut c.sha, SHA);
                    cut(&mut c.message, MESSAGE);
                }
            }
            Fact::Deployment(d) => {
                cut(&mut d.provider, NAME);
                cut(&mut d.repo, NAME);
                cut(&mut d.deployment_id, ID);
                cut(&mut d.environment, NAME);
                cut(&mut d.sha, SHA);
            }
            Fact::Incident(i) => {
                cut(&mut i.provider, NAME);
                cut(&mut i.incident_id, ID);
                cut(&mut i.event_id, ID);
                // An alert that names no service is the tool's own (an unmapped service, which `aliases`
                // can map): a service needs a name, and a store's keys one that is not empty.
                if i.service_name.trim().is_empty() {
                    i.service_name = i.provider.clone();
                }
                cut(&mut i.service_name, NAME);
                cut(&mut i.title, TITLE);
                cut(&mut i.severity, SEVERITY);
            }
            Fact::PullRequest(p) => {
                cut(&mut p.provider, NAME);
                cut(&mut p.repo, NAME);
                cut(&mut p.title, TITLE);
                if let Some(sha) = &mut p.sha {
                    cut(sha, SHA);
                }
            }
            Fact::Build(b) => {
                cut(&mut b.provider, NAME);
                cut(&mut b.repo, NAME);
                cut(&mut b.run_id, ID);
                cut(&mut b.name, TITLE);
                cut(&mut b.sha, SHA);
                cut(&mut b.branch, BRANCH);
            }
            Fact::WorkItem(w) => {
                cut(&mut w.provider, NAME);
                cut(&mut w.repo, NAME);
                cut(&mut w.title, TITLE);
            }
            Fact::QualityReport(q) => {
                cut(&mut q.provider, NAME);
                cut(&mut q.repo, NAME);
                cut(&mut q.analysis_id, ID);
                cut(&mut q.sha, SHA);
                cut(&mut q.branch, BRANCH);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Commit, Deployment, DeploymentOutcome, Push};

    #[test]
    fn an_incident_that_names_no_service_is_its_tools() {
        let incident = |service: &str| {
            Fact::Incident(crate::domain::IncidentEvent {
                provider: "opsgenie".into(),
                incident_id: "a".into(),
                event_id: "a/opened".into(),
                kind: crate::domain::IncidentEventKind::Opened,
                time: 0,
                service_name: service.into(),
                title: String::new(),
                severity: String::new(),
            })
            .bounded()
        };
        for blank in ["", "  "] {
            let Fact::Incident(i) = incident(blank) else {
                unreachable!()
            };
            assert_eq!(i.service_name, "opsgenie");
        }
        let Fact::Incident(i) = incident("shop") else {
            unreachable!()
        };
        assert_eq!(i.service_name, "shop");
    }

    #[test]
    fn cuts_on_a_character_boundary() {
        // 'é' is two bytes: a cut at an odd byte would split it.
        let mut s = "é".repeat(10);
        cut(&mut s, 7);
        assert_eq!(s, "ééé");
        let mut short = "abc".to_string();
        cut(&mut short, 7);
        assert_eq!(short, "abc");
        assert_eq!(floor_boundary("a€", 3), 1);
        assert_eq!(floor_boundary("a€", 4), 4);
    }

    #[test]
    fn a_long_environment_is_cut_to_its_maximum() {
        let env = format!("{}€", "x".repeat(NAME - 1));
        let f = Fact::Deployment(Deployment {
            provider: "github".into(),
            repo: "a/b".into(),
            deployment_id: "1".into(),
            environment: env,
            production: None,
            sha: "abc".into(),
            time: 0,
            outcome: DeploymentOutcome::Success,
            rollback: false,
            rework: false,
        })
        .bounded();
        let Fact::Deployment(d) = f else {
            panic!("kind changed")
        };
        assert_eq!(d.environment, "x".repeat(NAME - 1));
    }

    #[test]
    fn a_push_keeps_its_newest_commits_and_counts_the_rest_unlisted() {
        let commits = (0..MAX_COMMITS + 5)
            .map(|i| Commit {
                sha: format!("{i:040x}"),
                time: i as i64,
                message: String::new(),
            })
            .collect();
        let f = Fact::Push(Push {
            provider: "github".into(),
            repo: "a/b".into(),
            before: "0".into(),
            after: "1".into(),
            commits,
            unlisted: 3,
        })
        .bounded();
        let Fact::Push(p) = f else {
            panic!("kind changed")
        };
        assert_eq!(p.commits.len(), MAX_COMMITS);
        assert_eq!(p.commits[0].time, 5);
        assert_eq!(p.unlisted, 8);
    }
}
