//! `em-agent serve`: the webhook, aggregator and API handlers in one process, on the embedded store or on
//! the AWS adapters (`--backend aws`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::future::Future;

use em_aggregator::{drain_once, Aggregator};
use em_api::Api;
use em_aws::SqsQueue;
use em_core::config::Config;
use em_core::error::ApiError;
use em_core::ports::{DeadLetters, MetricsReader, PortError, Queue, SecretSource, Store};
use em_core::secrets::EnvSecrets;
use em_sqlite::{EmbeddedStore, Options};
use em_webhook::{BodyLimits, WebhookHandler, Webhooks};
use serde_json::json;

pub struct ServeOptions {
    pub addr: SocketAddr,
    pub config: Config,
    pub batch_size: usize,
    /// How far a signed timestamp may be from the time of receipt; the default when `None`.
    pub replay_window: Option<Duration>,
    pub limits: Limits,
}

/// What one client may hold of the server: a slow or stuck client gets its connection closed, and N clients
/// hold at most `max_connections` connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From a connection's first byte (or the end of its previous request) to the end of a request's headers.
    pub header_timeout: Duration,
    /// To read a whole request body.
    pub body_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long shutdown waits for requests in flight before closing their connections.
    pub shutdown_deadline: Duration,
    /// Webhook bodies held in memory at once, in bytes (what they declare, up to the body limit): a request
    /// waits for room, at most twice the body timeout, then gets a 503 the provider retries. Without it,
    /// `max_connections` bodies of 10 MiB could be read at once.
    pub bodies_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 256,
            shutdown_deadline: Duration::from_secs(10),
            bodies_in_flight: 64 * 1024 * 1024,
        }
    }
}

/// What `/v1/stats` and `/v1/deliveries/...` read, which the ports do not cover.
pub trait Inspect: Send + Sync + 'static {
    fn stats(&self) -> impl Future<Output = Result<serde_json::Value, PortError>> + Send;

    fn delivery_state(
        &self,
        provider: String,
        delivery_id: String,
    ) -> impl Future<Output = Result<Option<String>, PortError>> + Send;

    /// Whether the backend's own machinery runs (the embedded store's writer thread).
    fn alive(&self) -> bool {
        true
    }
}

impl Inspect for EmbeddedStore {
    fn alive(&self) -> bool {
        self.writer_alive()
    }

    async fn stats(&self) -> Result<serde_json::Value, PortError> {
        serde_json::to_value(EmbeddedStore::stats(self).await?).map_err(PortError::invalid)
    }

    async fn delivery_state(
        &self,
        provider: String,
        delivery_id: String,
    ) -> Result<Option<String>, PortError> {
        EmbeddedStore::delivery_state(self, provider, delivery_id)
            .await
            .map(|s| s.map(|s| s.to_string()))
    }
}

impl Inspect for SqsQueue {
    async fn stats(&self) -> Result<serde_json::Value, PortError> {
        let dead = self.dead_letter_count().await.ok();
        Ok(json!({
            "queue": self.queue_url(),
            "dead_letter_queue": self.dead_letter_url(),
            "dead_lettered": dead,
        }))
    }

    async fn delivery_state(
        &self,
        provider: String,
        delivery_id: String,
    ) -> Result<Option<String>, PortError> {
        SqsQueue::delivery_state(self, &provider, &delivery_id).await
    }
}

/// What the local routes (`/v1/stats`, `/v1/deliveries/...`, `/healthz`) and the consumer share.
struct Local<Q, T> {
    webhooks: Arc<Webhooks<Q, T>>,
    /// Cleared when the aggregator task ends, however it ends (its guard drops on a panic too).
    aggregating: Arc<std::sync::atomic::AtomicBool>,
}

/// The API tokens from the environment, if any is set.
pub fn api_tokens_from_env() -> Option<em_core::secrets::EnvSecrets> {
    let vars = [
        "EM_AGENT_API_TOKEN".to_string(),
        "EM_AGENT_API_TOKEN_PREVIOUS".to_string(),
    ];
    let set = vars
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|t| !t.is_empty()));
    set.then(|| em_core::secrets::EnvSecrets::from_env([(em_api::API_TOKEN, vars)]))
}

/// Held by the aggregator task: clears the flag when the task ends.
struct Running(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

struct ErrorResponse(ApiError);

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        // A 5xx is logged, with its request id, by the response itself.
        self.0.response().map(axum::body::Body::from)
    }
}

impl From<ApiError> for ErrorResponse {
    fn from(e: ApiError) -> Self {
        ErrorResponse(e)
    }
}

async fn stats<Q: Queue + Inspect, T: SecretSource>(
    State(state): State<Arc<Local<Q, T>>>,
) -> Result<Response, ErrorResponse> {
    let s = state
        .webhooks
        .handler
        .queue
        .stats()
        .await
        .map_err(ApiError::from)?;
    Ok(Json(s).into_response())
}

