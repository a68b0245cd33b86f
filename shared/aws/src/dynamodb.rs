//! The store on one DynamoDB table (`pk`, `sk`, both strings). Layout, access patterns and request counts
//! are in docs/dynamodb.md; in short:
//!
//! | item | pk | sk |
//! |---|---|---|
//! | push | `r#<repo, lower case>` | `p#<before>#<after>` |
//! | deployment | `r#<repo, lower case>` | `d#<outcome>#<provider>#<deployment id>` |
//! | pull request event | `r#<repo, lower case>` | `q#<provider>#<number>#<kind>` |
//! | incident event | `i#<incident service>` | `e#<provider>#<event id>` |
//! | fact source | `src` | `r#<repo>` / `i#<incident service>` |
//! | service registry | `svc` | `<service>` |
//! | metric head | `m#<service>` | `#head`: version, generation, links, a writer's mark |
//! | linked rows | `m#<service>` | `D#`, `S#`, `F#`, `C#`, `c#`, `I#`, `O#`, `A#` (see [`crate::linkstate`]) |
//! | metric day | `m#<service>` | `d#<generation>#<yyyy-mm-dd>#<part>`: that day's rows |
//! | metadata | `meta` | `<key>` |
//!
//! A DORA query reads each service's head and then the day items of the window: reads grow with the days,
//! not with the events in them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use chrono::{DateTime, Utc};
use tokio::task::JoinSet;

use crate::linkstate::{fact_index, incident_attrs, row_items, DynamoLinks, IndexPut};
use crate::sdk_error;
use em_core::domain::{
    Build, BuildOutcome, Commit, Deployment, DeploymentOutcome, Fact, IncidentEvent,
    IncidentEventKind, PullRequestEvent, PullRequestEventKind, Push, QualityReport, WorkItem,
    WorkItemAction,
};
use em_core::ports::{
    Cut, DeliveryFacts, FactSources, MetricsReader, PortError, RowsState, Store, StoredFacts,
};
use em_core::rows::{blob, Linked, Observations, DAY};
use em_core::time::{now_millis, Millis};

pub(crate) type Item = HashMap<String, AttributeValue>;

const HEAD: &str = "#head";
const DAYS: &str = "#days";
pub(crate) const SOURCES: &str = "src";
const SERVICES: &str = "svc";
const META: &str = "meta";
/// Observations per day item: at most 29 bytes each keeps an item well under DynamoDB's 400 KB.
const ROWS_PER_PART: usize = 8_000;
/// Concurrent writes of one batch's facts.
const WRITE_CONCURRENCY: usize = 16;
/// Services whose observations one query reads at once.
const READ_CONCURRENCY: usize = 16;

/// The most fact sources a process remembers having registered.
const SOURCES_SEEN_MAX: usize = 10_000;

#[derive(Clone)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// Fact sources this process has registered: each is written once per process, not once per fact.
    sources_seen: Arc<std::sync::Mutex<HashSet<String>>>,
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A push's commits as JSON texts, each well under DynamoDB's 400 KB item size: a push of 2,048 commits
/// with long messages is several megabytes.
const PUSH_PART_BYTES: usize = 256 * 1024;

pub(crate) fn push_parts(commits: &[Commit]) -> Result<Vec<String>, PortError> {
    let mut parts = Vec::new();
    let mut part: Vec<String> = Vec::new();
    let mut size = 2;
    for c in commits {
        let json = serde_json::to_string(c).map_err(PortError::invalid)?;
        if !part.is_empty() && size + json.len() + 1 > PUSH_PART_BYTES {
            parts.push(format!("[{}]", part.join(",")));
            part.clear();
            size = 2;
        }
        size += json.len() + 1;
        part.push(json);
    }
    parts.push(format!("[{}]", part.join(",")));
    Ok(parts)
}

/// The sort key of part `k` (1, 2, ...) of push `before..after`: `pp#` sorts apart from the heads (`p#`),
/// and the number's width keeps the parts in order.
pub(crate) fn push_part_sk(before: &str, after: &str, k: usize) -> String {
    format!("pp#{before}#{after}#{k:05}")
}

pub(crate) fn get_s(item: &Item, name: &str) -> Result<String, PortError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| PortError::invalid(format!("item without string {name}")))
}

/// A count kept only when not zero: absent (or not a count) is zero.
pub(crate) fn get_count(item: &Item, name: &str) -> u32 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn get_n(item: &Item, name: &str) -> Result<i64, PortError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| PortError::invalid(format!("item without number {name}")))
}

/// Sends `pending` with `call` until DynamoDB has processed all of it (a batch request may leave some
/// unprocessed under load), pausing 25 ms doubling between attempts, at most 10 of them. `call` answers
/// what it got back (items read) and what DynamoDB left unprocessed.
pub(crate) async fn until_processed<T, R, F, Fut>(
    what: &str,
    mut pending: Vec<T>,
    mut call: F,
) -> Result<Vec<R>, PortError>
where
    F: FnMut(Vec<T>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<R>, Vec<T>), PortError>>,
{
    let mut out = Vec::new();
    for attempt in 0..10u32 {
        let (got, left) = call(pending).await?;
        out.extend(got);
        pending = left;
        if pending.is_empty() {
            return Ok(out);
        }
        tokio::time::sleep(std::time::Duration::from_millis(25 << attempt.min(6))).await;
    }
    Err(PortError::transient(format!(
        "dynamodb left {} {what} unprocessed",
        pending.len()
    )))
}

/// A deployment report's attributes added to `item` (its key).
pub(crate) fn deployment_item(mut item: Item, d: &Deployment) -> Item {
    item.insert("provider".into(), s(&d.provider));
    item.insert("repo".into(), s(&d.repo));
    item.insert("deployment_id".into(), s(&d.deployment_id));
    item.insert("environment".into(), s(&d.environment));
    item.insert("sha".into(), s(&d.sha));
    item.insert("time".into(), n(d.time));
    item.insert("outcome".into(), s(d.outcome.as_str()));
    if let Some(p) = d.production {
        item.insert("production".into(), AttributeValue::Bool(p));
    }
    if d.rollback {
        item.insert("rollback".into(), AttributeValue::Bool(true));
    }
    if d.rework {
        item.insert("rework".into(), AttributeValue::Bool(true));
    }
    item
}

