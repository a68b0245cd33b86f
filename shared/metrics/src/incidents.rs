//! The incident figures (`GET /v1/metrics/incidents`): every incident a service's tools reported that counts
//! ([metrics.md](../../../docs/metrics.md#which-alerts-are-incidents)), not only those a deployment caused —
//! how many, how fast someone acknowledged them, how fast they were resolved, and how many come per
//! deployment. An outage several tools reported counts once, as its first report. Read from the same day
//! observations as the DORA figures, so the groups and buckets add up as theirs do.

use em_core::rows::Observations;
use em_core::time::Millis;
use serde::{Deserialize, Serialize};

use crate::dora::{median, nearest_rank, ratio};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentFigures {
    pub incidents: Counts,
    pub time_to_acknowledge: Spread,
    pub time_to_resolve: Spread,
    pub incidents_per_deployment: PerDeployment,
}

/// Incidents opened in the window: resolved since, still open, and attributed to a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub opened: u64,
    pub resolved: u64,
    pub open: u64,
    pub attributed: u64,
}

/// Durations from each incident's opening: how many have one, their median and 90th percentile (nearest
/// rank) in seconds, and how many were left out for ending before they began (clock skew between tools).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub incidents: u64,
    #[serde(skip_serializing_if = "is_zero", default)]
    pub excluded: u64,
    pub median_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerDeployment {
    pub incidents: u64,
    pub deployments: u64,
    /// Incidents ÷ production deployments; null without a deployment.
    pub ratio: Option<f64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The spread of `durations`, those below zero left out.
fn spread(durations: impl Iterator<Item = Millis>) -> Spread {
    let all: Vec<Millis> = durations.collect();
    let mut kept: Vec<Millis> = all.iter().copied().filter(|&d| d >= 0).collect();
    kept.sort_unstable();
    Spread {
        incidents: kept.len() as u64,
        excluded: (all.len() - kept.len()) as u64,
        median_seconds: median(&kept),
        p90_seconds: nearest_rank(&kept, 90),
    }
}

/// The incident figures of `obs` (the window's length is not needed: every figure is per incident).
pub fn figures(obs: &Observations, _days: f64) -> IncidentFigures {
    let opened = obs.incidents.len() as u64;
    let resolved = obs
        .incidents
        .iter()
        .filter(|i| i.recovery.is_some())
        .count() as u64;
    let deployments = obs.deployments.len() as u64;
    IncidentFigures {
        incidents: Counts {
            opened,
            resolved,
            open: opened - resolved,
            attributed: obs.incidents.iter().filter(|i| i.attributed).count() as u64,
        },
        time_to_acknowledge: spread(
            obs.incidents
                .iter()
                .filter_map(|i| i.acknowledged.map(|a| a - i.opened)),
        ),
        time_to_resolve: spread(obs.incidents.iter().filter_map(|i| i.recovery)),
        incidents_per_deployment: PerDeployment {
            incidents: opened,
            deployments,
            ratio: ratio(opened, deployments),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use em_core::rows::{DeploymentObs, IncidentObs};

    #[test]
    fn every_incident_counts_acknowledged_and_resolved_whatever_caused_it() {
        const MIN: Millis = 60_000;
        let incident =
            |acknowledged: Option<Millis>, recovery: Option<Millis>, attributed| IncidentObs {
                origin: 0,
                opened: 1_000 * MIN,
                acknowledged: acknowledged.map(|a| 1_000 * MIN + a),
                recovery,
                attributed,
            };
        let obs = Observations {
            origins: vec![Default::default()],
            deployments: (0..4)
                .map(|i| DeploymentObs {
                    origin: 0,
                    time: i,
                    failed: false,
                    rework: false,
                })
                .collect(),
            incidents: vec![
                incident(Some(2 * MIN), Some(30 * MIN), true),
                incident(Some(6 * MIN), Some(90 * MIN), false),
                incident(None, None, false),
                // Acknowledged and resolved "before" it opened, by another tool's clock: left out.
                incident(Some(-MIN), Some(-MIN), false),
                incident(Some(10 * MIN), Some(240 * MIN), true),
            ],
            ..Default::default()
        };
        let f = figures(&obs, 1.0);
        assert_eq!(
            f.incidents,
            Counts {
                opened: 5,
                resolved: 4,
                open: 1,
                attributed: 2
            }
        );
        let ack = &f.time_to_acknowledge;
        assert_eq!((ack.incidents, ack.excluded), (3, 1));
        assert_eq!(ack.median_seconds, Some(6.0 * 60.0));
        assert_eq!(ack.p90_seconds, Some(10.0 * 60.0));
        let res = &f.time_to_resolve;
        assert_eq!((res.incidents, res.excluded), (3, 1));
        assert_eq!(res.median_seconds, Some(90.0 * 60.0));
        assert_eq!(res.p90_seconds, Some(240.0 * 60.0));
        assert_eq!(f.incidents_per_deployment.ratio, Some(5.0 / 4.0));
        let none = figures(&Observations::default(), 1.0);
        assert_eq!(none.incidents_per_deployment.ratio, None);
        assert_eq!(none.time_to_resolve.median_seconds, None);
    }
}