async fn delivery<Q: Queue + Inspect, T: SecretSource>(
    State(state): State<Arc<Local<Q, T>>>,
    Path((provider, id)): Path<(String, String)>,
) -> Result<Response, ErrorResponse> {
    match state
        .webhooks
        .handler
        .queue
        .delivery_state(provider.clone(), id.clone())
        .await
        .map_err(ApiError::from)?
    {
        Some(s) => {
            Ok(Json(json!({"provider": provider, "delivery_id": id, "state": s})).into_response())
        }
        None => Err(ApiError::NotFound(format!("no {provider} delivery {id:?}")).into()),
    }
}

/// Liveness: 200 while the webhook can queue and the aggregator drains; otherwise 503 naming what died
/// (a supervisor should restart the process).
async fn healthz<Q: Queue + Inspect, T: SecretSource>(
    State(state): State<Arc<Local<Q, T>>>,
) -> Response {
    let store = state.webhooks.handler.queue.alive();
    let aggregator = state.aggregating.load(std::sync::atomic::Ordering::SeqCst);
    if store && aggregator {
        return Json(json!({"status": "ok"})).into_response();
    }
    tracing::error!(store, aggregator, "unhealthy");
    (
        http::StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "unhealthy", "store_writer": store, "aggregator": aggregator})),
    )
        .into_response()
}

/// The routes the server answers, as `METHOD path`: the 404's list, and what the route tests iterate.
fn route_list() -> Vec<String> {
    let mut routes = em_webhook::router::routes();
    routes.extend(em_api::routes());
    routes.extend(LOCAL_API.iter().map(|p| format!("GET {p}")));
    routes.push("GET /healthz".into());
    routes
}

/// The `/v1` routes only the local server has, beside the metrics API's.
const LOCAL_API: [&str; 2] = ["/v1/stats", "/v1/deliveries/{provider}/{id}"];

/// The webhook's and the API's routers, as the functions serve them, with the local routes beside them;
/// the local `/v1` routes sit behind the API's token layer.
fn router<Q: Queue + Inspect, S: MetricsReader, T: SecretSource>(
    api: Arc<Api<S, EnvSecrets>>,
    local: Arc<Local<Q, T>>,
) -> Router {
    let [stats_path, delivery_path] = LOCAL_API;
    let local_api = Router::new()
        .route(stats_path, get(stats::<Q, T>))
        .route(delivery_path, get(delivery::<Q, T>))
        .with_state(local.clone());
    let health = Router::new()
        .route("/healthz", get(healthz::<Q, T>))
        .with_state(local.clone());
    let tokens = api.tokens.clone();
    let app = Router::new()
        .merge(em_webhook::router(local.webhooks.clone()))
        .merge(em_api::router(api))
        .merge(em_api::protect(local_api, tokens))
        .merge(health);
    em_webhook::router::with_fallbacks(app, route_list())
}

/// The local consumer: drains the queue, then sleeps until a delivery arrives (or a second passes, to pick
/// up messages whose visibility timeout expired).
async fn aggregate_forever<Q: Queue + Inspect, S: Store + MetricsReader, T: SecretSource>(
    state: Arc<Local<Q, T>>,
    aggregator: Aggregator<S>,
    batch: usize,
) {
    let _running = Running(state.aggregating.clone());
    let queued = state.webhooks.accepted();
    loop {
        match drain_once(&state.webhooks.handler.queue, &aggregator, batch).await {
            // Idle: take a step of a pending configuration change, if there is one.
            Ok(0) if pending_rebuild(&aggregator).await => {}
            Ok(0) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), queued.notified()).await;
            }
            // A part batch under load: let more arrive, so each pass's writes and recompute serve many.
            Ok(n) if n < batch => tokio::time::sleep(Duration::from_millis(20)).await,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "aggregator pass failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Takes one step of a pending configuration change; whether more remain.
async fn pending_rebuild<S: Store + MetricsReader>(aggregator: &Aggregator<S>) -> bool {
    match aggregator.rebuild_step(em_aggregator::REBUILD_STEP).await {
        Ok(left) => left > 0,
        Err(e) => {
            tracing::error!(error = %e, "configuration step failed");
            false
        }
    }
}

/// Ctrl-C, or SIGTERM from a service manager or container runtime. Nothing is lost either way: every answered
/// delivery is already on disk.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}

/// Serves on any adapters: `queue` takes the deliveries, `store` the facts and metric rows (for the embedded
/// backend both are the one SQLite store).
pub async fn serve<
    Q: Queue + Inspect,
    S: Store + MetricsReader + em_core::ports::Outbox + Clone,
    T: SecretSource,
