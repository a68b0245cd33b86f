//! Digests: a team's (or the whole organisation's) period just ended, against the period before it and the
//! team's recent baseline. Pure: the caller reads the observations (docs/digests.md).

use serde::Serialize;

use crate::dora::{figures, Figures};
use crate::rules::provider_of;
use em_core::calendar::{boundaries, UTC};
use em_core::config::Links;
use em_core::rows::{Linked, Observations, DAY};
use em_core::time::Millis;

pub use em_core::calendar::Period;

/// How many periods before the previous one make a team's baseline.
pub const BASELINE_PERIODS: usize = 8;

/// How many periods the trend (the email's chart) shows, the digest's own included.
pub const TREND_PERIODS: usize = 12;

/// A deployment frequency this much lower than the previous period's is an anomaly (0.5: down by half or
/// more), when the previous period had at least [`MIN_DEPLOYMENTS_FOR_DROP`] deployments.
pub const FREQUENCY_DROP: f64 = 0.5;
pub const MIN_DEPLOYMENTS_FOR_DROP: u64 = 4;

/// A change failure rate or incident count at least this many standard deviations above the baseline's
/// mean is an anomaly, when it is also above the mean by at least the floor below (so a quiet team's one
/// incident is not news).
pub const SIGMAS: f64 = 2.0;
pub const MIN_FAILURE_RATE_RISE: f64 = 0.10;
pub const MIN_INCIDENT_RISE: f64 = 2.0;

/// How many periods a digest reads: its own, the one before, the baseline's and the trend's.
pub const PERIODS_READ: usize = if BASELINE_PERIODS + 2 > TREND_PERIODS {
    BASELINE_PERIODS + 2
} else {
    TREND_PERIODS
};

/// The UTC boundaries of the periods a digest ending at `to` reads ([`boundaries`] for UTC).
pub fn utc_boundaries(period: Period, to: Millis) -> Vec<Millis> {
    boundaries(to, period, UTC, PERIODS_READ)
}

/// One figure now and in the period before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    pub current: Option<f64>,
    pub previous: Option<f64>,
    /// (current - previous) / previous, when both are known and previous is not zero.
    pub change: Option<f64>,
}

impl Trend {
    fn of(current: Option<f64>, previous: Option<f64>) -> Trend {
        let change = match (current, previous) {
            (Some(c), Some(p)) if p != 0.0 => Some((c - p) / p),
            _ => None,
        };
        Trend {
            current,
            previous,
            change,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trends {
    pub deployments_per_day: Trend,
    pub lead_time_median_seconds: Trend,
    pub change_failure_rate: Trend,
    pub recovery_time_median_seconds: Trend,
    pub rework_rate: Trend,
}

/// What happened in the period, counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub deployments: u64,
    pub failed_attempts: u64,
    /// Deployments that are rework: rollbacks, reverts, hot fixes, and deployments made while an incident
    /// of an earlier one was open.
    pub rework: u64,
    pub incidents_opened: u64,
    /// Of those opened in the period, resolved by the time the digest is made.
    pub incidents_resolved: u64,
    pub incidents_open: u64,
    /// The median time from an incident's opening to its first acknowledgement, in whole seconds, over the
    /// period's incidents that were acknowledged ([`crate::incidents`]); `None` without any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_median_seconds: Option<u64>,
}

/// Something a manager should look at.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Anomaly {
    /// Deployment frequency down by half or more against the previous period.
    DeploymentsDown {
        current: u64,
        previous: u64,
        change: f64,
    },
    /// Change failure rate far above the baseline.
    FailureRateUp {
        current: f64,
        baseline_mean: f64,
        baseline_sd: f64,
        /// Standard deviations above the mean; absent when the baseline never varied.
        sigmas: Option<f64>,
    },
    /// More incidents than the baseline makes usual.
    IncidentsUp {
        current: u64,
        baseline_mean: f64,
        baseline_sd: f64,
        sigmas: Option<f64>,
    },
}

/// How many changes and recoveries a digest names.
pub const HIGHLIGHTS: usize = 3;

/// A change among the period's slowest to reach production.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlowChange {
    pub service: String,
    pub repo: String,
    pub sha: String,
    /// Commit to production.
    pub lead_time_seconds: f64,
    /// Its commit's page, where [`Links`] knows one.
    pub url: Option<String>,
}

