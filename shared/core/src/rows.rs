//! What linking produces and what queries read.
//!
//! Linking a service's facts gives one row per deployment, shipped change and incident ([`Linked`]): the
//! aggregator keeps them as its link state and re-links only the rows after a cut. Queries read a narrower
//! shape, [`Observations`]: per service and UTC day, the instants, flags and durations metrics summarise,
//! each tagged with where it comes from (repository and environment), kept as one compact blob per day.

use std::collections::BTreeMap;

use crate::domain::BuildOutcome;
use crate::time::Millis;

pub const DAY: Millis = 86_400_000;

/// A production deployment as linked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRow {
    /// `provider/repo/deployment id`: unique across the service.
    pub key: String,
    pub repo: String,
    pub environment: String,
    pub time: Millis,
    /// The deployed sha, resolved to the full sha where a short one (GitLab) matches a known commit.
    pub sha: String,
    /// The commit its change walk could not reach because no push has described it yet: a push that brings
    /// it changes what this deployment shipped.
    pub frontier: Option<String>,
    /// Had an incident attributed to it, or was rolled back.
    pub failed: bool,
    pub rework: bool,
    /// Rolled the previous deployment back: an earlier version again, or the provider's rollback (a
    /// rollback release, a circuit breaker's). Also rework; digests count rollbacks apart.
    pub rollback: bool,
}

/// A commit shipped to production by the first deployment that reached it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRow {
    pub sha: String,
    pub repo: String,
    pub environment: String,
    pub deployment_key: String,
    pub deployment_time: Millis,
    pub commit_time: Millis,
    /// Commits its push shipped with it but did not list (no commit time, so no lead time).
    pub unlisted: u32,
}

impl ChangeRow {
    pub fn lead_time(&self) -> Millis {
        self.deployment_time - self.commit_time
    }
}

/// An incident, folded from its state changes, with the deployment it is attributed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentRow {
    pub id: String,
    pub opened: Millis,
    pub acknowledged: Option<Millis>,
    /// Its own resolution; for the first incident of an outage several tools reported, the outage's (the
    /// latest of theirs, once all are resolved).
    pub resolved: Option<Millis>,
    /// The attributed deployment's key, repository and environment (an outage's reports share it).
    pub attributed_to: Option<Attribution>,
    /// For a later report of an outage another tool opened first, that incident's id: the outage counts once,
    /// as its first incident.
    pub outage: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    pub deployment_key: String,
    pub repo: String,
    pub environment: String,
}

/// One service's linked rows (all of them, or those after a cut).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Linked {
    pub deployments: Vec<DeploymentRow>,
    pub changes: Vec<ChangeRow>,
    pub incidents: Vec<IncidentRow>,
}

impl DeploymentRow {
    /// Whether this deployment's change walk stopped at one of `shas` (it waits on them being pushed).
    pub fn waits_on(&self, shas: &[String]) -> bool {
        self.frontier
            .as_deref()
            .is_some_and(|f| shas.iter().any(|sha| crate::domain::same_sha(f, sha)))
    }
}

/// The earliest (by time, then key) of `rows` that waits on one of `shas`.
pub fn earliest_waiting(
    rows: impl IntoIterator<Item = DeploymentRow>,
    shas: &[String],
) -> Option<DeploymentRow> {
    rows.into_iter()
        .filter(|d| d.waits_on(shas))
        .min_by(|a, b| (a.time, &a.key).cmp(&(b.time, &b.key)))
}

impl Linked {
    /// The rows before `t` and those at or after it, each by its own instant (a deployment's time, a
    /// change's deployment time, an incident's opening), as a cut and the day observations place them.
    pub fn split_at(&self, t: Millis) -> (Linked, Linked) {
        let (before_d, after_d) = self.deployments.iter().cloned().partition(|d| d.time < t);
        let (before_c, after_c) = self
            .changes
            .iter()
            .cloned()
            .partition(|c| c.deployment_time < t);
        let (before_i, after_i) = self.incidents.iter().cloned().partition(|i| i.opened < t);
        (
            Linked {
                deployments: before_d,
                changes: before_c,
                incidents: before_i,
            },
            Linked {
                deployments: after_d,
                changes: after_c,
                incidents: after_i,
            },
        )
    }

