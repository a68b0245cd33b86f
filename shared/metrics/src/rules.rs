//! The rule book: the linking rules docs/metrics.md states, each in one place, for both the reference
//! ([`crate::derive`]) and incremental linking ([`crate::link`]). Each rule names the section of
//! docs/metrics.md it implements; a change to a rule is a change to that section.

use em_core::domain::same_sha;
use em_core::time::Millis;

/// **Rework message** (docs/metrics.md, *Metrics*, `rework_rate`): a change whose message starts with
/// `Revert "` or `hotfix` (letter case aside, leading blanks ignored) makes the deployment shipping it
/// rework.
pub fn is_rework_message(message: &str) -> bool {
    let m = message.trim_start();
    let starts =
        |p: &str| m.len() >= p.len() && m.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes());
    starts("revert \"") || starts("hotfix")
}

/// **One deployment, two providers** (docs/metrics.md, *Links*): how close two providers' reports of one
/// deployment are (a CircleCI deploy job that also creates a GitHub deployment).
pub const SAME_DEPLOYMENT_WINDOW: Millis = 10 * 60 * 1000;

/// The provider of a deployment row or fact key (`provider/repo/deployment id`).
pub fn provider_of(key: &str) -> &str {
    key.split('/').next().unwrap_or_default()
}

/// What the duplicate rule compares of a deployment: its key's provider, sha, environment and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub provider: String,
    pub sha: String,
    pub environment: String,
    pub time: Millis,
}

impl Report {
    pub fn of(key: &str, sha: &str, environment: &str, time: Millis) -> Report {
        Report {
            provider: provider_of(key).to_string(),
            sha: sha.to_string(),
            environment: environment.to_string(),
            time,
        }
    }
}

/// **One deployment, two providers** (docs/metrics.md, *Links*): `later` is another provider's report of
/// `kept`, the deployment kept just before it in its repository, when its sha is the same (by the short-sha
/// rule), its environment the same (letter case aside), and it came at most [`SAME_DEPLOYMENT_WINDOW`]
/// later. One provider's own reports are never merged.
pub fn is_another_report(kept: &Report, later: &Report) -> bool {
    kept.provider != later.provider
        && same_sha(&kept.sha, &later.sha)
        && kept.environment.eq_ignore_ascii_case(&later.environment)
        && later.time - kept.time <= SAME_DEPLOYMENT_WINDOW
}

/// **Rollback** (docs/metrics.md, *Links*), the part that needs no history: a deployment of the same sha as
/// its repository's previous deployment is a redeploy, never a rollback. Only a sha that differs from the
/// previous one's is looked up among the shas deployed before the previous deployment
/// ([`is_rollback`]).
pub fn may_roll_back(sha: &str, previous_sha: &str) -> bool {
    !same_sha(sha, previous_sha)
}

/// **Rollback** and **Provider-signalled rollback** (docs/metrics.md, *Links*): a deployment is a rollback
/// when its provider says so, or `by_sha`: its sha differs from its repository's previous deployment's
/// ([`may_roll_back`]) and that repository deployed it before the previous deployment. The previous
/// deployment is then rolled back.
pub fn is_rollback(signalled: bool, by_sha: bool) -> bool {
    signalled || by_sha
}

/// **Incident attribution** (docs/metrics.md, *Links*): the index of the deployment an incident opened at
/// `opened` belongs to, among `deployments` in time order (`time` of each): the latest at or before the
/// opening, if the opening is at most `window` after it. `Err(())` when there is no deployment at or before
/// the opening among them (the one before, if any, is elsewhere: before a re-link's cut).
#[allow(clippy::result_unit_err)]
pub fn attributed_to<T>(
    deployments: &[T],
    time: impl Fn(&T) -> Millis,
    opened: Millis,
    window: Millis,
) -> Result<Option<usize>, ()> {
    let n = deployments.partition_point(|d| time(d) <= opened);
    match n.checked_sub(1) {
        Some(j) => Ok(within_window(time(&deployments[j]), opened, window).then_some(j)),
        None => Err(()),
    }
}

/// **Incident attribution**: an incident opened at `opened` can be blamed on a deployment at `deployed`.
pub fn within_window(deployed: Millis, opened: Millis, window: Millis) -> bool {
    deployed <= opened && opened - deployed <= window
}

/// **One outage, several tools** (docs/metrics.md, *Links*): how close two tools' incidents of one service
/// open to be one outage even when neither is open at the other's opening.
pub const SAME_OUTAGE_WINDOW: Millis = 10 * 60 * 1000;

/// What the outage rule compares of an incident: its tool, its opening and its own resolution (`None`
/// while open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    pub provider: String,
    pub opened: Millis,
    pub resolved: Option<Millis>,
}