/// An incident among the period's longest to recover from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LongRecovery {
    pub service: String,
    pub incident: String,
    pub recovery_seconds: f64,
    pub url: Option<String>,
}

/// What a digest names, from the period's linked rows: rollbacks counted apart from the rest of the rework,
/// the slowest changes and the longest recoveries.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Highlights {
    pub rollbacks: u64,
    pub slowest_changes: Vec<SlowChange>,
    pub longest_recoveries: Vec<LongRecovery>,
}

/// The highlights of the rows of `[from, to)` (by service), the [`HIGHLIGHTS`] slowest changes (deployed in
/// the period) and longest recoveries (incidents opened in it and resolved), ties by name.
pub fn highlights(
    rows: &[(String, Linked)],
    from: Millis,
    to: Millis,
    links: &Links,
) -> Highlights {
    let within = |t: Millis| from <= t && t < to;
    let rollbacks = rows
        .iter()
        .flat_map(|(_, l)| &l.deployments)
        .filter(|d| d.rollback && within(d.time))
        .count() as u64;
    let mut changes: Vec<SlowChange> = rows
        .iter()
        .flat_map(|(service, l)| l.changes.iter().map(move |c| (service, c)))
        .filter(|(_, c)| within(c.deployment_time) && c.deployment_time > c.commit_time)
        .map(|(service, c)| SlowChange {
            service: service.clone(),
            repo: c.repo.clone(),
            sha: c.sha.clone(),
            lead_time_seconds: (c.deployment_time - c.commit_time) as f64 / 1000.0,
            url: links.commit_url(provider_of(&c.deployment_key), &c.repo, &c.sha),
        })
        .collect();
    changes.sort_by(|a, b| {
        b.lead_time_seconds
            .total_cmp(&a.lead_time_seconds)
            .then_with(|| (&a.service, &a.sha).cmp(&(&b.service, &b.sha)))
    });
    changes.truncate(HIGHLIGHTS);
    let mut recoveries: Vec<LongRecovery> = rows
        .iter()
        .flat_map(|(service, l)| l.incidents.iter().map(move |i| (service, i)))
        // An outage several tools reported counts once, as its first report.
        .filter(|(_, i)| within(i.opened) && i.outage.is_none())
        .filter_map(|(service, i)| {
            let resolved = i.resolved?;
            Some(LongRecovery {
                service: service.clone(),
                incident: i.id.clone(),
                recovery_seconds: (resolved - i.opened) as f64 / 1000.0,
                url: links.incident_url(&i.id),
            })
        })
        .collect();
    recoveries.sort_by(|a, b| {
        b.recovery_seconds
            .total_cmp(&a.recovery_seconds)
            .then_with(|| (&a.service, &a.incident).cmp(&(&b.service, &b.incident)))
    });
    recoveries.truncate(HIGHLIGHTS);
    Highlights {
        rollbacks,
        slowest_changes: changes,
        longest_recoveries: recoveries,
    }
}

/// One period of the trend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub from: Millis,
    pub deployments: u64,
    pub lead_time_median_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Digest {
    pub period: Period,
    /// The IANA time zone the period's days are counted in.
    pub time_zone: String,
    pub from: Millis,
    pub to: Millis,
    pub figures: Figures,
    pub previous: Figures,
    pub trends: Trends,
    pub counts: Counts,
    pub anomalies: Vec<Anomaly>,
    /// Deployments and median lead time of the last [`TREND_PERIODS`] periods, oldest first.
    pub trend: Vec<Point>,
    /// Named from the period's linked rows ([`highlights`]); empty until the caller reads them.
    pub highlights: Highlights,
}