/// A build's attributes added to `item` (its key).
pub(crate) fn build_item(mut item: Item, b: &Build) -> Item {
    item.insert("provider".into(), s(&b.provider));
    item.insert("repo".into(), s(&b.repo));
    item.insert("run_id".into(), s(&b.run_id));
    item.insert("attempt".into(), n(i64::from(b.attempt)));
    item.insert("name".into(), s(&b.name));
    item.insert("sha".into(), s(&b.sha));
    item.insert("branch".into(), s(&b.branch));
    item.insert("outcome".into(), s(b.outcome.as_str()));
    item.insert("finished".into(), n(b.finished));
    if let Some(t) = b.started {
        item.insert("started".into(), n(t));
    }
    item
}

/// A pull request event's attributes added to `item` (its key).
pub(crate) fn pull_request_item(mut item: Item, p: &PullRequestEvent) -> Item {
    item.insert("provider".into(), s(&p.provider));
    item.insert("repo".into(), s(&p.repo));
    item.insert("number".into(), n(p.number as i64));
    item.insert("kind".into(), s(p.kind.as_str()));
    item.insert("time".into(), n(p.time));
    item.insert("title".into(), s(&p.title));
    if let Some(sha) = &p.sha {
        item.insert("sha".into(), s(sha));
    }
    item
}

pub(crate) fn repo_pk(repo: &str) -> String {
    format!("r#{}", repo.to_lowercase())
}

pub(crate) fn incident_pk(service_name: &str) -> String {
    format!("i#{service_name}")
}

pub(crate) fn metric_pk(service: &str) -> String {
    format!("m#{service}")
}

pub(crate) fn is_conditional_failure<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

/// The UTC day of an instant, as the sort key writes it.
fn day_text(t: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(t)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "0000-00-00".into())
}

/// A service's rows as observation blobs by day, each day split into parts that fit in an item.
fn days_of(linked: &Linked) -> BTreeMap<String, Vec<Vec<u8>>> {
    em_core::rows::days_of(linked)
        .into_iter()
        .map(|(day, obs)| (day_text(day * em_core::rows::DAY), split(obs)))
        .collect()
}

fn split(obs: Observations) -> Vec<Vec<u8>> {
    let total = obs.deployments.len() + obs.changes.len() + obs.incidents.len();
    if total <= ROWS_PER_PART {
        return vec![blob::encode(&obs)];
    }
    let mut parts = Vec::new();
    let empty = || Observations {
        origins: obs.origins.clone(),
        ..Default::default()
    };
    let mut part = empty();
    let full = |p: &Observations| {
        p.deployments.len() + p.changes.len() + p.incidents.len() >= ROWS_PER_PART
    };
    for d in &obs.deployments {
        part.deployments.push(*d);
        if full(&part) {
            parts.push(blob::encode(&std::mem::replace(&mut part, empty())));
        }
    }
    for c in &obs.changes {
        part.changes.push(*c);
        if full(&part) {
            parts.push(blob::encode(&std::mem::replace(&mut part, empty())));
        }
    }
    for i in &obs.incidents {
        part.incidents.push(*i);
        if full(&part) {
            parts.push(blob::encode(&std::mem::replace(&mut part, empty())));
        }
    }
    if part.deployments.len() + part.changes.len() + part.incidents.len() > 0 {
        parts.push(blob::encode(&part));
    }
    parts
}

