//! Bad input over real HTTP: each mistake gets its own 4xx with a JSON `{"error": ...}`, never a 5xx.

mod common;

use common::{Delivery, Server};
use serde_json::Value;
use std::time::Duration;

const SECRET: &str = "only-github";

fn push_delivery(id: &str, body: &str) -> Delivery {
    Delivery {
        name: id.into(),
        provider: "github".into(),
        headers: vec![
            ("X-GitHub-Event".into(), "push".into()),
            ("X-GitHub-Delivery".into(), id.into()),
        ],
        body: body.into(),
    }
}

async fn error_of(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.expect("errors are JSON");
    let msg = v["error"].as_str().expect("an error message").to_string();
    (status, msg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_json_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(None, &dir.path().join("data"), &[("github", SECRET)]);
    let client = common::client();
    let push = std::fs::read_to_string(
        common::workspace().join("tests/data/scenarios/basic/deliveries/00006.json"),
    )
    .expect("a push");
    let push: Value = serde_json::from_str(&push).expect("json");
    let body = push["body"].as_str().expect("body").to_string();

    // Unknown provider.
    let r = client
        .post(server.url("/webhooks/nosuch"))
        .body("{}")
        .send()
        .await
        .expect("post");
    let (s, m) = error_of(r).await;
    assert_eq!(s, 404);
    assert!(m.contains("nosuch"), "{m}");

    // A provider with no secret is off, and says how to turn it on.
    let r = client
        .post(server.url("/webhooks/gitlab"))
        .header("X-Gitlab-Token", "anything")
        .body("{}")
        .send()
        .await
        .expect("post");
    let (s, m) = error_of(r).await;
    assert_eq!(s, 404);
    assert!(m.contains("EM_AGENT_GITLAB_SECRET"), "{m}");

    // Unsigned, forged and tampered deliveries.
    let r = client
        .post(server.url("/webhooks/github"))
        .header("X-GitHub-Event", "push")
        .body(body.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(error_of(r).await.0, 401);
    let r = client
        .post(server.url("/webhooks/github"))
        .header("X-Hub-Signature-256", format!("sha256={}", "ab".repeat(32)))
        .body(body.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(error_of(r).await.0, 401);
    let p = em_providers::by_name("github").expect("github");
    let (h, sig) = p
        .sign(
            SECRET.as_bytes(),
            body.as_bytes(),
            em_core::time::now_millis(),
        )
        .remove(0);
    let tampered = body.replacen("acme-shop", "evil-shop", 1);
    let r = client
        .post(server.url("/webhooks/github"))
        .header(h, sig.clone())
        .body(tampered)
        .send()
        .await
        .expect("post");
    assert_eq!(error_of(r).await.0, 401);

    // Signed, but not JSON.
    let not_json = push_delivery("not-json", "this is not json");
    let (status, v) = post_signed_with(&client, &server.base, &not_json).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or_default().contains("JSON"));

    // Signed, but with a delivery id no provider sends (over DynamoDB's key limit, once a 5xx there).
    let long_id = push_delivery(&"x".repeat(3000), &body);
    let (status, v) = post_signed_with(&client, &server.base, &long_id).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]
        .as_str()
        .unwrap_or_default()
        .contains("delivery id"));

    // Over the 10 MiB limit.
    let big = vec![b' '; 10 * 1024 * 1024 + 1];
    let r = client
        .post(server.url("/webhooks/github"))
        .header("X-Hub-Signature-256", "sha256=00")
        .body(big)
        .send()
        .await
        .expect("post");
    assert_eq!(error_of(r).await.0, 413);

    // Accepted once, then a duplicate.
    let d = push_delivery("dup-1", &body);
    let (status, v) = post_signed_with(&client, &server.base, &d).await;
    assert_eq!((status, v["status"].as_str()), (202, Some("accepted")));
    let (status, v) = post_signed_with(&client, &server.base, &d).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("duplicate")));

    // An event the product does not use is accepted and ignored.
    let mut ping = push_delivery(
        "ping-1",
        r#"{"zen":"Keep it logically awesome.","hook_id":1}"#,
    );
    ping.headers[0].1 = "ping".into();
    let (status, _) = post_signed_with(&client, &server.base, &ping).await;
    assert_eq!(status, 202);
    let stats = server.wait_drained(&client).await;
    assert_eq!(stats["dead_letters"], 0);

    // Query parameters.
    for (q, name) in [
        ("servce=x", "servce"),
        ("from=yesterday", "from"),
        ("from=2025-02-01&to=2025-01-01", "to"),
        ("service=a&team=b", "team"),
        ("team=nosuch", "team"),
        ("service=a&service=b", "service"),
    ] {
        let r = client
            .get(format!("{}?{q}", server.url("/v1/metrics/dora")))
            .send()
            .await
            .expect("get");
        let (s, m) = error_of(r).await;
        assert_eq!(s, 400, "{q}");
        assert!(m.contains(&format!("\"{name}\"")), "{q}: {m}");
    }

    // Routes.
    let r = client
        .get(server.url("/nowhere"))
        .send()
        .await
        .expect("get");
    assert_eq!(error_of(r).await.0, 404);
    let r = client
        .get(server.url("/webhooks/github"))
        .send()
        .await
        .expect("get");
    assert_eq!(error_of(r).await.0, 405);
    let r = client
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
}

