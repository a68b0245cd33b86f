//! Series and breakdowns: the same figures over buckets of time or groups of origins. Each is a split of the
//! window's observations, so every additive figure (deployments, failed, rework, changes, incidents) sums
//! to the window's.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::dora::{figures, Figures};
use em_core::rows::{Observations, Origin, DAY};
use em_core::time::rfc3339::format as format_millis;
use em_core::time::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Day,
    /// ISO weeks: Monday 00:00 UTC to the next Monday.
    Week,
    /// Calendar months, UTC.
    Month,
}

impl Interval {
    pub fn parse(s: &str) -> Option<Interval> {
        match s {
            "day" => Some(Interval::Day),
            "week" => Some(Interval::Week),
            "month" => Some(Interval::Month),
            _ => None,
        }
    }

    /// The first bucket boundary strictly after `t`.
    pub fn next_boundary(self, t: Millis) -> Millis {
        let day = t.div_euclid(DAY);
        match self {
            Interval::Day => (day + 1) * DAY,
            Interval::Week => {
                // 1970-01-01 was a Thursday: Monday is 3 days before it.
                let monday = day - (day + 3).rem_euclid(7);
                (monday + 7) * DAY
            }
            Interval::Month => {
                let (y, m, _) = civil_from_days(day);
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1) * DAY
            }
        }
    }

    /// How many buckets `[from, to)` splits into.
    pub fn count(self, from: Millis, to: Millis) -> usize {
        let mut n = 0;
        let mut t = from;
        while t < to {
            n += 1;
            t = self.next_boundary(t);
        }
        n
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One bucket of a series: its span (the first and last are cut to the window) and its figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket<F = Figures> {
    pub from: String,
    pub to: String,
    #[serde(flatten)]
    pub figures: F,
}

/// The DORA figures of each bucket of `[from, to)`; `obs` holds the window's observations.
pub fn series(obs: &Observations, from: Millis, to: Millis, interval: Interval) -> Vec<Bucket> {
    series_of(obs, from, to, interval, figures)
}

/// The figures `summary` gives of each bucket of `[from, to)` (given its observations and span in days).
pub fn series_of<F>(
    obs: &Observations,
    from: Millis,
    to: Millis,
    interval: Interval,
    summary: impl Fn(&Observations, f64) -> F,
) -> Vec<Bucket<F>> {
    let mut out = Vec::new();
    let mut start = from;
    while start < to {
        let end = interval.next_boundary(start).min(to);
        let part = obs.within(start, end);
        out.push(Bucket {
            from: format_millis(start),
            to: format_millis(end),
            figures: summary(&part, (end - start) as f64 / DAY as f64),
        });
        start = end;
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Service,
    Repository,
    Environment,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        match s {
            "service" => Some(GroupBy::Service),
            "repository" => Some(GroupBy::Repository),
            "environment" => Some(GroupBy::Environment),
            _ => None,
        }
    }

    fn key(self, o: &Origin) -> &str {
        match self {
            GroupBy::Service => &o.service,
            GroupBy::Repository => &o.repo,
            GroupBy::Environment => &o.environment,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group<F = Figures> {
    pub group: String,
    #[serde(flatten)]
    pub figures: F,
}

/// The figures of each group of origins, in the group's name order. Incidents attributed to no deployment
/// have no repository or environment and fall in no such group (they count in no DORA figure either).
pub fn groups(obs: &Observations, days: f64, by: GroupBy) -> Vec<Group> {
    groups_of(obs, days, by, figures)
}

/// The figures `summary` gives of each group of origins, in the group's name order.
pub fn groups_of<F>(
    obs: &Observations,
    days: f64,
    by: GroupBy,
    summary: impl Fn(&Observations, f64) -> F,
) -> Vec<Group<F>> {
    let mut names: BTreeMap<&str, ()> = BTreeMap::new();
    for o in &obs.origins {
        let k = by.key(o);
        if !k.is_empty() {
            names.insert(k, ());
        }
    }
    names
        .keys()
        .map(|name| Group {
            group: name.to_string(),
            figures: summary(&obs.filter(|o| by.key(o) == *name), days),
        })
        .collect()
}

/// The observations with the services no `[[services]]` entry names, beyond the `keep` most active in them
/// (by rows, then by name), counted together as [`em_core::config::UNMAPPED`]: a breakdown by service stays a
/// bounded list whatever repositories arrive, and the figures of the whole stay the same.
pub fn cap_unmapped(obs: &mut Observations, is_configured: impl Fn(&str) -> bool, keep: usize) {
    let mut rows = vec![0usize; obs.origins.len()];
    let origins = obs
        .deployments
        .iter()
        .map(|d| d.origin)
        .chain(obs.changes.iter().map(|c| c.origin))
        .chain(obs.incidents.iter().map(|i| i.origin))
        .chain(obs.attempts.iter().map(|a| a.origin))
        .chain(obs.builds.iter().map(|b| b.origin))
        .chain(obs.pull_requests.iter().map(|p| p.origin));
    for o in origins {
        if let Some(n) = rows.get_mut(o as usize) {
            *n += 1;
        }
    }
    let mut activity: BTreeMap<&str, usize> = BTreeMap::new();
    for (o, n) in obs.origins.iter().zip(&rows) {
        if !is_configured(&o.service) {
            *activity.entry(o.service.as_str()).or_default() += n;
        }
    }
    if activity.len() <= keep {
        return;
    }
    let mut ranked: Vec<(&str, usize)> = activity.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let shown: std::collections::BTreeSet<String> = ranked
        .into_iter()
        .take(keep)
        .map(|(s, _)| s.to_string())
        .collect();
    for o in &mut obs.origins {
        if !is_configured(&o.service) && !shown.contains(&o.service) {
            o.service = em_core::config::UNMAPPED.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{self, DeliveryFigures};
    use em_core::domain::BuildOutcome;
    use em_core::rows::{AttemptObs, BuildObs, ChangeObs, DeploymentObs, PullRequestObs};

    /// 2025-03-01T00:00:00Z, a Saturday.
    const T0: Millis = 1_740_787_200_000;

    #[test]
    fn boundaries_fall_on_midnight_monday_and_the_first_of_the_month() {
        assert_eq!(Interval::Day.next_boundary(T0), T0 + DAY);
        assert_eq!(Interval::Day.next_boundary(T0 - 1), T0);
        // Saturday 1 March → Monday 3 March.
        assert_eq!(Interval::Week.next_boundary(T0), T0 + 2 * DAY);
        assert_eq!(Interval::Week.next_boundary(T0 + 2 * DAY), T0 + 9 * DAY);
        // 1 March → 1 April (31 days); 15 Feb 2024 → 1 March 2024 (leap year).
        assert_eq!(Interval::Month.next_boundary(T0), T0 + 31 * DAY);
        assert_eq!(
            format_millis(Interval::Month.next_boundary(1_707_955_200_000)),
            "2024-03-01T00:00:00Z"
        );
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
        assert_eq!(Interval::Week.count(T0, T0 + 30 * DAY), 5);
    }

    #[test]
    fn buckets_and_groups_add_up_to_the_window() {
        let origins = vec![
            Origin {
                service: "a".into(),
                repo: "acme/a".into(),
                environment: "production".into(),
            },
            Origin {
                service: "b".into(),
                repo: "acme/b".into(),
                environment: "prod".into(),
            },
        ];
        let obs = Observations {
            origins,
            deployments: (0..40)
                .map(|i| DeploymentObs {
                    origin: (i % 2) as u32,
                    time: T0 + i * DAY / 2,
                    failed: i % 3 == 0,
                    rework: i % 5 == 0,
                })
                .collect(),
            changes: (0..40)
                .map(|i| ChangeObs {
                    origin: (i % 2) as u32,
                    time: T0 + i * DAY / 2,
                    lead: 1000 * i,
                    unlisted: 0,
                })
                .collect(),
            incidents: vec![],
            attempts: (0..10)
                .map(|i| AttemptObs {
                    origin: (i % 2) as u32,
                    time: T0 + i * DAY,
                })
                .collect(),
            builds: (0..30)
                .map(|i| BuildObs {
                    origin: (i % 2) as u32,
                    time: T0 + i * DAY / 2,
                    duration: Some(60_000 + i),
                    outcome: if i % 4 == 0 {
                        BuildOutcome::Failure
                    } else {
                        BuildOutcome::Success
                    },
                })
                .collect(),
            pull_requests: (0..12)
                .map(|i| PullRequestObs {
                    origin: (i % 2) as u32,
                    time: T0 + i * DAY,
                    first_commit: None,
                    opened: Some(T0 + i * DAY - 3_600_000),
                    first_review: None,
                    approved: None,
                    deployed: (i % 3 == 0).then_some(T0 + i * DAY + 60_000),
                })
                .collect(),
        };
        let to = T0 + 20 * DAY;
        let whole = figures(&obs, 20.0);
        for interval in [Interval::Day, Interval::Week, Interval::Month] {
            let s = series(&obs, T0, to, interval);
            let sum = |f: fn(&Figures) -> u64| s.iter().map(|b| f(&b.figures)).sum::<u64>();
            assert_eq!(sum(|f| f.deployment_frequency.deployments), 40);
            assert_eq!(
                sum(|f| f.change_failure_rate.failed),
                whole.change_failure_rate.failed
            );
            assert_eq!(sum(|f| f.rework_rate.rework), whole.rework_rate.rework);
            assert_eq!(sum(|f| f.lead_time.changes + f.lead_time.excluded), 40);
            let d = series_of(&obs, T0, to, interval, delivery::figures);
            let dsum =
                |f: fn(&DeliveryFigures) -> u64| d.iter().map(|b| f(&b.figures)).sum::<u64>();
            let all = delivery::figures(&obs, 20.0);
            assert_eq!(dsum(|f| f.deployment_success_rate.failed), 10);
            assert_eq!(
                dsum(|f| f.deployment_success_rate.attempts),
                all.deployment_success_rate.attempts
            );
            assert_eq!(dsum(|f| f.build_duration.builds), 30);
            assert_eq!(dsum(|f| f.build_duration.failed), all.build_duration.failed);
            assert_eq!(dsum(|f| f.pr_cycle_time.pull_requests), 12);
            assert_eq!(dsum(|f| f.pr_cycle_time.deployed), 4);
            assert_eq!(s.first().unwrap().from, "2025-03-01T00:00:00Z");
            assert_eq!(s.last().unwrap().to, "2025-03-21T00:00:00Z");
        }
        assert_eq!(series(&obs, T0, to, Interval::Week).len(), 4);
        let g = groups(&obs, 20.0, GroupBy::Environment);
        assert_eq!(
            g.iter().map(|g| g.group.as_str()).collect::<Vec<_>>(),
            ["prod", "production"]
        );
        assert_eq!(
            g.iter()
                .map(|g| g.figures.deployment_frequency.deployments)
                .sum::<u64>(),
            40
        );
        let g = groups_of(&obs, 20.0, GroupBy::Repository, delivery::figures);
        let sum = |f: fn(&DeliveryFigures) -> u64| g.iter().map(|g| f(&g.figures)).sum::<u64>();
        assert_eq!(sum(|f| f.build_duration.builds), 30);
        assert_eq!(sum(|f| f.pr_cycle_time.pull_requests), 12);
        assert_eq!(sum(|f| f.deployment_success_rate.failed), 10);
    }
}