    pub fn is_empty(&self) -> bool {
        self.deployments.is_empty() && self.changes.is_empty() && self.incidents.is_empty()
    }

    /// Rows in a canonical order, so two linkings compare equal whatever order they were produced in.
    pub fn sorted(mut self) -> Self {
        self.deployments
            .sort_by(|a, b| (a.time, &a.key).cmp(&(b.time, &b.key)));
        self.changes.sort_by(|a, b| a.sha.cmp(&b.sha));
        self.incidents.sort_by(|a, b| a.id.cmp(&b.id));
        self
    }

    /// The UTC days (days since the epoch) whose observations these rows make up.
    pub fn days(&self) -> std::collections::BTreeSet<i64> {
        self.deployments
            .iter()
            .map(|d| day_of(d.time))
            .chain(self.changes.iter().map(|c| day_of(c.deployment_time)))
            .chain(self.incidents.iter().map(|i| day_of(i.opened)))
            .collect()
    }
}

/// Days since the epoch of an instant (UTC).
pub fn day_of(t: Millis) -> i64 {
    t.div_euclid(DAY)
}

/// Where an observation comes from: a service's repository and environment. Incidents not attributed to a
/// deployment have empty ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    pub service: String,
    pub repo: String,
    pub environment: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeploymentObs {
    pub origin: u32,
    pub time: Millis,
    pub failed: bool,
    pub rework: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChangeObs {
    pub origin: u32,
    /// When it was deployed: what places it in a window.
    pub time: Millis,
    /// Deployment time minus commit time; zero and negative ones are kept (the metric decides).
    pub lead: Millis,
    /// Commits shipped with this one that its push did not list.
    pub unlisted: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IncidentObs {
    pub origin: u32,
    pub opened: Millis,
    pub acknowledged: Option<Millis>,
    /// Resolution minus opening, while resolved.
    pub recovery: Option<Millis>,
    pub attributed: bool,
}

/// A failed production deployment attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AttemptObs {
    pub origin: u32,
    pub time: Millis,
}

/// A finished build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BuildObs {
    pub origin: u32,
    /// When it finished: what places it in a window.
    pub time: Millis,
    /// Finish minus start, where the provider reports a start.
    pub duration: Option<Millis>,
    pub outcome: BuildOutcome,
}

/// A merged pull request and the instants of its stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PullRequestObs {
    pub origin: u32,
    /// When it was merged: what places it in a window.
    pub time: Millis,
    pub first_commit: Option<Millis>,
    pub opened: Option<Millis>,
    pub first_review: Option<Millis>,
    pub approved: Option<Millis>,
    /// When its merge commit went to production.
    pub deployed: Option<Millis>,
}

/// What queries read: observations of any number of services and days, with the origins they refer to.
///
/// Deployments, changes and incidents come from linking and are kept in the day blobs; attempts, builds
/// and pull requests need no linking and are read from the facts for each query (see
/// [`crate::ports::DeliveryFacts`]), so the blobs do not hold them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observations {
    pub origins: Vec<Origin>,
    pub deployments: Vec<DeploymentObs>,
    pub changes: Vec<ChangeObs>,
    pub incidents: Vec<IncidentObs>,
    pub attempts: Vec<AttemptObs>,
    pub builds: Vec<BuildObs>,
    pub pull_requests: Vec<PullRequestObs>,
}

impl Observations {
    /// The index of `o` among the origins (`index` maps the origins added so far), added when new.
    pub fn origin_index(&mut self, index: &mut BTreeMap<Origin, u32>, o: Origin) -> u32 {
        *index.entry(o.clone()).or_insert_with(|| {
            self.origins.push(o);
            (self.origins.len() - 1) as u32
        })
    }

