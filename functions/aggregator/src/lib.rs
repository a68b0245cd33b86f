//! The aggregator: parse deliveries into facts, store them idempotently, and recompute the metric tables of
//! every service they touch. Any failure is reported per message so that only that message is retried.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use em_agent_shared::config::Config;
use em_agent_shared::domain::Fact;
use em_agent_shared::metrics::derive::{derive, DeploymentFact, IncidentEventFact, ServiceFacts};
use em_agent_shared::ports::{Envelope, PortError, Queue, Store, StoredFacts};
use em_agent_shared::providers;

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
        let mut results: Vec<Result<(), Failure>> = Vec::with_capacity(batch.len());
        let mut parsed: Vec<Vec<Fact>> = Vec::with_capacity(batch.len());
        for e in batch {
            let facts = match providers::by_name(&e.provider) {
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
        for (service, messages) in touched {
            if let Err(e) = self.recompute(&service).await {
                tracing::warn!(%service, error = %e, "recompute failed");
                for i in messages {
                    results[i] = Err(Failure::Retry(e.to_string()));
                }
            }
        }
        results
    }

    /// Rebuilds one service's metric tables from all its facts.
    pub async fn recompute(&self, service: &str) -> Result<(), PortError> {
        let stored = self
            .store
            .load_facts(
                self.config.repositories_of(service),
                self.config.aliases_of(service),
            )
            .await?;
        let facts = service_facts(&self.config, stored);
        let derived = derive(&facts, self.config.attribution_window());
        self.store
            .replace_derived(service.to_string(), derived)
            .await
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
        let sources = self.store.fact_sources().await?;
        let services: BTreeSet<String> = sources
            .repositories
            .iter()
            .map(|r| self.config.service_for_repo(r))
            .chain(
                sources
                    .incident_services
                    .iter()
                    .map(|n| self.config.service_for_alias(n)),
            )
            .collect();
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

    pub async fn handle<S: Store>(aggregator: &Aggregator<S>, event: SqsEvent) -> SqsBatchResponse {
        let mut failures = Vec::new();
        let mut batch = Vec::new();
        let mut ids = Vec::new();
        for record in event.records {
            let id = record.message_id.clone().unwrap_or_default();
            match record.body.as_deref().map(Envelope::from_json) {
                Some(Ok(e)) => {
                    batch.push(e);
                    ids.push(id);
                }
                other => {
                    tracing::error!(message_id = %id, error = ?other.map(|r| r.err()), "unreadable queue message");
                    failures.push(id);
                }
            }
        }
        for (id, result) in ids.into_iter().zip(aggregator.process_batch(&batch).await) {
            if let Err(f) = result {
                tracing::warn!(message_id = %id, failure = ?f, "message failed");
                failures.push(id);
            }
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
        response
    }
}
