//! The sample API Gateway request in `events/` through the API's Lambda handler.

use std::sync::Arc;

use em_agent_tests::invoke;
use em_core::config::Config;
use em_core::secrets::EnvSecrets;
use em_sqlite::{EmbeddedStore, Options};

fn json(r: &lambda_http::Response<lambda_http::Body>) -> serde_json::Value {
    match r.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).expect("json"),
        other => panic!("unexpected body {other:?}"),
    }
}

/// The API function as deployed over `store`, its clock at 0.
fn api(store: &EmbeddedStore, config: &Config, tokens: &EnvSecrets) -> axum::Router {
    em_api::app(Arc::new(em_api::Api {
        reader: store.clone(),
        config: Arc::new(config.clone()),
        tokens: Some(Arc::new(tokens.clone())),
        clock: em_core::time::Clock::from_fn(|| 0),
    }))
}

#[tokio::test]
async fn answers_the_sample_query_and_rejects_a_bad_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path(), Options::default()).expect("store");
    let config = Config::default();
    // The token the sample event carries (events/README.md).
    let tokens = EnvSecrets::default().with(em_api::API_TOKEN, "em-agent-test-token");
    let path = format!("{}/../../events/api-dora.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).expect("event");
    let r = invoke(
        &api(&store, &config, &tokens),
        lambda_http::request::from_str(&text).expect("event"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v = json(&r);
    assert_eq!(v["scope"]["service"], "checkout");
    assert_eq!(v["from"], "2025-03-03");
    assert_eq!(v["deployment_frequency"]["deployments"], 0);
    assert_eq!(v["deployment_frequency"]["level"], "low");
    assert!(v["lead_time"]["level"].is_null());

    let bad = text.replace("service=checkout", "servise=checkout");
    let r = invoke(
        &api(&store, &config, &tokens),
        lambda_http::request::from_str(&bad).expect("event"),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(json(&r)["error"]
        .as_str()
        .unwrap_or_default()
        .contains("servise"));

    // Never public: no token, a wrong token, and no configured token are all 401s.
    for (event, tokens) in [
        (
            text.replace("Bearer em-agent-test-token", ""),
            tokens.clone(),
        ),
        (text.replace("em-agent-test-token", "guess"), tokens.clone()),
        (text.clone(), EnvSecrets::default()),
    ] {
        let r = invoke(
            &api(&store, &config, &tokens),
            lambda_http::request::from_str(&event).expect("event"),
        )
        .await;
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert!(json(&r)["error"]
            .as_str()
            .unwrap_or_default()
            .contains("token"));
    }
}

/// Every route of the API's own list wants the token, and answers with it; a path not on the list is a 404,
/// not DORA figures.
#[tokio::test]
async fn every_route_wants_the_token_and_an_unknown_path_is_not_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path(), Options::default()).expect("store");
    let config = Config::default();
    let tokens = EnvSecrets::default().with(em_api::API_TOKEN, "em-agent-test-token");
    let path = format!("{}/../../events/api-dora.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).expect("event");
    let at = |path: &str, token: bool| {
        let mut event: serde_json::Value = serde_json::from_str(&text).expect("json");
        event["rawPath"] = path.into();
        event["rawQueryString"] = if path.ends_with("/series") {
            "from=2025-03-03&to=2025-03-10&interval=week"
        } else if path.starts_with("/v1/metrics/") {
            "from=2025-03-03&to=2025-03-10"
        } else {
            ""
        }
        .into();
        event["requestContext"]["http"]["path"] = path.into();
        if !token {
            event["headers"]
                .as_object_mut()
                .expect("headers")
                .retain(|k, _| !k.eq_ignore_ascii_case("authorization"));
        }
        lambda_http::request::from_str(&event.to_string()).expect("event")
    };
    assert_eq!(em_api::ROUTES.len(), 7);
    for (path, _) in em_api::ROUTES {
        let r = invoke(&api(&store, &config, &tokens), at(path, false)).await;
        assert_eq!(r.status(), 401, "{path}");
        let r = invoke(&api(&store, &config, &tokens), at(path, true)).await;
        assert_eq!(r.status(), 200, "{path}: {:?}", json(&r));
    }
    for path in ["/v1/metrics/doraX", "/v1/metrics/delivery/x/series", "/"] {
        let r = invoke(&api(&store, &config, &tokens), at(path, true)).await;
        assert_eq!(r.status(), 404, "{path}");
        assert!(json(&r)["error"]
            .as_str()
            .unwrap_or_default()
            .contains("/v1/metrics/dora"));
        // The same list, as data, as the local server's 404 gives.
        assert_eq!(
            json(&r)["routes"].as_array().map(Vec::len),
            Some(em_api::ROUTES.len()),
            "{path}"
        );
    }
    // A method the API does not serve.
    let mut event: serde_json::Value = serde_json::from_str(&text).expect("json");
    event["requestContext"]["http"]["method"] = "POST".into();
    let r = invoke(
        &api(&store, &config, &tokens),
        lambda_http::request::from_str(&event.to_string()).expect("event"),
    )
    .await;
    assert_eq!(r.status(), 405);
}