    /// Appends `other`'s observations inside `[from, to)`, re-numbering its origins.
    pub fn extend_within(&mut self, other: Observations, from: Millis, to: Millis) {
        let other = other.within(from, to);
        let mut index: BTreeMap<Origin, u32> = self
            .origins
            .iter()
            .enumerate()
            .map(|(i, o)| (o.clone(), i as u32))
            .collect();
        let map: Vec<u32> = other
            .origins
            .into_iter()
            .map(|o| self.origin_index(&mut index, o))
            .collect();
        let at = |i: u32| map.get(i as usize).copied().unwrap_or(0);
        self.deployments
            .extend(other.deployments.into_iter().map(|d| DeploymentObs {
                origin: at(d.origin),
                ..d
            }));
        self.changes
            .extend(other.changes.into_iter().map(|c| ChangeObs {
                origin: at(c.origin),
                ..c
            }));
        self.incidents
            .extend(other.incidents.into_iter().map(|i| IncidentObs {
                origin: at(i.origin),
                ..i
            }));
        self.attempts
            .extend(other.attempts.into_iter().map(|a| AttemptObs {
                origin: at(a.origin),
                ..a
            }));
        self.builds
            .extend(other.builds.into_iter().map(|b| BuildObs {
                origin: at(b.origin),
                ..b
            }));
        self.pull_requests
            .extend(other.pull_requests.into_iter().map(|p| PullRequestObs {
                origin: at(p.origin),
                ..p
            }));
    }

    /// The observations `keep` accepts, given each one's origin and the instant that places it in a window.
    fn select(&self, keep: impl Fn(u32, Millis) -> bool) -> Observations {
        Observations {
            origins: self.origins.clone(),
            deployments: self
                .deployments
                .iter()
                .filter(|d| keep(d.origin, d.time))
                .copied()
                .collect(),
            changes: self
                .changes
                .iter()
                .filter(|c| keep(c.origin, c.time))
                .copied()
                .collect(),
            incidents: self
                .incidents
                .iter()
                .filter(|i| keep(i.origin, i.opened))
                .copied()
                .collect(),
            attempts: self
                .attempts
                .iter()
                .filter(|a| keep(a.origin, a.time))
                .copied()
                .collect(),
            builds: self
                .builds
                .iter()
                .filter(|b| keep(b.origin, b.time))
                .copied()
                .collect(),
            pull_requests: self
                .pull_requests
                .iter()
                .filter(|p| keep(p.origin, p.time))
                .copied()
                .collect(),
        }
    }

    /// The observations whose origin satisfies `keep`.
    pub fn filter(&self, keep: impl Fn(&Origin) -> bool) -> Observations {
        let kept: Vec<bool> = self.origins.iter().map(&keep).collect();
        self.select(|origin, _| kept.get(origin as usize).copied().unwrap_or(false))
    }

    /// The observations inside `[from, to)`.
    pub fn within(&self, from: Millis, to: Millis) -> Observations {
        self.select(|_, t| from <= t && t < to)
    }

    /// Sorts every list, so that equal sets compare equal.
    pub fn sorted(mut self) -> Self {
        self.deployments.sort_unstable();
        self.changes.sort_unstable();
        self.incidents.sort_unstable();
        self.attempts.sort_unstable();
        self.builds.sort_unstable();
        self.pull_requests.sort_unstable();
        self
    }
}