/// **One outage, several tools**: two incidents of one service from different tools are reports of one
/// outage when they opened at most [`SAME_OUTAGE_WINDOW`] apart, or one opened while the other was open.
pub fn same_outage(a: &Alarm, b: &Alarm) -> bool {
    let open_at = |x: &Alarm, t: Millis| x.opened <= t && x.resolved.is_none_or(|r| t <= r);
    a.provider != b.provider
        && (a.opened.abs_diff(b.opened) <= SAME_OUTAGE_WINDOW.unsigned_abs()
            || open_at(a, b.opened)
            || open_at(b, a.opened))
}

/// **One outage, several tools**: groups incidents into outages, in order of opening (then id, as given):
/// each joins the outage with the earliest first incident that it is [`same_outage`] with a member of,
/// among those whose first incident opened at most `span` before it (the attribution window: an outage
/// older than that can no longer take reports), or else starts one. `fixed` gives, for incidents already
/// grouped (the ones before a re-link's cut), the index of their outage's first incident among `alarms`,
/// or `None` for one whose outage began before them all (it takes no report any more). Returns each
/// incident's outage as the index of its first incident; `None` only for a fixed incident given so.
pub fn outages(
    alarms: &[Alarm],
    span: Millis,
    fixed: impl Fn(usize) -> Option<Option<usize>>,
) -> Vec<Option<usize>> {
    // Outages by first incident, in order of opening; each with its members.
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut out = Vec::with_capacity(alarms.len());
    for (i, a) in alarms.iter().enumerate() {
        let lead = match fixed(i) {
            Some(lead) => lead,
            None => {
                let first = groups.partition_point(|(l, _)| alarms[*l].opened < a.opened - span);
                groups[first..]
                    .iter()
                    .find(|(_, members)| members.iter().any(|&m| same_outage(&alarms[m], a)))
                    .map(|(l, _)| *l)
                    .or(Some(i))
            }
        };
        match lead {
            Some(l) if l == i => groups.push((i, vec![i])),
            Some(l) => {
                if let Some((_, members)) = groups.iter_mut().find(|(x, _)| *x == l) {
                    members.push(i);
                }
            }
            None => {}
        }
        out.push(lead);
    }
    out
}

/// **One outage, several tools**: an outage's resolution, from its incidents' own: the latest, once all are
/// resolved.
pub fn outage_resolved(resolutions: impl IntoIterator<Item = Option<Millis>>) -> Option<Millis> {
    resolutions
        .into_iter()
        .try_fold(None, |latest: Option<Millis>, r| {
            r.map(|r| Some(latest.map_or(r, |l| l.max(r))))
        })
        .flatten()
}

/// **Which alerts are incidents** (docs/metrics.md): an incident counts when any of its events is at a
/// severity its tool counts ([`em_core::config::Config::counts_incident`]: the configured severities,
/// else the tool's highest), or when none of its events carries a severity (`None`: no say). One that
/// does not is stored and linked to nothing.
pub fn is_incident(events_counted: impl IntoIterator<Item = Option<bool>>) -> bool {
    let mut said = false;
    for counted in events_counted {
        match counted {
            Some(true) => return true,
            Some(false) => said = true,
            None => {}
        }
    }
    !said
}

/// **Rework** (docs/metrics.md, *Metrics*, `rework_rate`): an incident attributed to an earlier
/// deployment makes a deployment at `t` rework when it is open at `t`: opened at or before, not resolved
/// by then.
pub fn open_at(opened: Millis, resolved: Option<Millis>, t: Millis) -> bool {
    opened <= t && resolved.is_none_or(|r| t < r)
}

/// **Change failure** (docs/metrics.md, *Metrics*, `change_failure_rate`): a deployment failed when an
/// incident is attributed to it or a later deployment rolled it back.
pub fn failed(has_incident: bool, rolled_back: bool) -> bool {
    has_incident || rolled_back
}

