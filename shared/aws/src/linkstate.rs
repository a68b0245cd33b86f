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

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use crate::dynamodb::{
    get_count, get_n, get_s, incident_pk, metric_pk, n, repo_pk, s, until_processed, DynamoStore,
    Item,
};
use crate::sdk_error;
use em_core::domain::{same_sha, Deployment, Fact, IncidentEvent, IncidentEventKind, MIN_SHA_LEN};
use em_core::ports::{CommitRow, Links, PortError};
use em_core::rows::{earliest_waiting, Attribution, ChangeRow, DeploymentRow, IncidentRow, Linked};
use em_core::time::Millis;

/// An instant as a sort key: 20 digits of its distance from `i64::MIN`, so that keys sort as instants do,
/// negative ones included.
pub(crate) fn tkey(t: Millis) -> String {
    format!("{:020}", (i128::from(t) - i128::from(i64::MIN)) as u64)
}

fn prefix(text: &str, n: usize) -> String {
    text.chars().take(n).collect()
}

fn b(v: bool) -> AttributeValue {
    AttributeValue::Bool(v)
}

fn get_b(item: &Item, name: &str) -> bool {
    item.get(name)
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false)
}

fn get_opt_n(item: &Item, name: &str) -> Result<Option<i64>, PortError> {
    item.get(name).map(|_| get_n(item, name)).transpose()
}

fn get_opt_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

// ---- the index items of facts ----

