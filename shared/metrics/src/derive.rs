//! The reference linking: one service's whole history at once, in memory, as simply as the rules read.
//! The incremental linker ([`crate::link`]) must agree with it on every history; the tests hold it to that.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;

use crate::rules::{self, is_rework_message, Report};
use em_core::domain::{same_sha, IncidentEventKind, IncidentSpan, Push};

/// A deployment as the reference linking derives it.
#[derive(Debug, Clone, PartialEq)]
pub struct DerivedDeployment {
    pub key: String,
    pub time: Millis,
    pub sha: String,
    pub failed: bool,
    pub rework: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DerivedChange {
    pub deployment_key: String,
    pub deployment_time: Millis,
    pub sha: String,
    pub commit_time: Millis,
    /// Commits shipped with it that its push did not list.
    pub unlisted: u32,
}

impl DerivedChange {
    pub fn lead_time(&self) -> Millis {
        self.deployment_time - self.commit_time
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DerivedIncident {
    pub id: String,
    /// The incident's tool.
    pub provider: String,
    pub opened: Millis,
    /// Its own resolution; for the first incident of an outage of several, the outage's.
    pub resolved: Option<Millis>,
    pub attributed_to: Option<String>,
    /// For a later report of an outage another tool's incident opened first, that incident's id.
    pub outage: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Derived {
    pub deployments: Vec<DerivedDeployment>,
    pub changes: Vec<DerivedChange>,
    pub incidents: Vec<DerivedIncident>,
}
use em_core::time::Millis;

/// A successful production deployment of the service, once per provider deployment id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentFact {
    /// `provider/repo/deployment id`: unique across the service.
    pub key: String,
    pub repo: String,
    pub environment: String,
    pub sha: String,
    pub time: Millis,
    /// The provider says it rolls the previous deployment back.
    pub rollback: bool,
    /// The provider says it restores an earlier version after a failed attempt: rework, failing nothing.
    pub rework: bool,
}

/// One incident state change, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentEventFact {
    pub incident_id: String,
    pub provider: String,
    pub kind: IncidentEventKind,
    pub time: Millis,
    /// Whether its severity counts for its tool; `None` without one
    /// ([`em_core::config::Config::counts_incident`]).
    pub counts: Option<bool>,
}

/// Everything known about one service.
#[derive(Debug, Clone, Default)]
pub struct ServiceFacts {
    pub pushes: Vec<Push>,
    pub deployments: Vec<DeploymentFact>,
    pub incident_events: Vec<IncidentEventFact>,
}

impl ServiceFacts {
    /// What the reference needs from a service's stored facts: production deployments only, keyed uniquely.
    pub fn from_stored(
        config: &em_core::config::Config,
        stored: em_core::ports::StoredFacts,
    ) -> Self {
        ServiceFacts {
            pushes: stored.pushes,
            deployments: stored
                .deployments
                .into_iter()
                .filter(|d| config.is_production(&d.environment, d.production))
                .map(|d| DeploymentFact {
                    key: format!("{}/{}/{}", d.provider, d.repo, d.deployment_id),
                    repo: d.repo,
                    environment: d.environment,
                    sha: d.sha,
                    time: d.time,
                    rollback: d.rollback,
                    rework: d.rework,
                })
                .collect(),
            incident_events: stored
                .incident_events
                .into_iter()
                .map(|e| IncidentEventFact {
                    counts: config.counts_incident(&e.provider, &e.severity),
                    incident_id: e.incident_id,
                    provider: e.provider,
                    kind: e.kind,
                    time: e.time,
                })
                .collect(),
        }
    }
}

struct CommitNode<'a> {
    parent: &'a str,
    time: Millis,
    message: &'a str,
    /// Commits between `parent` and this one that the push did not list.
    unlisted: u32,
}

/// The commit graph of one repository's default branch, as the pushes describe it.
struct Chain<'a> {
    commits: BTreeMap<&'a str, CommitNode<'a>>,
}

