//! The webhook function's one HTTP front door, `POST /webhooks/{provider}`: run by `lambda_http` on Lambda
//! and merged into `em-agent serve`'s router. What a delivery may cost the process (its body's size, the
//! time to read it, the room all bodies read at once may take) is applied here, once, for both.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use em_core::emf;
use em_core::error::ApiError;
use em_core::ports::{PortError, Queue, SecretSource};
use em_core::time::Clock;
use tokio::sync::{Notify, Semaphore};

use crate::{Reply, WebhookHandler};

/// The route, as axum writes it.
pub const PATH: &str = "/webhooks/{provider}";

/// The routes this router answers, as `METHOD path`.
pub fn routes() -> Vec<String> {
    vec![format!("POST {PATH}")]
}

/// What reading bodies may hold of the process.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// To read a whole request body.
    pub body_timeout: Duration,
    /// Webhook bodies held in memory at once, in bytes (what they declare, up to the body limit): a request
    /// waits for room, at most twice the body timeout, then gets a 503 the provider retries.
    pub bodies_in_flight: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            body_timeout: Duration::from_secs(30),
            bodies_in_flight: 64 * 1024 * 1024,
        }
    }
}

/// The webhook front door's state: the handler and what it is allowed to hold.
pub struct Webhooks<Q, S> {
    pub handler: WebhookHandler<Q, S>,
    /// One function per provider: the provider it serves, whatever the path says.
    pinned: Option<String>,
    clock: Clock,
    body_timeout: Duration,
    /// Room for the bodies being read, one permit a byte.
    bodies: Arc<Semaphore>,
    bodies_total: usize,
    /// One EMF line a delivery (`Deliveries` by provider and outcome), which CloudWatch reads from a Lambda
    /// function's standard output.
    metrics: bool,
    accepted: Arc<Notify>,
}

impl<Q: Queue, S: SecretSource> Webhooks<Q, S> {
    pub fn new(handler: WebhookHandler<Q, S>) -> Self {
        let limits = BodyLimits::default();
        Webhooks {
            handler,
            pinned: None,
            clock: Clock::system(),
            body_timeout: limits.body_timeout,
            bodies: Arc::new(Semaphore::new(limits.bodies_in_flight)),
            bodies_total: limits.bodies_in_flight,
            metrics: false,
            accepted: Arc::new(Notify::new()),
        }
    }

    /// Serves `provider` alone, whatever the path names (one function per provider behind its own route).
    pub fn pinned_to(mut self, provider: Option<String>) -> Self {
        self.pinned = provider;
        self
    }

    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_limits(mut self, limits: BodyLimits) -> Self {
        let total = limits.bodies_in_flight.max(1);
        self.body_timeout = limits.body_timeout;
        self.bodies = Arc::new(Semaphore::new(total));
        self.bodies_total = total;
        self
    }

    /// Emits the `Deliveries` metric (on Lambda).
    pub fn with_metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// Notified after each accepted delivery: the local consumer wakes on it.
    pub fn accepted(&self) -> Arc<Notify> {
        self.accepted.clone()
    }
}

/// The router: `POST /webhooks/{provider}` alone, so that it merges with others; a front door of its own
/// adds the fallbacks with [`with_fallbacks`].
pub fn router<Q: Queue, S: SecretSource>(app: Arc<Webhooks<Q, S>>) -> Router {
    Router::new()
        .route(PATH, post(deliver::<Q, S>))
        // The route reads its body itself, with its own limit and a JSON 413.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(app)
}

/// A front door's answers to what it does not serve: a 404 listing `routes`, a JSON 405.
pub fn with_fallbacks(router: Router, routes: Vec<String>) -> Router {
    let routes = Arc::new(routes);
    router
        .fallback(move || {
            let routes = routes.clone();
            async move { em_core::http::not_found(&routes).map(Body::from) }
        })
        .method_not_allowed_fallback(|| async { error(ApiError::MethodNotAllowed) })
}