/// A conditional put: the item, and its condition with its values (`None`: unconditional).
pub(crate) type IndexPut = (Item, Option<(&'static str, Item)>);

/// The index items of one fact, written beside it.
pub(crate) fn fact_index(fact: &Fact) -> Vec<IndexPut> {
    let key = |pk: String, sk: String| -> Item {
        HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
    };
    match fact {
        Fact::Push(p) => {
            let mut out = Vec::with_capacity(p.commits.len());
            let mut parent = p.before.as_str();
            for (i, c) in p.commits.iter().enumerate() {
                let mut item = key(repo_pk(&p.repo), format!("c#{}", c.sha));
                item.insert("sha".into(), s(&c.sha));
                item.insert("parent".into(), s(parent));
                // The commits a push did not list sit between `before` and its oldest listed commit.
                if i == 0 && p.unlisted > 0 {
                    item.insert("unlisted".into(), n(i64::from(p.unlisted)));
                }
                item.insert("time".into(), n(c.time));
                item.insert("message".into(), s(&c.message));
                item.insert("pb".into(), s(&p.before));
                item.insert("pa".into(), s(&p.after));
                // The parent the first push (by before, after) gives stands, whatever the arrival order.
                let values = HashMap::from([
                    (":b".to_string(), s(&p.before)),
                    (":a".to_string(), s(&p.after)),
                ]);
                out.push((
                    item,
                    Some((
                        "attribute_not_exists(pk) OR pb > :b OR (pb = :b AND pa > :a)",
                        values,
                    )),
                ));
                parent = c.sha.as_str();
            }
            out
        }
        Fact::Deployment(d) if d.outcome == em_core::domain::DeploymentOutcome::Success => {
            // Every report gets its entry; readers keep only the one the deployment item (the earliest
            // report) agrees with.
            let mut item = key(
                repo_pk(&d.repo),
                format!("t#{}#{}#{}", tkey(d.time), d.provider, d.deployment_id),
            );
            item.insert("provider".into(), s(&d.provider));
            item.insert("deployment_id".into(), s(&d.deployment_id));
            vec![(item, None)]
        }
        Fact::Incident(i) => {
            let mut by_incident = incident_attrs(i);
            by_incident.extend(key(
                incident_pk(&i.service_name),
                format!("n#{}#{}#{}", i.incident_id, i.provider, i.event_id),
            ));
            let mut out = vec![(by_incident, None)];
            if i.kind == IncidentEventKind::Opened {
                let mut opening = key(
                    incident_pk(&i.service_name),
                    format!("o#{}#{}#{}", tkey(i.time), i.provider, i.event_id),
                );
                opening.insert("incident_id".into(), s(&i.incident_id));
                out.push((opening, None));
            }
            out
        }
        Fact::Deployment(_)
        | Fact::PullRequest(_)
        | Fact::Build(_)
        | Fact::WorkItem(_)
        | Fact::QualityReport(_) => Vec::new(),
    }
}

/// The attributes of an incident event (the fact item and its copy by incident).
pub(crate) fn incident_attrs(i: &IncidentEvent) -> Item {
    HashMap::from([
        ("provider".to_string(), s(&i.provider)),
        ("incident_id".to_string(), s(&i.incident_id)),
        ("event_id".to_string(), s(&i.event_id)),
        ("kind".to_string(), s(i.kind.as_str())),
        ("time".to_string(), n(i.time)),
        ("service_name".to_string(), s(&i.service_name)),
        ("title".to_string(), s(&i.title)),
    ])
}

// ---- linked rows as items ----

fn deployment_attrs(d: &DeploymentRow) -> Item {
    let mut item = HashMap::from([
        ("key".to_string(), s(&d.key)),
        ("repo".to_string(), s(&d.repo)),
        ("environment".to_string(), s(&d.environment)),
        ("time".to_string(), n(d.time)),
        ("sha".to_string(), s(&d.sha)),
        ("failed".to_string(), b(d.failed)),
        ("rework".to_string(), b(d.rework)),
    ]);
    if d.rollback {
        item.insert("rollback".into(), b(true));
    }
    if let Some(f) = &d.frontier {
        item.insert("frontier".into(), s(f));
    }
    item
}

fn deployment_row(item: &Item) -> Result<DeploymentRow, PortError> {
    Ok(DeploymentRow {
        key: get_s(item, "key")?,
        repo: get_s(item, "repo")?,
        environment: get_s(item, "environment")?,
        time: get_n(item, "time")?,
        sha: get_s(item, "sha")?,
        frontier: get_opt_s(item, "frontier"),
        failed: get_b(item, "failed"),
        rework: get_b(item, "rework"),
        rollback: get_b(item, "rollback"),
    })
}

fn change_attrs(x: &ChangeRow) -> Item {
    let mut item = HashMap::from([
        ("sha".to_string(), s(&x.sha)),
        ("repo".to_string(), s(&x.repo)),
        ("environment".to_string(), s(&x.environment)),
        ("deployment_key".to_string(), s(&x.deployment_key)),
        ("deployment_time".to_string(), n(x.deployment_time)),
        ("commit_time".to_string(), n(x.commit_time)),
    ]);
    if x.unlisted > 0 {
        item.insert("unlisted".to_string(), n(i64::from(x.unlisted)));
    }
    item
}

fn change_row(item: &Item) -> Result<ChangeRow, PortError> {
    Ok(ChangeRow {
        sha: get_s(item, "sha")?,
        repo: get_s(item, "repo")?,
        environment: get_s(item, "environment")?,
        deployment_key: get_s(item, "deployment_key")?,
        deployment_time: get_n(item, "deployment_time")?,
        commit_time: get_n(item, "commit_time")?,
        unlisted: get_count(item, "unlisted"),
    })
}

fn incident_row_attrs(i: &IncidentRow) -> Item {
    let mut item = HashMap::from([
        ("id".to_string(), s(&i.id)),
        ("opened".to_string(), n(i.opened)),
    ]);
    if let Some(t) = i.acknowledged {
        item.insert("acknowledged".into(), n(t));
    }
    if let Some(t) = i.resolved {
        item.insert("resolved".into(), n(t));
    }
    if let Some(a) = &i.attributed_to {
        item.insert("attributed_key".into(), s(&a.deployment_key));
        item.insert("attributed_repo".into(), s(&a.repo));
        item.insert("attributed_environment".into(), s(&a.environment));
    }
    item
}

fn incident_row(item: &Item) -> Result<IncidentRow, PortError> {
    Ok(IncidentRow {
        id: get_s(item, "id")?,
        opened: get_n(item, "opened")?,
        acknowledged: get_opt_n(item, "acknowledged")?,
        resolved: get_opt_n(item, "resolved")?,
        attributed_to: get_opt_s(item, "attributed_key").map(|deployment_key| Attribution {
            deployment_key,
            repo: get_opt_s(item, "attributed_repo").unwrap_or_default(),
            environment: get_opt_s(item, "attributed_environment").unwrap_or_default(),
        }),
    })
}

/// Every item of a service's rows, by sort key (each row's item and its index items).
pub(crate) fn row_items(service: &str, rows: &Linked) -> BTreeMap<String, Item> {
    let mut out = BTreeMap::new();
    let pk = metric_pk(service);
    let mut add = |sk: String, attrs: &Item| {
        let mut item = attrs.clone();
        item.insert("pk".into(), s(&pk));
        item.insert("sk".into(), s(&sk));
        out.insert(sk, item);
    };
    for d in &rows.deployments {
        let attrs = deployment_attrs(d);
        let at = format!("{}#{}", tkey(d.time), d.key);
        add(format!("D#{at}"), &attrs);
        add(format!("P#{}#{at}", d.repo.to_lowercase()), &attrs);
        // Shas that can name the same commit share their first characters (a shorter one is only ever
        // equal to itself).
        if !d.sha.is_empty() {
            add(format!("S#{}#{at}", prefix(&d.sha, MIN_SHA_LEN)), &attrs);
        }
        if let Some(f) = &d.frontier {
            add(format!("F#{f}#{at}"), &attrs);
        }
    }
    for x in &rows.changes {
        let attrs = change_attrs(x);
        add(format!("C#{}", x.sha), &attrs);
        add(format!("c#{}#{}", tkey(x.deployment_time), x.sha), &attrs);
    }
    for i in &rows.incidents {
        let attrs = incident_row_attrs(i);
        add(format!("I#{}", i.id), &attrs);
        add(format!("O#{}#{}", tkey(i.opened), i.id), &attrs);
        if i.attributed_to.is_some() {
            let resolved = i.resolved.map_or_else(|| "~".to_string(), tkey);
            add(format!("A#{resolved}#{}", i.id), &attrs);
        }
    }
    out
}

/// A sort-key condition of a query.
pub(crate) enum Range {
    Between(String, String),
    BeginsWith(String),
    Below(String),
}

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

    /// The items of a sort-key range, strongly consistent; up to `limit` of them (all, across pages, when
    /// `None`), in sort-key order or reversed.
    pub(crate) async fn query_range(
        &self,
        pk: &str,
        range: Range,
        forward: bool,
        limit: Option<i32>,
    ) -> Result<Vec<Item>, PortError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client()
                .query()
                .table_name(self.table())
                .consistent_read(true)
                .scan_index_forward(forward)
                .set_limit(limit)
                .expression_attribute_values(":pk", s(pk))
                .set_exclusive_start_key(start.take());
            q = match &range {
                Range::Between(a, z) => q
                    .key_condition_expression("pk = :pk AND sk BETWEEN :a AND :z")
                    .expression_attribute_values(":a", s(a))
                    .expression_attribute_values(":z", s(z)),
                Range::BeginsWith(p) => q
                    .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                    .expression_attribute_values(":p", s(p)),
                Range::Below(u) => q
                    .key_condition_expression("pk = :pk AND sk < :u")
                    .expression_attribute_values(":u", s(u)),
            };
            let out = q.send().await.map_err(|e| sdk_error("dynamodb query", e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() && limit.is_none() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    /// The items of `keys` that exist, strongly consistent, 100 keys per request.
    pub(crate) async fn batch_get(
        &self,
        keys: Vec<(String, String)>,
    ) -> Result<Vec<Item>, PortError> {
        let keys: BTreeSet<(String, String)> = keys.into_iter().collect();
        let keys: Vec<(String, String)> = keys.into_iter().collect();
        let (client, table) = (self.client(), self.table());
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            let pending: Vec<Item> = chunk
                .iter()
                .map(|(pk, sk)| {
                    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
                })
                .collect();
            let got = until_processed("reads", pending, |pending| async move {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(true)
                    .build()
                    .map_err(PortError::invalid)?;
                let got = client
                    .batch_get_item()
                    .request_items(table, request)
                    .send()
                    .await
                    .map_err(|e| sdk_error("dynamodb batch get", e))?;
                let items = got
                    .responses
                    .and_then(|mut r| r.remove(table))
                    .unwrap_or_default();
                let left = got
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                Ok((items, left))
            })
            .await?;
            out.extend(got);
        }
        Ok(out)
    }
}

fn commit_row(item: &Item) -> Result<CommitRow, PortError> {
    Ok(CommitRow {
        sha: get_s(item, "sha")?,
        parent: get_s(item, "parent")?,
        time: get_n(item, "time")?,
        message: get_s(item, "message")?,
        unlisted: get_count(item, "unlisted"),
    })
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
            let d = DynamoStore::parse_deployment(&item)?;
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
                        let e = DynamoStore::parse_incident_event(item)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_as_instants() {
        let times = [i64::MIN, -86_400_000, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        let keys: Vec<String> = times.iter().map(|t| tkey(*t)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert!(keys.iter().all(|k| k.len() == 20));
    }

    #[test]
    fn rows_read_back_from_their_items() {
        let rows = Linked {
            deployments: vec![DeploymentRow {
                key: "gh/acme/shop/1".into(),
                repo: "acme/shop".into(),
                environment: "production".into(),
                time: 5,
                sha: "abcdef0".into(),
                frontier: Some("0123456789".into()),
                failed: true,
                rework: false,
                rollback: false,
            }],
            changes: vec![ChangeRow {
                sha: "abcdef0".into(),
                repo: "acme/shop".into(),
                environment: "production".into(),
                deployment_key: "gh/acme/shop/1".into(),
                deployment_time: 5,
                commit_time: -3,
                unlisted: 0,
            }],
            incidents: vec![IncidentRow {
                id: "P1".into(),
                opened: 7,
                acknowledged: None,
                resolved: Some(9),
                attributed_to: Some(Attribution {
                    deployment_key: "gh/acme/shop/1".into(),
                    repo: "acme/shop".into(),
                    environment: "production".into(),
                }),
            }],
        };
        let items = row_items("shop", &rows);
        let keys: Vec<&str> = items.keys().map(String::as_str).collect();
        let t = |x: i64| tkey(x);
        assert_eq!(
            keys,
            [
                format!("A#{}#P1", t(9)),
                "C#abcdef0".to_string(),
                format!("D#{}#gh/acme/shop/1", t(5)),
                format!("F#0123456789#{}#gh/acme/shop/1", t(5)),
                "I#P1".to_string(),
                format!("O#{}#P1", t(7)),
                format!("P#acme/shop#{}#gh/acme/shop/1", t(5)),
                format!("S#abcd#{}#gh/acme/shop/1", t(5)),
                format!("c#{}#abcdef0", t(5)),
            ]
        );
        let d = deployment_row(&items[&format!("D#{}#gh/acme/shop/1", t(5))]).unwrap();
        assert_eq!(d, rows.deployments[0]);
        let c = change_row(&items["C#abcdef0"]).unwrap();
        assert_eq!(c, rows.changes[0]);
        let i = incident_row(&items["I#P1"]).unwrap();
        assert_eq!(i, rows.incidents[0]);
    }
}
