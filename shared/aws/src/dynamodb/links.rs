//! The link state on DynamoDB: the items incremental linking reads, each lookup a `GetItem`, a
//! `BatchGetItem` or a `Query` over a narrow sort-key range, so that a delivery's reads follow what it
//! changes, not the service's history (docs/dynamodb.md).
//!
//! Beside each fact, `put_facts` writes its index items:
//!
//! | item | pk | sk |
//! |---|---|---|
//! | commit | `r#<repo>` | `c#<sha>`: parent, time, message, the push (`pb`, `pa`) that gave the parent |
//! | deployment by time | `r#<repo>` | `t#<time>#<provider>#<deployment id>` (points at the `d#success#` item) |
//! | incident event by incident | `i#<alias>` | `n#<incident id>#<provider>#<event id>` |
//! | incident opening by time | `i#<alias>` | `o#<time>#<provider>#<event id>`: the incident id |
//!
//! and the linked rows of a service live under `m#<service>`:
//!
//! | row | sk |
//! |---|---|
//! | deployment | `D#<time>#<key>`, and `P#<repo>#<time>#<key>`, `S#<sha, 4 chars>#<time>#<key>`, `F#<frontier>#<time>#<key>` when it waits on a commit |
//! | change | `C#<sha>`, and `c#<deployment time>#<sha>` |
//! | incident | `I#<id>`, and `O#<opened>#<id>`, `A#<resolved, or ~>#<id>` when attributed |
//!
//! Times in keys are [`tkey`]s: fixed-width, so that they sort as the instants do.

use std::collections::BTreeSet;

use super::codec::{
    change_row, commit_row, deployment_row, get_n, get_s, incident_row, parse_deployment,
    parse_incident_event,
};
use super::keys::{incident_pk, metric_pk, prefix, repo_pk, tkey};
use super::store::{DynamoStore, Range};
use em_core::domain::{same_sha, Deployment, IncidentEvent, MIN_SHA_LEN};
use em_core::ports::{CommitRow, Links, PortError};
use em_core::rows::{earliest_waiting, DeploymentRow, IncidentRow, Linked};
use em_core::time::Millis;

impl DynamoStore {
    /// A service's rows from `from` on: deployments by time, changes by their deployment's time, incidents
    /// by opening.
    pub(crate) async fn rows_from(&self, service: &str, from: Millis) -> Result<Linked, PortError> {
        self.rows_between(service, from, None).await
    }

    /// A service's rows in `[from, to)` (to the end without `to`): deployments by time, changes by their
    /// deployment's time, incidents by opening.
    pub(crate) async fn rows_between(
        &self,
        service: &str,
        from: Millis,
        to: Option<Millis>,
    ) -> Result<Linked, PortError> {
        let pk = metric_pk(service);
        let t = tkey(from);
        // Sort keys are `<kind>#<time>#...`: `<kind>#<to>` sorts before every item at `to` itself.
        let end = |kind: &str| to.map_or(format!("{kind}#~"), |to| format!("{kind}#{}", tkey(to)));
        let (d, c, i) = tokio::join!(
            self.query_range(&pk, Range::Between(format!("D#{t}"), end("D")), true, None),
            self.query_range(&pk, Range::Between(format!("c#{t}"), end("c")), true, None),
            self.query_range(&pk, Range::Between(format!("O#{t}"), end("O")), true, None),
        );
        Ok(Linked {
            deployments: d?.iter().map(deployment_row).collect::<Result<_, _>>()?,
            changes: c?.iter().map(change_row).collect::<Result<_, _>>()?,
            incidents: i?.iter().map(incident_row).collect::<Result<_, _>>()?,
        })
    }
}

/// Linking's view of the DynamoDB store. Reads are strongly consistent; they are not one snapshot, which
/// the rows' version makes up for: a writer that changed the rows meanwhile makes this re-link's write fail.
pub struct DynamoLinks {
    pub(crate) store: DynamoStore,
}

impl Links for DynamoLinks {
    fn keeps_rows(&self) -> bool {
        true
    }

    async fn commit(&self, repo: &str, sha: &str) -> Result<Option<CommitRow>, PortError> {
        match self
            .store
            .get(repo_pk(repo), &format!("c#{sha}"), true)
            .await?
        {
            Some(item) => Ok(Some(commit_row(&item)?)),
            None => Ok(None),
        }
    }

    async fn commits(&self, repo: &str, shas: &[String]) -> Result<Vec<CommitRow>, PortError> {
        let pk = repo_pk(repo);
        let keys = shas
            .iter()
            .map(|sha| (pk.clone(), format!("c#{sha}")))
            .collect();
        self.store
            .batch_get(keys)
            .await?
            .iter()
            .map(commit_row)
            .collect()
    }

    async fn resolve_prefix(&self, repo: &str, prefix: &str) -> Result<Option<String>, PortError> {
        self.store.full_sha(repo, prefix).await
    }

    async fn deployments_since(
        &self,
        repos: &[String],
        from: Option<Millis>,
    ) -> Result<Vec<Deployment>, PortError> {
        let start = tkey(from.unwrap_or(Millis::MIN));
        let mut keys = Vec::new();
        for repo in repos {
            let pk = repo_pk(repo);
            let entries = self
                .store
                .query_range(
                    &pk,
                    Range::Between(format!("t#{start}"), "t#~".into()),
                    true,
                    None,
                )
                .await?;
            for e in entries {
                let sk = format!(
                    "d#success#{}#{}",
                    get_s(&e, "provider")?,
                    get_s(&e, "deployment_id")?
                );
                keys.push((pk.clone(), sk));
            }
        }
        // The deployment items themselves: a later report's entry is ignored once an earlier one stands.
        let mut out = Vec::new();
        for item in self.store.batch_get(keys).await? {
            let d = parse_deployment(&item)?;
            if from.is_none_or(|f| d.time >= f) {
                out.push(d);
            }
        }
        Ok(out)
    }

