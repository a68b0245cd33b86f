//! `em-agent serve --backend aws --create-resources` against the AWS-compatible server: the local server
//! runs the whole path on SQS, DynamoDB and S3 — signed deliveries in over HTTP, duplicates answered as
//! such, figures out of the API — and `em-agent replay --backend aws` finds the dead-letter queue.

use crate::common;

use std::time::{Duration, Instant};

use crate::common::{load_deliveries, post_signed, scenario_dir, secrets, Server};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_the_aws_backend_creates_its_resources_and_counts_each_delivery_once() {
    let endpoint = common::aws::endpoint();
    let base = common::aws::unique_name("serve");
    let (table, deliveries, queue, dlq, bucket) = (
        format!("{base}-facts"),
        format!("{base}-deliveries"),
        format!("{base}-queue"),
        format!("{base}-dlq"),
        base.clone(),
    );
    let args = [
        "--backend",
        "aws",
        "--create-resources",
        "--table",
        &table,
        "--deliveries-table",
        &deliveries,
        "--queue",
        &queue,
        "--dead-letter-queue",
        &dlq,
        "--bucket",
        &bucket,
    ];
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        Some(&scenario_dir().join("em-agent.toml")),
        &dir.path().join("unused"),
        secrets(),
        &args,
        &env,
    );
    let client = common::client();

    // The search service's deliveries: GitHub and GitLab pushes and deployments, PagerDuty incidents.
    let all = load_deliveries(&scenario_dir().join("deliveries"));
    let some: Vec<_> = all.iter().take(60).cloned().collect();
    let mut accepted = 0;
    for d in &some {
        let (status, body) = post_signed(&client, &server.base, d).await.expect("post");
        assert!(
            status == 202 || (status == 200 && body["status"] == "duplicate"),
            "{}: {status} {body}",
            d.name
        );
        accepted += usize::from(status == 202);
    }
    // Every one again: all duplicates now, from the DynamoDB markers.
    for d in &some {
        let (status, body) = post_signed(&client, &server.base, d).await.expect("post");
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("duplicate")),
            "{}",
            d.name
        );
    }
    // A delivery's marker, as the support route reads it.
    let (provider, id) = some
        .iter()
        .find_map(|d| {
            d.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("x-github-delivery"))
                .map(|(_, v)| (d.provider.clone(), v.clone()))
        })
        .expect("a GitHub delivery among the first");
    let v = server
        .get_json(&client, &format!("/v1/deliveries/{provider}/{id}"), &[])
        .await;
    assert_eq!(v["state"], "queued", "{v}");

    // The same figures as the embedded backend gives for these deliveries.
    let embedded_dir = tempfile::tempdir().expect("tempdir");
    let embedded = Server::start(
        Some(&scenario_dir().join("em-agent.toml")),
        &embedded_dir.path().join("data"),
        secrets(),
    );
    for d in &some {
        post_signed(&client, &embedded.base, d).await.expect("post");
    }
    embedded.wait_drained(&client).await;
    let query = [("from", "2025-01-01"), ("to", "2026-01-01")];
    let want = embedded.get_json(&client, "/v1/metrics/dora", &query).await;
    assert!(
        want["deployment_frequency"]["deployments"]
            .as_u64()
            .unwrap_or(0)
            > 0
            || want["lead_time"]["changes"].as_u64().unwrap_or(0) > 0,
        "the sample has activity: {want}"
    );
    // The AWS backend's aggregator polls SQS: wait until it has caught up.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = server.get_json(&client, "/v1/metrics/dora", &query).await;
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "aws backend: {got}\nembedded: {want}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(accepted > 0);

    // A dead-lettered delivery, redriven by `em-agent replay --backend aws`, is processed by the server.
    let sdk = common::aws::sdk().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = |name: String| {
        let sqs = sqs.clone();
        async move {
            sqs.get_queue_url()
                .queue_name(name)
                .send()
                .await
                .expect("queue url")
                .queue_url
                .expect("url")
        }
    };
    let (queue_url, dlq_url) = (url(queue.clone()).await, url(dlq.clone()).await);
    let late = &all[all.len() - 1];
    let envelope = em_core::ports::Envelope {
        provider: late.provider.clone(),
        delivery_id: "replayed-1".into(),
        event: late
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-github-event"))
            .map(|(_, v)| v.clone()),
        received_at: 0,
        body: bytes::Bytes::from(late.body.clone()),
    };
    sqs.send_message()
        .queue_url(&dlq_url)
        .message_body(envelope.to_json())
        .send()
        .await
        .expect("dead letter");
    let out = std::process::Command::new(common::binary())
        .args([
            "replay",
            "--backend",
            "aws",
            "--queue",
            &queue,
            "--dead-letter-queue",
            &dlq,
            "--json",
        ])
        .envs(env)
        .output()
        .expect("replay runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("json summary");
    assert_eq!(
        (summary["replayed"].as_u64(), summary["remaining"].as_u64()),
        (Some(1), Some(0)),
        "{summary}"
    );
    // The server's aggregator takes it from the queue and acknowledges it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while common::aws::queue_depth(&sdk, &queue_url).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the replayed message was not processed"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(common::aws::queue_depth(&sdk, &dlq_url).await, 0);
    let stats = server.stats(&client).await;
    assert_eq!(stats["dead_lettered"], 0, "{stats}");
}
