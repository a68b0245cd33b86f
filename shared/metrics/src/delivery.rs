//! The delivery metrics' observations: builds, failed deployment attempts and merged pull requests, read
//! from the facts for each query ([`DeliveryFacts`]) and given the services of the query's configuration.
//! Only a pull request's deployment comes from linking: when its merge commit shipped.

use std::collections::{BTreeMap, HashMap};

use em_core::config::Config;
use em_core::domain::BuildOutcome;
use em_core::ports::{DeliveryFacts, MetricsReader, PortError};
use em_core::rows::{AttemptObs, BuildObs, Observations, Origin, PullRequestObs};
use em_core::time::Millis;
use serde::Serialize;

use crate::dora::{median, nearest_rank, ratio};

/// The service of `repo` when it is in scope (`None`: every service is).
fn in_scope(config: &Config, services: Option<&[String]>, repo: &str) -> Option<String> {
    let service = config.service_for_repo(repo);
    match services {
        Some(list) if !list.contains(&service) => None,
        _ => Some(service),
    }
}

fn origin(service: String, repo: &str, environment: &str) -> Origin {
    Origin {
        service,
        repo: repo.to_string(),
        environment: environment.to_string(),
    }
}

/// The merge commits of `facts`' pull requests, by the service each belongs to.
pub fn merge_commits(
    config: &Config,
    services: Option<&[String]>,
    facts: &DeliveryFacts,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &facts.pull_requests {
        if let (Some(service), Some(sha)) = (in_scope(config, services, &p.repo), &p.sha) {
            out.entry(service).or_default().push(sha.clone());
        }
    }
    out
}

/// `facts` as observations of the services in scope. `shipped` says when a service shipped a merge commit.
/// A failed attempt counts when its environment is production by the configuration's rule; builds and
/// pull requests have no environment.
pub fn observations(
    config: &Config,
    services: Option<&[String]>,
    facts: &DeliveryFacts,
    shipped: &HashMap<(String, String), Millis>,
) -> Observations {
    let mut out = Observations::default();
    let mut index = BTreeMap::new();
    for b in &facts.builds {
        if let Some(service) = in_scope(config, services, &b.repo) {
            let origin = out.origin_index(&mut index, origin(service, &b.repo, ""));
            out.builds.push(BuildObs {
                origin,
                time: b.finished,
                duration: b.started.map(|s| b.finished - s),
                outcome: b.outcome,
            });
        }
    }
    for d in &facts.failed_attempts {
        if !config.is_production(&d.environment, d.production) {
            continue;
        }
        if let Some(service) = in_scope(config, services, &d.repo) {
            let origin = out.origin_index(&mut index, origin(service, &d.repo, &d.environment));
            out.attempts.push(AttemptObs {
                origin,
                time: d.time,
            });
        }
    }
    for p in &facts.pull_requests {
        if let Some(service) = in_scope(config, services, &p.repo) {
            let deployed = p
                .sha
                .as_ref()
                .and_then(|sha| shipped.get(&(service.clone(), sha.clone())).copied());
            let origin = out.origin_index(&mut index, origin(service, &p.repo, ""));
            out.pull_requests.push(PullRequestObs {
                origin,
                time: p.merged,
                first_commit: p.first_commit,
                opened: p.opened,
                first_review: p.first_review,
                approved: p.approved,
                deployed,
            });
        }
    }
    out
}

/// The repositories of `services` (every repository when `None`).
fn repositories(config: &Config, services: Option<&[String]>) -> Option<Vec<String>> {
    services.map(|list| {
        list.iter()
            .flat_map(|s| config.repositories_of(s))
            .collect()
    })
}

/// The failed production attempts of `services` (every service when `None`) in `[from, to)`, as
/// observations: one read of the facts, and nothing about pull requests' deployments (what a digest counts).
pub async fn attempts<R: MetricsReader>(
    reader: &R,
    config: &Config,
    services: Option<&[String]>,
    from: Millis,
    to: Millis,
) -> Result<Observations, PortError> {
    let facts = reader
        .delivery(repositories(config, services), from, to)
        .await?;
    let facts = DeliveryFacts {
        failed_attempts: facts.failed_attempts,
        ..DeliveryFacts::default()
    };
    Ok(observations(config, services, &facts, &HashMap::new()))
}