    async fn incident_ids_since(
        &self,
        aliases: &[String],
        from: Option<Millis>,
    ) -> Result<Vec<String>, PortError> {
        let start = tkey(from.unwrap_or(Millis::MIN));
        let mut out = BTreeSet::new();
        for alias in aliases {
            for item in self
                .store
                .query_range(
                    &incident_pk(alias),
                    Range::Between(format!("o#{start}"), "o#~".into()),
                    true,
                    None,
                )
                .await?
            {
                out.insert(get_s(&item, "incident_id")?);
            }
        }
        Ok(out.into_iter().collect())
    }

    async fn incident_events(
        &self,
        aliases: &[String],
        ids: &[String],
    ) -> Result<Vec<IncidentEvent>, PortError> {
        let mut tasks = tokio::task::JoinSet::new();
        let mut out = Vec::new();
        for alias in aliases {
            for id in ids {
                if tasks.len() >= 16 {
                    if let Some(r) = tasks.join_next().await {
                        out.extend(r.map_err(PortError::transient)??);
                    }
                }
                let (store, pk, id) = (self.store.clone(), incident_pk(alias), id.clone());
                tasks.spawn(async move {
                    let items = store
                        .query_range(&pk, Range::BeginsWith(format!("n#{id}#")), true, None)
                        .await?;
                    let mut events = Vec::new();
                    for item in &items {
                        let e = parse_incident_event(item)?;
                        // `n#a#` also begins the keys of an incident named `a#b`.
                        if e.incident_id == id {
                            events.push(e);
                        }
                    }
                    Ok::<_, PortError>(events)
                });
            }
        }
        while let Some(r) = tasks.join_next().await {
            out.extend(r.map_err(PortError::transient)??);
        }
        Ok(out)
    }

    async fn deployment_rows_before(
        &self,
        service: &str,
        repo: Option<&str>,
        time: Millis,
        key: &str,
        n: usize,
    ) -> Result<Vec<DeploymentRow>, PortError> {
        // All of the service's deployments by time (`D#`), or one repository's (`P#<repo>#`).
        let prefix = match repo {
            None => "D#".to_string(),
            Some(r) => format!("P#{}#", r.to_lowercase()),
        };
        let items = self
            .store
            .query_range(
                &metric_pk(service),
                Range::Below(format!("{prefix}{}#{key}", tkey(time))),
                false,
                Some(n as i32),
            )
            .await?;
        items
            .iter()
            .take_while(|i| get_s(i, "sk").is_ok_and(|sk| sk.starts_with(&prefix)))
            .map(deployment_row)
            .collect()
    }

    async fn deployed_before(
        &self,
        service: &str,
        repo: &str,
        sha: &str,
        time: Millis,
        key: &str,
    ) -> Result<bool, PortError> {
        if sha.is_empty() {
            return Ok(false);
        }
        // Every row whose sha could be the same commit shares its first characters.
        let bucket = format!("S#{}#", prefix(sha, MIN_SHA_LEN));
        let rows = self
            .store
            .query_range(&metric_pk(service), Range::BeginsWith(bucket), true, None)
            .await?;
        for item in &rows {
            let d = deployment_row(item)?;
            if d.repo.eq_ignore_ascii_case(repo)
                && same_sha(&d.sha, sha)
                && (d.time, d.key.as_str()) < (time, key)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn shipped_at(&self, service: &str, sha: &str) -> Result<Option<Millis>, PortError> {
        match self
            .store
            .get(metric_pk(service), &format!("C#{sha}"), true)
            .await?
        {
            Some(item) => Ok(Some(get_n(&item, "deployment_time")?)),
            None => Ok(None),
        }
    }

    async fn waiting_on(
        &self,
        service: &str,
        shas: &[String],
    ) -> Result<Option<DeploymentRow>, PortError> {
        // One query for every row waiting on a commit not pushed yet (usually none or a few): cheaper than
        // one per pushed commit.
        let waiting = self
            .store
            .query_range(
                &metric_pk(service),
                Range::BeginsWith("F#".into()),
                true,
                None,
            )
            .await?;
        let rows = waiting
            .iter()
            .map(deployment_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(earliest_waiting(rows, shas))
    }

    async fn incident_rows(
        &self,
        service: &str,
        ids: &[String],
    ) -> Result<Vec<IncidentRow>, PortError> {
        let pk = metric_pk(service);
        let keys = ids
            .iter()
            .map(|id| (pk.clone(), format!("I#{id}")))
            .collect();
        self.store
            .batch_get(keys)
            .await?
            .iter()
            .map(incident_row)
            .collect()
    }

    async fn incidents_open_at(
        &self,
        service: &str,
        at: Millis,
    ) -> Result<Vec<IncidentRow>, PortError> {
        // Attributed incidents resolved after `at`, or not at all ("~" sorts after every time).
        let items = self
            .store
            .query_range(
                &metric_pk(service),
                Range::Between(format!("A#{}", tkey(at.saturating_add(1))), "A#~~".into()),
                true,
                None,
            )
            .await?;
        let mut out = Vec::new();
        for item in &items {
            let r = incident_row(item)?;
            if r.opened < at {
                out.push(r);
            }
        }
        Ok(out)
    }
}
