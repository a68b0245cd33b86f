//! The basic scenario end to end: signed deliveries over HTTP into `em-agent serve`, and every query of
//! `expected.json` answered exactly, whatever the delivery order.

use crate::common;

use crate::common::{
    assert_adds_up, assert_matches, figures_of, load_deliveries, post_signed, scenario_dir,
    secrets, shuffle, Delivery, Server,
};
use serde_json::Value;

async fn check_expected(server: &Server, client: &reqwest::Client) {
    let expected: Value = serde_json::from_slice(
        &std::fs::read(scenario_dir().join("expected.json")).expect("expected.json"),
    )
    .expect("json");
    let cases = expected.as_array().expect("a list");
    assert!(cases.len() >= 16);
    let mut deployments = 0;
    let mut failed_attempts = 0;
    for case in cases {
        let query: Vec<(String, String)> = case["query"]
            .as_object()
            .expect("query")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let resp = client
            .get(server.url("/v1/metrics/dora"))
            .query(&query)
            .send()
            .await
            .expect("api answers");
        assert_eq!(resp.status(), 200, "query {query:?}");
        let got: Value = resp.json().await.expect("json");
        assert_matches(&figures_of(&got), &case["expect"], &format!("{query:?}"));
        assert_eq!(got["configuration"]["current"], true, "{got}");

        // The same window as a series and broken down: every additive figure adds up to the window's.
        for interval in ["day", "week", "month"] {
            let mut q = query.clone();
            q.push(("interval".into(), interval.into()));
            let resp = client
                .get(server.url("/v1/metrics/dora/series"))
                .query(&q)
                .send()
                .await
                .expect("api answers");
            assert_eq!(resp.status(), 200, "series {q:?}");
            let series: Value = resp.json().await.expect("json");
            assert_eq!(series["interval"], interval);
            assert_adds_up(&got, &series["buckets"], &format!("{q:?}"));
        }
        for by in ["service", "repository", "environment"] {
            let mut q = query.clone();
            q.push(("group_by".into(), by.into()));
            let resp = client
                .get(server.url("/v1/metrics/dora"))
                .query(&q)
                .send()
                .await
                .expect("api answers");
            assert_eq!(resp.status(), 200, "groups {q:?}");
            let grouped: Value = resp.json().await.expect("json");
            assert_eq!(grouped["deployment_frequency"], got["deployment_frequency"]);
            assert_adds_up(&got, &grouped["groups"], &format!("{q:?}"));
        }
        deployments += got["deployment_frequency"]["deployments"]
            .as_u64()
            .unwrap_or(0);

        // The delivery metrics of the same window: every production deployment is a successful attempt.
        let resp = client
            .get(server.url("/v1/metrics/delivery"))
            .query(&query)
            .send()
            .await
            .expect("api answers");
        assert_eq!(resp.status(), 200, "delivery {query:?}");
        let delivery: Value = resp.json().await.expect("json");
        assert_eq!(
            delivery["deployment_success_rate"]["succeeded"],
            got["deployment_frequency"]["deployments"],
            "{query:?}"
        );
        failed_attempts += delivery["deployment_success_rate"]["failed"]
            .as_u64()
            .unwrap_or(0);
    }
    assert!(deployments > 0, "the scenario's windows hold deployments");
    // The history's failed production deployment statuses are failed attempts in some window.
    assert!(
        failed_attempts > 0,
        "the scenario's windows hold failed attempts"
    );
}

async fn run(deliveries: Vec<Delivery>, concurrency: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        Some(&scenario_dir().join("em-agent.toml")),
        &dir.path().join("data"),
        secrets(),
    );
    let client = common::client();
    let total = deliveries.len();
    let chunks: Vec<Vec<Delivery>> = (0..concurrency)
        .map(|i| {
            deliveries
                .iter()
                .skip(i)
                .step_by(concurrency)
                .cloned()
                .collect()
        })
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in chunks {
        let client = client.clone();
        let base = server.base.clone();
        tasks.spawn(async move {
            let mut statuses = Vec::new();
            for d in chunk {
                let (status, body) = post_signed(&client, &base, &d).await.expect("post");
                assert!(
                    status == 202 || (status == 200 && body["status"] == "duplicate"),
                    "{}: {status} {body}",
                    d.name
                );
                statuses.push(status);
            }
            statuses
        });
    }
    let mut accepted = 0;
    let mut answered = 0;
    while let Some(r) = tasks.join_next().await {
        let s = r.expect("task");
        answered += s.len();
        accepted += s.iter().filter(|&&s| s == 202).count();
    }
    assert_eq!(answered, total);
    let stats = server.wait_drained(&client).await;
    assert_eq!(stats["deliveries"], accepted as u64, "{stats}");
    assert_eq!(stats["dead_letters"], 0, "{stats}");
    check_expected(&server, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_in_send_order_gives_expected_figures() {
    run(load_deliveries(&scenario_dir().join("deliveries")), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_in_other_orders_and_repeated_gives_the_same_figures() {
    let mut deliveries = load_deliveries(&scenario_dir().join("deliveries"));
    deliveries.reverse();
    // Re-deliver a third of everything once more, then shuffle, and post from several connections at once.
    let again: Vec<Delivery> = deliveries.iter().step_by(3).cloned().collect();
    deliveries.extend(again);
    shuffle(&mut deliveries, 0x9E37_79B9_7F4A_7C15);
    run(deliveries, 8).await;
}

/// The comparison the scenarios use: integers exactly, other numbers within 1e-9 relative — a p90 one rank
/// off (75,369 s against 75,370 s) or a rate over a window an hour short fails it.
#[test]
fn figures_compare_exactly() {
    use serde_json::json;
    let matches = |got: Value, want: Value| {
        std::panic::catch_unwind(|| assert_matches(&got, &want, "x")).is_ok()
    };
    assert!(matches(
        json!({"a": 1.0666666666666667}),
        json!({"a": 1.0666666666666667})
    ));
    assert!(matches(json!({"a": 0.0}), json!({"a": 0.0})));
    assert!(!matches(json!({"a": 75_370.0}), json!({"a": 75_369.0})));
    assert!(!matches(
        json!({"a": 16.0 / 24.0}),
        json!({"a": 16.0 / 23.0})
    ));
    assert!(!matches(json!({"a": 64}), json!({"a": 65})));
    assert!(common::close(0.1 + 0.2, 0.3));
}