/// One service's linked rows as observations by UTC day, origins without the service (it is implied).
pub fn days_of(linked: &Linked) -> BTreeMap<i64, Observations> {
    let mut out: BTreeMap<i64, (BTreeMap<Origin, u32>, Observations)> = BTreeMap::new();
    // The day's observations and the index of the origin (repo, env) in them.
    fn slot<'a>(
        out: &'a mut BTreeMap<i64, (BTreeMap<Origin, u32>, Observations)>,
        t: Millis,
        repo: &str,
        environment: &str,
    ) -> (&'a mut Observations, u32) {
        let (index, obs) = out.entry(day_of(t)).or_default();
        let origin = obs.origin_index(
            index,
            Origin {
                service: String::new(),
                repo: repo.to_string(),
                environment: environment.to_string(),
            },
        );
        (obs, origin)
    }
    for d in &linked.deployments {
        let (obs, origin) = slot(&mut out, d.time, &d.repo, &d.environment);
        obs.deployments.push(DeploymentObs {
            origin,
            time: d.time,
            failed: d.failed,
            rework: d.rework,
        });
    }
    for c in &linked.changes {
        let (obs, origin) = slot(&mut out, c.deployment_time, &c.repo, &c.environment);
        obs.changes.push(ChangeObs {
            origin,
            time: c.deployment_time,
            lead: c.lead_time(),
            unlisted: c.unlisted,
        });
    }
    // An outage counts once, as its first incident.
    for i in linked.incidents.iter().filter(|i| i.outage.is_none()) {
        let (repo, env) = i
            .attributed_to
            .as_ref()
            .map_or(("", ""), |a| (a.repo.as_str(), a.environment.as_str()));
        let (obs, origin) = slot(&mut out, i.opened, repo, env);
        obs.incidents.push(IncidentObs {
            origin,
            opened: i.opened,
            acknowledged: i.acknowledged,
            recovery: i.resolved.map(|r| r - i.opened),
            attributed: i.attributed_to.is_some(),
        });
    }
    out.into_iter().map(|(d, (_, o))| (d, o.sorted())).collect()
}

/// The day blob: a compact binary form of one service-day's observations, so a year's query decodes a few
/// hundred blobs rather than tens of thousands of rows. Little-endian; version byte first.
pub mod blob {
    use super::*;

    /// Version 2 adds a trailing section of changes with unlisted commits; a blob without any is written
    /// as version 1, so blobs of histories without them stay what they were.
    const VERSION: u8 = 2;
    const VERSION_1: u8 = 1;
    const NONE: i64 = i64::MIN;

    /// A string of at most 65,535 bytes, cut on a character boundary so that what is written always
    /// decodes (facts are bounded far below that: `em_core::bounds`).
    fn put_str(out: &mut Vec<u8>, s: &str) {
        let n = crate::bounds::floor_boundary(s, u16::MAX as usize);
        out.extend_from_slice(&(n as u16).to_le_bytes());
        out.extend_from_slice(&s.as_bytes()[..n]);
    }

    fn put_opt(out: &mut Vec<u8>, v: Option<Millis>) {
        out.extend_from_slice(&v.unwrap_or(NONE).to_le_bytes());
    }