>(
    opts: ServeOptions,
    queue: Q,
    store: S,
    secrets: T,
    describe: String,
    enabled: Vec<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let config = Arc::new(opts.config);
    // A configuration change is applied in steps by the consumer, between deliveries; until it is done the
    // API says which configuration its figures reflect.
    let mut aggregator = Aggregator::new(store.clone(), config.clone());
    // Real-time notices, for teams that asked for them, to the addresses in the environment.
    if config.teams().iter().any(|t| t.notices) {
        aggregator = aggregator.with_after_linking(Arc::new(em_digest::notices::Notices {
            store: store.clone(),
            addresses: em_digest::EnvAddresses,
            out: em_digest::Outbound::on_aws(
                em_notify::send::Sender::new(em_digest::notices::policy())?,
                &em_aws::sdk_config().await,
                std::env::var(em_digest::FROM_VAR)
                    .ok()
                    .filter(|f| !f.is_empty()),
            ),
            config: config.clone(),
            clock: em_core::time::now_millis,
        }));
    }
    // One step before listening: on a new or unchanged store that is all there is to do.
    pending_rebuild(&aggregator).await;
    let handler = match opts.replay_window {
        Some(w) => WebhookHandler::new(queue, secrets).with_replay_window(w),
        None => WebhookHandler::new(queue, secrets),
    };
    let webhooks = Webhooks::new(handler).with_limits(BodyLimits {
        body_timeout: opts.limits.body_timeout,
        bodies_in_flight: opts.limits.bodies_in_flight,
    });
    let state = Arc::new(Local {
        webhooks: Arc::new(webhooks),
        aggregating: Arc::new(std::sync::atomic::AtomicBool::new(true)),
    });
    let api = Arc::new(Api {
        reader: store,
        config,
        tokens: api_tokens_from_env().map(Arc::new),
        clock: em_core::time::Clock::system(),
    });
    tokio::spawn(aggregate_forever(
        state.clone(),
        aggregator,
        opts.batch_size,
    ));
    let listener = tokio::net::TcpListener::bind(opts.addr).await?;
    let addr = listener.local_addr()?;
    let listed = enabled.join(", ");
    tracing::info!(%addr, backend = %describe, providers = %listed, "em-agent listening");
    for p in em_providers::all() {
        let on = enabled.iter().any(|e| e == p.name);
        tracing::info!(provider = p.name, route = %p.route(), enabled = on, "webhook");
    }
    if enabled.is_empty() {
        let vars: Vec<String> = em_providers::all().iter().map(|p| p.secret_var()).collect();
        tracing::warn!("no provider is enabled: set one of {}", vars.join(", "));
    }
    serve_connections(listener, router(api, state), opts.limits, shutdown_signal()).await;
    Ok(())
}

/// Accepts connections until `shutdown`, each served over HTTP/1.1 with a header read deadline (hyper's,
/// which needs its timer: `axum::serve` sets none), at most `max_connections` at once. On shutdown, idle
/// connections close, requests in flight get `shutdown_deadline` to finish, then everything is dropped.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let (closing, closed) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // A free slot first: past the limit, new connections wait in the listen backlog.
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let service = TowerToHyperService::new(app.clone());
        let mut closed = closed.clone();
        connections.spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let conn = http.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = closed.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(slot);
        });
    }
    let _ = closing.send(true);
    let drained = tokio::time::timeout(limits.shutdown_deadline, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len(),
            "requests still in flight at the shutdown deadline: closing them"
        );
        connections.abort_all();
    }
}

/// The embedded backend: one SQLite file in `data_dir`.
pub async fn serve_embedded(
    opts: ServeOptions,
    data_dir: &std::path::Path,
    store_options: Options,
    secrets: EnvSecrets,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = EmbeddedStore::open(data_dir, store_options)?;
    let enabled = secrets.enabled().iter().map(|s| s.to_string()).collect();
    let describe = format!("embedded {}", store.path().display());
    serve(opts, store.clone(), store, secrets, describe, enabled).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/healthz` says 503 once the aggregator task has ended (its guard dropped), 200 while it runs.
    #[tokio::test]
    async fn health_follows_the_aggregator_task() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path(), em_sqlite::Options::default()).expect("store");
        let secrets = em_core::secrets::EnvSecrets::from_env(std::iter::empty());
        let state = Arc::new(Local {
            webhooks: Arc::new(Webhooks::new(WebhookHandler::new(store, secrets))),
            aggregating: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        });
        let running = Running(state.aggregating.clone());
        assert_eq!(healthz(State(state.clone())).await.status(), 200);
        // The task ends (a panic unwinds the same way): its guard drops.
        drop(running);
        let r = healthz(State(state.clone())).await;
        assert_eq!(r.status(), 503);
        let body = axum::body::to_bytes(r.into_body(), 1 << 16)
            .await
            .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["aggregator"], false);
        assert_eq!(v["store_writer"], true);
    }
}
