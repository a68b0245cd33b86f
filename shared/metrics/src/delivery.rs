//! The delivery metrics' observations: builds, failed deployment attempts and merged pull requests, read
//! from the facts for each query ([`DeliveryFacts`]) and given the services of the query's configuration.
//! Only a pull request's deployment comes from linking: when its merge commit shipped.

use std::collections::{BTreeMap, HashMap};

use em_core::config::Config;
use em_core::ports::{DeliveryFacts, MetricsReader, PortError};
use em_core::rows::{AttemptObs, BuildObs, Observations, Origin, PullRequestObs};
use em_core::time::Millis;

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
    for b in &facts.builds {
        if let Some(service) = in_scope(config, services, &b.repo) {
            let origin = out.origin_of(origin(service, &b.repo, ""));
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
            let origin = out.origin_of(origin(service, &d.repo, &d.environment));
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
            let origin = out.origin_of(origin(service, &p.repo, ""));
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

/// The delivery observations of `services` (every service when `None`) in `[from, to)`: one read of the
/// facts, and one of when each service shipped its merged pull requests' commits.
pub async fn read<R: MetricsReader>(
    reader: &R,
    config: &Config,
    services: Option<&[String]>,
    from: Millis,
    to: Millis,
) -> Result<Observations, PortError> {
    let repos = services.map(|list| {
        list.iter()
            .flat_map(|s| config.repositories_of(s))
            .collect::<Vec<_>>()
    });
    let facts = reader.delivery(repos, from, to).await?;
    let mut shipped = HashMap::new();
    for (service, shas) in merge_commits(config, services, &facts) {
        for (sha, at) in reader.shipped(service.clone(), shas).await? {
            shipped.insert((service.clone(), sha), at);
        }
    }
    Ok(observations(config, services, &facts, &shipped))
}