    pub fn encode(o: &Observations) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            16 + o.origins.len() * 48
                + o.deployments.len() * 13
                + o.changes.len() * 20
                + o.incidents.len() * 29,
        );
        let unlisted: Vec<(u32, u32)> = o
            .changes
            .iter()
            .enumerate()
            .filter(|(_, c)| c.unlisted > 0)
            .map(|(i, c)| (i as u32, c.unlisted))
            .collect();
        out.push(if unlisted.is_empty() {
            VERSION_1
        } else {
            VERSION
        });
        out.extend_from_slice(&(o.origins.len() as u32).to_le_bytes());
        for origin in &o.origins {
            put_str(&mut out, &origin.repo);
            put_str(&mut out, &origin.environment);
        }
        out.extend_from_slice(&(o.deployments.len() as u32).to_le_bytes());
        for d in &o.deployments {
            out.extend_from_slice(&d.origin.to_le_bytes());
            out.extend_from_slice(&d.time.to_le_bytes());
            out.push(u8::from(d.failed) | (u8::from(d.rework) << 1));
        }
        out.extend_from_slice(&(o.changes.len() as u32).to_le_bytes());
        for c in &o.changes {
            out.extend_from_slice(&c.origin.to_le_bytes());
            out.extend_from_slice(&c.time.to_le_bytes());
            out.extend_from_slice(&c.lead.to_le_bytes());
        }
        out.extend_from_slice(&(o.incidents.len() as u32).to_le_bytes());
        for i in &o.incidents {
            out.extend_from_slice(&i.origin.to_le_bytes());
            out.extend_from_slice(&i.opened.to_le_bytes());
            put_opt(&mut out, i.acknowledged);
            put_opt(&mut out, i.recovery);
            out.push(u8::from(i.attributed));
        }
        if !unlisted.is_empty() {
            out.extend_from_slice(&(unlisted.len() as u32).to_le_bytes());
            for (i, n) in unlisted {
                out.extend_from_slice(&i.to_le_bytes());
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        out
    }

    /// Why a day blob does not decode.
    #[derive(Debug, thiserror::Error)]
    pub enum BlobError {
        #[error("truncated observation blob")]
        Truncated,
        #[error("observation blob version {0} is not {VERSION}")]
        Version(u8),
        #[error("observation blob count exceeds its length")]
        Count,
        #[error("observation blob names an origin it lacks")]
        Origin,
        #[error("observation blob names a change it lacks")]
        Change,
        #[error("trailing bytes after the observation blob")]
        Trailing,
        #[error("observation blob text is not UTF-8")]
        Text(#[source] std::string::FromUtf8Error),
    }

    struct Reader<'a> {
        b: &'a [u8],
    }

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], BlobError> {
            if self.b.len() < n {
                return Err(BlobError::Truncated);
            }
            let (h, t) = self.b.split_at(n);
            self.b = t;
            Ok(h)
        }
        fn u8(&mut self) -> Result<u8, BlobError> {
            Ok(self.take(1)?[0])
        }
        fn u16(&mut self) -> Result<u16, BlobError> {
            let b = self.take(2)?;
            Ok(u16::from_le_bytes([b[0], b[1]]))
        }
        fn u32(&mut self) -> Result<u32, BlobError> {
            let mut a = [0u8; 4];
            a.copy_from_slice(self.take(4)?);
            Ok(u32::from_le_bytes(a))
        }
        fn i64(&mut self) -> Result<i64, BlobError> {
            let mut a = [0u8; 8];
            a.copy_from_slice(self.take(8)?);
            Ok(i64::from_le_bytes(a))
        }
        fn opt(&mut self) -> Result<Option<i64>, BlobError> {
            Ok(Some(self.i64()?).filter(|&v| v != NONE))
        }
        fn str(&mut self) -> Result<String, BlobError> {
            let n = self.u16()? as usize;
            String::from_utf8(self.take(n)?.to_vec()).map_err(BlobError::Text)
        }
        /// A count, checked against what is left so a corrupt blob cannot ask for a huge allocation.
        fn count(&mut self, min_size: usize) -> Result<usize, BlobError> {
            let n = self.u32()? as usize;
            if n.saturating_mul(min_size) > self.b.len() {
                return Err(BlobError::Count);
            }
            Ok(n)
        }
    }

    /// Decodes a stored day blob for a query: one that cannot be read (written by a faulty release, or
    /// damaged) is logged, counted in the `UndecodableRows` metric and skipped, so that one bad day costs its
    /// own figures and not every query that covers it.
    pub fn decode_stored(bytes: &[u8], service: &str, day: &str) -> Option<Observations> {
        match decode(bytes, service) {
            Ok(o) => Some(o),
            Err(error) => {
                tracing::error!(service, day, %error, "skipping an undecodable day of observations");
                crate::emf::emit(crate::emf::line(
                    crate::time::now_millis(),
                    &[],
                    &[("UndecodableRows", 1.0, crate::emf::Unit::Count)],
                ));
                None
            }
        }
    }

    /// Decodes a blob, naming its origins' service `service`.
    pub fn decode(bytes: &[u8], service: &str) -> Result<Observations, BlobError> {
        let mut r = Reader { b: bytes };
        let v = r.u8()?;
        if v != VERSION && v != VERSION_1 {
            return Err(BlobError::Version(v));
        }
        let mut o = Observations::default();
        for _ in 0..r.count(4)? {
            let repo = r.str()?;
            let environment = r.str()?;
            o.origins.push(Origin {
                service: service.to_string(),
                repo,
                environment,
            });
        }
        let n = o.origins.len() as u32;
        let origin = |r: &mut Reader| -> Result<u32, BlobError> {
            let i = r.u32()?;
            if i >= n {
                return Err(BlobError::Origin);
            }
            Ok(i)
        };
        for _ in 0..r.count(13)? {
            let origin = origin(&mut r)?;
            let time = r.i64()?;
            let flags = r.u8()?;
            o.deployments.push(DeploymentObs {
                origin,
                time,
                failed: flags & 1 != 0,
                rework: flags & 2 != 0,
            });
        }
        for _ in 0..r.count(20)? {
            let origin = origin(&mut r)?;
            let time = r.i64()?;
            let lead = r.i64()?;
            o.changes.push(ChangeObs {
                origin,
                time,
                lead,
                unlisted: 0,
            });
        }
        for _ in 0..r.count(29)? {
            let origin = origin(&mut r)?;
            let opened = r.i64()?;
            let acknowledged = r.opt()?;
            let recovery = r.opt()?;
            let attributed = r.u8()? != 0;
            o.incidents.push(IncidentObs {
                origin,
                opened,
                acknowledged,
                recovery,
                attributed,
            });
        }
        if v == VERSION {
            for _ in 0..r.count(8)? {
                let i = r.u32()? as usize;
                let n = r.u32()?;
                match o.changes.get_mut(i) {
                    Some(c) => c.unlisted = n,
                    None => return Err(BlobError::Change),
                }
            }
        }
        if !r.b.is_empty() {
            return Err(BlobError::Trailing);
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linked() -> Linked {
        Linked {
            deployments: vec![DeploymentRow {
                key: "k".into(),
                repo: "acme/app".into(),
                environment: "production".into(),
                time: DAY + 5,
                sha: "a".into(),
                frontier: None,
                failed: true,
                rework: false,
                rollback: false,
            }],
            changes: vec![ChangeRow {
                sha: "a".into(),
                repo: "acme/app".into(),
                environment: "production".into(),
                deployment_key: "k".into(),
                deployment_time: DAY + 5,
                commit_time: 5,
                unlisted: 0,
            }],
            incidents: vec![
                IncidentRow {
                    id: "1".into(),
                    opened: DAY - 1,
                    acknowledged: Some(DAY + 1),
                    resolved: Some(DAY + 9),
                    attributed_to: Some(Attribution {
                        deployment_key: "k0".into(),
                        repo: "acme/web".into(),
                        environment: "prod".into(),
                    }),
                    outage: None,
                },
                IncidentRow {
                    id: "2".into(),
                    opened: DAY - 1,
                    acknowledged: None,
                    resolved: None,
                    attributed_to: None,
                    outage: None,
                },
            ],
        }
    }

    #[test]
    fn rows_fall_on_their_utc_day_with_their_origin() {
        let days = days_of(&linked());
        assert_eq!(days.keys().copied().collect::<Vec<_>>(), [0, 1]);
        let d0 = &days[&0];
        assert_eq!(d0.incidents.len(), 2);
        let attributed = d0.incidents.iter().find(|i| i.attributed).unwrap();
        assert_eq!(attributed.recovery, Some(10));
        assert_eq!(d0.origins[attributed.origin as usize].repo, "acme/web");
        let d1 = &days[&1];
        assert_eq!(d1.changes[0].lead, DAY);
        assert_eq!(d1.origins.len(), 1, "one origin shared by both rows");
    }

    #[test]
    fn blobs_round_trip_and_reject_damage() {
        for (_, o) in days_of(&linked()) {
            let b = blob::encode(&o);
            let back = blob::decode(&b, "svc").unwrap();
            assert_eq!(back.deployments, o.deployments);
            assert_eq!(back.incidents, o.incidents);
            assert!(back.origins.iter().all(|x| x.service == "svc"));
            assert!(blob::decode(&b[..b.len() - 1], "svc").is_err());
            let mut longer = b.clone();
            longer.push(0);
            assert!(blob::decode(&longer, "svc").is_err());
        }
        assert!(blob::decode(&[9], "s").is_err());
        assert!(blob::decode(&[1, 255, 255, 255, 255], "s").is_err());
    }

    #[test]
    fn unlisted_commits_survive_a_blob_and_leave_other_blobs_as_they_were() {
        let mut l = linked();
        let plain: Vec<Vec<u8>> = days_of(&l)
            .into_values()
            .map(|o| blob::encode(&o))
            .collect();
        assert!(
            plain.iter().all(|b| b[0] == 1),
            "no unlisted commits: version 1"
        );
        l.changes[0].unlisted = 7;
        for (_, o) in days_of(&l) {
            let b = blob::encode(&o);
            let back = blob::decode(&b, "svc").unwrap();
            assert_eq!(back.changes, o.changes);
            if o.changes.iter().any(|c| c.unlisted > 0) {
                assert_eq!(b[0], 2);
                assert_eq!(back.changes[0].unlisted, 7);
                assert!(blob::decode(&b[..b.len() - 1], "svc").is_err());
                // A version 2 blob naming a change it lacks is damage, not a panic.
                let mut bad = b.clone();
                let at = bad.len() - 8;
                bad[at..at + 4].copy_from_slice(&9u32.to_le_bytes());
                assert!(blob::decode(&bad, "svc").is_err());
            }
        }
    }

    #[test]
    fn extend_within_renumbers_origins_and_cuts_at_the_window() {
        let days = days_of(&linked());
        let mut all = Observations::default();
        for (_, o) in days {
            let mut o = o;
            for origin in &mut o.origins {
                origin.service = "s".into();
            }
            all.extend_within(o, 0, DAY + 5);
        }
        assert_eq!(
            all.deployments.len(),
            0,
            "the deployment is at the window's end"
        );
        assert_eq!(all.incidents.len(), 2, "both opened inside it");
        let mut all = Observations::default();
        for (_, o) in days_of(&linked()) {
            all.extend_within(o, -DAY, 2 * DAY);
        }
        assert_eq!(all.origins.len(), 3);
        assert_eq!(all.deployments.len(), 1);
        let d = all.deployments[0];
        assert_eq!(all.origins[d.origin as usize].repo, "acme/app");
    }
    use proptest::prelude::*;

    proptest! {
        /// Whatever text an origin carries, its blob decodes: strings up to 65,535 bytes come back whole,
        /// longer ones cut on a character boundary, never a blob that cannot be read.
        #[test]
        fn any_origin_text_round_trips_or_is_cut(
            repo in proptest::collection::vec(proptest::char::any(), 0..40_000)
                .prop_map(|c| c.into_iter().collect::<String>()),
            environment in "\\PC{0,8}",
        ) {
            let o = Observations {
                origins: vec![Origin { service: "svc".into(), repo: repo.clone(), environment: environment.clone() }],
                ..Observations::default()
            };
            let back = blob::decode(&blob::encode(&o), "svc");
            prop_assert!(back.is_ok(), "{:?}", back.err());
            let back = back.unwrap_or_default();
            let got = &back.origins[0];
            prop_assert_eq!(&got.environment, &environment);
            if repo.len() <= u16::MAX as usize {
                prop_assert_eq!(&got.repo, &repo);
            } else {
                prop_assert!(repo.starts_with(got.repo.as_str()));
                prop_assert!(got.repo.len() > u16::MAX as usize - 4);
            }
        }
    }

    #[test]
    fn a_multibyte_character_across_the_limit_is_cut_before_it() {
        // The defect: 65,534 ASCII bytes then a 3-byte character, cut at byte 65,535 mid-character.
        let repo = format!("{}€", "a".repeat(65_534));
        let o = Observations {
            origins: vec![Origin {
                service: "svc".into(),
                repo,
                environment: "production".into(),
            }],
            ..Observations::default()
        };
        let back = blob::decode(&blob::encode(&o), "svc").unwrap();
        assert_eq!(back.origins[0].repo, "a".repeat(65_534));
        assert_eq!(back.origins[0].environment, "production");
    }

    #[test]
    fn an_undecodable_stored_day_is_skipped() {
        assert!(blob::decode_stored(&[9], "svc", "2025-01-01").is_none());
        let (_, o) = days_of(&linked()).into_iter().next().unwrap();
        let got = blob::decode_stored(&blob::encode(&o), "svc", "2025-01-01").unwrap();
        assert_eq!(got.deployments, o.deployments);
    }
}
