//! What a batch of facts brings to linking, before any rule runs: the service each fact belongs to, the
//! facts dated out of range left out, and the deployments that builds named by a deploy rule are.

use em_core::config::Config;
use em_core::domain::{BuildOutcome, Deployment, DeploymentOutcome, Fact};

/// The services a fact's metrics belong to.
pub fn service_of(config: &Config, fact: &Fact) -> Option<String> {
    match fact {
        Fact::Push(p) => Some(config.service_for_repo(&p.repo)),
        Fact::Deployment(d) => Some(config.service_for_repo(&d.repo)),
        Fact::Incident(i) => Some(config.service_for_alias(&i.service_name)),
        // Stored, but no link uses them yet.
        Fact::PullRequest(_) | Fact::Build(_) | Fact::WorkItem(_) | Fact::QualityReport(_) => None,
    }
}

/// Each message's facts without those dated outside 1970–2100, each given to `dropped` (to log and count;
/// they are never stored: an instant like `i64::MAX` from a signed but broken body would overflow the
/// linking arithmetic).
pub fn drop_out_of_range(parsed: Vec<Vec<Fact>>, mut dropped: impl FnMut(&Fact)) -> Vec<Vec<Fact>> {
    parsed
        .into_iter()
        .map(|facts| {
            let (kept, out): (Vec<Fact>, Vec<Fact>) =
                facts.into_iter().partition(Fact::dated_in_range);
            out.iter().for_each(&mut dropped);
            kept
        })
        .collect()
}

/// Each message's facts with a deployment for each finished build a deploy rule names
/// (`Config::deploy_environment`): a CI workflow or job that deploys. A successful build is a deployment
/// of its sha, a failed one a failed attempt; cancelled and skipped ones deploy nothing. The deployment's
/// id is the build's (`build:<run id>:<attempt>`), so a re-delivered build is one deployment.
pub fn with_build_deployments(config: &Config, parsed: Vec<Vec<Fact>>) -> Vec<Vec<Fact>> {
    parsed
        .into_iter()
        .map(|mut facts| {
            let derived: Vec<Fact> = facts
                .iter()
                .filter_map(|f| match f {
                    Fact::Build(b) => {
                        let outcome = match b.outcome {
                            BuildOutcome::Success => DeploymentOutcome::Success,
                            BuildOutcome::Failure => DeploymentOutcome::Failure,
                            BuildOutcome::Cancelled | BuildOutcome::Skipped => return None,
                        };
                        let environment =
                            config.deploy_environment(&b.provider, &b.repo, &b.name)?;
                        Some(Fact::Deployment(Deployment {
                            provider: b.provider.clone(),
                            repo: b.repo.clone(),
                            deployment_id: format!("build:{}:{}", b.run_id, b.attempt),
                            environment: environment.to_string(),
                            production: None,
                            sha: b.sha.clone(),
                            time: b.finished,
                            outcome,
                            rollback: false,
                            rework: false,
                        }))
                    }
                    _ => None,
                })
                .collect();
            facts.extend(derived);
            facts
        })
        .collect()
}
