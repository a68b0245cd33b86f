//! Digests going out to Slack and Teams webhooks, against a real HTTP receiver on the loopback that answers
//! as told: accepted, refused, failing, or failing a few times first.

use crate::common;

use std::time::Duration;

use em_core::config::Channel;
use em_notify::send::{Policy, SendError, Sender};
use serde_json::json;

use crate::common::hooks::receiver;

/// Quick retries, so a test of four attempts takes milliseconds.
fn quick(attempts: u32, breaker_failures: u32) -> Sender {
    // reqwest's TLS takes the process's crypto provider, which the binaries install at start-up.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    Sender::new(Policy {
        attempts,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        timeout: Duration::from_secs(5),
        breaker_failures,
        breaker_open: Duration::from_secs(300),
    })
    .expect("sender")
}

#[tokio::test]
async fn a_message_is_posted_once_as_json() {
    let (r, base) = receiver().await;
    let s = quick(3, 3);
    let message = json!({"text": "Weekly DORA digest", "blocks": [{"type": "header"}]});
    let got = s
        .post_json(Channel::Slack, &format!("{base}/slack"), &message)
        .await
        .expect("sent");
    assert_eq!(got.attempts, 1);
    assert_eq!(r.hits("slack"), vec![message]);
}

#[tokio::test]
async fn failures_that_may_pass_are_retried_and_refusals_are_not() {
    let (r, base) = receiver().await;
    let s = quick(4, 10);
    r.answer("flaky", &[503, 429, 500]);
    let got = s
        .post_json(Channel::Teams, &format!("{base}/flaky"), &json!({"n": 1}))
        .await
        .expect("sent on the fourth attempt");
    assert_eq!(got.attempts, 4);
    assert_eq!(r.hits("flaky").len(), 4);

    r.answer("refuses", &[400]);
    let e = s
        .post_json(Channel::Teams, &format!("{base}/refuses"), &json!({"n": 2}))
        .await
        .expect_err("refused");
    assert!(matches!(e, SendError::Refused { status: 400, .. }), "{e}");
    assert_eq!(r.hits("refuses").len(), 1, "a refusal is not retried");

    r.answer("down", &[500, 500, 500, 500]);
    let e = s
        .post_json(Channel::Slack, &format!("{base}/down"), &json!({"n": 3}))
        .await
        .expect_err("exhausted");
    assert!(matches!(e, SendError::Exhausted { attempts: 4, .. }), "{e}");
    assert_eq!(r.hits("down").len(), 4);
}

#[tokio::test]
async fn a_destination_that_keeps_failing_is_skipped_and_others_are_not() {
    let (r, base) = receiver().await;
    let s = quick(2, 2);
    let down = format!("{base}/down");
    r.answer("down", &[500; 4]);
    for _ in 0..2 {
        let e = s
            .post_json(Channel::Slack, &down, &json!({}))
            .await
            .expect_err("failing");
        assert!(matches!(e, SendError::Exhausted { .. }), "{e}");
    }
    assert_eq!(r.hits("down").len(), 4);
    // Its circuit is open: refused at once, without a request.
    let e = s
        .post_json(Channel::Slack, &down, &json!({}))
        .await
        .expect_err("circuit open");
    assert!(matches!(e, SendError::CircuitOpen { .. }), "{e}");
    assert_eq!(
        r.hits("down").len(),
        4,
        "no request while the circuit is open"
    );
    // The error names the destination by a digest of its URL, never the URL.
    assert!(!e.to_string().contains("/hooks/"), "{e}");
    // Another destination is unaffected.
    s.post_json(Channel::Slack, &format!("{base}/up"), &json!({}))
        .await
        .expect("another destination");
    assert_eq!(r.hits("up").len(), 1);
}

#[tokio::test]
async fn an_unreachable_destination_fails_without_its_url_in_the_error() {
    // A port nothing listens on: bound, then closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("address").port()
    };
    let url = format!("http://127.0.0.1:{port}/hooks/secret-token-123");
    let e = quick(2, 5)
        .post_json(Channel::Teams, &url, &json!({}))
        .await
        .expect_err("unreachable");
    assert!(matches!(e, SendError::Exhausted { attempts: 2, .. }), "{e}");
    assert!(!e.to_string().contains("secret-token"), "{e}");
}

/// `em-agent digest --send`: each channel of the team gets its message, and a channel that refuses it does
/// not keep the others from theirs (the run then fails, saying which).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refusing_channel_does_not_stop_the_others() {
    let (r, base) = receiver().await;
    r.answer("slack-web", &[400]);
    let run = common::send_web_digest(
        &["slack", "teams"],
        vec![
            (
                "EM_AGENT_DIGEST_WEB_SLACK".into(),
                format!("{base}/slack-web"),
            ),
            (
                "EM_AGENT_DIGEST_WEB_TEAMS".into(),
                format!("{base}/teams-web"),
            ),
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "a channel failed: {stderr}");
    assert!(stderr.contains("refused the message with 400"), "{stderr}");
    assert!(
        !stderr.contains("/slack-web"),
        "no webhook URL in the output: {stderr}"
    );
    assert_eq!(r.hits("slack-web").len(), 1);
    let teams = r.hits("teams-web");
    assert_eq!(teams.len(), 1, "Teams got its card all the same");
    assert_eq!(
        teams[0]["attachments"][0]["content"]["body"][0]["text"],
        "Weekly DORA digest — team web"
    );
    assert_eq!(r.hits("slack-web")[0]["blocks"][0]["type"], "header");
}
