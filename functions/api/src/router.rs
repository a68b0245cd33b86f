//! The metrics API's one HTTP front door: every route of [`ROUTES`], each `GET`, behind one token layer;
//! run by `lambda_http` on Lambda and merged into `em-agent serve`'s router.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use em_core::config::Config;
use em_core::error::ApiError;
use em_core::ports::{MetricsReader, SecretSource};
use em_core::time::Clock;

use crate::{answer, authenticate, Route, ROUTES};

/// The API's state: where figures are read, what they are read with, and who may read them.
pub struct Api<R, T> {
    pub reader: R,
    pub config: Arc<Config>,
    /// The accepted API tokens; `None`: the API is open (a developer's machine, or a route the network
    /// already restricts).
    pub tokens: Option<Arc<T>>,
    pub clock: Clock,
}

/// The routes this router answers, as `METHOD path`.
pub fn routes() -> Vec<String> {
    ROUTES.iter().map(|(p, _)| format!("GET {p}")).collect()
}

/// The metrics routes alone, so that they merge with others; [`app`] adds the fallbacks.
pub fn router<R: MetricsReader, T: SecretSource>(api: Arc<Api<R, T>>) -> Router {
    let mut router = Router::new();
    for (path, route) in ROUTES {
        let route = *route;
        router = router.route(
            path,
            get(
                move |State(api): State<Arc<Api<R, T>>>, RawQuery(q): RawQuery| async move {
                    metrics(&api, route, q).await
                },
            ),
        );
    }
    let tokens = api.tokens.clone();
    protect(router.with_state(api), tokens)
}

/// The API function on Lambda: its routes, a 404 that lists them, a JSON 405.
pub fn app<R: MetricsReader, T: SecretSource>(api: Arc<Api<R, T>>) -> Router {
    let listed = Arc::new(routes());
    router(api)
        .fallback(move || {
            let listed = listed.clone();
            async move { em_core::http::not_found(&listed).map(Body::from) }
        })
        .method_not_allowed_fallback(|| async { error(ApiError::MethodNotAllowed) })
}

/// Puts every route of `router` behind the bearer token when there are tokens: a route added to the
/// router cannot miss it. Unmatched paths stay outside, so they get the 404 that lists the routes.
pub fn protect<T: SecretSource>(router: Router, tokens: Option<Arc<T>>) -> Router {
    match tokens {
        None => router,
        Some(tokens) => router.route_layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let tokens = tokens.clone();
                async move {
                    match authenticate(tokens.as_ref(), request.headers()).await {
                        Ok(()) => next.run(request).await,
                        Err(e) => error(e),
                    }
                }
            },
        )),
    }
}

fn error(e: ApiError) -> Response {
    // A 5xx is logged, with its request id, by the response itself.
    e.response().map(Body::from)
}

async fn metrics<R: MetricsReader, T: SecretSource>(
    api: &Api<R, T>,
    route: Route,
    raw: Option<String>,
) -> Response {
    let now = api.clock.now();
    match answer(&api.reader, &api.config, route, raw.as_deref(), now).await {
        Ok(value) => em_core::http::json_response(200, &value).map(Body::from),
        Err(e) => error(e),
    }
}
