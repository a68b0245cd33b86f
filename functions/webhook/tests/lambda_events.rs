//! The sample API Gateway events in `events/` (one per registered provider, generated from the registry)
//! through the webhook's Lambda handler, on a real embedded store.

use em_core::secrets::EnvSecrets;
use em_sqlite::{EmbeddedStore, Options};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use em_agent_tests::invoke;
use em_core::ports::{Queue, SecretSource};
use em_core::time::Clock;
use em_webhook::{WebhookHandler, Webhooks};

/// The secret the sample events are signed with (events/README.md).
const TEST_SECRET: &str = "em-agent-test-secret";
/// When the sample events were "received", for schemes that sign a timestamp.
const RECEIVED_AT: i64 = 1_795_435_200_000;

fn event(provider: &str) -> String {
    let path = format!(
        "{}/../../events/webhook-{provider}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn body_json(r: &lambda_http::Response<lambda_http::Body>) -> serde_json::Value {
    match r.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).expect("json"),
        other => panic!("unexpected body {other:?}"),
    }
}

/// The webhook function as deployed, its clock set before each request.
struct Function {
    app: axum::Router,
    now: Arc<AtomicI64>,
}

impl Function {
    /// Over `handler`, pinned to `provider` when given.
    fn new<Q: Queue, S: SecretSource>(
        handler: WebhookHandler<Q, S>,
        provider: Option<&str>,
    ) -> Self {
        let now = Arc::new(AtomicI64::new(0));
        let read = now.clone();
        let webhooks = Webhooks::new(handler)
            .pinned_to(provider.map(str::to_string))
            .with_clock(Clock::from_fn(move || read.load(Ordering::SeqCst)));
        Function {
            app: em_webhook::app(Arc::new(webhooks)),
            now,
        }
    }

    /// Answers `req` as received at `at`.
    async fn handle(
        &self,
        req: lambda_http::Request,
        at: i64,
    ) -> lambda_http::Response<lambda_http::Body> {
        self.now.store(at, Ordering::SeqCst);
        invoke(&self.app, req).await
    }
}

fn request(text: &str) -> lambda_http::Request {
    lambda_http::request::from_str(text).expect("an API Gateway v2 event")
}

#[tokio::test]
async fn every_sample_event_is_accepted_once_then_a_duplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path(), Options::default()).expect("store");
    let secrets = em_providers::all()
        .iter()
        .fold(EnvSecrets::default(), |s, p| s.with(p.name, TEST_SECRET));
    let handler = Function::new(WebhookHandler::new(store.clone(), secrets), None);
    for p in em_providers::all() {
        let text = event(p.name);
        let r = handler.handle(request(&text), RECEIVED_AT).await;
        assert_eq!(r.status(), 202, "{}: {:?}", p.name, body_json(&r));
        assert_eq!(body_json(&r)["status"], "accepted");
        let r = handler.handle(request(&text), RECEIVED_AT + 1).await;
        assert_eq!(r.status(), 200, "{}", p.name);
        assert_eq!(body_json(&r)["status"], "duplicate");
    }
    assert_eq!(
        store.stats().await.expect("stats").deliveries,
        em_providers::all().len() as u64
    );
}

/// Whether the sample event's authentication covers its body (for a provider that takes several schemes,
/// the one its headers choose).
fn signs_its_body(p: &em_providers::Provider, event: &serde_json::Value) -> bool {
    let mut headers = http::HeaderMap::new();
    for (k, v) in event["headers"].as_object().expect("headers") {
        headers.insert(
            http::HeaderName::from_bytes(k.as_bytes()).expect("a name"),
            http::HeaderValue::from_str(v.as_str().expect("a text")).expect("a value"),
        );
    }
    p.auth.covers_body_of(&headers)
}

#[tokio::test]
async fn a_tampered_or_unconfigured_event_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path(), Options::default()).expect("store");
    for p in em_providers::all() {
        let configured = EnvSecrets::default().with(p.name, TEST_SECRET);
        let handler = Function::new(WebhookHandler::new(store.clone(), configured), None);
        // One byte of the body changed: a scheme that signs the body refuses it.
        let mut v: serde_json::Value = serde_json::from_str(&event(p.name)).expect("JSON");
        let body = v["body"].as_str().expect("a body").to_string();
        v["body"] = serde_json::Value::from(format!("{body} "));
        let r = handler.handle(request(&v.to_string()), RECEIVED_AT).await;
        if signs_its_body(p, &v) {
            assert_eq!(r.status(), 401, "{}: {:?}", p.name, body_json(&r));
            assert!(body_json(&r)["error"]
                .as_str()
                .unwrap_or_default()
                .contains("does not match"));
        }

        // A function pinned to a provider that has no secret is off.
        let handler = Function::new(
            WebhookHandler::new(
                store.clone(),
                EnvSecrets::from_lookup(em_providers::secret_vars(), |_| None),
            ),
            Some(p.name),
        );
        let r = handler.handle(request(&event(p.name)), RECEIVED_AT).await;
        assert_eq!(r.status(), 404, "{}", p.name);
        let error = body_json(&r)["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(error.contains(&p.secret_var()), "{}: {error}", p.name);
    }
    let unsigned_bodies = em_providers::all()
        .iter()
        .filter(|p| !signs_its_body(p, &serde_json::from_str(&event(p.name)).expect("JSON")))
        .count();
    assert_eq!(
        store.stats().await.expect("stats").deliveries,
        unsigned_bodies as u64
    );
}

