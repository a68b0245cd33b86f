//! Facts and link state in memory: how a store without link state (DynamoDB, for now) re-links a service
//! whole from its loaded facts, and what the tests re-link against to check the stores and the rules.

use std::collections::{BTreeMap, HashMap};

use em_core::domain::{Deployment, DeploymentOutcome, Fact, IncidentEvent, IncidentEventKind};
use em_core::ports::{CommitRow, Cut, Links, PortError, StoredFacts};
use em_core::rows::{DeploymentRow, IncidentRow, Linked};
use em_core::time::Millis;

use em_core::domain::same_sha;

/// Facts as the stores keep them (idempotent, earliest deployment report standing) and, when
/// `keeps_rows`, each service's linked rows.
#[derive(Debug, Clone, Default)]
pub struct MemoryLinks {
    /// (repo in lower case, sha) → ((before, after) of the push that gave the parent, commit).
    commits: BTreeMap<(String, String), ((String, String), CommitRow)>,
    deployments: BTreeMap<(String, String, String), Deployment>,
    incident_events: BTreeMap<(String, String), IncidentEvent>,
    rows: HashMap<String, Linked>,
    keeps_rows: bool,
}

impl MemoryLinks {
    /// Without link state: every re-link is a whole one.
    pub fn whole() -> Self {
        MemoryLinks::default()
    }

    /// With link state: re-links start at a cut.
    pub fn incremental() -> Self {
        MemoryLinks {
            keeps_rows: true,
            ..Default::default()
        }
    }

    pub fn from_stored(facts: StoredFacts) -> Self {
        let mut m = MemoryLinks::whole();
        m.put(
            facts
                .pushes
                .into_iter()
                .map(Fact::Push)
                .chain(facts.deployments.into_iter().map(Fact::Deployment))
                .chain(facts.incident_events.into_iter().map(Fact::Incident)),
        );
        m
    }

    pub fn put(&mut self, facts: impl IntoIterator<Item = Fact>) {
        for f in facts {
            match f {
                Fact::Push(p) => {
                    let key = (p.before.clone(), p.after.clone());
                    let mut parent = p.before.clone();
                    let mut unlisted = p.unlisted;
                    for c in p.commits {
                        let at = (p.repo.to_lowercase(), c.sha.clone());
                        let row = CommitRow {
                            sha: c.sha.clone(),
                            parent: std::mem::replace(&mut parent, c.sha),
                            time: c.time,
                            message: c.message,
                            // The oldest listed commit carries the push's unlisted ones.
                            unlisted: std::mem::take(&mut unlisted),
                        };
                        match self.commits.get(&at) {
                            Some((k, _)) if *k <= key => {}
                            _ => {
                                self.commits.insert(at, (key.clone(), row));
                            }
                        }
                    }
                }
                Fact::Deployment(d) => {
                    if d.outcome != DeploymentOutcome::Success {
                        continue;
                    }
                    let at = (
                        d.provider.clone(),
                        d.repo.to_lowercase(),
                        d.deployment_id.clone(),
                    );
                    match self.deployments.get(&at) {
                        Some(old) if old.time <= d.time => {}
                        _ => {
                            self.deployments.insert(at, d);
                        }
                    }
                }
                Fact::Incident(i) => {
                    self.incident_events
                        .entry((i.provider.clone(), i.event_id.clone()))
                        .or_insert(i);
                }
                Fact::PullRequest(_)
                | Fact::Build(_)
                | Fact::WorkItem(_)
                | Fact::QualityReport(_) => {}
            }
        }
    }

    /// Replaces a service's rows at or after `cut`, as a store does.
    pub fn replace_rows(&mut self, service: &str, cut: Cut, rows: Linked) {
        let old = self.rows.remove(service).unwrap_or_default();
        let keep = |t: Millis| cut.from().is_some_and(|f| t < f);
        let mut merged = Linked {
            deployments: old
                .deployments
                .into_iter()
                .filter(|d| keep(d.time))
                .collect(),
            changes: old
                .changes
                .into_iter()
                .filter(|c| keep(c.deployment_time))
                .collect(),
            incidents: old
                .incidents
                .into_iter()
                .filter(|i| keep(i.opened))
                .collect(),
        };
        merged.deployments.extend(rows.deployments);
        merged.changes.extend(rows.changes);
        merged.incidents.extend(rows.incidents);
        self.rows.insert(service.to_string(), merged.sorted());
    }

    pub fn rows(&self, service: &str) -> Linked {
        self.rows.get(service).cloned().unwrap_or_default()
    }

