//! The aggregator: parse deliveries into facts, store them idempotently, and recompute the metric tables of
//! every service they touch. Any failure is reported per message so that only that message is retried.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use em_core::config::Config;
use em_core::domain::Fact;
use em_core::emf;
use em_core::ports::{Envelope, Message, Payloads, PortError, Queue, Store, StoredFacts};
use em_core::time::{format_millis, Millis};
use em_metrics::derive::{derive, DeploymentFact, IncidentEventFact, ServiceFacts};
use em_metrics::dora::{compute, DoraReport, Scope, Window};

/// The window of the figures published as metrics, as the API's default window.
pub const FIGURES_DAYS: i64 = 30;

const FINGERPRINT_KEY: &str = "config_fingerprint";

/// Why a message was not processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The store could not be reached: retry later.
    Retry(String),
    /// The message can never succeed as it is (unknown provider, malformed payload): dead-letter it.
    Poison(String),
}

pub struct Aggregator<S> {
    pub store: S,
    pub config: Arc<Config>,
}

/// The services a fact's metrics belong to.
pub fn service_of(config: &Config, fact: &Fact) -> Option<String> {
    match fact {
        Fact::Push(p) => Some(config.service_for_repo(&p.repo)),
        Fact::Deployment(d) => Some(config.service_for_repo(&d.repo)),
        Fact::Incident(i) => Some(config.service_for_alias(&i.service_name)),
        Fact::PullRequest(_) => None,
    }
}

/// What `derive` needs from a service's stored facts: production deployments only, keyed uniquely.
pub fn service_facts(config: &Config, stored: StoredFacts) -> ServiceFacts {
    ServiceFacts {
        pushes: stored.pushes,
        deployments: stored
            .deployments
            .into_iter()
            .filter(|d| config.is_production(&d.environment, d.production))
            .map(|d| DeploymentFact {
                key: format!("{}/{}/{}", d.provider, d.repo, d.deployment_id),
                repo: d.repo,
                sha: d.sha,
                time: d.time,
            })
            .collect(),
        incident_events: stored
            .incident_events
            .into_iter()
            .map(|e| IncidentEventFact {
                incident_id: e.incident_id,
                kind: e.kind,
                time: e.time,
            })
            .collect(),
    }
}

impl<S: Store> Aggregator<S> {
    pub fn new(store: S, config: Arc<Config>) -> Self {
        Aggregator { store, config }
    }

    /// Processes a batch; the result has one entry per message, in order.
    pub async fn process_batch(&self, batch: &[Envelope]) -> Vec<Result<(), Failure>> {
        self.process_batch_touching(batch).await.0
    }

    /// [`Aggregator::process_batch`], with the services whose metric rows were rebuilt.
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

        // One write for the whole batch; if it fails, store message by message to find the one at fault.
        let all: Vec<Fact> = parsed.iter().flatten().cloned().collect();
        if let Err(e) = self.store.put_facts(all).await {
            tracing::warn!(error = %e, "batch write failed, retrying message by message");
            for (i, facts) in parsed.iter().enumerate() {
                if results[i].is_ok() {
                    if let Err(e) = self.store.put_facts(facts.clone()).await {
                        results[i] = Err(Failure::Retry(e.to_string()));
                    }
                }
            }
        }

        let mut touched: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, facts) in parsed.iter().enumerate() {
            if results[i].is_ok() {
                for s in facts.iter().filter_map(|f| service_of(&self.config, f)) {
                    touched.entry(s).or_default().push(i);
                }
            }
        }
        let mut rebuilt = BTreeSet::new();
        for (service, messages) in touched {
            match self.recompute(&service).await {
                Ok(()) => {
                    rebuilt.insert(service);
                }
                Err(e) => {
                    tracing::warn!(%service, error = %e, "recompute failed");
                    for i in messages {
                        results[i] = Err(Failure::Retry(e.to_string()));
                    }
                }
            }
        }
        (results, rebuilt)
    }

    /// A service's DORA figures over the `days` before `now`.
    pub async fn figures(
        &self,
        service: &str,
        days: i64,
        now: Millis,
    ) -> Result<DoraReport, PortError> {
        let window = Window {
            from: now - days * 86_400_000,
            to: now,
            from_text: format_millis(now - days * 86_400_000),
            to_text: format_millis(now),
        };
        let rows = self
            .store
            .window_rows(Some(vec![service.to_string()]), window.from, window.to)
            .await?;
        Ok(compute(
            Scope {
                service: Some(service.to_string()),
                team: None,
            },
            &window,
            rows,
        ))
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

    /// Publishes the 30-day figures of `services` as EMF lines; a service that cannot be read is logged and
    /// skipped, since figures are published again on the next batch or schedule.
    pub async fn publish_figures(&self, services: impl IntoIterator<Item = String>, now: Millis) {
        for service in services {
            match self.figures(&service, FIGURES_DAYS, now).await {
                Ok(report) => emf::emit(dora_line(now, &service, &report)),
                Err(e) => tracing::warn!(%service, error = %e, "figures not published"),
            }
        }
    }

    /// Rebuilds one service's metric tables from all its facts. The version is read before the facts, so a
    /// concurrent recompute that stored newer facts and replaced the rows meanwhile makes this one start over
    /// rather than overwrite its rows with older ones.
    pub async fn recompute(&self, service: &str) -> Result<(), PortError> {
        const ATTEMPTS: usize = 8;
        for attempt in 0..ATTEMPTS {
            let version = self.store.derived_version(service.to_string()).await?;
            let stored = self
                .store
                .load_facts(
                    self.config.repositories_of(service),
                    self.config.aliases_of(service),
                )
                .await?;
            let facts = service_facts(&self.config, stored);
            let derived = derive(&facts, self.config.attribution_window());
            if self
                .store
                .replace_derived_if(service.to_string(), derived, version)
                .await?
            {
                return Ok(());
            }
            tracing::info!(%service, attempt, "metric rows changed meanwhile, recomputing");
            tokio::time::sleep(std::time::Duration::from_millis(20 << attempt.min(5))).await;
        }
        Err(PortError::conflict(format!(
            "metric rows of {service} kept changing during {ATTEMPTS} recomputes"
        )))
    }

    /// Recomputes every service when the configuration changed since the metric tables were built.
    pub async fn ensure_config_current(&self) -> Result<bool, PortError> {
        let fingerprint = self.config.fingerprint();
        if self
            .store
            .get_meta(FINGERPRINT_KEY.into())
            .await?
            .as_deref()
            == Some(&fingerprint)
        {
            return Ok(false);
        }
        let services = self.services().await?;
        self.store
            .retain_derived(services.iter().cloned().collect())
            .await?;
        for s in &services {
            self.recompute(s).await?;
        }
        self.store
            .set_meta(FINGERPRINT_KEY.into(), fingerprint)
            .await?;
        tracing::info!(
            services = services.len(),
            "metric tables rebuilt for the current configuration"
        );
        Ok(true)
    }
}

