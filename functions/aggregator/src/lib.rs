//! The aggregator: parse deliveries into facts, store them idempotently, and re-link each service they touch
//! from the earliest point they change. Any failure is reported per message so that only that message is retried.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use em_core::config::{Config, Rebuild, FIGURES_CONFIG_KEY, REBUILD_KEY};
use em_core::domain::Fact;
use em_core::emf;
use em_core::ports::{
    Cut, Envelope, MetricsReader, Payloads, PortError, PortErrorKind, Queue, QueueMessage,
    RowsReplacement, RowsState, Store,
};
use em_core::rows::Linked;
use em_core::time::{format_millis, Millis};
use em_metrics::batch::{drop_out_of_range, service_of, with_build_deployments};
use em_metrics::dora::{compute, DoraReport, Scope, Window};
use em_metrics::link::{cut_for, relink, Service, Stored, Work};

/// The window of the figures published as metrics, as the API's default window.
pub const FIGURES_DAYS: i64 = 30;

/// Services re-linked whole per step of a configuration change.
pub const REBUILD_STEP: usize = 8;

/// Why a message was not processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The store could not be reached: retry later.
    Retry(String),
    /// The message can never succeed as it is (unknown provider, malformed payload): dead-letter it.
    Poison(String),
    /// The store refuses for good (a missing table, access denied): the deployment is at fault, not the
    /// message. The invocation fails at once, loudly, rather than the message being retried quietly.
    Refused(String),
}

impl Failure {
    /// A store error as the failure of the messages it touched: [`Failure::Refused`] when it is permanent.
    pub fn of_store(e: &PortError) -> Failure {
        if e.is_permanent() {
            Failure::Refused(e.to_string())
        } else {
            Failure::Retry(e.to_string())
        }
    }
}

pub struct Aggregator<S> {
    pub store: S,
    pub config: Arc<Config>,
    /// Runs after each batch with the services it re-linked (real-time notices), when set.
    pub after_linking: Option<Arc<dyn em_core::ports::AfterLinking>>,
    /// How long the after-linking hook may take per batch.
    pub after_linking_budget: std::time::Duration,
    /// The bytes of offloaded bodies one SQS batch loads at most (beyond the first): the rest wait for the
    /// next batch.
    pub batch_bytes: usize,
}

/// A batch's offloaded bodies: with the 10 MiB a body may have, the 256 MB function parses at most a few
/// at once.
pub const DEFAULT_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Notices' share of the aggregator's 60 s.
pub const DEFAULT_AFTER_LINKING_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// Services linked at once: the embedded store's lookups use the CPU, DynamoDB's the network.
const CONCURRENCY: usize = 4;

type Job<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

/// Runs `jobs`, up to [`CONCURRENCY`] at once on the runtime's threads; one result per job, in the jobs'
/// order (`None` for a job that panicked).
async fn concurrently<T: Send + 'static>(jobs: Vec<Job<T>>) -> Vec<Option<T>> {
    let n = jobs.len();
    let mut tasks = tokio::task::JoinSet::new();
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut keep = |r: Result<(usize, T), tokio::task::JoinError>| match r {
        Ok((i, t)) => out[i] = Some(t),
        Err(e) => tracing::error!(error = %e, "a linking task failed"),
    };
    for (i, job) in jobs.into_iter().enumerate() {
        if tasks.len() >= CONCURRENCY {
            if let Some(r) = tasks.join_next().await {
                keep(r);
            }
        }
        tasks.spawn(async move { (i, job.await) });
    }
    while let Some(r) = tasks.join_next().await {
        keep(r);
    }
    out
}

/// Attempts at a service's re-link when concurrent writers keep changing its rows.
const ATTEMPTS: u32 = 8;

/// The pause before attempt `n` + 1: 20 ms doubling, up to 640 ms.
fn backoff(attempt: u32) -> std::time::Duration {
    std::time::Duration::from_millis(20 << attempt.min(5))
}