    fn service_rows(&self, service: &str) -> Option<&Linked> {
        if self.keeps_rows {
            self.rows.get(service)
        } else {
            None
        }
    }
}

fn owns(list: &[String], repo: &str) -> bool {
    list.iter().any(|r| r.eq_ignore_ascii_case(repo))
}

impl Links for MemoryLinks {
    fn keeps_rows(&self) -> bool {
        self.keeps_rows
    }

    async fn commit(&self, repo: &str, sha: &str) -> Result<Option<CommitRow>, PortError> {
        Ok(self
            .commits
            .get(&(repo.to_lowercase(), sha.to_string()))
            .map(|(_, c)| c.clone()))
    }

    async fn resolve_prefix(&self, repo: &str, prefix: &str) -> Result<Option<String>, PortError> {
        let repo = repo.to_lowercase();
        let mut hits = self
            .commits
            .range((repo.clone(), prefix.to_string())..)
            .take_while(|((r, s), _)| *r == repo && s.starts_with(prefix))
            .map(|((_, s), _)| s.clone());
        Ok(match (hits.next(), hits.next()) {
            (Some(s), None) => Some(s),
            _ => None,
        })
    }

    async fn deployments_since(
        &self,
        repos: &[String],
        from: Option<Millis>,
    ) -> Result<Vec<Deployment>, PortError> {
        Ok(self
            .deployments
            .values()
            .filter(|d| owns(repos, &d.repo) && from.is_none_or(|f| d.time >= f))
            .cloned()
            .collect())
    }

    async fn incident_ids_since(
        &self,
        aliases: &[String],
        from: Option<Millis>,
    ) -> Result<Vec<String>, PortError> {
        let mut ids: Vec<String> = self
            .incident_events
            .values()
            .filter(|e| {
                aliases.contains(&e.service_name)
                    && e.kind == IncidentEventKind::Opened
                    && from.is_none_or(|f| e.time >= f)
            })
            .map(|e| e.incident_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn incident_events(
        &self,
        aliases: &[String],
        ids: &[String],
    ) -> Result<Vec<IncidentEvent>, PortError> {
        Ok(self
            .incident_events
            .values()
            .filter(|e| aliases.contains(&e.service_name) && ids.contains(&e.incident_id))
            .cloned()
            .collect())
    }

    async fn deployment_rows_before(
        &self,
        service: &str,
        repo: Option<&str>,
        time: Millis,
        key: &str,
        n: usize,
    ) -> Result<Vec<DeploymentRow>, PortError> {
        let Some(rows) = self.service_rows(service) else {
            return Ok(Vec::new());
        };
        Ok(rows
            .deployments
            .iter()
            .rev()
            .filter(|d| repo.is_none_or(|r| d.repo.eq_ignore_ascii_case(r)))
            .filter(|d| (d.time, d.key.as_str()) < (time, key))
            .take(n)
            .cloned()
            .collect())
    }

    async fn deployed_before(
        &self,
        service: &str,
        repo: &str,
        sha: &str,
        time: Millis,
        key: &str,
    ) -> Result<bool, PortError> {
        Ok(self.service_rows(service).is_some_and(|rows| {
            rows.deployments.iter().any(|d| {
                d.repo.eq_ignore_ascii_case(repo)
                    && (d.time, d.key.as_str()) < (time, key)
                    && same_sha(&d.sha, sha)
            })
        }))
    }

    async fn shipped_at(&self, service: &str, sha: &str) -> Result<Option<Millis>, PortError> {
        Ok(self.service_rows(service).and_then(|rows| {
            rows.changes
                .iter()
                .find(|c| c.sha == sha)
                .map(|c| c.deployment_time)
        }))
    }

    async fn waiting_on(
        &self,
        service: &str,
        shas: &[String],
    ) -> Result<Option<DeploymentRow>, PortError> {
        Ok(self
            .service_rows(service)
            .and_then(|rows| rows.deployments.iter().find(|d| d.waits_on(shas)).cloned()))
    }

    async fn incident_rows(
        &self,
        service: &str,
        ids: &[String],
    ) -> Result<Vec<IncidentRow>, PortError> {
        Ok(self
            .service_rows(service)
            .map(|rows| {
                rows.incidents
                    .iter()
                    .filter(|i| ids.contains(&i.id))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn incidents_open_at(
        &self,
        service: &str,
        at: Millis,
    ) -> Result<Vec<IncidentRow>, PortError> {
        Ok(self
            .service_rows(service)
            .map(|rows| {
                rows.incidents
                    .iter()
                    .filter(|i| {
                        i.attributed_to.is_some()
                            && i.opened < at
                            && i.resolved.is_none_or(|r| r > at)
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }
}
