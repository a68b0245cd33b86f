//! Bad input over real HTTP: each mistake gets its own 4xx with a JSON `{"error": ...}`, never a 5xx.

use crate::common;

use crate::common::{Delivery, Server};
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

/// The status and the error message, or an empty message for a success.
async fn error_of_or_ok(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.expect("answers are JSON");
    (status, v["error"].as_str().unwrap_or_default().to_string())
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
    let server = Server::start(
        None,
        &dir.path().join("data"),
        &[("github", SECRET), ("incident-io", SECRET)],
    );
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

    // A delivery signed with a timestamp (incident.io's), replayed outside the five-minute window either
    // way, is refused; the same bytes signed now pass.
    let incident_io = em_providers::by_name("incident-io").expect("incident.io");
    let status_change = std::fs::read_to_string(common::workspace().join(
        "shared/providers/tests/fixtures/incident-io/incident_status_updated_v2-accepted.json",
    ))
    .expect("an incident.io delivery");
    let now = em_core::time::now_millis();
    for (at, expected) in [(now - 6 * 60_000, 401), (now + 6 * 60_000, 401), (now, 202)] {
        let mut req = client
            .post(server.url("/webhooks/incident-io"))
            .body(status_change.clone());
        for (k, v) in incident_io.sign(SECRET.as_bytes(), status_change.as_bytes(), at) {
            req = req.header(k, v);
        }
        let (s, m) = error_of_or_ok(req.send().await.expect("post")).await;
        assert_eq!(s, expected, "signed {} s from now: {m}", (at - now) / 1000);
        if expected == 401 {
            assert_eq!(
                m,
                "unauthorized: webhook-timestamp is outside the replay window"
            );
        }
    }

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
    // The server's own list of its routes, from its 404: every route but the webhooks' and the health
    // check wants the token, so a route added without the token layer fails here.
    let r = client
        .get(server.url("/no/such/route"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    let listed: Value = r.json().await.expect("json");
    let routes: Vec<String> = listed["routes"]
        .as_array()
        .expect("the 404 lists the routes")
        .iter()
        .map(|r| r.as_str().expect("a route").to_string())
        .collect();
    assert!(routes.len() >= 8, "{routes:?}");
    let mut checked = 0;
    for route in &routes {
        let (method, path) = route.split_once(' ').expect("METHOD path");
        if ["/webhooks/{provider}", "/healthz"].contains(&path) {
            continue;
        }
        assert_eq!(method, "GET", "{route}");
        checked += 1;
        // Path parameters filled in; the series want their interval.
        let path = path
            .replace("{provider}", "github")
            .replace("{id}", "no-such-delivery");
        let path = if path.ends_with("/series") {
            format!("{path}?interval=week")
        } else {
            path
        };
        let path = path.as_str();
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
        // Past the token: answered (the unknown delivery is a 404 of its own, with its own message).
        let status = r.status().as_u16();
        let (_, message) = error_of_or_ok(r).await;
        assert!(
            status == 200 || (status == 404 && message.contains("no-such-delivery")),
            "{path}: {status} {message}"
        );
    }
    assert_eq!(checked, routes.len() - 2);
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

/// A signed deployment whose repository name is longer than a stored text may be, with a multi-byte
/// character across the old cut at byte 65,535: it is stored cut to its bound, and the day it falls on
/// still answers, organisation-wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_field_does_not_break_its_day() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(None, &dir.path().join("data"), &[("github", SECRET)]);
    let client = common::client();
    let fixture = common::workspace()
        .join("shared/providers/tests/fixtures/github/deployment_status-success.json");
    let mut body: Value =
        serde_json::from_slice(&std::fs::read(fixture).expect("fixture")).expect("json");
    let long = format!("acme/{}{}", "a".repeat(65_529), "€".repeat(2_000));
    body["repository"]["full_name"] = Value::from(long.clone());
    let d = Delivery {
        name: "long".into(),
        provider: "github".into(),
        headers: vec![
            ("X-GitHub-Event".into(), "deployment_status".into()),
            ("X-GitHub-Delivery".into(), "long-1".into()),
        ],
        body: body.to_string(),
    };
    let (status, answer) = post_signed_with(&client, &server.base, &d).await;
    assert_eq!(status, 202, "{answer}");
    server.wait_drained(&client).await;
    let r = client
        .get(server.url("/v1/metrics/dora"))
        .query(&[("from", "2019-05-15"), ("to", "2019-05-16")])
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["deployment_frequency"]["deployments"], 1, "{v}");
}

/// A provider whose credential is a header (GitLab's token) is checked before its body is read: a sender
/// without the token gets its 401 while the 10 MiB it announced has not been sent, where reading first
/// would wait for the body and end in a 408.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_provider_is_refused_before_its_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        None,
        &dir.path().join("data"),
        &[("gitlab", "gitlab-token")],
    );
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /webhooks/gitlab HTTP/1.1\r\nHost: x\r\nX-Gitlab-Token: not-the-token\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"a\":",
        10 * 1024 * 1024 - 1
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
}

/// On an address others can reach, the API is never open by accident: without a token `serve` refuses to
/// start and says how to choose.
#[test]
fn serve_refuses_an_open_api_beyond_the_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(common::binary())
        .args(["serve", "--addr", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("EM_AGENT_API_TOKEN")
        .env_remove("EM_AGENT_API_TOKEN_PREVIOUS")
        .output()
        .expect("em-agent serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("EM_AGENT_API_TOKEN") && err.contains("--open-api"),
        "{err}"
    );
}

/// Bodies held in memory are bounded: while one delivery holds all the room (it declared 1 KiB and sends
/// nothing), another waits; it is stored once the first is cut off at its body deadline (2 s), never before
/// (a lower bound on the time, which a slow machine can only lengthen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_in_flight_are_bounded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        None,
        &dir.path().join("data"),
        &[("github", SECRET)],
        &["--body-timeout", "2s", "--bodies-in-flight-kib", "1"],
        &[],
    );
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut holder = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let started = std::time::Instant::now();
    holder
        .write_all(b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n")
        .await
        .expect("write");
    let held = tokio::spawn(async move {
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match holder.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    });
    let client = common::client();
    let push = std::fs::read_to_string(
        common::workspace().join("tests/data/scenarios/basic/deliveries/00006.json"),
    )
    .expect("a push");
    let push: Value = serde_json::from_str(&push).expect("json");
    let d = push_delivery("bounded-1", push["body"].as_str().expect("body"));
    let (status, answer) = post_signed_with(&client, &server.base, &d).await;
    assert_eq!(status, 202, "{answer}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the second delivery was read while the first held all the room"
    );
    let holder_answer = held.await.expect("the holder's answer");
    assert!(holder_answer.starts_with("HTTP/1.1 408"), "{holder_answer}");
}
