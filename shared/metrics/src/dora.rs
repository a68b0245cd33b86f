//! The five DORA figures, each a summary of the observations in scope: a window, a series bucket or a group
//! is only which observations are given.

use serde::{Deserialize, Serialize};

use crate::levels::{self, Level};
use em_core::rows::Observations;
use em_core::time::Millis;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scope {
    pub service: Option<String>,
    pub team: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentFrequency {
    pub deployments: u64,
    pub per_day: f64,
    pub level: Level,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadTime {
    pub changes: u64,
    pub excluded: u64,
    /// Commits shipped in scope that their pushes did not list (GitLab lists 20 per push): the figure
    /// rests on `changes` of `changes + excluded + unlisted` shipped commits. Only in the answer when
    /// there are some, so the answer's shape stays what clients know.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub unlisted: u64,
    pub median_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
    pub level: Option<Level>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeFailureRate {
    pub deployments: u64,
    pub failed: u64,
    pub ratio: Option<f64>,
    pub level: Option<Level>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryTime {
    pub incidents: u64,
    /// Resolved before they were triggered (clock skew, a provider's mistake): no recovery time. Only
    /// in the answer when there are some, so the answer's shape stays what clients know.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub excluded: u64,
    pub open: u64,
    pub median_seconds: Option<f64>,
    pub level: Option<Level>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReworkRate {
    pub deployments: u64,
    pub rework: u64,
    pub ratio: Option<f64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The five figures of one set of observations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub deployment_frequency: DeploymentFrequency,
    pub lead_time: LeadTime,
    pub change_failure_rate: ChangeFailureRate,
    pub recovery_time: RecoveryTime,
    pub rework_rate: ReworkRate,
}

/// The response of `GET /v1/metrics/dora`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DoraReport {
    pub scope: Scope,
    pub from: String,
    pub to: String,
    #[serde(flatten)]
    pub figures: Figures,
}

impl std::ops::Deref for DoraReport {
    type Target = Figures;
    fn deref(&self) -> &Figures {
        &self.figures
    }
}

/// A window `[from, to)` with the strings it was given as, echoed in the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub from: Millis,
    pub to: Millis,
    pub from_text: String,
    pub to_text: String,
}

impl Window {
    pub fn days(&self) -> f64 {
        (self.to - self.from) as f64 / 86_400_000.0
    }
}

fn seconds(ms: Millis) -> f64 {
    ms as f64 / 1000.0
}

/// Median of sorted values; the mean of the two middle ones for an even count.
pub fn median(sorted: &[Millis]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(seconds(sorted[n / 2])),
        _ => Some((seconds(sorted[n / 2 - 1]) + seconds(sorted[n / 2])) / 2.0),
    }
}

/// Nearest-rank percentile: the ceil(p·n)-th smallest of sorted values. `p` is in per cent, kept integral
/// so that the rank is exact.
pub fn nearest_rank(sorted: &[Millis], p: usize) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (p * n).div_ceil(100).max(1);
    Some(seconds(sorted[rank - 1]))
}

pub(crate) fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

pub fn compute(scope: Scope, window: &Window, obs: &Observations) -> DoraReport {
    DoraReport {
        scope,
        from: window.from_text.clone(),
        to: window.to_text.clone(),
        figures: figures(obs, window.days()),
    }
}

/// The five figures of `obs`, which span `days` days.
pub fn figures(obs: &Observations, days: f64) -> Figures {
    let deployments = obs.deployments.len() as u64;
    let failed = obs.deployments.iter().filter(|d| d.failed).count() as u64;
    let rework = obs.deployments.iter().filter(|d| d.rework).count() as u64;
    let per_day = if days > 0.0 {
        deployments as f64 / days
    } else {
        0.0
    };

    // A change committed at or after its deployment has no meaningful lead time (clock skew, amended dates).
    let total = obs.changes.len() as u64;
    let mut leads: Vec<Millis> = obs
        .changes
        .iter()
        .map(|c| c.lead)
        .filter(|&l| l > 0)
        .collect();
    leads.sort_unstable();
    let excluded = total - leads.len() as u64;
    let unlisted = obs.changes.iter().map(|c| u64::from(c.unlisted)).sum();
    let lead_median = median(&leads);

    // Recovery counts incidents attributed to a deployment: failures of a change, as DORA defines them.
    let attributed = || obs.incidents.iter().filter(|i| i.attributed);
    let resolved: Vec<Millis> = attributed().filter_map(|i| i.recovery).collect();
    let mut recovered: Vec<Millis> = resolved.iter().copied().filter(|&r| r >= 0).collect();
    recovered.sort_unstable();
    let recovery_excluded = (resolved.len() - recovered.len()) as u64;
    let open = attributed().filter(|i| i.recovery.is_none()).count() as u64;
    let recovery_median = median(&recovered);
    let cfr = ratio(failed, deployments);

    Figures {
        deployment_frequency: DeploymentFrequency {
            deployments,
            per_day,
            level: levels::deployment_frequency(per_day),
        },
        lead_time: LeadTime {
            changes: leads.len() as u64,
            excluded,
            unlisted,
            median_seconds: lead_median,
            p90_seconds: nearest_rank(&leads, 90),
            level: lead_median.map(levels::lead_time),
        },
        change_failure_rate: ChangeFailureRate {
            deployments,
            failed,
            ratio: cfr,
            level: cfr.map(levels::change_failure_rate),
        },
        recovery_time: RecoveryTime {
            incidents: recovered.len() as u64,
            excluded: recovery_excluded,
            open,
            median_seconds: recovery_median,
            level: recovery_median.map(levels::recovery_time),
        },
        rework_rate: ReworkRate {
            deployments,
            rework,
            ratio: ratio(rework, deployments),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_nearest_rank() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1000]), Some(1.0));
        assert_eq!(median(&[1000, 2000, 4000, 9000]), Some(3.0));
        let v: Vec<Millis> = (1..=10).map(|s| s * 1000).collect();
        assert_eq!(nearest_rank(&v, 90), Some(9.0));
        let v: Vec<Millis> = (1..=11).map(|s| s * 1000).collect();
        assert_eq!(nearest_rank(&v, 90), Some(10.0));
        assert_eq!(nearest_rank(&[5000], 90), Some(5.0));
    }

    #[test]
    fn empty_window_has_no_levels_but_frequency() {
        let w = Window {
            from: 0,
            to: 7 * 86_400_000,
            from_text: "a".into(),
            to_text: "b".into(),
        };
        let r = compute(
            Scope {
                service: Some("s".into()),
                team: None,
            },
            &w,
            &Observations::default(),
        );
        assert_eq!(r.deployment_frequency.level, Level::Low);
        assert_eq!(r.lead_time.level, None);
        assert_eq!(r.change_failure_rate.ratio, None);
        assert_eq!(r.recovery_time.median_seconds, None);
        assert_eq!(r.rework_rate.ratio, None);
    }

    #[test]
    fn excludes_non_positive_leads() {
        let w = Window {
            from: 0,
            to: 86_400_000,
            from_text: String::new(),
            to_text: String::new(),
        };
        use em_core::rows::{ChangeObs, DeploymentObs, IncidentObs};
        let dep = |failed, rework| DeploymentObs {
            origin: 0,
            time: 0,
            failed,
            rework,
        };
        let change = |lead, unlisted| ChangeObs {
            origin: 0,
            time: 0,
            lead,
            unlisted,
        };
        let incident = |recovery, attributed| IncidentObs {
            origin: 0,
            opened: 0,
            acknowledged: None,
            recovery,
            attributed,
        };
        let rows = Observations {
            origins: vec![Default::default()],
            deployments: vec![dep(true, false), dep(false, true)],
            changes: vec![
                change(0, 0),
                change(-5, 4),
                change(3000, 0),
                change(1000, 3),
            ],
            incidents: vec![
                incident(Some(60_000), true),
                incident(None, true),
                incident(Some(1), false),
                // Resolved before it was triggered: excluded, like a lead time <= 0.
                incident(Some(-30_000), true),
            ],
            ..Default::default()
        };
        let r = compute(
            Scope {
                service: None,
                team: None,
            },
            &w,
            &rows,
        );
        assert_eq!(r.lead_time.changes, 2);
        assert_eq!(r.lead_time.excluded, 2);
        assert_eq!(
            r.lead_time.unlisted, 7,
            "an excluded change's unlisted commits were shipped too"
        );
        assert_eq!(r.lead_time.median_seconds, Some(2.0));
        assert_eq!(r.change_failure_rate.ratio, Some(0.5));
        assert_eq!(r.recovery_time.incidents, 1);
        assert_eq!(r.recovery_time.excluded, 1);
        assert_eq!(r.recovery_time.median_seconds, Some(60.0));
        assert_eq!(r.recovery_time.open, 1);
        assert_eq!(r.deployment_frequency.per_day, 2.0);
    }
}