impl<'a> Chain<'a> {
    fn build(pushes: &[&'a Push]) -> Self {
        let mut commits = BTreeMap::new();
        for p in pushes {
            let mut parent = p.before.as_str();
            for (i, c) in p.commits.iter().enumerate() {
                // The first push (in a fixed order) to list a commit decides its parent, so a commit seen in two
                // pushes gives the same chain whatever order they arrived in.
                commits.entry(c.sha.as_str()).or_insert(CommitNode {
                    parent,
                    time: c.time,
                    message: c.message.as_str(),
                    unlisted: if i == 0 { p.unlisted } else { 0 },
                });
                parent = c.sha.as_str();
            }
        }
        Chain { commits }
    }

    /// The full sha a deployment names: itself, or the one known commit it is a prefix of (GitLab `short_sha`).
    fn resolve(&self, sha: &str) -> Option<&'a str> {
        if let Some((k, _)) = self.commits.get_key_value(sha) {
            return Some(k);
        }
        if sha.len() < 4 {
            return None;
        }
        let mut hits = self
            .commits
            .range::<str, _>((Bound::Included(sha), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(sha))
            .map(|(k, _)| *k);
        match (hits.next(), hits.next()) {
            (Some(k), None) => Some(k),
            _ => None,
        }
    }
}

/// Links one service's facts. `attribution_window` is the longest time from a deployment to an incident it
/// can be blamed for.
pub fn derive(facts: &ServiceFacts, attribution_window: Millis) -> Derived {
    let mut pushes_by_repo: HashMap<&str, Vec<&Push>> = HashMap::new();
    for p in &facts.pushes {
        pushes_by_repo.entry(p.repo.as_str()).or_default().push(p);
    }
    let chains: HashMap<&str, Chain> = pushes_by_repo
        .into_iter()
        .map(|(repo, mut ps)| {
            ps.sort_by(|a, b| (&a.before, &a.after).cmp(&(&b.before, &b.after)));
            (repo, Chain::build(&ps))
        })
        .collect();

    let mut deps: Vec<&DeploymentFact> = facts.deployments.iter().collect();
    deps.sort_by(|a, b| (a.time, &a.key).cmp(&(b.time, &b.key)));
    // Another provider's report of the deployment kept just before it in its repository (same sha and
    // environment, within the window) is the same deployment: the first report stands.
    let mut kept: HashMap<String, Report> = HashMap::new();
    deps.retain(|d| {
        let repo = d.repo.to_lowercase();
        let report = Report::of(&d.key, &d.sha, &d.environment, d.time);
        let duplicate = kept
            .get(&repo)
            .is_some_and(|k| rules::is_another_report(k, &report));
        if !duplicate {
            kept.insert(repo, report);
        }
        !duplicate
    });

    // Ship changes in deployment-time order: each commit goes to the first deployment that reaches it.
    let mut shipped: HashSet<&str> = HashSet::new();
    let mut changes = Vec::new();
    let mut resolved_shas = Vec::with_capacity(deps.len());
    let mut reverts = vec![false; deps.len()];
    for (i, d) in deps.iter().enumerate() {
        let chain = chains.get(d.repo.as_str());
        let resolved = chain.and_then(|c| c.resolve(&d.sha));
        resolved_shas.push(resolved.unwrap_or(d.sha.as_str()).to_string());
        let (Some(chain), Some(start)) = (chain, resolved) else {
            continue;
        };
        let mut cur = start;
        while let Some(node) = chain.commits.get(cur) {
            if !shipped.insert(cur) {
                break;
            }
            reverts[i] |= is_rework_message(node.message);
            changes.push(DerivedChange {
                deployment_key: d.key.clone(),
                deployment_time: d.time,
                sha: cur.to_string(),
                commit_time: node.time,
                unlisted: node.unlisted,
            });
            cur = node.parent;
        }
    }

    // Rollback, within each repository: a deployment of a sha the repository deployed before its
    // immediately previous deployment.
    let mut rolled_back = vec![false; deps.len()];
    let mut rollback = vec![false; deps.len()];
    let mut by_repo: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, d) in deps.iter().enumerate() {
        by_repo.entry(d.repo.to_lowercase()).or_default().push(i);
    }
    for order in by_repo.values() {
        // Shas deployed before the previous deployment; short shas that matched no commit are compared by
        // prefix.
        let mut earlier: HashSet<&str> = HashSet::new();
        let mut earlier_short: Vec<&str> = Vec::new();
        for n in 2..order.len() {
            let (i, previous) = (order[n], order[n - 1]);
            let before_previous = resolved_shas[order[n - 2]].as_str();
            if before_previous.len() < 40 {
                earlier_short.push(before_previous);
            }
            earlier.insert(before_previous);
            let sha = resolved_shas[i].as_str();
            if !rules::may_roll_back(sha, &resolved_shas[previous]) {
                continue;
            }
            let deployed_before = earlier.contains(sha)
                || if sha.len() < 40 {
                    earlier.iter().any(|s| same_sha(s, sha))
                } else {
                    earlier_short.iter().any(|s| same_sha(s, sha))
                };
            if rules::is_rollback(false, deployed_before) {
                rollback[i] = true;
                rolled_back[previous] = true;
            }
        }
        // A provider-signalled rollback, whatever the shas: rework, and the repository's previous
        // deployment failed.
        for (n, &i) in order.iter().enumerate() {
            if rules::is_rollback(deps[i].rollback, false) {
                rollback[i] = true;
                if let Some(&previous) = n.checked_sub(1).and_then(|p| order.get(p)) {
                    rolled_back[previous] = true;
                }
            }
        }
    }

