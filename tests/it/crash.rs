//! `kill -9` while deliveries are being posted, and a disk that fills up: after a restart, every delivery
//! that was answered 2xx is there and counted exactly once.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{post_signed, secrets, Delivery, Server};
use serde_json::json;

const REPO: &str = "crash/test-service";

/// A production deployment with its own deployment id: each accepted one must count as one deployment.
fn deployment(i: u64) -> Delivery {
    let body = json!({
        "action": "created",
        "deployment_status": {
            "id": 9_000_000 + i,
            "state": "success",
            "environment": "production",
            "created_at": format!("2025-01-01T{:02}:{:02}:{:02}Z", (i / 3600) % 24, (i / 60) % 60, i % 60),
        },
        "deployment": {
            "id": 1_000_000 + i,
            "sha": format!("{:040x}", i + 1),
            "environment": "production",
            "production_environment": true,
        },
        "repository": {"full_name": REPO, "default_branch": "main"},
    });
    Delivery {
        name: format!("deployment-{i}"),
        provider: "github".into(),
        headers: vec![
            ("X-GitHub-Event".into(), "deployment_status".into()),
            ("X-GitHub-Delivery".into(), format!("crash-{i}")),
            ("Content-Type".into(), "application/json".into()),
        ],
        body: body.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_answered_delivery_and_counts_each_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = Server::start(None, &data, secrets());
    // A generous bound only so that a hung server fails the test instead of hanging it: a loaded machine
    // may answer slowly, and a slow answer is not the kill.
    let client = common::client_builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");

    let answered: Arc<Mutex<Vec<u64>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut posters = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (client, base, answered, next, killed) = (
            client.clone(),
            server.base.clone(),
            answered.clone(),
            next.clone(),
            killed.clone(),
        );
        posters.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst) as u64;
                if i >= 20_000 {
                    return;
                }
                match post_signed(&client, &base, &deployment(i)).await {
                    Ok((202, _)) => answered.lock().expect("lock").push(i),
                    Ok((status, body)) => panic!("delivery {i}: {status} {body}"),
                    // The server is gone: nothing more can be answered.
                    Err(_) if killed.load(Ordering::SeqCst) => return,
                    Err(e) => panic!("delivery {i} failed while the server was up: {e}"),
                }
            }
        });
    }
    // Kill the server mid-stream, while requests are in flight.
    // Bounded: if the posters stop getting answers (every request failing), the test fails rather than hangs.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while answered.lock().expect("lock").len() < 400 {
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than 400 deliveries answered in 120 s: {}",
            answered.lock().expect("lock").len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    killed.store(true, Ordering::SeqCst);
    server.kill();
    while let Some(r) = posters.join_next().await {
        r.expect("a poster failed");
    }
    let answered = answered.lock().expect("lock").clone();
    assert!(answered.len() >= 400);

    let server = Server::start(None, &data, secrets());
    let stats = server.wait_drained(&client).await;
    let stored = stats["deliveries"].as_u64().expect("count");
    // Requests cut off by the kill may have been stored without an answer; never the reverse.
    assert!(
        stored >= answered.len() as u64,
        "{stats} < {}",
        answered.len()
    );
    assert_eq!(stats["dead_letters"], 0);
    for i in &answered {
        let r = client
            .get(server.url(&format!("/v1/deliveries/github/crash-{i}")))
            .send()
            .await
            .expect("lookup");
        assert_eq!(r.status(), 200, "answered delivery crash-{i} was lost");
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["state"], "processed");
    }

    // Each stored delivery is exactly one deployment, and re-sending every answered one changes nothing.
    let dora = |client: reqwest::Client, url: String| async move {
        let v: serde_json::Value = client
            .get(url)
            .query(&[
                ("service", REPO),
                ("from", "2025-01-01"),
                ("to", "2025-01-02"),
            ])
            .send()
            .await
            .expect("api")
            .json()
            .await
            .expect("json");
        v["deployment_frequency"]["deployments"]
            .as_u64()
            .expect("count")
    };
    let url = server.url("/v1/metrics/dora");
    assert_eq!(dora(client.clone(), url.clone()).await, stored);
    for i in answered.iter().take(200) {
        let (status, body) = post_signed(&client, &server.base, &deployment(*i))
            .await
            .expect("post");
        assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")));
    }
    server.wait_drained(&client).await;
    assert_eq!(dora(client.clone(), url).await, stored);
}

/// The disk fills up under the server: a delivery it cannot store is answered 503 with a generic body
/// (the provider retries), never 2xx; the server stays up (a log line it cannot write is lost, not a
/// panic); once there is room again, every delivery answered 202 is there, the retried ones are accepted,
/// and each counts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_with_503_and_loses_no_answered_delivery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // The log shares the disk and is nearly full already: the server's first error lines cannot be written.
    std::fs::write(data.with_extension("log"), vec![b'.'; 2048 * 1024 - 4096]).expect("log");
    let mut server = Server::start_on_full_disk(&data, secrets(), 2048);
    let client = common::client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    let (mut i, mut in_a_row) = (0, 0);
    // Until the store has refused 50 in a row: the WAL reaches the limit after a few dozen deliveries.
    while in_a_row < 50 {
        assert!(
            i < 5_000,
            "the disk never filled: {} accepted",
            accepted.len()
        );
        let (status, body) = post_signed(&client, &server.base, &deployment(i))
            .await
            .expect("the server answers, full disk or not");
        match status {
            202 => {
                accepted.push(i);
                in_a_row = 0;
            }
            503 => {
                let text = body.to_string();
                assert_eq!(
                    body["error"], "temporarily unavailable, retry later",
                    "{text}"
                );
                assert!(body["request_id"].is_string(), "{text}");
                for internal in ["disk", "sqlite", "I/O", "/"] {
                    assert!(!text.contains(internal), "503 says {internal}: {text}");
                }
                refused.push(i);
                in_a_row += 1;
            }
            other => panic!("delivery {i}: {other} {body}"),
        }
        i += 1;
    }
    assert!(
        !accepted.is_empty(),
        "nothing accepted before the disk filled"
    );
    let health = client
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("still up");
    assert!(health.status().is_success() || health.status() == 503);
    server.kill();

    // Room again.
    let server = Server::start(None, &data, secrets());
    server.wait_drained(&client).await;
    for id in &accepted {
        let v = server
            .get_json(&client, &format!("/v1/deliveries/github/crash-{id}"), &[])
            .await;
        assert_eq!(v["state"], "processed", "answered delivery crash-{id}: {v}");
    }
    for id in &refused {
        let r = client
            .get(server.url(&format!("/v1/deliveries/github/crash-{id}")))
            .send()
            .await
            .expect("lookup");
        assert_eq!(r.status(), 404, "refused delivery crash-{id} was kept");
        // The provider's retry.
        let (status, body) = post_signed(&client, &server.base, &deployment(*id))
            .await
            .expect("post");
        assert_eq!(status, 202, "{body}");
    }
    let stats = server.wait_drained(&client).await;
    let total = (accepted.len() + refused.len()) as u64;
    assert_eq!(stats["deliveries"], total, "{stats}");
    assert_eq!(stats["dead_letters"], 0, "{stats}");
    let v = server
        .get_json(
            &client,
            "/v1/metrics/dora",
            &[
                ("service", REPO),
                ("from", "2025-01-01"),
                ("to", "2025-01-02"),
            ],
        )
        .await;
    assert_eq!(v["deployment_frequency"]["deployments"], total, "{v}");
}
