//! The webhook handler: authenticate → name → enqueue, and answer. Nothing here parses facts, so the answer
//! is fast and a delivery is acknowledged only once it is durably queued.

use bytes::Bytes;
use em_core::error::ApiError;
use em_core::ports::{EnqueueOutcome, Envelope, Queue, SecretSource};
use em_core::time::Millis;
use em_providers::auth::{Clock, DEFAULT_REPLAY_WINDOW};
use http::HeaderMap;
use serde_json::json;

/// API Gateway's own payload limit, and so ours.
pub const DEFAULT_MAX_BODY: usize = 10 * 1024 * 1024;

/// A successful answer: 202 for a new delivery, 200 for one seen before.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Reply {
    pub fn response(&self) -> http::Response<String> {
        em_core::http::json_response(self.status, &self.body)
    }
}

pub struct WebhookHandler<Q, S> {
    pub queue: Q,
    pub secrets: S,
    pub max_body: usize,
    /// How far a signed timestamp may be from the time of receipt, for the schemes that sign one.
    pub replay_window: Millis,
}

impl<Q: Queue, S: SecretSource> WebhookHandler<Q, S> {
    pub fn new(queue: Q, secrets: S) -> Self {
        WebhookHandler {
            queue,
            secrets,
            max_body: DEFAULT_MAX_BODY,
            replay_window: DEFAULT_REPLAY_WINDOW,
        }
    }

    pub fn with_replay_window(mut self, window: std::time::Duration) -> Self {
        self.replay_window = Millis::try_from(window.as_millis()).unwrap_or(Millis::MAX);
        self
    }

    /// The provider and its secrets; fail closed: no secret means the provider is off, never open.
    async fn provider_secrets(
        &self,
        provider: &str,
    ) -> Result<(&'static em_providers::Provider, Vec<Vec<u8>>), ApiError> {
        let p = em_providers::by_name(provider)
            .ok_or_else(|| ApiError::UnknownProvider(provider.to_string()))?;
        let secrets = self
            .secrets
            .secrets(p.name)
            .await?
            .filter(|s| s.iter().any(|s| !s.is_empty()))
            .ok_or_else(|| ApiError::ProviderDisabled {
                provider: p.name.to_string(),
                hint: self.secrets.enable_hint(p.name),
            })?;
        Ok((p, secrets))
    }

    /// What can be checked before the body is read: the provider is known and on, and, for a provider
    /// whose credentials are a header (a token, a password) rather than a signature of the body, that
    /// header. A server that reads bodies itself calls this first, so a sender without credentials cannot
    /// make it read 10 MiB. The secrets it read are the ones [`WebhookHandler::handle`] checks the body
    /// with: one read per delivery, and a rotation cannot fall between the two checks.
    pub async fn precheck(
        &self,
        provider: &str,
        headers: &HeaderMap,
        received_at: Millis,
    ) -> Result<Admitted, ApiError> {
        let (p, secrets) = self.provider_secrets(provider).await?;
        if !p.auth.covers_body_of(headers) {
            let clock = Clock {
                now: received_at,
                replay_window: self.replay_window,
            };
            p.authenticate(headers, b"", &secrets, clock)?;
        }
        Ok(Admitted {
            provider: p,
            secrets,
        })
    }

    /// Authenticates the body of a delivery [`WebhookHandler::precheck`] admitted, names it and enqueues it.
    pub async fn handle(
        &self,
        admitted: Admitted,
        headers: &HeaderMap,
        body: Bytes,
        received_at: Millis,
    ) -> Result<Reply, ApiError> {
        let Admitted {
            provider: p,
            secrets,
        } = admitted;
        if body.len() > self.max_body {
            return Err(ApiError::PayloadTooLarge {
                limit: self.max_body,
            });
        }
        let clock = Clock {
            now: received_at,
            replay_window: self.replay_window,
        };
        p.authenticate(headers, &body, &secrets, clock)?;
        let inspection = p.inspect(headers, &body)?;
        let delivery_id = inspection.delivery_id.clone();
        let outcome = self
            .queue
            .enqueue(Envelope {
                provider: p.name.to_string(),
                delivery_id: inspection.delivery_id,
                event: inspection.event,
                received_at,
                body,
            })
            .await?;
        Ok(match outcome {
            EnqueueOutcome::Accepted => Reply {
                status: 202,
                body: json!({ "status": "accepted", "delivery_id": delivery_id }),
            },
            EnqueueOutcome::Duplicate => Reply {
                status: 200,
                body: json!({ "status": "duplicate", "delivery_id": delivery_id }),
            },
        })
    }
}

/// A delivery whose provider is known and on, and whose header credentials (if the provider has no body
/// signature) passed: its provider and the secrets read for it.
pub struct Admitted {
    provider: &'static em_providers::Provider,
    secrets: Vec<Vec<u8>>,
}

pub mod router;
pub use router::{app, router, BodyLimits, Webhooks};