/// The part count a legacy day digest (`parts:hash`) gives.
fn part_count(digest: &str) -> usize {
    digest
        .split(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

fn day_sk(generation: &str, day: &str, part: usize) -> String {
    format!("d#{generation}#{day}#{part:02}")
}

/// What a replacement changes: row items (put, or deleted when `None`) and the day observations before and
/// after.
struct Changes {
    rows: Vec<(String, Option<Item>)>,
    old_days: BTreeMap<String, Vec<Vec<u8>>>,
    new_days: BTreeMap<String, Vec<Vec<u8>>>,
    /// Day items may not match the rows (a dead writer's): write every day.
    takeover: bool,
}

impl Changes {
    /// The day items to put or delete in generation `g`: those of days whose observations changed.
    fn day_ops(&self, service: &str, g: &str, store: &DynamoStore) -> Vec<(String, Option<Item>)> {
        let days: BTreeSet<&String> = self.old_days.keys().chain(self.new_days.keys()).collect();
        let mut out = Vec::new();
        for day in days {
            let (old, new) = (self.old_days.get(day), self.new_days.get(day));
            if old == new && !self.takeover {
                continue;
            }
            let new = new.map_or(&[][..], Vec::as_slice);
            for (i, rows) in new.iter().enumerate() {
                out.push((
                    day_sk(g, day, i),
                    Some(store.day_item(service, g, day, i, rows)),
                ));
            }
            for i in new.len()..old.map_or(0, Vec::len) {
                out.push((day_sk(g, day, i), None));
            }
        }
        out
    }

    fn old_day_keys(&self, g: &str) -> Vec<String> {
        self.old_days
            .iter()
            .flat_map(|(day, parts)| (0..parts.len()).map(move |i| day_sk(g, day, i)))
            .collect()
    }
}

struct Head {
    version: u64,
    generation: String,
    /// Whether the service's linked rows are stored (absent from rows written before link state was kept).
    links: bool,
    /// A writer's mark while it writes more than one transaction holds.
    busy: Option<Busy>,
}

struct Busy {
    at: Millis,
    /// Rows from here on may be half-written if the writer died.
    from: Cut,
}

/// A writer's mark older than this belongs to a writer that died (functions time out well before).
const BUSY_STALE_MS: Millis = 120_000;
/// A large write that takes longer gives up (and releases its mark) rather than risk outliving it.
const LARGE_WRITE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

impl DynamoStore {
    pub fn new(sdk: &SdkConfig, table: impl Into<String>) -> Self {
        DynamoStore {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table: table.into(),
            sources_seen: Arc::default(),
        }
    }

    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn key(&self, pk: impl Into<String>, sk: impl Into<String>) -> Item {
        HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
    }

    /// Every item of a partition (or of a sort-key range of it), across pages.
    async fn query_all(
        &self,
        pk: String,
        between: Option<(String, String)>,
        consistent: bool,
    ) -> Result<Vec<Item>, PortError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(consistent)
                .expression_attribute_values(":pk", s(pk.clone()))
                .set_exclusive_start_key(start.take());
            q = match &between {
                Some((a, b)) => q
                    .key_condition_expression("pk = :pk AND sk BETWEEN :a AND :b")
                    .expression_attribute_values(":a", s(a.clone()))
                    .expression_attribute_values(":b", s(b.clone())),
                None => q.key_condition_expression("pk = :pk"),
            };
            let out = q.send().await.map_err(|e| sdk_error("dynamodb query", e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    pub(crate) async fn get(
        &self,
        pk: String,
        sk: &str,
        consistent: bool,
    ) -> Result<Option<Item>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key(pk, sk)))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| sdk_error("dynamodb get", e))?;
        Ok(out.item)
    }

    async fn head(&self, service: &str) -> Result<Option<Head>, PortError> {
        Ok(match self.get(metric_pk(service), HEAD, true).await? {
            Some(item) => Some(Head {
                version: get_n(&item, "version")? as u64,
                generation: get_s(&item, "generation")?,
                links: item
                    .get("links")
                    .and_then(|v| v.as_bool().ok())
                    .copied()
                    .unwrap_or(false),
                busy: match item.get("busy") {
                    Some(_) => Some(Busy {
                        at: get_n(&item, "busy_at")?,
                        from: match item.get("busy_from") {
                            Some(_) => Cut::From(get_n(&item, "busy_from")?),
                            None => Cut::All,
                        },
                    }),
                    None => None,
                },
            }),
            None => None,
        })
    }

    async fn day_digests(&self, service: &str) -> Result<BTreeMap<String, String>, PortError> {
        let Some(item) = self.get(metric_pk(service), DAYS, true).await? else {
            return Ok(BTreeMap::new());
        };
        Ok(item
            .get("days")
            .and_then(|v| v.as_m().ok())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_s().ok()?.clone())))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Writes or deletes items 25 at a time, resubmitting what DynamoDB leaves unprocessed.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), PortError> {
        let (client, table) = (&self.client, &self.table);
        for chunk in requests.chunks(25) {
            until_processed::<_, (), _, _>("writes", chunk.to_vec(), |pending| async move {
                let out = client
                    .batch_write_item()
                    .request_items(table, pending)
                    .send()
                    .await
                    .map_err(|e| sdk_error("dynamodb batch write", e))?;
                let left = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(table))
                    .unwrap_or_default();
                Ok((Vec::new(), left))
            })
            .await?;
        }
        Ok(())
    }

    fn put_request(item: Item) -> Result<WriteRequest, PortError> {
        Ok(WriteRequest::builder()
            .put_request(
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(PortError::invalid)?,
            )
            .build())
    }

    fn delete_request(&self, pk: String, sk: String) -> Result<WriteRequest, PortError> {
        Ok(WriteRequest::builder()
            .delete_request(
                DeleteRequest::builder()
                    .set_key(Some(self.key(pk, sk)))
                    .build()
                    .map_err(PortError::invalid)?,
            )
            .build())
    }

    fn day_item(
        &self,
        service: &str,
        generation: &str,
        day: &str,
        part: usize,
        rows: &[u8],
    ) -> Item {
        let mut item = self.key(metric_pk(service), day_sk(generation, day, part));
        item.insert(
            "rows".into(),
            AttributeValue::B(aws_smithy_types::Blob::new(rows.to_vec())),
        );
        item
    }

    /// The keys of every day item a digest map describes.
    fn day_keys(generation: &str, digests: &BTreeMap<String, String>) -> Vec<String> {
        digests
            .iter()
            .flat_map(|(day, d)| (0..part_count(d)).map(move |p| day_sk(generation, day, p)))
            .collect()
    }

    async fn delete_keys(&self, pk: &str, sks: Vec<String>) -> Result<(), PortError> {
        let requests = sks
            .into_iter()
            .map(|sk| self.delete_request(pk.to_string(), sk))
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_write(requests).await
    }

    /// The conditional write of one fact: a fact already stored stands (the earliest report, for
    /// deployments and pull request events), so writing it again changes nothing.
    fn fact_puts(
        &self,
        fact: &Fact,
    ) -> Result<Vec<aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder>, PortError>
    {
        let put = self.client.put_item().table_name(&self.table);
        Ok(vec![match fact {
            Fact::Push(p) => {
                let parts = push_parts(&p.commits)?;
                let mut item = self.key(repo_pk(&p.repo), format!("p#{}#{}", p.before, p.after));
                if p.unlisted > 0 {
                    item.insert("unlisted".into(), n(i64::from(p.unlisted)));
                }
                if parts.len() > 1 {
                    item.insert("parts".into(), n(parts.len() as i64));
                }
                if let Some(t) = p.commits.iter().map(|c| c.time).min() {
                    item.insert("first_time".into(), n(t));
                }
                let mut parts = parts.into_iter();
                let head = put
                    .set_item(Some(item))
                    .item("provider", s(&p.provider))
                    .item("repo", s(&p.repo))
                    .item("before", s(&p.before))
                    .item("after", s(&p.after))
                    .item("commits", s(parts.next().unwrap_or_default()))
                    .condition_expression("attribute_not_exists(pk)");
                // The other parts are the same for every report of the push: written unconditionally,
                // before the head that names them.
                let mut puts: Vec<_> =
                    parts
                        .enumerate()
                        .map(|(k, commits)| {
                            self.client
                                .put_item()
                                .table_name(&self.table)
                                .set_item(Some(self.key(
                                    repo_pk(&p.repo),
                                    push_part_sk(&p.before, &p.after, k + 1),
                                )))
                                .item("commits", s(commits))
                        })
                        .collect();
                puts.push(head);
                return Ok(puts);
            }
            Fact::Deployment(d) => put
                .set_item(Some(deployment_item(
                    self.key(
                        repo_pk(&d.repo),
                        format!(
                            "d#{}#{}#{}",
                            d.outcome.as_str(),
                            d.provider,
                            d.deployment_id
                        ),
                    ),
                    d,
                )))
                .condition_expression("attribute_not_exists(pk) OR #t > :t")
                .expression_attribute_names("#t", "time")
                .expression_attribute_values(":t", n(d.time)),
            Fact::Incident(i) => {
                let mut item = incident_attrs(i);
                item.extend(self.key(
                    incident_pk(&i.service_name),
                    format!("e#{}#{}", i.provider, i.event_id),
                ));
                put.set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk)")
            }
            Fact::Build(b) => put
                .set_item(Some(build_item(
                    self.key(
                        repo_pk(&b.repo),
                        format!("b#{}#{}#{}", b.provider, b.run_id, b.attempt),
                    ),
                    b,
                )))
                .condition_expression("attribute_not_exists(pk)"),
            Fact::QualityReport(q) => {
                let mut put = put
                    .set_item(Some(self.key(
                        repo_pk(&q.repo),
                        format!("a#{}#{}", q.provider, q.analysis_id),
                    )))
                    .item("provider", s(&q.provider))
                    .item("repo", s(&q.repo))
                    .item("analysis_id", s(&q.analysis_id))
                    .item("sha", s(&q.sha))
                    .item("branch", s(&q.branch))
                    .item("time", n(q.time))
                    .condition_expression("attribute_not_exists(pk)");
                if let Some(p) = q.passed {
                    put = put.item("passed", AttributeValue::Bool(p));
                }
                if let Some(c) = q.coverage_bp {
                    put = put.item("coverage_bp", n(i64::from(c)));
                }
                if let Some(i) = q.new_issues {
                    put = put.item("new_issues", n(i as i64));
                }
                put
            }
            Fact::WorkItem(w) => put
                .set_item(Some(self.key(
                    repo_pk(&w.repo),
                    format!("w#{}#{}#{}", w.provider, w.number, w.action.as_str()),
                )))
                .item("provider", s(&w.provider))
                .item("repo", s(&w.repo))
                .item("number", n(w.number as i64))
                .item("action", s(w.action.as_str()))
                .item("time", n(w.time))
                .item("title", s(&w.title))
                .condition_expression("attribute_not_exists(pk) OR #t > :t")
                .expression_attribute_names("#t", "time")
                .expression_attribute_values(":t", n(w.time)),
            Fact::PullRequest(p) => put
                .set_item(Some(pull_request_item(
                    self.key(
                        repo_pk(&p.repo),
                        format!("q#{}#{}#{}", p.provider, p.number, p.kind.as_str()),
                    ),
                    p,
                )))
                .condition_expression("attribute_not_exists(pk) OR #t > :t")
                .expression_attribute_names("#t", "time")
                .expression_attribute_values(":t", n(p.time)),
        }])
    }

    /// The registry entries of the sources of `facts` this process has not registered yet.
    fn new_sources(&self, facts: &[Fact]) -> Vec<(String, String)> {
        let Ok(seen) = self.sources_seen.lock() else {
            return Vec::new();
        };
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for f in facts {
            let source = match f {
                Fact::Push(p) => Some((format!("r#{}", p.repo.to_lowercase()), &p.repo)),
                Fact::Deployment(d) => Some((format!("r#{}", d.repo.to_lowercase()), &d.repo)),
                Fact::Incident(i) => Some((format!("i#{}", i.service_name), &i.service_name)),
                Fact::PullRequest(_)
                | Fact::Build(_)
                | Fact::WorkItem(_)
                | Fact::QualityReport(_) => None,
            };
            let sources = source
                .map(|(sk, name)| (sk, name.clone()))
                .into_iter()
                .chain(crate::delivery::source_of(f));
            for (sk, name) in sources {
                if !seen.contains(&sk) {
                    out.entry(sk).or_insert(name);
                }
            }
        }
        out.into_iter().collect()
    }

    /// A push from its head item, with the commits of its other parts (`parts`, in order) after the head's.
    pub(crate) fn parse_push(item: &Item, parts: &[&Item]) -> Result<Push, PortError> {
        let expected = get_count(item, "parts").max(1) as usize;
        if parts.len() + 1 != expected {
            // A reader between the writes of a push's parts: the writer's retry completes it.
            return Err(PortError::transient(format!(
                "push {} has {} of its {expected} parts",
                get_s(item, "sk")?,
                parts.len() + 1
            )));
        }
        let mut commits: Vec<Commit> =
            serde_json::from_str(&get_s(item, "commits")?).map_err(PortError::invalid)?;
        for part in parts {
            let more: Vec<Commit> =
                serde_json::from_str(&get_s(part, "commits")?).map_err(PortError::invalid)?;
            commits.extend(more);
        }
        Ok(Push {
            provider: get_s(item, "provider")?,
            repo: get_s(item, "repo")?,
            before: get_s(item, "before")?,
            after: get_s(item, "after")?,
            commits,
            unlisted: get_count(item, "unlisted"),
        })
    }

    pub(crate) fn parse_deployment(item: &Item) -> Result<Deployment, PortError> {
        Ok(Deployment {
            provider: get_s(item, "provider")?,
            repo: get_s(item, "repo")?,
            deployment_id: get_s(item, "deployment_id")?,
            environment: get_s(item, "environment")?,
            production: item
                .get("production")
                .and_then(|v| v.as_bool().ok())
                .copied(),
            sha: get_s(item, "sha")?,
            time: get_n(item, "time")?,
            outcome: DeploymentOutcome::Success,
            rollback: item
                .get("rollback")
                .and_then(|v| v.as_bool().ok())
                .is_some_and(|b| *b),
            rework: item
                .get("rework")
                .and_then(|v| v.as_bool().ok())
                .is_some_and(|b| *b),
        })
    }

    pub(crate) fn parse_pull_request(item: &Item) -> Result<PullRequestEvent, PortError> {
        let kind = get_s(item, "kind")?;
        Ok(PullRequestEvent {
            provider: get_s(item, "provider")?,
            repo: get_s(item, "repo")?,
            number: get_n(item, "number")? as u64,
            kind: PullRequestEventKind::parse(&kind).ok_or_else(|| {
                PortError::invalid(format!("unknown pull request event kind {kind:?}"))
            })?,
            time: get_n(item, "time")?,
            title: get_s(item, "title")?,
            sha: item.get("sha").and_then(|v| v.as_s().ok()).cloned(),
        })
    }

    pub(crate) fn parse_build(item: &Item) -> Result<Build, PortError> {
        let outcome = get_s(item, "outcome")?;
        Ok(Build {
            provider: get_s(item, "provider")?,
            repo: get_s(item, "repo")?,
            run_id: get_s(item, "run_id")?,
            attempt: u32::try_from(get_n(item, "attempt")?).map_err(PortError::invalid)?,
            name: get_s(item, "name")?,
            sha: get_s(item, "sha")?,
            branch: get_s(item, "branch")?,
            outcome: BuildOutcome::parse(&outcome)
                .ok_or_else(|| PortError::invalid(format!("unknown build outcome {outcome:?}")))?,
            started: item
                .get("started")
                .map(|_| get_n(item, "started"))
                .transpose()?,
            finished: get_n(item, "finished")?,
        })
    }

    fn parse_work_item(item: &Item) -> Result<WorkItem, PortError> {
        let action = get_s(item, "action")?;
        Ok(WorkItem {
            provider: get_s(item, "provider")?,
            repo: get_s(item, "repo")?,
            number: get_n(item, "number")? as u64,
            action: WorkItemAction::parse(&action).ok_or_else(|| {
                PortError::invalid(format!("unknown work item action {action:?}"))
            })?,
            time: get_n(item, "time")?,
            title: get_s(item, "title")?,
        })
    }

    fn parse_quality_report(item: &Item) -> Result<QualityReport, PortError> {
        let opt_n = |name: &str| item.get(name).map(|_| get_n(item, name)).transpose();
        Ok(QualityReport {
            provider: get_s(item, "provider")?,
            repo: get_s(item, "repo")?,
            analysis_id: get_s(item, "analysis_id")?,
            sha: get_s(item, "sha")?,
            branch: get_s(item, "branch")?,
            time: get_n(item, "time")?,
            passed: item.get("passed").and_then(|v| v.as_bool().ok()).copied(),
            coverage_bp: opt_n("coverage_bp")?
                .map(u32::try_from)
                .transpose()
                .map_err(PortError::invalid)?,
            new_issues: opt_n("new_issues")?.map(|v| v as u64),
        })
    }

    pub(crate) fn parse_incident_event(item: &Item) -> Result<IncidentEvent, PortError> {
        let kind = get_s(item, "kind")?;
        Ok(IncidentEvent {
            provider: get_s(item, "provider")?,
            incident_id: get_s(item, "incident_id")?,
            event_id: get_s(item, "event_id")?,
            kind: IncidentEventKind::parse(&kind).ok_or_else(|| {
                PortError::invalid(format!("unknown incident event kind {kind:?}"))
            })?,
            time: get_n(item, "time")?,
            service_name: get_s(item, "service_name")?,
            title: get_s(item, "title")?,
        })
    }

    /// Every service with metric rows.
    async fn services(&self) -> Result<Vec<String>, PortError> {
        self.query_all(SERVICES.into(), None, true)
            .await?
            .iter()
            .map(|i| get_s(i, "sk"))
            .collect()
    }

    async fn service_observations(
        &self,
        service: String,
        from: Millis,
        to: Millis,
    ) -> Result<Observations, PortError> {
        let mut out = Observations::default();
        let Some(head) = self.head(&service).await? else {
            return Ok(out);
        };
        let g = &head.generation;
        let items = self
            .query_all(
                metric_pk(&service),
                Some((
                    format!("d#{g}#{}", day_text(from)),
                    format!("d#{g}#{}#~", day_text(to - 1)),
                )),
                true,
            )
            .await?;
        for item in items {
            let bytes = item
                .get("rows")
                .and_then(|v| v.as_b().ok())
                .ok_or_else(|| PortError::invalid("day item without binary rows"))?;
            if let Some(obs) = blob::decode_stored(
                bytes.as_ref(),
                &service,
                &get_s(&item, "sk").unwrap_or_default(),
            ) {
                out.extend_within(obs, from, to);
            }
        }
        Ok(out)
    }

    /// Moves the version of rows that did not change, so that a writer that linked them without this
    /// batch's facts cannot land unnoticed; `false` when the version moved meanwhile.
    async fn bump(&self, service: &str, head: &Option<Head>) -> Result<bool, PortError> {
        if head.is_none() {
            self.register(service).await?;
        }
        let expected = head.as_ref().map_or(0, |h| h.version) as i64;
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(metric_pk(service), HEAD)))
            .update_expression(
                "SET version = :next, generation = if_not_exists(generation, :g), links = :yes",
            )
            .expression_attribute_values(":next", n(expected + 1))
            .expression_attribute_values(":g", s("0"))
            .expression_attribute_values(":yes", AttributeValue::Bool(true));
        let update = match head {
            Some(_) => update
                .condition_expression("version = :v AND attribute_not_exists(busy)")
                .expression_attribute_values(":v", n(expected)),
            None => update.condition_expression("attribute_not_exists(pk)"),
        };
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(sdk_error("dynamodb update head", e)),
        }
    }

    /// Lists a service among those with rows (before its first rows are written, so that a query of every
    /// service finds them).
    async fn register(&self, service: &str) -> Result<(), PortError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.key(SERVICES, service.to_string())))
            .send()
            .await
            .map_err(|e| sdk_error("dynamodb register service", e))?;
        Ok(())
    }

    /// The put of an index item, conditional where the item says.
    fn index_put(
        &self,
        (item, condition): IndexPut,
    ) -> aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        match condition {
            Some((expression, values)) => put
                .condition_expression(expression)
                .set_expression_attribute_values(Some(values)),
            None => put,
        }
    }

    /// Sends `puts`, [`WRITE_CONCURRENCY`] at a time; a failed condition is success (the item stands).
    async fn run_puts(
        &self,
        puts: Vec<aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder>,
    ) -> Result<(), PortError> {
        let mut tasks = JoinSet::new();
        let mut first_error = None;
        for put in puts {
            if tasks.len() >= WRITE_CONCURRENCY {
                if let Some(Err(e)) = tasks
                    .join_next()
                    .await
                    .map(|r| r.map_err(PortError::transient).and_then(|r| r))
                {
                    first_error.get_or_insert(e);
                }
            }
            tasks.spawn(async move {
                match put.send().await {
                    Ok(_) => Ok(()),
                    Err(e) if is_conditional_failure(&e) => Ok(()),
                    Err(e) => Err(sdk_error("dynamodb put fact", e)),
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r.map_err(PortError::transient).and_then(|r| r) {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Sends a conditional update; `false` when its condition failed.
    async fn conditional(
        &self,
        update: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    ) -> Result<bool, PortError> {
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(sdk_error("dynamodb update head", e)),
        }
    }

    /// Writes a replacement under the head's mark: the mark (a conditional update that moves the version,
    /// so no writer that read the old one lands, and that makes readers of link state wait), the items in
    /// batches, then the switch back (conditional on the mark). No transaction: a transactional write costs
    /// twice, and the mark already serializes writers. A whole re-link writes its days under a fresh
    /// generation that the switch makes current, so queries see the old days or the new ones; an
    /// incremental one rewrites the few days it touches in place. A writer that dies leaves its mark: once
    /// stale, the next writer re-links from the mark's cut and takes over.
    async fn replace_marked(
        &self,
        service: &str,
        cut: Cut,
        head: &Option<Head>,
        legacy: bool,
        changed: Changes,
    ) -> Result<bool, PortError> {
        let pk = metric_pk(service);
        let expected = head.as_ref().map_or(0, |h| h.version) as i64;
        let generation = head
            .as_ref()
            .map_or_else(|| "0".to_string(), |h| h.generation.clone());
        let old_keys = if legacy {
            Self::day_keys(&generation, &self.day_digests(service).await?)
        } else {
            changed.old_day_keys(&generation)
        };
        if head.is_none() {
            self.register(service).await?;
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let head_key = || self.key(pk.clone(), HEAD);
        let mut mark = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(head_key()))
            .expression_attribute_values(":next", n(expected + 1))
            .expression_attribute_values(":tok", s(&token))
            .expression_attribute_values(":now", n(now_millis()))
            .expression_attribute_values(":g", s(&generation));
        mark = match cut {
            Cut::From(t) => mark
                .update_expression(
                    "SET version = :next, busy = :tok, busy_at = :now, busy_from = :from, \
                     generation = if_not_exists(generation, :g)",
                )
                .expression_attribute_values(":from", n(t)),
            Cut::All => mark.update_expression(
                "SET version = :next, busy = :tok, busy_at = :now, \
                 generation = if_not_exists(generation, :g) REMOVE busy_from",
            ),
        };
        mark = match head {
            Some(_) => mark
                .condition_expression("version = :v")
                .expression_attribute_values(":v", n(expected)),
            None => mark.condition_expression("attribute_not_exists(pk)"),
        };
        if !self.conditional(mark).await? {
            return Ok(false);
        }
        let started = std::time::Instant::now();
        let fresh = match cut {
            Cut::All => uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            Cut::From(_) => generation.clone(),
        };
        let written = async {
            let mut requests = Vec::new();
            if fresh != generation {
                for (day, parts) in &changed.new_days {
                    for (i, rows) in parts.iter().enumerate() {
                        requests.push(Self::put_request(
                            self.day_item(service, &fresh, day, i, rows),
                        )?);
                    }
                }
            } else {
                for (sk, op) in changed.day_ops(service, &generation, self) {
                    requests.push(match op {
                        Some(item) => Self::put_request(item)?,
                        None => self.delete_request(pk.clone(), sk)?,
                    });
                }
            }
            for (sk, op) in &changed.rows {
                requests.push(match op {
                    Some(item) => Self::put_request(item.clone())?,
                    None => self.delete_request(pk.clone(), sk.clone())?,
                });
            }
            self.batch_write(requests).await?;
            if started.elapsed() > LARGE_WRITE_DEADLINE {
                return Err(PortError::transient(format!(
                    "writing the rows of {service} took too long"
                )));
            }
            let switch = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(head_key()))
                .update_expression(
                    "SET version = :next, generation = :g, links = :yes \
                     REMOVE busy, busy_at, busy_from",
                )
                .condition_expression("busy = :tok")
                .expression_attribute_values(":next", n(expected + 2))
                .expression_attribute_values(":g", s(&fresh))
                .expression_attribute_values(":yes", AttributeValue::Bool(true))
                .expression_attribute_values(":tok", s(&token));
            self.conditional(switch).await
        };
        match written.await {
            Ok(true) => {
                if fresh != generation {
                    // The old generation is garbage now; a failure here leaves unread items, not wrong figures.
                    let mut garbage = old_keys;
                    if legacy {
                        garbage.push(DAYS.into());
                    }
                    if let Err(e) = self.delete_keys(&pk, garbage).await {
                        tracing::warn!(%service, error = %e, "old metric rows left behind");
                    }
                }
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => {
                // Let the next writer take over now rather than when the mark goes stale.
                let release = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(head_key()))
                    .update_expression("SET busy_at = :zero")
                    .condition_expression("busy = :tok")
                    .expression_attribute_values(":zero", n(0))
                    .expression_attribute_values(":tok", s(&token));
                if let Err(r) = self.conditional(release).await {
                    tracing::warn!(%service, error = %r, "mark left to go stale");
                }
                Err(e)
            }
        }
    }
}

impl Store for DynamoStore {
    type Links<'a> = DynamoLinks;

    async fn links(
        &self,
        _repositories: Vec<String>,
        _incident_services: Vec<String>,
    ) -> Result<DynamoLinks, PortError> {
        Ok(DynamoLinks {
            store: self.clone(),
        })
    }

    async fn put_facts(&self, facts: Vec<Fact>) -> Result<(), PortError> {
        let mut puts = Vec::with_capacity(facts.len());
        for f in &facts {
            puts.extend(self.fact_puts(f)?);
            puts.extend(fact_index(f).into_iter().map(|p| self.index_put(p)));
            if let Some(item) = crate::delivery::index_item(f) {
                puts.push(self.index_put((item, None)));
            }
        }
        let sources = self.new_sources(&facts);
        for (sk, name) in &sources {
            puts.push(
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(self.key(SOURCES, sk.clone())))
                    .item("name", s(name))
                    .condition_expression("attribute_not_exists(pk)"),
            );
        }
        self.run_puts(puts).await?;
        if let Ok(mut seen) = self.sources_seen.lock() {
            // A warm function's memory stays bounded however many names arrive: past the bound the set
            // starts again, costing one conditional write per name it sees again.
            if seen.len() + sources.len() > SOURCES_SEEN_MAX {
                seen.clear();
            }
            seen.extend(sources.into_iter().map(|(sk, _)| sk));
        }
        Ok(())
    }

    async fn load_facts(
        &self,
        repositories: Vec<String>,
        incident_services: Vec<String>,
    ) -> Result<StoredFacts, PortError> {
        let repos: BTreeSet<String> = repositories.iter().map(|r| repo_pk(r)).collect();
        let names: BTreeSet<String> = incident_services.iter().map(|r| incident_pk(r)).collect();
        let mut tasks = JoinSet::new();
        for pk in repos {
            let store = self.clone();
            tasks.spawn(async move { store.query_all(pk, None, true).await });
        }
        for pk in names {
            let store = self.clone();
            tasks.spawn(async move { store.query_all(pk, None, true).await });
        }
        let mut out = StoredFacts::default();
        let (mut heads, mut parts) = (Vec::new(), BTreeMap::new());
        while let Some(r) = tasks.join_next().await {
            for item in r.map_err(PortError::transient)?? {
                let sk = get_s(&item, "sk")?;
                if sk.starts_with("p#") {
                    heads.push(item);
                } else if sk.starts_with("pp#") {
                    parts.insert((get_s(&item, "pk")?, sk), item);
                } else if sk.starts_with("d#success#") {
                    out.deployments.push(Self::parse_deployment(&item)?);
                } else if sk.starts_with("e#") {
                    out.incident_events.push(Self::parse_incident_event(&item)?);
                } else if sk.starts_with("q#") {
                    out.pull_requests.push(Self::parse_pull_request(&item)?);
                } else if sk.starts_with("b#") {
                    out.builds.push(Self::parse_build(&item)?);
                } else if sk.starts_with("w#") {
                    out.work_items.push(Self::parse_work_item(&item)?);
                } else if sk.starts_with("a#") {
                    out.quality_reports.push(Self::parse_quality_report(&item)?);
                }
            }
        }
        for head in &heads {
            let (pk, sk) = (get_s(head, "pk")?, get_s(head, "sk")?);
            let prefix = format!("p{sk}#");
            let of_push: Vec<&Item> = parts
                .range((pk.clone(), prefix.clone())..)
                .take_while(|((p, s), _)| *p == pk && s.starts_with(&prefix))
                .map(|(_, item)| item)
                .collect();
            out.pushes.push(Self::parse_push(head, &of_push)?);
        }
        // Queries finish in any order; derive() is order-independent, but keep results reproducible.
        out.pushes
            .sort_by(|a, b| (&a.repo, &a.before, &a.after).cmp(&(&b.repo, &b.before, &b.after)));
        out.deployments.sort_by(|a, b| {
            (&a.provider, &a.repo, &a.deployment_id).cmp(&(&b.provider, &b.repo, &b.deployment_id))
        });
        out.incident_events
            .sort_by(|a, b| (&a.provider, &a.event_id).cmp(&(&b.provider, &b.event_id)));
        Ok(out)
    }

    async fn fact_sources(&self) -> Result<FactSources, PortError> {
        let mut out = FactSources::default();
        for item in self.query_all(SOURCES.into(), None, true).await? {
            let sk = get_s(&item, "sk")?;
            let name = get_s(&item, "name")?;
            if sk.starts_with("r#") {
                out.repositories.push(name);
            } else if sk.starts_with("i#") {
                out.incident_services.push(name);
            }
        }
        out.repositories.sort();
        out.incident_services.sort();
        Ok(out)
    }

    async fn rows_state(&self, service: String) -> Result<RowsState, PortError> {
        let Some(head) = self.head(&service).await? else {
            return Ok(RowsState::default());
        };
        let mut unsettled = None;
        if let Some(busy) = &head.busy {
            if now_millis() - busy.at < BUSY_STALE_MS {
                return Err(PortError::conflict(format!(
                    "the rows of {service} are being written"
                )));
            }
            unsettled = Some(busy.from);
        }
        if !head.links {
            unsettled = Some(Cut::All);
        }
        Ok(RowsState {
            version: head.version,
            unsettled,
        })
    }

    async fn prepare_whole(
        &self,
        repositories: Vec<String>,
        incident_services: Vec<String>,
    ) -> Result<(), PortError> {
        // Facts stored before link state was kept have no index items: write them (idempotent).
        let stored = self.load_facts(repositories, incident_services).await?;
        let facts = stored
            .pushes
            .into_iter()
            .map(Fact::Push)
            .chain(stored.deployments.into_iter().map(Fact::Deployment))
            .chain(stored.incident_events.into_iter().map(Fact::Incident));
        let puts = facts
            .flat_map(|f| fact_index(&f))
            .map(|p| self.index_put(p))
            .collect();
        self.run_puts(puts).await
    }

    /// Writes the rows at or after `cut` that changed (each with its index items) and the day items they
    /// touch, with the head's version moved, in one transaction when it fits; otherwise under the head's
    /// mark (see [`DynamoStore::replace_large`]).
    async fn replace_rows(
        &self,
        service: String,
        cut: Cut,
        rows: Linked,
        expected: u64,
    ) -> Result<bool, PortError> {
        let head = self.head(&service).await?;
        if head.as_ref().map_or(0, |h| h.version) != expected {
            return Ok(false);
        }
        // A mark at the expected version is one a dead writer left: take over, rewriting every day.
        let takeover = match head.as_ref().and_then(|h| h.busy.as_ref()) {
            Some(b) if now_millis() - b.at < BUSY_STALE_MS => return Ok(false),
            Some(_) => true,
            None => false,
        };
        let legacy = head.as_ref().is_some_and(|h| !h.links);
        if legacy && cut != Cut::All {
            return Err(PortError::invalid(format!(
                "the rows of {service} were written without link state: re-link whole"
            )));
        }
        if cut == Cut::From(Millis::MAX) && rows.is_empty() && !takeover {
            return self.bump(&service, &head).await;
        }

        let cut_at = cut.from().unwrap_or(Millis::MIN);
        let from = match cut {
            Cut::All => Millis::MIN,
            Cut::From(t) => t.div_euclid(DAY).checked_mul(DAY).unwrap_or(Millis::MIN),
        };
        let old = if legacy {
            Linked::default()
        } else {
            self.rows_from(&service, from).await?
        };
        // Rows of the cut's first day before the cut stand; they are part of that day's observations.
        let (mut all, old_after) = old.split_at(cut_at);
        let before = row_items(&service, &old_after);
        let after = row_items(&service, &rows);
        let mut ops: Vec<(String, Option<Item>)> = Vec::new();
        for (sk, item) in &after {
            if before.get(sk) != Some(item) {
                ops.push((sk.clone(), Some(item.clone())));
            }
        }
        for sk in before.keys() {
            if !after.contains_key(sk) {
                ops.push((sk.clone(), None));
            }
        }
        all.deployments.extend(rows.deployments);
        all.changes.extend(rows.changes);
        all.incidents.extend(rows.incidents);
        let old_days = days_of(&old);
        let new_days = days_of(&all);
        let changed = Changes {
            rows: ops,
            old_days,
            new_days,
            takeover,
        };

        if !legacy && !takeover && changed.rows.is_empty() && changed.old_days == changed.new_days {
            return self.bump(&service, &head).await;
        }
        self.replace_marked(&service, cut, &head, legacy, changed)
            .await
    }

    async fn retain_rows(&self, keep: Vec<String>) -> Result<(), PortError> {
        let keep: HashSet<String> = keep.into_iter().collect();
        for service in self.services().await? {
            if keep.contains(&service) {
                continue;
            }
            let pk = metric_pk(&service);
            let mut keys: Vec<String> = self
                .query_all(pk.clone(), None, true)
                .await?
                .iter()
                .map(|i| get_s(i, "sk"))
                .collect::<Result<_, _>>()?;
            keys.retain(|k| k != HEAD);
            self.delete_keys(&pk, keys).await?;
            // The head goes last: while it exists, the service is listed and its rows can be found.
            self.delete_keys(&pk, vec![HEAD.into()]).await?;
            self.delete_keys(SERVICES, vec![service]).await?;
        }
        Ok(())
    }

    async fn get_meta(&self, key: String) -> Result<Option<String>, PortError> {
        Ok(match self.get(META.into(), &key, true).await? {
            Some(item) => Some(get_s(&item, "value")?),
            None => None,
        })
    }

    async fn set_meta(&self, key: String, value: String) -> Result<(), PortError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.key(META, key)))
            .item("value", s(value))
            .send()
            .await
            .map_err(|e| sdk_error("dynamodb put meta", e))?;
        Ok(())
    }
}