async fn post_signed_with(client: &reqwest::Client, base: &str, d: &Delivery) -> (u16, Value) {
    common::post_signed_as(client, base, d, SECRET)
        .await
        .expect("post")
}

/// With `EM_AGENT_API_TOKEN` set, the local server wants it as a bearer token on `/v1/*` (the port users
/// open to their providers), `/healthz` stays open, and `em-agent report --url` sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_api_wants_its_token_when_one_is_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = "local-api-token-0123456789";
    let server = Server::start_with(
        None,
        &dir.path().join("data"),
        &[("github", SECRET)],
        &[],
        &[("EM_AGENT_API_TOKEN", token)],
    );
    let client = common::client();
    for path in [
        "/v1/metrics/dora",
        "/v1/metrics/dora/series?interval=week",
        "/v1/stats",
    ] {
        let r = client.get(server.url(path)).send().await.expect("get");
        let (status, message) = error_of(r).await;
        assert_eq!(status, 401, "{path}: {message}");
        let r = client
            .get(server.url(path))
            .bearer_auth("not-the-token")
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 401, "{path}");
        let r = client
            .get(server.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = client
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);

    let report = |with_token: bool| {
        let mut cmd = std::process::Command::new(common::binary());
        cmd.args(["report", "--json", "--url", &server.base])
            .env_remove("EM_AGENT_API_TOKEN");
        if with_token {
            cmd.env("EM_AGENT_API_TOKEN", token);
        }
        cmd.output().expect("em-agent report")
    };
    let out = report(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = report(false);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

/// A client that sends a byte a second holds nothing for long: a request head slower than the header
/// deadline gets the connection closed, a body slower than the body deadline a 408, and the server keeps
/// answering everyone else meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_at_the_deadlines() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        None,
        &dir.path().join("data"),
        &[("github", SECRET)],
        &["--header-timeout", "2s", "--body-timeout", "2s"],
        &[],
    );
    let addr = server.base.trim_start_matches("http://").to_string();

    // Headers, one byte a second: the connection is closed once the deadline passes.
    let mut slow = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n";
    let mut closed = false;
    for b in head.iter().take(20) {
        if slow.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_secs(1), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    assert!(
        closed,
        "a request head trickling in for 20 s was never cut off"
    );

    // A body, one byte a second: 408 once the deadline passes.
    let mut slow = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    slow.write_all(
        b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .expect("head");
    let mut answer = Vec::new();
    for _ in 0..20 {
        let _ = slow.write_all(b" ").await;
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(1), slow.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Ok(Ok(_)) | Ok(Err(_)) => break,
            Err(_) => {}
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // Everyone else is served meanwhile.
    let r = common::client()
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
}
