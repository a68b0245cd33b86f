//! The writes: facts with their index items, and a service's rows under the writer-mark protocol of its
//! head; `impl Store`.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use aws_sdk_dynamodb::types::AttributeValue;
use tokio::task::JoinSet;

use super::codec::{
    build_item, deployment_item, fact_index, get_n, get_s, incident_attrs, index_item, n,
    parse_build, parse_deployment, parse_incident_event, parse_pull_request, parse_push,
    parse_quality_report, parse_work_item, pull_request_item, push_parts, row_items, s, source_of,
    IndexPut, Item,
};
use super::days::{days_of, Changes};
use super::keys::{
    incident_pk, metric_pk, push_part_sk, repo_pk, DAYS, HEAD, META, SERVICES, SOURCES,
};
use super::links::DynamoLinks;
use super::store::{is_conditional_failure, DynamoStore};
use crate::sdk_error;
use em_core::domain::Fact;
use em_core::ports::{Cut, FactSources, PortError, RowsState, Store, StoredFacts};
use em_core::rows::{Linked, DAY};
use em_core::time::{now_millis, Millis};

/// Concurrent writes of one batch's facts.
const WRITE_CONCURRENCY: usize = 16;

/// The most fact sources a process remembers having registered.
const SOURCES_SEEN_MAX: usize = 10_000;

pub(super) struct Head {
    version: u64,
    pub(super) generation: String,
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
    pub(super) async fn head(&self, service: &str) -> Result<Option<Head>, PortError> {
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
                .chain(source_of(f));
            for (sk, name) in sources {
                if !seen.contains(&sk) {
                    out.entry(sk).or_insert(name);
                }
            }
        }
        out.into_iter().collect()
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
            if let Some(item) = index_item(f) {
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
                    out.deployments.push(parse_deployment(&item)?);
                } else if sk.starts_with("e#") {
                    out.incident_events.push(parse_incident_event(&item)?);
                } else if sk.starts_with("q#") {
                    out.pull_requests.push(parse_pull_request(&item)?);
                } else if sk.starts_with("b#") {
                    out.builds.push(parse_build(&item)?);
                } else if sk.starts_with("w#") {
                    out.work_items.push(parse_work_item(&item)?);
                } else if sk.starts_with("a#") {
                    out.quality_reports.push(parse_quality_report(&item)?);
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
            out.pushes.push(parse_push(head, &of_push)?);
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