/// A service's rows' state, waiting out another writer that is writing them right now.
async fn settled_state<S: Store>(store: &S, service: &str) -> Result<RowsState, PortError> {
    let mut attempt = 0;
    loop {
        match store.rows_state(service.to_string()).await {
            Err(e) if e.kind == PortErrorKind::Conflict && attempt + 1 < ATTEMPTS => {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Where a service's re-link starts for `facts`, and the version of the rows that was worked out on.
/// The version is read first: a writer that changes the rows after it makes this re-link's write fail, and
/// the re-link starts over from stored facts (see [`Aggregator::relink`]).
async fn work_for<S: Store>(
    store: &S,
    config: &Config,
    service: &str,
    facts: &[&Fact],
    stored: Stored,
) -> Result<LinkPlan, PortError> {
    let svc = Service::of(config, service);
    let state = settled_state(store, service).await?;
    if !store.incremental() {
        return Ok(LinkPlan {
            work: Some(Work::all(&svc, facts)),
            version: state.version,
        });
    }
    let links = store.links(svc.repos.clone(), svc.aliases.clone()).await?;
    let work = cut_for(&links, &svc, facts, stored).await?;
    Ok(LinkPlan {
        work: Work::widened(work, state.unsettled, &svc, facts),
        version: state.version,
    })
}

/// Re-links one service from `work.cut` on rows at version `expected`. Without work the rows stay as they
/// are, but their version still moves: a concurrent writer that linked them without this batch's facts
/// must not land unnoticed.
async fn relink_rows<S: Store>(
    store: &S,
    config: &Config,
    service: &str,
    work: Option<&Work>,
    expected: u64,
) -> Result<RowsReplacement, PortError> {
    let Some(work) = work else {
        return Ok(RowsReplacement {
            service: service.to_string(),
            cut: Cut::From(Millis::MAX),
            rows: Linked::default(),
            expected,
        });
    };
    let svc = Service::of(config, service);
    if work.cut == Cut::All {
        store
            .prepare_whole(svc.repos.clone(), svc.aliases.clone())
            .await?;
    }
    let links = store.links(svc.repos.clone(), svc.aliases.clone()).await?;
    Ok(RowsReplacement {
        service: service.to_string(),
        cut: work.cut,
        rows: relink(&links, &svc, work).await?,
        expected,
    })
}

/// A service's work, and the version of the rows it was worked out on.
/// What re-linking one service takes: where to start (`None`: the facts change no row) and the version of
/// the rows it was worked out on, which the write must still find.
#[derive(Debug, Clone)]
struct LinkPlan {
    work: Option<Work>,
    version: u64,
}

/// What a re-link after a lost race is for.
enum Plan<'a> {
    /// Everything (a configuration change).
    Whole,
    /// A batch's facts, already stored.
    Facts(&'a [Fact]),
}

impl<S: Store> Aggregator<S> {
    pub fn new(store: S, config: Arc<Config>) -> Self {
        Aggregator {
            store,
            config,
            after_linking: None,
            after_linking_budget: DEFAULT_AFTER_LINKING_BUDGET,
            batch_bytes: DEFAULT_BATCH_BYTES,
        }
    }

    /// The aggregator with another byte budget per SQS batch.
    pub fn with_batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes;
        self
    }

    /// The aggregator with `hook` run after each batch (real-time notices).
    pub fn with_after_linking(mut self, hook: Arc<dyn em_core::ports::AfterLinking>) -> Self {
        self.after_linking = Some(hook);
        self
    }

    /// Processes a batch; the result has one entry per message, in order.
    pub async fn process_batch(&self, batch: &[Envelope]) -> Vec<Result<(), Failure>> {
        self.process_batch_touching(batch).await.0
    }

    /// [`Aggregator::process_batch`], with the services whose rows were re-linked.
    pub async fn process_batch_touching(
        &self,
        batch: &[Envelope],
    ) -> (Vec<Result<(), Failure>>, BTreeSet<String>) {
        let mut results: Vec<Result<(), Failure>> = Vec::with_capacity(batch.len());
        let mut parsed: Vec<Vec<Fact>> = Vec::with_capacity(batch.len());
        for e in batch {
            let facts = match em_providers::by_name(&e.provider) {
                None => Err(Failure::Poison(format!(
                    "unknown provider {:?}",
                    e.provider
                ))),
                Some(p) => p
                    .parse(e.event.as_deref(), &e.body)
                    .map_err(|err| Failure::Poison(err.to_string())),
            };
            match facts {
                Ok(f) => {
                    results.push(Ok(()));
                    parsed.push(f);
                }
                Err(f) => {
                    results.push(Err(f));
                    parsed.push(Vec::new());
                }
            }
        }
        self.process_facts(parsed, results).await
    }

    /// Stores each message's facts and re-links the services they touch; `results` holds each message's
    /// outcome so far (a message already failed is skipped).
    pub async fn process_facts(
        &self,
        parsed: Vec<Vec<Fact>>,
        mut results: Vec<Result<(), Failure>>,
    ) -> (Vec<Result<(), Failure>>, BTreeSet<String>) {
        let parsed = with_build_deployments(
            &self.config,
            drop_out_of_range(parsed, |f| {
                tracing::warn!(kind = f.kind(), "fact dated outside 1970-2100 dropped");
                emf::emit(emf::line(
                    em_core::time::now_millis(),
                    &[("Kind", f.kind())],
                    &[("FactsOutOfRange", 1.0, emf::Unit::Count)],
                ));
            }),
        );
        // Each service's facts, and the messages that carried them.
        let mut touched: BTreeMap<String, (Vec<&Fact>, Vec<usize>)> = BTreeMap::new();
        for (i, facts) in parsed.iter().enumerate() {
            for f in facts {
                if let Some(s) = service_of(&self.config, f) {
                    let entry = touched.entry(s).or_default();
                    entry.0.push(f);
                    if entry.1.last() != Some(&i) {
                        entry.1.push(i);
                    }
                }
            }
        }
        // Where each service's re-link starts, read before the facts are stored (a push is compared with
        // the commits known before it).
        type Planned = (Option<Work>, u64, Vec<Fact>, Vec<usize>);
        let mut work: BTreeMap<String, Planned> = BTreeMap::new();
        let mut jobs: Vec<Job<Result<LinkPlan, PortError>>> = Vec::new();
        for (service, (facts, _)) in &touched {
            let facts: Vec<Fact> = facts.iter().map(|f| (*f).clone()).collect();
            let (store, config, service) =
                (self.store.clone(), self.config.clone(), service.clone());
            jobs.push(Box::pin(async move {
                let refs: Vec<&Fact> = facts.iter().collect();
                work_for(&store, &config, &service, &refs, Stored::NotYet).await
            }));
        }
        let cuts = concurrently(jobs).await;
        for ((service, (facts, messages)), cut) in touched.iter().zip(cuts) {
            let (service, messages) = (service.clone(), messages.clone());
            let w = cut.unwrap_or_else(|| Err(PortError::transient("linking task failed")));
            match w {
                Ok(LinkPlan { work: w, version }) => {
                    let facts = facts.iter().map(|f| (*f).clone()).collect();
                    work.insert(service, (w, version, facts, messages));
                }
                Err(e) => {
                    tracing::warn!(%service, error = %e, "link state not readable");
                    for i in messages {
                        results[i] = Err(Failure::of_store(&e));
                    }
                }
            }
        }

        // One write for the whole batch; if it fails, store message by message to find the one at fault.
        let all: Vec<Fact> = parsed
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .flat_map(|(f, _)| f.iter().cloned())
            .collect();
        if let Err(e) = self.store.put_facts(all).await {
            tracing::warn!(error = %e, "batch write failed, retrying message by message");
            for (i, facts) in parsed.iter().enumerate() {
                if results[i].is_ok() {
                    if let Err(e) = self.store.put_facts(facts.clone()).await {
                        results[i] = Err(Failure::of_store(&e));
                    }
                }
            }
        }

        // Every service re-linked, then all their rows written at once; a service whose rows changed
        // meanwhile (a concurrent writer) starts over alone.
        let mut relinked = BTreeSet::new();
        let mut replacements = Vec::new();
        let mut pending = Vec::new();
        let mut jobs: Vec<Job<Result<RowsReplacement, PortError>>> = Vec::new();
        for (service, (w, version, _, _)) in &work {
            let (store, config) = (self.store.clone(), self.config.clone());
            let (service, w, version) = (service.clone(), w.clone(), *version);
            jobs.push(Box::pin(async move {
                relink_rows(&store, &config, &service, w.as_ref(), version).await
            }));
        }
        let linked = concurrently(jobs).await;
        for ((service, (_, _, facts, messages)), r) in work.into_iter().zip(linked) {
            let r = r.unwrap_or_else(|| Err(PortError::transient("linking task failed")));
            match r {
                Ok(r) => {
                    replacements.push(r);
                    pending.push((service, facts, messages));
                }
                Err(e) => {
                    tracing::warn!(%service, error = %e, "re-link failed");
                    for i in messages {
                        results[i] = Err(Failure::of_store(&e));
                    }
                }
            }
        }
        let written = self.store.replace_rows_batch(replacements).await;
        for ((service, facts, messages), outcome) in pending.into_iter().zip(written) {
            let outcome = match outcome {
                Ok(true) => Ok(()),
                Ok(false) => self.relink(&service, Plan::Facts(&facts)).await,
                Err(e) if e.kind == PortErrorKind::Conflict => {
                    self.relink(&service, Plan::Facts(&facts)).await
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => {
                    relinked.insert(service);
                }
                Err(e) => {
                    tracing::warn!(%service, error = %e, "re-link failed");
                    for i in messages {
                        results[i] = Err(Failure::of_store(&e));
                    }
                }
            }
        }
        // Notices are best effort and bounded in time: the batch's outcome is settled before them, and a
        // slow channel cannot hold the batch until it times out.
        if let (Some(hook), false) = (&self.after_linking, relinked.is_empty()) {
            if tokio::time::timeout(self.after_linking_budget, hook.linked(&relinked))
                .await
                .is_err()
            {
                tracing::warn!(budget = ?self.after_linking_budget, "notices cut short at their time budget");
            }
        }
        (results, relinked)
    }

    /// Re-links one service for `plan` after its first write lost a race (or for a configuration change),
    /// starting over while concurrent writers keep changing its rows. Each attempt reads the version first,
    /// then works out the cut again over stored facts, so it covers whatever the winners wrote meanwhile.
    async fn relink(&self, service: &str, plan: Plan<'_>) -> Result<(), PortError> {
        let svc = Service::of(&self.config, service);
        for attempt in 0..ATTEMPTS {
            let LinkPlan {
                work,
                version: expected,
            } = match plan {
                Plan::Whole => LinkPlan {
                    work: Some(Work::all(&svc, &[])),
                    version: settled_state(&self.store, service).await?.version,
                },
                Plan::Facts(facts) => {
                    let refs: Vec<&Fact> = facts.iter().collect();
                    work_for(&self.store, &self.config, service, &refs, Stored::Already).await?
                }
            };
            let r = relink_rows(&self.store, &self.config, service, work.as_ref(), expected);
            let landed = match r.await {
                Ok(r) => {
                    self.store
                        .replace_rows(r.service, r.cut, r.rows, r.expected)
                        .await
                }
                Err(e) => Err(e),
            };
            match landed {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) if e.kind == PortErrorKind::Conflict => {}
                Err(e) => return Err(e),
            }
            tracing::info!(%service, attempt, "rows changed meanwhile, re-linking");
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(PortError::conflict(format!(
            "rows of {service} kept changing during {ATTEMPTS} re-links"
        )))
    }

    /// Every service that has facts.
    pub async fn services(&self) -> Result<BTreeSet<String>, PortError> {
        let sources = self.store.fact_sources().await?;
        Ok(sources
            .repositories
            .iter()
            .map(|r| self.config.service_for_repo(r))
            .chain(
                sources
                    .incident_services
                    .iter()
                    .map(|n| self.config.service_for_alias(n)),
            )
            .collect())
    }

    /// One bounded step of applying a configuration change: up to `max` services re-linked whole. The
    /// first step queues every service; the last records the configuration as reflected. Returns the
    /// services still pending (0 when the figures reflect the configuration in force).
    pub async fn rebuild_step(&self, max: usize) -> Result<usize, PortError> {
        let fingerprint = self.config.fingerprint();
        if self
            .store
            .get_meta(FIGURES_CONFIG_KEY.into())
            .await?
            .as_deref()
            == Some(&fingerprint)
        {
            return Ok(0);
        }
        let queued = self
            .store
            .get_meta(REBUILD_KEY.into())
            .await?
            .and_then(|r| serde_json::from_str::<Rebuild>(&r).ok())
            .filter(|r| r.target == fingerprint);
        let mut rebuild = match queued {
            Some(r) => r,
            None => {
                let services = self.services().await?;
                self.store
                    .retain_rows(services.iter().cloned().collect())
                    .await?;
                let r = Rebuild {
                    target: fingerprint.clone(),
                    pending: services.into_iter().collect(),
                };
                self.save_rebuild(&r).await?;
                tracing::info!(
                    services = r.pending.len(),
                    "configuration changed: re-linking every service"
                );
                r
            }
        };
        let step: Vec<String> = rebuild.pending.iter().take(max).cloned().collect();
        for service in &step {
            self.relink(service, Plan::Whole).await?;
        }
        rebuild.pending.drain(..step.len());
        if rebuild.pending.is_empty() {
            self.store
                .set_meta(FIGURES_CONFIG_KEY.into(), fingerprint)
                .await?;
            tracing::info!("figures reflect the configuration in force");
        }
        self.save_rebuild(&rebuild).await?;
        Ok(rebuild.pending.len())
    }

    async fn save_rebuild(&self, r: &Rebuild) -> Result<(), PortError> {
        let text = serde_json::to_string(r).map_err(PortError::invalid)?;
        self.store.set_meta(REBUILD_KEY.into(), text).await
    }

    /// Applies a configuration change to completion (tests, tools); `true` when there was one.
    pub async fn ensure_config_current(&self) -> Result<bool, PortError> {
        let fingerprint = self.config.fingerprint();
        let was = self.store.get_meta(FIGURES_CONFIG_KEY.into()).await?;
        while self.rebuild_step(REBUILD_STEP).await? > 0 {}
        Ok(was.as_deref() != Some(&fingerprint))
    }
}

impl<S: Store + MetricsReader> Aggregator<S> {
    /// A service's DORA figures over the `days` before `now`.
    pub async fn figures(
        &self,
        service: &str,
        days: i64,
        now: Millis,
    ) -> Result<DoraReport, PortError> {
        self.figures_of(vec![service.to_string()], days, now).await
    }

    /// The figures of `services` together over the `days` before `now`.
    async fn figures_of(
        &self,
        services: Vec<String>,
        days: i64,
        now: Millis,
    ) -> Result<DoraReport, PortError> {
        let service = match services.as_slice() {
            [one] => one.clone(),
            _ => em_core::config::UNMAPPED.to_string(),
        };
        let window = Window {
            from: now - days * 86_400_000,
            to: now,
            from_text: format_millis(now - days * 86_400_000),
            to_text: format_millis(now),
        };
        let obs = self
            .store
            .observations(Some(services), window.from, window.to)
            .await?;
        Ok(compute(
            Scope {
                service: Some(service),
                team: None,
            },
            &window,
            &obs,
        ))
    }

    /// Publishes the 30-day figures of the configured services among `services` as EMF lines (after a
    /// batch); a service that cannot be read is logged and skipped, since figures are published again on the
    /// next batch or schedule. Services no entry names get no metric of their own: each would be a custom
    /// metric to pay for (see [`Aggregator::figure_lines`]).
    pub async fn publish_figures(&self, services: impl IntoIterator<Item = String>, now: Millis) {
        let configured: Vec<String> = services
            .into_iter()
            .filter(|s| self.config.is_configured(s))
            .collect();
        for line in self.figure_lines(configured, now).await {
            emf::emit(line);
        }
    }

    /// The EMF lines of the hourly publication: one per configured service among `services`, and one,
    /// named `unmapped`, for all the others together, so the metrics' dimensions stay the configured
    /// services plus one whatever repositories arrive.
    pub async fn figure_lines(
        &self,
        services: impl IntoIterator<Item = String>,
        now: Millis,
    ) -> Vec<String> {
        let (configured, unmapped): (Vec<String>, Vec<String>) = services
            .into_iter()
            .partition(|s| self.config.is_configured(s));
        let mut lines = Vec::with_capacity(configured.len() + 1);
        let mut publish = |name: &str, report: Result<DoraReport, PortError>| match report {
            Ok(report) => lines.push(dora_line(now, name, &report)),
            Err(e) => tracing::warn!(service = name, error = %e, "figures not published"),
        };
        for service in configured {
            publish(
                &service,
                self.figures_of(vec![service.clone()], FIGURES_DAYS, now)
                    .await,
            );
        }
        if !unmapped.is_empty() {
            publish(
                em_core::config::UNMAPPED,
                self.figures_of(unmapped, FIGURES_DAYS, now).await,
            );
        }
        lines
    }
}

/// The DORA figures of one service as an EMF line; figures without a value (no changes, no incidents) are
/// left out rather than published as zero.
pub fn dora_line(timestamp: Millis, service: &str, r: &DoraReport) -> String {
    use em_metrics::figures::{Unit as Shown, FIGURES};
    use emf::{line, Unit};
    let mut metrics = Vec::new();
    for fig in &FIGURES {
        if let Some(v) = (fig.value)(&r.figures) {
            let unit = match fig.unit {
                Shown::Seconds => Unit::Seconds,
                Shown::PerDay | Shown::Ratio => Unit::None,
            };
            metrics.push((fig.metric, v, unit));
        }
        // A count beside the figure (the deployments beside their rate).
        if let Some((name, count)) = fig.count {
            metrics.push((name, count(&r.figures) as f64, Unit::Count));
        }
    }
    line(timestamp, &[("Service", service)], &metrics)
}

/// One pass of the local consumer: receive a batch, process it, acknowledge what succeeded, dead-letter
/// poison messages. Returns how many messages were received.
pub async fn drain_once<Q: Queue, S: Store + MetricsReader>(
    queue: &Q,
    aggregator: &Aggregator<S>,
    max: usize,
) -> Result<usize, PortError> {
    let received = queue.receive(max).await?;
    if received.is_empty() {
        return Ok(0);
    }
    let envelopes: Vec<Envelope> = received.iter().map(|r| r.envelope.clone()).collect();
    let results = aggregator.process_batch(&envelopes).await;
    let mut done = Vec::new();
    for (r, result) in received.iter().zip(results) {
        match result {
            Ok(()) => done.push(r.receipt.clone()),
            Err(Failure::Poison(reason)) => {
                tracing::warn!(provider = %r.envelope.provider, delivery_id = %r.envelope.delivery_id, %reason, "dead-lettered");
                queue.dead_letter(r.receipt.clone(), reason).await?;
            }
            // Left unacknowledged: it becomes visible again after the visibility timeout.
            Err(Failure::Retry(reason)) => {
                tracing::warn!(delivery_id = %r.envelope.delivery_id, %reason, "will retry")
            }
            Err(Failure::Refused(reason)) => {
                tracing::error!(delivery_id = %r.envelope.delivery_id, %reason, "the store refuses: fix it, the message waits")
            }
        }
    }
    queue.ack(done).await?;
    Ok(received.len())
}

/// The Lambda side: an SQS batch in, the ids of the messages that failed out (`ReportBatchItemFailures`), so
/// only those are retried and, after `maxReceiveCount`, dead-lettered by SQS.
pub mod lambda {
    use super::*;
    use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};

    /// The delivery an AWS service event is, when an EventBridge rule of the account sent it to the queue
    /// itself (no webhook, authenticated by IAM: only the rule may send to the queue besides the webhooks):
    /// the `aws` provider's, named by the event's id, as if posted to `/webhooks/aws`.
    fn account_event(body: &str, now: Millis) -> Option<Envelope> {
        #[derive(serde::Deserialize)]
        struct Head<'a> {
            #[serde(borrow)]
            source: std::borrow::Cow<'a, str>,
            #[serde(rename = "detail-type")]
            _detail_type: serde::de::IgnoredAny,
        }
        let head: Head = serde_json::from_str(body).ok()?;
        if !head.source.starts_with("aws.") {
            return None;
        }
        let aws = em_providers::by_name("aws")?;
        let inspection = aws.inspect(&http::HeaderMap::new(), body.as_bytes()).ok()?;
        Some(Envelope {
            provider: aws.name.to_string(),
            delivery_id: inspection.delivery_id,
            event: None,
            received_at: now,
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        })
    }

    pub async fn handle<S: Store + MetricsReader, P: Payloads>(
        aggregator: &Aggregator<S>,
        payloads: &P,
        event: SqsEvent,
        now: Millis,
    ) -> Result<SqsBatchResponse, InvokeError> {
        let mut failures = Vec::new();
        let mut messages = Vec::new();
        for record in event.records {
            let id = record.message_id.clone().unwrap_or_default();
            let body = record.body.as_deref();
            let message = match body.map(QueueMessage::from_json) {
                Some(Ok(m)) => m,
                // Not one of ours: an event an EventBridge rule of the account sent straight here.
                other => match body.and_then(|b| account_event(b, now)) {
                    Some(e) => QueueMessage::Inline(e),
                    None => {
                        tracing::error!(message_id = %id, error = ?other.map(|r| r.err()), "unreadable queue message");
                        failures.push(id);
                        continue;
                    }
                },
            };
            messages.push((id, message));
        }
        // Small deliveries first, and offloaded bodies only while the batch holds fewer bytes than its
        // budget: one huge delivery neither runs the function out of memory or time nor makes the
        // deliveries beside it fail (and so count towards the dead-letter queue); those left over go back
        // to the queue for the next batch.
        messages.sort_by_key(|(_, m)| matches!(m, QueueMessage::Offloaded { .. }));
        let (mut batch, mut ids, mut bytes) = (Vec::new(), Vec::new(), 0usize);
        for (id, message) in messages {
            if matches!(message, QueueMessage::Offloaded { .. }) && bytes >= aggregator.batch_bytes
            {
                tracing::info!(message_id = %id, bytes, "batch byte budget reached: left for the next batch");
                failures.push(id);
                continue;
            }
            match message.resolve(payloads).await {
                Ok(e) => {
                    bytes += e.body.len();
                    batch.push(e);
                    ids.push(id);
                }
                Err(e) => {
                    tracing::warn!(message_id = %id, error = %e, "offloaded body not readable");
                    failures.push(id);
                }
            }
        }
        let (results, rebuilt) = aggregator.process_batch_touching(&batch).await;
        // A store that refuses for good fails the invocation at once: an alarm on the function's errors
        // fires on the first batch, rather than a dead-letter alarm after every retry.
        if let Some(Err(Failure::Refused(reason))) = results
            .iter()
            .find(|r| matches!(r, Err(Failure::Refused(_))))
        {
            tracing::error!(%reason, "the store refuses: the batch goes back to the queue");
            return Err(InvokeError::Refused(reason.clone()));
        }
        let mut counts: BTreeMap<(&str, bool), u32> = BTreeMap::new();
        for ((id, result), e) in ids.into_iter().zip(results).zip(&batch) {
            *counts
                .entry((e.provider.as_str(), result.is_ok()))
                .or_default() += 1;
            if let Err(f) = result {
                tracing::warn!(message_id = %id, delivery_id = %e.delivery_id, failure = ?f, "message failed");
                failures.push(id);
            }
        }
        for ((provider, ok), count) in counts {
            let name = if ok {
                "MessagesProcessed"
            } else {
                "MessagesFailed"
            };
            emf::emit(emf::line(
                now,
                &[("Provider", provider)],
                &[(name, f64::from(count), emf::Unit::Count)],
            ));
        }
        aggregator.publish_figures(rebuilt, now).await;
        // Each batch also takes one step of a pending configuration change.
        if let Err(e) = aggregator.rebuild_step(REBUILD_STEP).await {
            tracing::warn!(error = %e, "configuration step failed; the next invocation retries it");
        }
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = failures
            .into_iter()
            .map(|item_identifier| {
                let mut f = BatchItemFailure::default();
                f.item_identifier = item_identifier;
                f
            })
            .collect();
        Ok(response)
    }

    /// Why an invocation failed as a whole; Lambda reports it with its type, and SQS retries the batch.
    #[derive(Debug, thiserror::Error)]
    pub enum InvokeError {
        #[error("expected an SQS event or a scheduled event: {0}")]
        UnknownEvent(String),
        #[error("{0}")]
        Store(#[from] PortError),
        #[error("the store refuses: {0}")]
        Refused(String),
        #[error("cannot encode the answer: {0}")]
        Encode(#[from] serde_json::Error),
    }

    impl From<InvokeError> for lambda_runtime::Diagnostic {
        fn from(e: InvokeError) -> Self {
            let error_type = match &e {
                InvokeError::UnknownEvent(_) => "UnknownEvent",
                InvokeError::Store(e) if e.is_permanent() => "StoreRefused",
                InvokeError::Store(_) => "StoreUnavailable",
                InvokeError::Refused(_) => "StoreRefused",
                InvokeError::Encode(_) => "EncodeFailed",
            };
            lambda_runtime::Diagnostic {
                error_type: error_type.into(),
                error_message: e.to_string(),
            }
        }
    }

    /// What the function was invoked with: an SQS batch, or the schedule that re-publishes the figures
    /// (the window slides even when nothing is delivered).
    pub enum Invocation {
        Batch(SqsEvent),
        Scheduled,
    }

    impl Invocation {
        pub fn from_json(v: serde_json::Value) -> Result<Invocation, InvokeError> {
            if v.get("Records").is_some() {
                return serde_json::from_value(v)
                    .map(Invocation::Batch)
                    .map_err(|e| InvokeError::UnknownEvent(format!("not an SQS event: {e}")));
            }
            if v.get("detail-type").and_then(|d| d.as_str()) == Some("Scheduled Event")
                || v.get("source").and_then(|d| d.as_str()) == Some("aws.scheduler")
            {
                return Ok(Invocation::Scheduled);
            }
            Err(InvokeError::UnknownEvent(
                "neither Records nor a schedule's detail-type".into(),
            ))
        }
    }

    /// Runs one invocation; the answer is the SQS batch response, or a summary of the scheduled run.
    pub async fn invoke<S: Store + MetricsReader, P: Payloads>(
        aggregator: &Aggregator<S>,
        payloads: &P,
        event: serde_json::Value,
        now: Millis,
    ) -> Result<serde_json::Value, InvokeError> {
        match Invocation::from_json(event)? {
            Invocation::Batch(e) => Ok(serde_json::to_value(
                handle(aggregator, payloads, e, now).await?,
            )?),
            Invocation::Scheduled => {
                // A configuration change is applied in steps, as many as a third of the timeout allows.
                let started = std::time::Instant::now();
                while aggregator.rebuild_step(REBUILD_STEP).await? > 0
                    && started.elapsed() < std::time::Duration::from_secs(20)
                {}
                let services = aggregator.services().await?;
                let lines = aggregator.figure_lines(services, now).await;
                let n = lines.len();
                for line in lines {
                    emf::emit(line);
                }
                Ok(serde_json::json!({ "published": n }))
            }
        }
    }
}