impl MetricsReader for DynamoStore {
    async fn sources(&self) -> Result<FactSources, PortError> {
        Store::fact_sources(self).await
    }

    async fn observations(
        &self,
        services: Option<Vec<String>>,
        from: Millis,
        to: Millis,
    ) -> Result<Observations, PortError> {
        if from >= to {
            return Ok(Observations::default());
        }
        let services = match services {
            Some(s) => s,
            None => self.services().await?,
        };
        // Services are read a bounded number at a time, however many a team or the whole table has.
        let mut tasks = JoinSet::new();
        let mut parts = Vec::new();
        for (i, service) in services.into_iter().enumerate() {
            if tasks.len() >= READ_CONCURRENCY {
                if let Some(r) = tasks.join_next().await {
                    let (i, rows) = r.map_err(PortError::transient)?;
                    parts.push((i, rows?));
                }
            }
            let store = self.clone();
            tasks.spawn(async move { (i, store.service_observations(service, from, to).await) });
        }
        while let Some(r) = tasks.join_next().await {
            let (i, rows) = r.map_err(PortError::transient)?;
            parts.push((i, rows?));
        }
        parts.sort_by_key(|p| p.0);
        let mut out = Observations::default();
        for (_, p) in parts {
            out.extend_within(p, from, to);
        }
        Ok(out)
    }