/// The DORA figures of one service as an EMF line; figures without a value (no changes, no incidents) are
/// left out rather than published as zero.
pub fn dora_line(timestamp: Millis, service: &str, r: &DoraReport) -> String {
    use emf::{line, Unit};
    let mut metrics = vec![
        (
            "DeploymentsPerDay",
            r.deployment_frequency.per_day,
            Unit::None,
        ),
        (
            "Deployments",
            r.deployment_frequency.deployments as f64,
            Unit::Count,
        ),
    ];
    if let Some(v) = r.lead_time.median_seconds {
        metrics.push(("LeadTimeMedianSeconds", v, Unit::Seconds));
    }
    if let Some(v) = r.change_failure_rate.ratio {
        metrics.push(("ChangeFailureRate", v, Unit::None));
    }
    if let Some(v) = r.recovery_time.median_seconds {
        metrics.push(("RecoveryMedianSeconds", v, Unit::Seconds));
    }
    if let Some(v) = r.rework_rate.ratio {
        metrics.push(("ReworkRate", v, Unit::None));
    }
    line(timestamp, &[("Service", service)], &metrics)
}

/// One pass of the local consumer: receive a batch, process it, acknowledge what succeeded, dead-letter
/// poison messages. Returns how many messages were received.
pub async fn drain_once<Q: Queue, S: Store>(
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

    pub async fn handle<S: Store, P: Payloads>(
        aggregator: &Aggregator<S>,
        payloads: &P,
        event: SqsEvent,
        now: Millis,
    ) -> SqsBatchResponse {
        let mut failures = Vec::new();
        let mut batch = Vec::new();
        let mut ids = Vec::new();
        for record in event.records {
            let id = record.message_id.clone().unwrap_or_default();
            let message = match record.body.as_deref().map(Message::from_json) {
                Some(Ok(m)) => m,
                other => {
                    tracing::error!(message_id = %id, error = ?other.map(|r| r.err()), "unreadable queue message");
                    failures.push(id);
                    continue;
                }
            };
            match message.resolve(payloads).await {
                Ok(e) => {
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
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = failures
            .into_iter()
            .map(|item_identifier| {
                let mut f = BatchItemFailure::default();
                f.item_identifier = item_identifier;
                f
            })
            .collect();
        response
    }

    /// Why an invocation failed as a whole; Lambda reports it with its type, and SQS retries the batch.
    #[derive(Debug, thiserror::Error)]
    pub enum InvokeError {
        #[error("expected an SQS event or a scheduled event: {0}")]
        UnknownEvent(String),
        #[error("{0}")]
        Store(#[from] PortError),
        #[error("cannot encode the answer: {0}")]
        Encode(#[from] serde_json::Error),
    }

    impl From<InvokeError> for lambda_runtime::Diagnostic {
        fn from(e: InvokeError) -> Self {
            let error_type = match &e {
                InvokeError::UnknownEvent(_) => "UnknownEvent",
                InvokeError::Store(_) => "StoreUnavailable",
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
    pub async fn invoke<S: Store, P: Payloads>(
        aggregator: &Aggregator<S>,
        payloads: &P,
        event: serde_json::Value,
        now: Millis,
    ) -> Result<serde_json::Value, InvokeError> {
        match Invocation::from_json(event)? {
            Invocation::Batch(e) => Ok(serde_json::to_value(
                handle(aggregator, payloads, e, now).await,
            )?),
            Invocation::Scheduled => {
                aggregator.ensure_config_current().await?;
                let services = aggregator.services().await?;
                let n = services.len();
                aggregator.publish_figures(services, now).await;
                Ok(serde_json::json!({ "published": n }))
            }
        }
    }
}