/// The webhook function on Lambda: its route and its fallbacks.
pub fn app<Q: Queue, S: SecretSource>(app: Arc<Webhooks<Q, S>>) -> Router {
    with_fallbacks(router(app), routes())
}

fn error(e: ApiError) -> Response {
    // A 5xx is logged, with its request id, by the response itself.
    e.response().map(Body::from)
}

fn reply(r: Reply) -> Response {
    r.response().map(Body::from)
}

async fn deliver<Q: Queue, S: SecretSource>(
    State(app): State<Arc<Webhooks<Q, S>>>,
    Path(provider): Path<String>,
    request: Request,
) -> Response {
    let name = app.pinned.clone().unwrap_or(provider);
    let received_at = app.clock.now();
    let result = receive(&app, &name, request, received_at).await;
    if app.metrics && em_providers::by_name(&name).is_some() {
        let outcome = match &result {
            Ok(r) if r.status == 202 => "accepted",
            Ok(_) => "duplicate",
            Err(e) if e.status() == 401 => "rejected",
            Err(e) if e.status() >= 500 => "unavailable",
            Err(_) => "invalid",
        };
        emf::emit(emf::line(
            received_at,
            &[("Provider", &name), ("Outcome", outcome)],
            &[("Deliveries", 1.0, emf::Unit::Count)],
        ));
    }
    match result {
        Ok(r) => {
            if r.status == 202 {
                app.accepted.notify_one();
            }
            reply(r)
        }
        Err(e) => {
            if e.status() < 500 {
                tracing::info!(error = %e, provider = %name, status = e.status(), "delivery rejected");
            } else {
                tracing::warn!(provider = %name, status = e.status(), "delivery not accepted");
            }
            error(e)
        }
    }
}

/// Checks what can be checked before the body is read, reads it within the limits, then hands it over.
async fn receive<Q: Queue, S: SecretSource>(
    app: &Webhooks<Q, S>,
    provider: &str,
    request: Request,
    received_at: em_core::time::Millis,
) -> Result<Reply, ApiError> {
    let limit = app.handler.max_body;
    let (parts, body) = request.into_parts();
    // Unknown, switched off, or a token provider without its token: answered before the body is read.
    let admitted = app
        .handler
        .precheck(provider, &parts.headers, received_at)
        .await?;
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        let _ = tokio::time::timeout(app.body_timeout, discard(body, limit)).await;
        return Err(ApiError::PayloadTooLarge { limit });
    }
    // Room for the body before it is read: what it declares (the limit when it declares nothing), never
    // more than there is in all.
    let room = declared
        .map_or(limit, |n| n as usize)
        .clamp(1, limit.max(1))
        .min(app.bodies_total);
    let wait = app.body_timeout.saturating_mul(2);
    let permits = u32::try_from(room).unwrap_or(u32::MAX);
    let _room =
        match tokio::time::timeout(wait, app.bodies.clone().acquire_many_owned(permits)).await {
            Ok(Ok(p)) => p,
            _ => {
                return Err(ApiError::Unavailable(PortError::transient(
                    "too many deliveries are being read at once",
                )))
            }
        };
    let read = axum::body::to_bytes(body, limit.saturating_add(1));
    let body: Bytes = match tokio::time::timeout(app.body_timeout, read).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return Err(ApiError::PayloadTooLarge { limit }),
        Err(_) => {
            return Err(ApiError::BodyTimeout {
                seconds: app.body_timeout.as_secs(),
            })
        }
    };
    app.handler
        .handle(admitted, &parts.headers, body, received_at)
        .await
}

/// Reads and drops an oversized body (up to a few times the limit) so that the client, still sending, gets
/// to read the 413 instead of a broken connection.
async fn discard(mut body: Body, limit: usize) {
    use http_body_util::BodyExt;
    let mut left = limit.saturating_mul(4);
    while let Some(Ok(frame)) = body.frame().await {
        let n = frame.data_ref().map_or(0, |d| d.len());
        if n >= left {
            break;
        }
        left -= n;
    }
}