/// The delivery observations of `services` (every service when `None`) in `[from, to)`: one read of the
/// facts, and one of when each service shipped its merged pull requests' commits.
pub async fn read<R: MetricsReader>(
    reader: &R,
    config: &Config,
    services: Option<&[String]>,
    from: Millis,
    to: Millis,
) -> Result<Observations, PortError> {
    let facts = reader
        .delivery(repositories(config, services), from, to)
        .await?;
    let mut shipped = HashMap::new();
    for (service, shas) in merge_commits(config, services, &facts) {
        for (sha, at) in reader.shipped(service.clone(), shas).await? {
            shipped.insert((service.clone(), sha), at);
        }
    }
    Ok(observations(config, services, &facts, &shipped))
}

/// The day observations of `services` (every service when `None`) in `[from, to)` with their delivery
/// observations beside them: what the delivery metrics and the digests summarise.
pub async fn with_day_observations<R: MetricsReader>(
    reader: &R,
    config: &Config,
    services: Option<Vec<String>>,
    from: Millis,
    to: Millis,
) -> Result<Observations, PortError> {
    let delivery = read(reader, config, services.as_deref(), from, to).await?;
    let mut obs = reader.observations(services, from, to).await?;
    obs.extend_within(delivery, from, to);
    Ok(obs)
}

/// Production deployments against every production attempt, failed ones included.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploymentSuccessRate {
    pub attempts: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub ratio: Option<f64>,
}

/// Finished builds (skipped ones never ran and are not counted) and how long they took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildDuration {
    pub builds: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Over succeeded and failed builds that report their start (a cancelled one stopped half-way).
    pub median_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
}

/// One stage of pull requests' cycle: between two of their instants, over those that report both in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    pub pull_requests: u64,
    pub median_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stages {
    /// First commit to opened.
    pub coding: Stage,
    /// Opened to first review.
    pub pickup: Stage,
    /// First review to approved.
    pub review: Stage,
    /// Approved to merged.
    pub merge: Stage,
    /// Merged to deployed to production.
    pub deploy: Stage,
}

/// Merged pull requests and their cycle: from the first commit (or the opening, when earlier or the only
/// one known) to the production deployment that shipped the merge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrCycleTime {
    pub pull_requests: u64,
    pub deployed: u64,
    pub median_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
    pub stages: Stages,
}

/// The delivery figures of one set of observations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryFigures {
    pub deployment_success_rate: DeploymentSuccessRate,
    pub build_duration: BuildDuration,
    pub pr_cycle_time: PrCycleTime,
}

/// The delivery figures of `obs` (the span in days is not used: none is a rate per day).
pub fn figures(obs: &Observations, _days: f64) -> DeliveryFigures {
    DeliveryFigures {
        deployment_success_rate: success_rate(
            obs.deployments.len() as u64,
            obs.attempts.len() as u64,
        ),
        build_duration: build_duration(obs),
        pr_cycle_time: pr_cycle_time(obs),
    }
}

fn success_rate(succeeded: u64, failed: u64) -> DeploymentSuccessRate {
    let attempts = succeeded + failed;
    DeploymentSuccessRate {
        attempts,
        succeeded,
        failed,
        ratio: ratio(succeeded, attempts),
    }
}

fn build_duration(obs: &Observations) -> BuildDuration {
    let count = |o: BuildOutcome| obs.builds.iter().filter(|b| b.outcome == o).count() as u64;
    let (succeeded, failed, cancelled) = (
        count(BuildOutcome::Success),
        count(BuildOutcome::Failure),
        count(BuildOutcome::Cancelled),
    );
    let mut durations: Vec<Millis> = obs
        .builds
        .iter()
        .filter(|b| matches!(b.outcome, BuildOutcome::Success | BuildOutcome::Failure))
        .filter_map(|b| b.duration)
        .filter(|&d| d >= 0)
        .collect();
    durations.sort_unstable();
    BuildDuration {
        builds: succeeded + failed + cancelled,
        succeeded,
        failed,
        cancelled,
        median_seconds: median(&durations),
        p90_seconds: nearest_rank(&durations, 90),
    }
}

/// The sorted, non-negative spans `to - from` of the pull requests that report both.
fn spans(
    obs: &Observations,
    from: impl Fn(&PullRequestObs) -> Option<Millis>,
    to: impl Fn(&PullRequestObs) -> Option<Millis>,
) -> Vec<Millis> {
    let mut out: Vec<Millis> = obs
        .pull_requests
        .iter()
        .filter_map(|p| Some(to(p)? - from(p)?))
        .filter(|&d| d >= 0)
        .collect();
    out.sort_unstable();
    out
}

fn stage(spans: Vec<Millis>) -> Stage {
    Stage {
        pull_requests: spans.len() as u64,
        median_seconds: median(&spans),
    }
}