    async fn read_meta(&self, key: String) -> Result<Option<String>, PortError> {
        Store::get_meta(self, key).await
    }

    async fn rows(
        &self,
        services: Option<Vec<String>>,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<(String, Linked)>, PortError> {
        let services = match services {
            Some(s) => s,
            None => self.services().await?,
        };
        let mut out = Vec::with_capacity(services.len());
        for service in services {
            let rows = self.rows_between(&service, from, Some(to)).await?;
            out.push((service, rows));
        }
        Ok(out)
    }

    async fn delivery(
        &self,
        repos: Option<Vec<String>>,
        from: Millis,
        to: Millis,
    ) -> Result<DeliveryFacts, PortError> {
        self.delivery_facts(repos, from, to).await
    }

    async fn shipped(
        &self,
        service: String,
        shas: Vec<String>,
    ) -> Result<Vec<(String, Millis)>, PortError> {
        self.shipped_shas(&service, shas).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use em_core::rows::{ChangeRow, DeploymentRow, DAY};

    #[test]
    fn days_split_into_parts_that_fit_an_item() {
        let change = |i: i64| ChangeRow {
            sha: format!("{i}"),
            repo: "r".into(),
            environment: "production".into(),
            deployment_key: "k".into(),
            deployment_time: 2 * DAY + i,
            commit_time: 2 * DAY,
            unlisted: 0,
        };
        let linked = Linked {
            deployments: vec![DeploymentRow {
                key: "k".into(),
                repo: "r".into(),
                environment: "production".into(),
                time: DAY + 5,
                sha: "a".into(),
                frontier: None,
                failed: true,
                rework: false,
                rollback: false,
            }],
            changes: (0..(ROWS_PER_PART as i64 + 1)).map(change).collect(),
            incidents: vec![],
        };
        let days = days_of(&linked);
        assert_eq!(
            days.keys().collect::<Vec<_>>(),
            ["1970-01-02", "1970-01-03"]
        );
        assert_eq!(days["1970-01-03"].len(), 2);
        assert!(days["1970-01-03"].iter().all(|p| p.len() < 400_000));
        let back: usize = days["1970-01-03"]
            .iter()
            .map(|p| blob::decode(p, "s").unwrap().changes.len())
            .sum();
        assert_eq!(back, ROWS_PER_PART + 1);
        assert_eq!(part_count("2:0a1b"), 2);
    }
}