/// **Rework** (docs/metrics.md, *Metrics*, `rework_rate`): a rollback, a deployment made while an
/// incident attributed to an earlier one is open, one shipping a revert or hotfix, or one its provider
/// marks as restoring an earlier version (a circuit breaker's).
pub fn is_rework(rollback: bool, during_incident: bool, ships_rework: bool, marked: bool) -> bool {
    rollback || during_incident || ships_rework || marked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverts_and_hotfixes_are_rework_messages_and_other_mentions_are_not() {
        assert!(is_rework_message("Revert \"add cache\""));
        assert!(is_rework_message("  HOTFIX: null check"));
        assert!(is_rework_message("hotfix"));
        assert!(!is_rework_message("Reverted the cache"));
        assert!(!is_rework_message("fix a hotfix"));
        assert!(!is_rework_message("hot"));
    }

    #[test]
    fn another_providers_report_of_the_same_sha_within_ten_minutes_is_the_same_deployment() {
        let kept = Report::of("circleci/acme/web/1", "abcdef1234", "Production", 0);
        let at = |provider: &str, sha: &str, env: &str, time: Millis| {
            Report::of(&format!("{provider}/acme/web/2"), sha, env, time)
        };
        assert!(is_another_report(
            &kept,
            &at("github", "abcdef12", "production", SAME_DEPLOYMENT_WINDOW)
        ));
        assert!(!is_another_report(
            &kept,
            &at(
                "github",
                "abcdef12",
                "production",
                SAME_DEPLOYMENT_WINDOW + 1
            )
        ));
        assert!(!is_another_report(
            &kept,
            &at("circleci", "abcdef12", "production", 1)
        ));
        assert!(!is_another_report(
            &kept,
            &at("github", "abcdef99", "production", 1)
        ));
        assert!(!is_another_report(
            &kept,
            &at("github", "abcdef12", "staging", 1)
        ));
    }

    #[test]
    fn a_rollback_is_signalled_or_an_earlier_sha_unlike_the_previous_one() {
        assert!(!may_roll_back("abcdef12", "abcdef1234567"));
        assert!(may_roll_back("abcdef12", "0123456"));
        assert!(is_rollback(true, false));
        assert!(is_rollback(false, true));
        assert!(!is_rollback(false, false));
    }

    #[test]
    fn an_incident_goes_to_the_latest_deployment_at_or_before_it_within_the_window() {
        let times = [10, 20, 20, 40];
        let at = |opened, window| attributed_to(&times, |t| *t, opened, window);
        assert_eq!(at(5, 100), Err(()));
        assert_eq!(at(20, 100), Ok(Some(2)));
        assert_eq!(at(39, 100), Ok(Some(2)));
        assert_eq!(at(39, 19), Ok(Some(2)));
        assert_eq!(at(39, 18), Ok(None));
        assert_eq!(at(1_000, 10_000), Ok(Some(3)));
    }

    #[test]
    fn tools_reporting_one_outage_are_grouped_and_one_tool_never_with_itself() {
        let alarm = |provider: &str, opened: Millis, resolved: Option<Millis>| Alarm {
            provider: provider.into(),
            opened,
            resolved,
        };
        let w = SAME_OUTAGE_WINDOW;
        let am = alarm("alertmanager", 0, Some(60_000));
        assert!(same_outage(&am, &alarm("pagerduty", w, None)));
        assert!(!same_outage(&am, &alarm("pagerduty", w + 1, None)));
        assert!(!same_outage(&am, &alarm("alertmanager", 1, None)));
        // Open across the other's opening, however long after.
        let long = alarm("alertmanager", 0, Some(5 * w));
        assert!(same_outage(&long, &alarm("pagerduty", 5 * w, None)));
        assert!(!same_outage(&long, &alarm("pagerduty", 5 * w + 1, None)));
        assert!(same_outage(
            &alarm("opsgenie", 0, None),
            &alarm("pagerduty", 100 * w, None)
        ));

        // Alertmanager fires, PagerDuty pages, incident.io opens: one outage; a second Alertmanager alert
        // joins through PagerDuty's; an alert after the span starts an outage of its own.
        let alarms = [
            alarm("alertmanager", 0, Some(2 * w)),
            alarm("pagerduty", w / 2, Some(4 * w)),
            alarm("incident-io", w, None),
            alarm("alertmanager", 3 * w, Some(3 * w + 1)),
            alarm("pagerduty", 200 * w, Some(201 * w)),
        ];
        assert_eq!(
            outages(&alarms, 24 * w, |_| None),
            [Some(0), Some(0), Some(0), Some(0), Some(4)]
        );
        // Within the span only: the open incident.io incident no longer takes the last alert.
        assert_eq!(
            outages(&alarms, 100 * w, |_| None),
            [Some(0), Some(0), Some(0), Some(0), Some(4)]
        );
        assert_eq!(
            outages(&alarms, 300 * w, |_| None),
            [Some(0), Some(0), Some(0), Some(0), Some(0)]
        );
        // Incidents grouped before a cut keep their outage.
        assert_eq!(
            outages(&alarms, 24 * w, |i| (i < 2).then_some(if i == 0 {
                Some(0)
            } else {
                None
            })),
            [Some(0), None, Some(0), Some(0), Some(4)]
        );
        assert_eq!(outage_resolved([Some(3), Some(9), Some(5)]), Some(9));
        assert_eq!(outage_resolved([Some(3), None]), None);
    }

    #[test]
    fn an_incident_is_open_from_its_opening_until_its_resolution() {
        assert!(open_at(10, None, 10));
        assert!(open_at(10, Some(20), 19));
        assert!(!open_at(10, Some(20), 20));
        assert!(!open_at(10, None, 9));
        assert!(failed(true, false) && failed(false, true) && !failed(false, false));
        assert!(is_rework(false, false, false, true) && !is_rework(false, false, false, false));
        assert!(is_incident([Some(false), Some(true)]) && !is_incident([Some(false), None]));
        assert!(is_incident([None, None]) && is_incident([]));
    }
}
