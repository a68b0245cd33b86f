//! The sample API Gateway events in `events/` through the webhook's Lambda handler, on a real embedded store.

use em_agent_shared::embedded::{EmbeddedStore, EnvSecrets, Options};
use em_webhook::{lambda, WebhookHandler};

const TEST_SECRET: &str = "em-agent-test-secret";

fn event(name: &str) -> String {
    let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn body_json(r: &lambda_http::Response<lambda_http::Body>) -> serde_json::Value {
    match r.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).expect("json"),
        other => panic!("unexpected body {other:?}"),
    }
}

#[tokio::test]
async fn sample_events_are_accepted_once_then_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path(), Options::default()).expect("store");
    let secrets = EnvSecrets::default()
        .with("github", TEST_SECRET)
        .with("gitlab", TEST_SECRET)
        .with("pagerduty", TEST_SECRET);
    let handler = WebhookHandler::new(store.clone(), secrets);
    for provider in ["github", "gitlab", "pagerduty"] {
        let text = event(&format!("webhook-{provider}.json"));
        let req = lambda_http::request::from_str(&text).expect("an API Gateway v2 event");
        let r = lambda::handle(&handler, None, req, 1).await;
        assert_eq!(r.status(), 202, "{provider}: {:?}", body_json(&r));
        assert_eq!(body_json(&r)["status"], "accepted");
        let req = lambda_http::request::from_str(&text).expect("event");
        let r = lambda::handle(&handler, None, req, 2).await;
        assert_eq!(r.status(), 200);
        assert_eq!(body_json(&r)["status"], "duplicate");
    }
    assert_eq!(store.stats().await.expect("stats").deliveries, 3);
}

#[tokio::test]
async fn a_tampered_or_unconfigured_event_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path(), Options::default()).expect("store");
    let handler = WebhookHandler::new(
        store.clone(),
        EnvSecrets::default().with("github", TEST_SECRET),
    );
    let text = event("webhook-github.json").replacen("acme-shop", "evil-shop", 1);
    let r = lambda::handle(
        &handler,
        None,
        lambda_http::request::from_str(&text).expect("event"),
        1,
    )
    .await;
    assert_eq!(r.status(), 401);
    assert!(body_json(&r)["error"]
        .as_str()
        .unwrap_or_default()
        .contains("X-Hub-Signature-256"));
    // A function pinned to a provider that has no secret is off.
    let text = event("webhook-gitlab.json");
    let r = lambda::handle(
        &handler,
        Some("gitlab"),
        lambda_http::request::from_str(&text).expect("event"),
        1,
    )
    .await;
    assert_eq!(r.status(), 404);
    assert!(body_json(&r)["error"]
        .as_str()
        .unwrap_or_default()
        .contains("EM_AGENT_GITLAB_SECRET"));
    assert_eq!(store.stats().await.expect("stats").deliveries, 0);
}
