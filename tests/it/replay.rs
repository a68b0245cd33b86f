//! `em-agent replay` on a real data directory: a delivery that can never be parsed is dead-lettered by the
//! server; replay puts it back on the queue, and the next server processes it again (and, as it still cannot
//! be parsed, dead-letters it again). Replay also works while the server runs on the same directory.

use crate::common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::{post_signed, secrets, Delivery, Server};
use em_sqlite::{EmbeddedStore, Options};
use serde_json::{json, Value};

const POISON_ID: &str = "replay-poison-1";

/// Authenticated JSON that claims to be a push but is none: the aggregator's parse fails, so the message is
/// dead-lettered at once.
fn poison() -> Delivery {
    Delivery {
        name: "poison".into(),
        provider: "github".into(),
        headers: vec![
            ("X-GitHub-Event".into(), "push".into()),
            ("X-GitHub-Delivery".into(), POISON_ID.into()),
            ("Content-Type".into(), "application/json".into()),
        ],
        body: json!({"ref": "refs/heads/main", "zen": "not a push"}).to_string(),
    }
}

/// A good push from the sample scenario, to check that replay leaves processed deliveries alone.
fn good_push() -> Delivery {
    common::load_delivery(&common::scenario_dir().join("deliveries/00006.json"))
}

fn replay(data: &Path, extra: &[&str]) -> Output {
    std::process::Command::new(common::binary())
        .arg("replay")
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env_remove("RUST_LOG")
        .env_remove("EM_AGENT_DATA_DIR")
        .output()
        .expect("em-agent replay runs")
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until the server's stats match `want` (a subset of its fields).
async fn wait_stats(server: &Server, client: &reqwest::Client, want: Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = server.stats(client).await;
        let matches = want
            .as_object()
            .expect("an object")
            .iter()
            .all(|(k, v)| &s[k] == v);
        if matches {
            return s;
        }
        assert!(Instant::now() < deadline, "stats {s}, want {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn state_of(server: &Server, client: &reqwest::Client, id: &str) -> String {
    let v: Value = client
        .get(server.url(&format!("/v1/deliveries/github/{id}")))
        .send()
        .await
        .expect("delivery answers")
        .json()
        .await
        .expect("JSON");
    v["state"].as_str().unwrap_or_default().to_string()
}

/// How often the server has dead-lettered the poison delivery, from its log (kept across restarts).
fn times_dead_lettered(server: &Server) -> usize {
    std::fs::read_to_string(&server.log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("dead-lettered") && l.contains(POISON_ID))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_puts_dead_letters_back_on_the_queue_for_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let client = common::client();

    let mut server = Server::start(None, &data, secrets());
    let (status, body) = post_signed(&client, &server.base, &poison())
        .await
        .expect("post");
    assert_eq!(status, 202, "{body}");
    let push = good_push();
    let (status, body) = post_signed(&client, &server.base, &push)
        .await
        .expect("post");
    assert_eq!(status, 202, "{body}");
    wait_stats(
        &server,
        &client,
        json!({"deliveries": 2, "queued": 0, "dead_letters": 1}),
    )
    .await;
    assert_eq!(state_of(&server, &client, POISON_ID).await, "dead_letter");
    assert_eq!(times_dead_lettered(&server), 1);
    server.kill();

    // Offline: the dead letter goes back to the queue, and nothing else moves.
    let out = replay(&data, &[]);
    let line = stdout_of(&out);
    assert!(
        line.starts_with("replayed 1 dead-lettered message in ") && line.ends_with(" s; 0 left\n"),
        "{line:?}"
    );
    // stderr is not a terminal here: no progress bar, no noise.
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    {
        let store = EmbeddedStore::open(&data, Options::default()).expect("store opens");
        let s = store.stats().await.expect("stats");
        assert_eq!((s.deliveries, s.queued, s.dead_letters), (2, 1, 0));
        let state = |id: &str| store.delivery_state("github".into(), id.into());
        assert_eq!(state(POISON_ID).await.expect("state"), Some("queued"));
        let push_id = push
            .headers
            .iter()
            .find(|(k, _)| k == "X-GitHub-Delivery")
            .map(|(_, v)| v.clone())
            .expect("a delivery id");
        assert_eq!(state(&push_id).await.expect("state"), Some("processed"));
    }
    // Nothing left: a second run moves nothing.
    let again: Value =
        serde_json::from_str(&stdout_of(&replay(&data, &["--json"]))).expect("JSON summary");
    assert_eq!(
        (&again["replayed"], &again["remaining"]),
        (&json!(0), &json!(0))
    );
    assert!(again["elapsed_seconds"].is_number(), "{again}");

    // The next server processes the message again: it still cannot be parsed, so it is dead-lettered again.
    let server = Server::start(None, &data, secrets());
    wait_stats(
        &server,
        &client,
        json!({"deliveries": 2, "queued": 0, "dead_letters": 1}),
    )
    .await;
    assert_eq!(state_of(&server, &client, POISON_ID).await, "dead_letter");
    assert_eq!(times_dead_lettered(&server), 2);
    // The delivery is still known: the provider re-sending it is a duplicate, not a new message.
    let (status, _) = post_signed(&client, &server.base, &poison())
        .await
        .expect("post");
    assert_eq!(status, 200);

    // While the server runs on the same directory: the server picks the replayed message up by itself.
    let summary: Value =
        serde_json::from_str(&stdout_of(&replay(&data, &["--json"]))).expect("JSON summary");
    assert_eq!(summary["replayed"], 1, "{summary}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while times_dead_lettered(&server) < 3 {
        assert!(
            Instant::now() < deadline,
            "the server did not process the replayed message"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_stats(
        &server,
        &client,
        json!({"deliveries": 2, "queued": 0, "dead_letters": 1}),
    )
    .await;
}

#[test]
fn replay_refuses_a_data_dir_without_a_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nothing-here");
    let out = replay(&missing, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no EM Agent data in") && err.contains("--data-dir"),
        "{err}"
    );
    assert!(!missing.exists(), "replay creates nothing");
}