    let mut incidents = incidents_of(&facts.incident_events);
    // One outage reported by several tools: its first incident stands for it, with the outage's
    // resolution, and every report is attributed as it is.
    let alarms: Vec<rules::Alarm> = incidents
        .iter()
        .map(|i| rules::Alarm {
            provider: i.provider.clone(),
            opened: i.opened,
            resolved: i.resolved,
        })
        .collect();
    let leads: Vec<usize> = rules::outages(&alarms, attribution_window, |_| None)
        .into_iter()
        .enumerate()
        .map(|(i, lead)| lead.unwrap_or(i))
        .collect();
    for (i, &lead) in leads.iter().enumerate() {
        if lead == i {
            let members = leads.iter().enumerate().filter(|(_, l)| **l == i);
            incidents[i].resolved =
                rules::outage_resolved(members.map(|(m, _)| alarms[m].resolved));
        } else {
            incidents[i].outage = Some(incidents[lead].id.clone());
        }
    }
    let mut attributed_to: Vec<Option<usize>> = Vec::with_capacity(incidents.len());
    let mut has_incident = vec![false; deps.len()];
    for &lead in &leads {
        // The latest deployment at or before the outage opened, within the window.
        let hit = rules::attributed_to(
            &deps,
            |d| d.time,
            incidents[lead].opened,
            attribution_window,
        )
        .unwrap_or(None);
        if let Some(j) = hit {
            has_incident[j] = true;
        }
        attributed_to.push(hit);
    }

    let deployments = deps
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let open_incident = incidents.iter().zip(&attributed_to).any(|(inc, at)| {
                at.is_some_and(|j| j < i) && rules::open_at(inc.opened, inc.resolved, d.time)
            });
            DerivedDeployment {
                key: d.key.clone(),
                time: d.time,
                sha: resolved_shas[i].clone(),
                failed: rules::failed(has_incident[i], rolled_back[i]),
                rework: rules::is_rework(rollback[i], open_incident, reverts[i], d.rework),
            }
        })
        .collect();

    let incidents = incidents
        .into_iter()
        .zip(attributed_to)
        .map(|(inc, at)| DerivedIncident {
            attributed_to: at.map(|j| deps[j].key.clone()),
            ..inc
        })
        .collect();

    Derived {
        deployments,
        changes,
        incidents,
    }
}

/// Folds state changes into incidents ([`IncidentSpan::fold`]), so re-deliveries and re-ordering change
/// nothing, in order of opening (then id). An incident never seen triggered has no opening time and is left
/// out until its trigger arrives.
fn incidents_of(events: &[IncidentEventFact]) -> Vec<DerivedIncident> {
    let mut by_id: BTreeMap<&str, Vec<&IncidentEventFact>> = BTreeMap::new();
    for e in events {
        by_id.entry(e.incident_id.as_str()).or_default().push(e);
    }
    let mut incidents: Vec<DerivedIncident> = by_id
        .into_iter()
        .filter(|(_, events)| rules::is_incident(events.iter().map(|e| e.counts)))
        .filter_map(|(id, events)| {
            let provider = events
                .first()
                .map(|e| e.provider.clone())
                .unwrap_or_default();
            let events = events.into_iter().map(|e| (e.kind, e.time));
            let span = IncidentSpan::fold(events);
            Some(DerivedIncident {
                id: id.to_string(),
                provider,
                opened: span.opened?,
                resolved: span.resolved,
                attributed_to: None,
                outage: None,
            })
        })
        .collect();
    incidents.sort_by(|a, b| (a.opened, &a.id).cmp(&(b.opened, &b.id)));
    incidents
}