fn mean_sd(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// How many standard deviations `value` is above `mean`; `None` when the baseline never varied (then any
/// rise is beyond every multiple of its deviation).
fn sigmas_above(value: f64, mean: f64, sd: f64) -> Option<f64> {
    (sd > 0.0).then(|| (value - mean) / sd)
}

/// `value` is far above the baseline: by at least `floor`, and by [`SIGMAS`] standard deviations.
fn far_above(value: f64, mean: f64, sd: f64, floor: f64) -> bool {
    value - mean >= floor && sigmas_above(value, mean, sd).is_none_or(|s| s >= SIGMAS)
}

/// The digest of the UTC period ending at `to` (see [`digest_in`]).
pub fn digest(obs: &Observations, period: Period, to: Millis) -> Digest {
    digest_in(obs, period, &utc_boundaries(period, to))
}

/// The digest of `obs`, which holds the observations [`reads`] names: `bounds` are the boundaries of the
/// periods read, latest first (`calendar::boundaries` with [`PERIODS_READ`]), so the digest's period is
/// `[bounds[1], bounds[0])`, then the one before it, the baseline before that and the trend's. Figures per
/// day count a period's own length (a week across a daylight saving change is an hour short).
pub fn digest_in(obs: &Observations, period: Period, bounds: &[Millis]) -> Digest {
    digest_with(obs, period, bounds, "UTC")
}

/// [`digest_in`] for periods of the local days of `time_zone`.
pub fn digest_with(
    obs: &Observations,
    period: Period,
    bounds: &[Millis],
    time_zone: &str,
) -> Digest {
    let at = |k: i64| bounds.get(k as usize).copied().unwrap_or(Millis::MIN);
    let to = at(0);
    let span = |k: i64| (at(k) - at(k + 1)).max(0) as f64 / DAY as f64;
    let part = |k: i64| obs.within(at(k + 1), at(k));
    let days = span(0);
    let current = part(0);
    let previous = part(1);
    let now = figures(&current, days);
    let before = figures(&previous, span(1));
    let trends = Trends {
        deployments_per_day: Trend::of(
            Some(now.deployment_frequency.per_day),
            Some(before.deployment_frequency.per_day),
        ),
        lead_time_median_seconds: Trend::of(
            now.lead_time.median_seconds,
            before.lead_time.median_seconds,
        ),
        change_failure_rate: Trend::of(
            now.change_failure_rate.ratio,
            before.change_failure_rate.ratio,
        ),
        recovery_time_median_seconds: Trend::of(
            now.recovery_time.median_seconds,
            before.recovery_time.median_seconds,
        ),
        rework_rate: Trend::of(now.rework_rate.ratio, before.rework_rate.ratio),
    };
    let opened = current.incidents.len() as u64;
    let resolved = current
        .incidents
        .iter()
        .filter(|i| i.recovery.is_some())
        .count() as u64;
    let counts = Counts {
        deployments: now.deployment_frequency.deployments,
        failed_attempts: current.attempts.len() as u64,
        rework: now.rework_rate.rework,
        incidents_opened: opened,
        incidents_resolved: resolved,
        incidents_open: opened - resolved,
        acknowledged_median_seconds: crate::incidents::figures(&current, 0.0)
            .time_to_acknowledge
            .median_seconds
            .map(|s| s.round() as u64),
    };

    let mut anomalies = Vec::new();
    let (d_now, d_before) = (
        now.deployment_frequency.deployments,
        before.deployment_frequency.deployments,
    );
    if d_before >= MIN_DEPLOYMENTS_FOR_DROP {
        let change = (d_now as f64 - d_before as f64) / d_before as f64;
        if change <= -FREQUENCY_DROP {
            anomalies.push(Anomaly::DeploymentsDown {
                current: d_now,
                previous: d_before,
                change,
            });
        }
    }
    // The baseline: the periods before the previous one, each summarised alone, from the first with any
    // deployment or incident on: the empty weeks before a team's history are not its usual.
    let active = |o: &Observations| !o.deployments.is_empty() || !o.incidents.is_empty();
    let baseline: Vec<(Observations, f64)> = (2..2 + BASELINE_PERIODS as i64)
        .rev()
        .map(|k| (part(k), span(k)))
        .skip_while(|(o, _)| !active(o))
        .collect();
    let rates: Vec<f64> = baseline
        .iter()
        .filter_map(|(o, days)| figures(o, *days).change_failure_rate.ratio)
        .collect();
    if let (Some(rate), false) = (now.change_failure_rate.ratio, rates.is_empty()) {
        let (mean, sd) = mean_sd(&rates);
        if far_above(rate, mean, sd, MIN_FAILURE_RATE_RISE) {
            anomalies.push(Anomaly::FailureRateUp {
                current: rate,
                baseline_mean: mean,
                baseline_sd: sd,
                sigmas: sigmas_above(rate, mean, sd),
            });
        }
    }
    let incidents: Vec<f64> = baseline
        .iter()
        .map(|(o, _)| o.incidents.len() as f64)
        .collect();
    let (mean, sd) = mean_sd(&incidents);
    if far_above(opened as f64, mean, sd, MIN_INCIDENT_RISE) {
        anomalies.push(Anomaly::IncidentsUp {
            current: opened,
            baseline_mean: mean,
            baseline_sd: sd,
            sigmas: sigmas_above(opened as f64, mean, sd),
        });
    }

    let trend = (0..TREND_PERIODS as i64)
        .rev()
        .map(|k| {
            let f = figures(&part(k), span(k));
            Point {
                from: at(k + 1),
                deployments: f.deployment_frequency.deployments,
                lead_time_median_seconds: f.lead_time.median_seconds,
            }
        })
        .collect();
    Digest {
        trend,
        period,
        time_zone: time_zone.to_string(),
        highlights: Highlights::default(),
        from: at(1),
        to,
        figures: now,
        previous: before,
        trends,
        counts,
        anomalies,
    }
}

/// The window a digest with these boundaries reads: its period, the one before, the baseline and the trend.
pub fn reads(bounds: &[Millis]) -> (Millis, Millis) {
    (
        bounds.last().copied().unwrap_or_default(),
        bounds.first().copied().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use em_core::rows::{DeploymentObs, IncidentObs};

    const T: Millis = 1_744_588_800_000; // 2025-04-14T00:00:00Z, a Monday.
    const WEEK: Millis = 7 * DAY;

    fn deployments(obs: &mut Observations, week: i64, n: i64, failed: i64) {
        for i in 0..n {
            obs.deployments.push(DeploymentObs {
                origin: 0,
                time: T - (week + 1) * WEEK + i * 3_600_000,
                failed: i < failed,
                rework: false,
            });
        }
    }

    fn incident(obs: &mut Observations, week: i64, recovery: Option<Millis>) {
        obs.incidents.push(IncidentObs {
            origin: 0,
            opened: T - (week + 1) * WEEK + DAY,
            acknowledged: None,
            recovery,
            attributed: true,
        });
    }

    fn base() -> Observations {
        Observations {
            origins: vec![Default::default()],
            ..Default::default()
        }
    }

    #[test]
    fn the_period_is_the_one_that_ends_at_the_given_instant() {
        let week = utc_boundaries(Period::Week, T);
        assert_eq!((week[1], week[0]), (T - WEEK, T));
        assert_eq!(reads(&week), (T - 12 * WEEK, T));
        let day = utc_boundaries(Period::Day, T);
        assert_eq!((day[1], day[0]), (T - DAY, T));
    }

    #[test]
    fn trends_compare_with_the_period_before_and_counts_add_up() {
        let mut obs = base();
        deployments(&mut obs, 0, 7, 1);
        deployments(&mut obs, 1, 14, 0);
        incident(&mut obs, 0, Some(3_600_000));
        incident(&mut obs, 0, None);
        let d = digest(&obs, Period::Week, T);
        assert_eq!((d.from, d.to), (T - WEEK, T));
        assert_eq!(d.counts.deployments, 7);
        assert_eq!(d.previous.deployment_frequency.deployments, 14);
        assert_eq!(d.trends.deployments_per_day.current, Some(1.0));
        assert_eq!(d.trends.deployments_per_day.previous, Some(2.0));
        assert_eq!(d.trends.deployments_per_day.change, Some(-0.5));
        assert_eq!(
            (
                d.counts.incidents_opened,
                d.counts.incidents_resolved,
                d.counts.incidents_open
            ),
            (2, 1, 1)
        );
        // The trend: twelve weeks, oldest first, the last two with their deployments.
        assert_eq!(d.trend.len(), TREND_PERIODS);
        assert_eq!(d.trend[0].from, T - 12 * WEEK);
        let counts: Vec<u64> = d.trend.iter().map(|p| p.deployments).collect();
        assert_eq!(counts[10..], [14, 7]);
        assert!(counts[..10].iter().all(|&n| n == 0));
        // 7 against 14 is down by half: an anomaly.
        assert!(matches!(
            d.anomalies.first(),
            Some(Anomaly::DeploymentsDown {
                current: 7,
                previous: 14,
                ..
            })
        ));
    }

    #[test]
    fn small_drops_and_small_teams_are_not_anomalies() {
        let mut obs = base();
        deployments(&mut obs, 0, 8, 0);
        deployments(&mut obs, 1, 14, 0);
        assert!(
            digest(&obs, Period::Week, T).anomalies.is_empty(),
            "down 43 %"
        );
        let mut obs = base();
        deployments(&mut obs, 0, 1, 0);
        deployments(&mut obs, 1, 3, 0);
        assert!(digest(&obs, Period::Week, T).anomalies.is_empty(), "3 to 1");
    }

    #[test]
    fn failure_rate_and_incidents_far_above_the_baseline_are_anomalies() {
        let mut obs = base();
        // Eight baseline weeks of 10 deployments, one failed (10 %), one incident a week.
        for week in 2..10 {
            deployments(&mut obs, week, 10, 1);
            incident(&mut obs, week, Some(60_000));
        }
        deployments(&mut obs, 1, 10, 1);
        // This week: 4 of 10 failed, 5 incidents.
        deployments(&mut obs, 0, 10, 4);
        for _ in 0..5 {
            incident(&mut obs, 0, Some(60_000));
        }
        let d = digest(&obs, Period::Week, T);
        assert!(
            d.anomalies
                .iter()
                .any(|a| matches!(a, Anomaly::FailureRateUp { current, .. } if (*current - 0.4).abs() < 1e-9)),
            "{:?}",
            d.anomalies
        );
        assert!(
            d.anomalies
                .iter()
                .any(|a| matches!(a, Anomaly::IncidentsUp { current: 5, .. })),
            "{:?}",
            d.anomalies
        );
        // Weeks before a team's history are not its baseline: two weeks of two incidents each, then three,
        // is not news, however empty the six weeks before them were (counted, they would make the usual
        // 0.5 and three incidents 2.9 standard deviations above it).
        let mut young = base();
        for week in 2..4 {
            deployments(&mut young, week, 5, 0);
            incident(&mut young, week, None);
            incident(&mut young, week, None);
        }
        for _ in 0..3 {
            incident(&mut young, 0, None);
        }
        let d = digest(&young, Period::Week, T);
        assert!(d.anomalies.is_empty(), "{:?}", d.anomalies);
        // One more incident than usual is not news.
        let mut calm = base();
        for week in 2..10 {
            incident(&mut calm, week, None);
        }
        incident(&mut calm, 0, None);
        incident(&mut calm, 0, None);
        assert!(digest(&calm, Period::Week, T).anomalies.is_empty());
    }

    #[test]
    fn highlights_name_the_slowest_changes_the_longest_recoveries_and_count_rollbacks() {
        use em_core::rows::{ChangeRow, DeploymentRow, IncidentRow};
        const H: Millis = 3_600_000;
        let from = T - WEEK;
        let deployment = |key: &str, time: Millis, rollback: bool| DeploymentRow {
            key: key.into(),
            repo: "acme/shop".into(),
            environment: "production".into(),
            time,
            sha: "f".repeat(40),
            frontier: None,
            failed: false,
            rework: rollback,
            rollback,
        };
        let change = |sha: &str, key: &str, deployed: Millis, lead: Millis| ChangeRow {
            sha: sha.into(),
            repo: "acme/shop".into(),
            environment: "production".into(),
            deployment_key: key.into(),
            deployment_time: deployed,
            commit_time: deployed - lead,
            unlisted: 0,
        };
        let incident = |id: &str, opened: Millis, recovery: Option<Millis>| IncidentRow {
            id: id.into(),
            opened,
            acknowledged: None,
            resolved: recovery.map(|r| opened + r),
            attributed_to: None,
            outage: None,
        };
        let shop = Linked {
            deployments: vec![
                deployment("github/acme/shop/1", from + H, false),
                deployment("github/acme/shop/2", from + 2 * H, true),
                // Before the period: its rollback is last week's.
                deployment("github/acme/shop/0", from - H, true),
            ],
            changes: vec![
                change("a1", "github/acme/shop/1", from + H, 5 * H),
                change("a2", "github/acme/shop/1", from + H, 9 * H),
                change("a3", "gitlab/acme/shop/2", from + 2 * H, 2 * H),
                change("a4", "circleci/acme/shop/2", from + 2 * H, 7 * H),
                // Deployed before the period, and a commit dated after its deployment.
                change("a0", "github/acme/shop/0", from - H, 50 * H),
                change("a5", "github/acme/shop/1", from + H, -H),
            ],
            incidents: vec![
                incident("P1", from + 3 * H, Some(2 * H)),
                incident("P2", from + 4 * H, None),
                incident("P3", T, Some(90 * H)),
            ],
        };
        let search = Linked {
            incidents: vec![
                incident("P9", from + 5 * H, Some(6 * H)),
                // Another tool's report of P9's outage, resolved later still: the outage counts once.
                IncidentRow {
                    outage: Some("P9".into()),
                    ..incident("A9", from + 5 * H + 1, Some(7 * H))
                },
            ],
            ..Linked::default()
        };
        let rows = vec![("shop".to_string(), shop), ("search".to_string(), search)];
        let links = Links {
            commit: None,
            incident: Some("https://acme.pagerduty.com/incidents/{id}".into()),
        };
        let h = highlights(&rows, from, T, &links);
        assert_eq!(h.rollbacks, 1);
        let slow: Vec<(&str, f64, Option<&str>)> = h
            .slowest_changes
            .iter()
            .map(|c| (c.sha.as_str(), c.lead_time_seconds, c.url.as_deref()))
            .collect();
        assert_eq!(
            slow,
            [
                (
                    "a2",
                    9.0 * 3600.0,
                    Some("https://github.com/acme/shop/commit/a2")
                ),
                ("a4", 7.0 * 3600.0, None),
                (
                    "a1",
                    5.0 * 3600.0,
                    Some("https://github.com/acme/shop/commit/a1")
                ),
            ]
        );
        let long: Vec<(&str, &str, f64, Option<&str>)> = h
            .longest_recoveries
            .iter()
            .map(|r| {
                (
                    r.service.as_str(),
                    r.incident.as_str(),
                    r.recovery_seconds,
                    r.url.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            long,
            [
                (
                    "search",
                    "P9",
                    6.0 * 3600.0,
                    Some("https://acme.pagerduty.com/incidents/P9")
                ),
                (
                    "shop",
                    "P1",
                    2.0 * 3600.0,
                    Some("https://acme.pagerduty.com/incidents/P1")
                ),
            ]
        );
        // A configured template serves every repository, self-hosted ones included.
        let own = Links {
            commit: Some("https://git.acme.test/{repo}/-/commit/{sha}".into()),
            incident: None,
        };
        let h = highlights(&rows, from, T, &own);
        assert_eq!(
            h.slowest_changes[1].url.as_deref(),
            Some("https://git.acme.test/acme/shop/-/commit/a4")
        );
        assert_eq!(h.longest_recoveries[0].url, None);
    }
}