fn pr_cycle_time(obs: &Observations) -> PrCycleTime {
    let start = |p: &PullRequestObs| match (p.first_commit, p.opened) {
        (Some(c), Some(o)) => Some(c.min(o)),
        (c, o) => c.or(o),
    };
    let cycles = spans(obs, start, |p| p.deployed);
    PrCycleTime {
        pull_requests: obs.pull_requests.len() as u64,
        deployed: obs
            .pull_requests
            .iter()
            .filter(|p| p.deployed.is_some())
            .count() as u64,
        median_seconds: median(&cycles),
        p90_seconds: nearest_rank(&cycles, 90),
        stages: Stages {
            coding: stage(spans(obs, |p| p.first_commit, |p| p.opened)),
            pickup: stage(spans(obs, |p| p.opened, |p| p.first_review)),
            review: stage(spans(obs, |p| p.first_review, |p| p.approved)),
            merge: stage(spans(obs, |p| p.approved, |p| Some(p.time))),
            deploy: stage(spans(obs, |p| Some(p.time), |p| p.deployed)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use em_core::rows::DeploymentObs;

    #[test]
    fn delivery_figures_count_attempts_builds_and_pull_request_stages() {
        const MIN: Millis = 60_000;
        let build = |outcome, duration| BuildObs {
            origin: 0,
            time: 0,
            duration,
            outcome,
        };
        let pr = |first_commit, opened, first_review, approved, merged, deployed| PullRequestObs {
            origin: 0,
            time: merged,
            first_commit,
            opened,
            first_review,
            approved,
            deployed,
        };
        let obs = Observations {
            origins: vec![Default::default()],
            deployments: (0..3)
                .map(|i| DeploymentObs {
                    origin: 0,
                    time: i,
                    failed: false,
                    rework: false,
                })
                .collect(),
            attempts: vec![AttemptObs { origin: 0, time: 5 }],
            builds: vec![
                build(BuildOutcome::Success, Some(2 * MIN)),
                build(BuildOutcome::Failure, Some(4 * MIN)),
                build(BuildOutcome::Success, Some(10 * MIN)),
                build(BuildOutcome::Success, None),
                // Stopped half-way: counted, no duration; skipped: never ran, not counted.
                build(BuildOutcome::Cancelled, Some(MIN)),
                build(BuildOutcome::Skipped, Some(MIN)),
            ],
            pull_requests: vec![
                // Committed 60 min before opening, reviewed 30 later, approved 10 later, merged 5
                // later, deployed 20 later: a cycle of 125 minutes.
                pr(
                    Some(0),
                    Some(60 * MIN),
                    Some(90 * MIN),
                    Some(100 * MIN),
                    105 * MIN,
                    Some(125 * MIN),
                ),
                // Squashed after opening (its commit is later): the cycle starts at the opening.
                pr(
                    Some(50 * MIN),
                    Some(40 * MIN),
                    None,
                    None,
                    55 * MIN,
                    Some(75 * MIN),
                ),
                // Merged, not deployed yet.
                pr(None, Some(0), Some(MIN), Some(MIN), 3 * MIN, None),
            ],
            ..Default::default()
        };
        let f = figures(&obs, 1.0);
        let s = &f.deployment_success_rate;
        assert_eq!((s.attempts, s.succeeded, s.failed), (4, 3, 1));
        assert_eq!(s.ratio, Some(0.75));
        let b = &f.build_duration;
        assert_eq!((b.builds, b.succeeded, b.failed, b.cancelled), (5, 3, 1, 1));
        assert_eq!(b.median_seconds, Some(240.0));
        assert_eq!(b.p90_seconds, Some(600.0));
        let p = &f.pr_cycle_time;
        assert_eq!((p.pull_requests, p.deployed), (3, 2));
        // Cycles of 125 and 35 minutes.
        assert_eq!(p.median_seconds, Some(80.0 * 60.0));
        assert_eq!(p.p90_seconds, Some(125.0 * 60.0));
        let st = &p.stages;
        assert_eq!(st.coding.pull_requests, 1);
        assert_eq!(st.coding.median_seconds, Some(3600.0));
        assert_eq!(st.pickup.pull_requests, 2);
        assert_eq!(st.pickup.median_seconds, Some((30.0 + 1.0) / 2.0 * 60.0));
        assert_eq!(st.review.pull_requests, 2);
        assert_eq!(st.review.median_seconds, Some(5.0 * 60.0));
        assert_eq!(st.merge.median_seconds, Some((5.0 + 2.0) / 2.0 * 60.0));
        assert_eq!(st.deploy.pull_requests, 2);
        assert_eq!(st.deploy.median_seconds, Some(20.0 * 60.0));
    }
}