#[cfg(test)]
mod tests {
    use super::*;
    use em_core::domain::Commit;

    const H: Millis = 3_600_000;

    fn push(before: &str, commits: &[(&str, Millis, &str)]) -> Push {
        Push {
            provider: "github".into(),
            repo: "r".into(),
            before: before.into(),
            after: commits.last().map(|c| c.0).unwrap_or_default().into(),
            commits: commits
                .iter()
                .map(|(sha, time, message)| Commit {
                    sha: sha.to_string(),
                    time: *time,
                    message: message.to_string(),
                })
                .collect(),
            unlisted: 0,
        }
    }

    fn dep(key: &str, sha: &str, time: Millis) -> DeploymentFact {
        DeploymentFact {
            key: key.into(),
            repo: "r".into(),
            environment: "production".into(),
            sha: sha.into(),
            time,
            rollback: false,
            rework: false,
        }
    }

    fn shipped(d: &Derived, key: &str) -> Vec<String> {
        let mut v: Vec<String> = d
            .changes
            .iter()
            .filter(|c| c.deployment_key == key)
            .map(|c| c.sha.clone())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_deployment_ships_back_to_the_last_shipped_commit_and_not_past_its_sha() {
        let facts = ServiceFacts {
            pushes: vec![
                push("root", &[("a", H, "a"), ("b", 2 * H, "b")]),
                push(
                    "b",
                    &[("c", 3 * H, "c"), ("d", 4 * H, "d"), ("e", 5 * H, "e")],
                ),
            ],
            // Listed out of time order: time, not position, decides who ships first.
            deployments: vec![dep("d2", "e", 20 * H), dep("d1", "d", 10 * H)],
            incident_events: vec![],
        };
        let d = derive(&facts, 24 * H);
        assert_eq!(shipped(&d, "d1"), ["a", "b", "c", "d"]);
        assert_eq!(shipped(&d, "d2"), ["e"]);
        let lead: Vec<Millis> = d.changes.iter().map(DerivedChange::lead_time).collect();
        assert!(lead.iter().all(|&l| l > 0));

        // The same facts in any order give the same result.
        let mut reordered = facts.clone();
        reordered.pushes.reverse();
        reordered.deployments.reverse();
        assert_eq!(derive(&reordered, 24 * H), d);
    }

    #[test]
    fn rollbacks_need_a_different_previous_sha() {
        let pushes = vec![push("root", &[("x", H, "x"), ("y", 2 * H, "y")])];
        let repeated = ServiceFacts {
            pushes: pushes.clone(),
            deployments: vec![
                dep("1", "x", 10 * H),
                dep("2", "x", 11 * H),
                dep("3", "x", 12 * H),
            ],
            incident_events: vec![],
        };
        let d = derive(&repeated, 24 * H);
        assert!(d.deployments.iter().all(|x| !x.failed && !x.rework));

        let rollback = ServiceFacts {
            pushes,
            deployments: vec![
                dep("1", "x", 10 * H),
                dep("2", "y", 11 * H),
                dep("3", "x", 12 * H),
            ],
            incident_events: vec![],
        };
        let d = derive(&rollback, 24 * H);
        let by_key = |k: &str| d.deployments.iter().find(|x| x.key == k).cloned().unwrap();
        assert!(by_key("2").failed, "the rolled-back deployment failed");
        assert!(by_key("3").rework, "the rollback is rework");
        assert!(!by_key("3").failed && !by_key("1").failed);
        assert!(shipped(&d, "3").is_empty());
    }

    #[test]
    fn two_providers_reporting_one_deployment_count_it_once() {
        const M: Millis = 60 * 1000;
        let report = |key: &str, sha: &str, environment: &str, time| DeploymentFact {
            environment: environment.into(),
            ..dep(key, sha, time)
        };
        let count = |deployments: Vec<DeploymentFact>| {
            let facts = ServiceFacts {
                pushes: vec![],
                deployments,
                incident_events: vec![],
            };
            derive(&facts, 24 * H)
                .deployments
                .into_iter()
                .map(|d| d.key)
                .collect::<Vec<_>>()
        };
        // The CircleCI job that created the GitHub deployment reports it 4 minutes later: one, the first.
        assert_eq!(
            count(vec![
                report("github/r/1", "abc123", "production", 10 * H),
                report("circleci/r/9", "abc123", "Production", 10 * H + 4 * M),
            ]),
            ["github/r/1"]
        );
        // Past the window, in another environment, or of another sha: deployments of their own.
        for other in [
            report("circleci/r/9", "abc123", "production", 10 * H + 11 * M),
            report("circleci/r/9", "abc123", "production-eu", 10 * H + 4 * M),
            report("circleci/r/9", "def456", "production", 10 * H + 4 * M),
        ] {
            assert_eq!(
                count(vec![
                    report("github/r/1", "abc123", "production", 10 * H),
                    other
                ])
                .len(),
                2
            );
        }
        // One provider's two deployments of a sha are two (a redeploy), however close.
        assert_eq!(
            count(vec![
                report("github/r/1", "abc123", "production", 10 * H),
                report("github/r/2", "abc123", "production", 10 * H + M),
            ])
            .len(),
            2
        );
    }

    #[test]
    fn provider_signalled_rollbacks_fail_the_previous_deployment_of_their_repository() {
        let signalled = |repo: &str, key: &str, sha: &str, time| DeploymentFact {
            repo: repo.into(),
            rollback: true,
            rework: false,
            ..dep(key, sha, time)
        };
        let of = |repo: &str, key: &str, sha: &str, time| DeploymentFact {
            repo: repo.into(),
            ..dep(key, sha, time)
        };
        // A new sha (an image the circuit breaker restored, unknown to the sha rule), said to be a rollback:
        // rework, and the web deployment before it failed; the api deployment between them is not involved.
        let facts = ServiceFacts {
            pushes: vec![],
            deployments: vec![
                of("acme/web", "w1", "x", 10 * H),
                of("acme/web", "w2", "y", 11 * H),
                of("acme/api", "a1", "q", 12 * H),
                signalled("acme/web", "w3", "z", 13 * H),
                // The first deployment of a repository said to be a rollback has nothing to fail.
                signalled("acme/db", "b1", "m", 14 * H),
            ],
            incident_events: vec![],
        };
        let d = derive(&facts, 24 * H);
        let flags = |k: &str| {
            let x = d.deployments.iter().find(|x| x.key == k).unwrap();
            (x.failed, x.rework)
        };
        assert_eq!(flags("w1"), (false, false));
        assert_eq!(flags("w2"), (true, false), "rolled back");
        assert_eq!(flags("a1"), (false, false));
        assert_eq!(flags("w3"), (false, true), "the rollback is rework");
        assert_eq!(flags("b1"), (false, true));
        // A signalled rollback of the same sha as the previous deployment is one too (the provider knows).
        let same = ServiceFacts {
            pushes: vec![],
            deployments: vec![of("r", "d1", "x", H), signalled("r", "d2", "x", 2 * H)],
            incident_events: vec![],
        };
        let d = derive(&same, 24 * H);
        assert!(d.deployments[0].failed && d.deployments[1].rework, "{d:?}");
    }

    #[test]
    fn a_circuit_breakers_restore_is_rework_and_fails_nothing() {
        // The deployment running before the failed attempt is restored: it did not fail.
        let facts = ServiceFacts {
            pushes: vec![],
            deployments: vec![
                dep("e1", "", H),
                DeploymentFact {
                    rework: true,
                    ..dep("e2", "", 3 * H)
                },
            ],
            incident_events: vec![],
        };
        let d = derive(&facts, 24 * H);
        let flags: Vec<(bool, bool)> = d.deployments.iter().map(|x| (x.failed, x.rework)).collect();
        assert_eq!(flags, [(false, false), (false, true)]);
    }

    #[test]
    fn rollbacks_compare_deployments_of_one_repository() {
        let of = |repo: &str, key: &str, sha: &str, time| DeploymentFact {
            repo: repo.into(),
            ..dep(key, sha, time)
        };
        // The web repository redeploys x between two deployments of the api: not a rollback of anything.
        let interleaved = ServiceFacts {
            pushes: vec![],
            deployments: vec![
                of("acme/web", "w1", "x", 10 * H),
                of("acme/api", "a1", "y", 11 * H),
                of("acme/web", "w2", "x", 12 * H),
            ],
            incident_events: vec![],
        };
        let d = derive(&interleaved, 24 * H);
        assert!(
            d.deployments.iter().all(|x| !x.failed && !x.rework),
            "{d:?}"
        );

        // Within one repository (whatever its letter case), across the other's deployments, it is one.
        let rollback = ServiceFacts {
            pushes: vec![],
            deployments: vec![
                of("acme/web", "w1", "x", 10 * H),
                of("Acme/Web", "w2", "z", 11 * H),
                of("acme/api", "a1", "y", 12 * H),
                of("acme/web", "w3", "x", 13 * H),
            ],
            incident_events: vec![],
        };
        let d = derive(&rollback, 24 * H);
        let by_key = |k: &str| d.deployments.iter().find(|x| x.key == k).cloned().unwrap();
        assert!(by_key("w2").failed, "the web deployment rolled back failed");
        assert!(by_key("w3").rework, "the rollback is rework");
        assert!(
            !by_key("a1").failed && !by_key("a1").rework,
            "the api is not involved"
        );
    }

    #[test]
    fn short_shas_resolve_to_the_one_commit_they_start() {
        let facts = ServiceFacts {
            pushes: vec![push("root", &[("8342f706ede5aa79", H, "m")])],
            deployments: vec![dep("1", "8342f706", 2 * H)],
            incident_events: vec![],
        };
        let d = derive(&facts, 24 * H);
        assert_eq!(d.deployments[0].sha, "8342f706ede5aa79");
        assert_eq!(shipped(&d, "1"), ["8342f706ede5aa79"]);
    }

    #[test]
    fn incidents_attribute_within_the_window_and_make_later_deployments_rework() {
        let ev = |id: &str, kind, time| IncidentEventFact {
            incident_id: id.into(),
            provider: "pagerduty".into(),
            kind,
            time,
            counts: None,
        };
        let facts = ServiceFacts {
            pushes: vec![push(
                "root",
                &[
                    ("a", H, "a"),
                    ("b", 2 * H, "b"),
                    ("c", 3 * H, "Revert \"b\""),
                ],
            )],
            deployments: vec![
                dep("1", "a", 10 * H),
                dep("2", "b", 20 * H),
                dep("3", "c", 30 * H),
            ],
            incident_events: vec![
                // Opened exactly one window after deployment 3 (resolution sent first).
                ev("late", IncidentEventKind::Resolved, 60 * H),
                ev("late", IncidentEventKind::Opened, 54 * H),
                ev("i", IncidentEventKind::Opened, 21 * H),
                ev("i", IncidentEventKind::Opened, 22 * H),
                ev("i", IncidentEventKind::Resolved, 31 * H),
                // Resolved but never triggered: left out.
                ev("ghost", IncidentEventKind::Resolved, 12 * H),
            ],
        };
        let d = derive(&facts, 24 * H);
        let inc = |id: &str| d.incidents.iter().find(|x| x.id == id).cloned();
        assert_eq!(
            inc("i").unwrap().opened,
            21 * H,
            "the earliest trigger opens it"
        );
        assert_eq!(inc("i").unwrap().attributed_to.as_deref(), Some("2"));
        assert_eq!(inc("late").unwrap().attributed_to.as_deref(), Some("3"));
        assert_eq!(inc("late").unwrap().resolved, Some(60 * H));
        assert!(inc("ghost").is_none());
        let by_key = |k: &str| d.deployments.iter().find(|x| x.key == k).cloned().unwrap();
        assert!(by_key("2").failed && !by_key("1").failed);
        // Deployment 3 ships a revert and goes out while incident i (of deployment 2) is open.
        assert!(by_key("3").rework);
        assert!(!by_key("2").rework);
        let narrow = derive(&facts, 24 * H - 1);
        let late = narrow
            .incidents
            .iter()
            .find(|x| x.id == "late")
            .cloned()
            .unwrap();
        assert_eq!(late.attributed_to, None, "one millisecond past the window");
    }
}