#[tokio::test]
async fn a_signed_timestamp_outside_the_replay_window_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path(), Options::default()).expect("store");
    let timestamped: Vec<_> = em_providers::all()
        .iter()
        .filter(|p| p.auth.signing().kind() == "hmac-timestamped")
        .collect();
    for name in ["incident-io", "grafana"] {
        assert!(timestamped.iter().any(|p| p.name == name), "{name}");
    }
    let minutes = |n: i64| n * 60_000;
    for p in timestamped {
        let secrets = EnvSecrets::default().with(p.name, TEST_SECRET);
        // The sample was signed at RECEIVED_AT: received six minutes after or before, it is stale.
        let default = Function::new(WebhookHandler::new(store.clone(), secrets.clone()), None);
        for at in [RECEIVED_AT + minutes(6), RECEIVED_AT - minutes(6)] {
            let r = default.handle(request(&event(p.name)), at).await;
            assert_eq!(r.status(), 401, "{}: {:?}", p.name, body_json(&r));
            let error = body_json(&r)["error"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(
                error.ends_with("is outside the replay window"),
                "{}: {error}",
                p.name
            );
        }
        // A window configured wider (`EM_AGENT_REPLAY_WINDOW`) takes it; narrower refuses it sooner.
        let wide = Function::new(
            WebhookHandler::new(store.clone(), secrets.clone())
                .with_replay_window(std::time::Duration::from_secs(600)),
            None,
        );
        let r = wide
            .handle(request(&event(p.name)), RECEIVED_AT + minutes(6))
            .await;
        assert_eq!(r.status(), 202, "{}: {:?}", p.name, body_json(&r));
        let narrow = Function::new(
            WebhookHandler::new(store.clone(), secrets)
                .with_replay_window(std::time::Duration::from_secs(30)),
            None,
        );
        let r = narrow
            .handle(request(&event(p.name)), RECEIVED_AT + 31_000)
            .await;
        assert_eq!(r.status(), 401, "{}: {:?}", p.name, body_json(&r));
    }
}

/// The function answers its one route: another path is a 404 that lists it, another method a 405, and
/// neither reaches the queue.
#[tokio::test]
async fn an_unknown_path_or_method_is_refused_before_the_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path(), Options::default()).expect("store");
    let secrets = EnvSecrets::default().with("github", TEST_SECRET);
    let handler = Function::new(WebhookHandler::new(store.clone(), secrets), None);
    let sample: serde_json::Value = serde_json::from_str(&event("github")).expect("JSON");
    for (method, path, status) in [
        ("POST", "/webhooks/github/extra", 404),
        ("POST", "/v1/metrics/dora", 404),
        ("POST", "/", 404),
        ("GET", "/webhooks/github", 405),
    ] {
        let mut v = sample.clone();
        v["rawPath"] = path.into();
        v["requestContext"]["http"]["path"] = path.into();
        v["requestContext"]["http"]["method"] = method.into();
        let r = handler.handle(request(&v.to_string()), RECEIVED_AT).await;
        assert_eq!(r.status(), status, "{method} {path}: {:?}", body_json(&r));
        if status == 404 {
            assert_eq!(
                body_json(&r)["routes"],
                serde_json::json!(["POST /webhooks/{provider}"]),
                "{path}"
            );
        }
    }
    assert_eq!(store.stats().await.expect("stats").deliveries, 0);
    // The sample itself, at its own path, is accepted.
    let r = handler.handle(request(&event("github")), RECEIVED_AT).await;
    assert_eq!(r.status(), 202, "{:?}", body_json(&r));
}

/// Counts each provider's secret reads, over the secrets it wraps.
struct CountingSecrets {
    inner: EnvSecrets,
    reads: Arc<AtomicI64>,
}

impl SecretSource for CountingSecrets {
    async fn secrets(
        &self,
        provider: &str,
    ) -> Result<Option<Vec<Vec<u8>>>, em_core::ports::PortError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.secrets(provider).await
    }
}

#[tokio::test]
async fn a_delivery_reads_its_providers_secrets_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path(), Options::default()).expect("store");
    let reads = Arc::new(AtomicI64::new(0));
    let secrets = CountingSecrets {
        inner: em_providers::all()
            .iter()
            .fold(EnvSecrets::default(), |s, p| s.with(p.name, TEST_SECRET)),
        reads: reads.clone(),
    };
    let handler = Function::new(WebhookHandler::new(store, secrets), None);
    // A provider that signs the body (checked after the body is read) and one whose credentials are a
    // header (checked before): each is one read of the secrets, whichever checks run.
    for p in em_providers::all() {
        let before = reads.load(Ordering::SeqCst);
        let r = handler.handle(request(&event(p.name)), RECEIVED_AT).await;
        assert_eq!(r.status(), 202, "{}: {}", p.name, body_json(&r));
        assert_eq!(reads.load(Ordering::SeqCst) - before, 1, "{}", p.name);
    }
}
