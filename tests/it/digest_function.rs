//! The scheduled digest function, its handler in-process as Lambda runs it, against the AWS-compatible
//! server (DynamoDB for the figures and the once-only claims, Secrets Manager for the addresses, SES for the
//! email) and a Slack webhook on the loopback: a schedule that fires twice sends once, nothing goes out
//! before the team's local hour, and a failed channel goes out on the next run without resending the rest.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use crate::common::hooks::{receiver, Receiver};
use em_aws::secrets::Layout;
use em_aws::{DynamoStore, SecretsManagerSecrets};
use em_core::config::Config;
use em_digest::{Handler, Outbound, Scheduled};
use em_notify::send::{Policy, Sender};
use serde_json::{json, Value};

/// A Slack webhook answering `script` first, and its URL.
async fn slack_hook(script: &[u16]) -> (Arc<Receiver>, String) {
    let (r, base) = receiver().await;
    r.answer("slack", script);
    (r, format!("{base}/slack"))
}

fn hits(r: &Receiver) -> Vec<Value> {
    r.hits("slack")
}

/// The function's handler for team `web` (Berlin time, Slack and email), its addresses in a secret.
async fn handler(slack: &str) -> (Handler<DynamoStore, SecretsManagerSecrets>, String) {
    let sdk = common::aws::sdk().await;
    let names = common::aws::fresh_names("digestfn").await;
    let tag = common::aws::unique_name("digestfn");
    let from = common::aws::verified_sender(&sdk, &tag).await;
    let secret = common::aws::put_secret(
        &sdk,
        &format!("{tag}-addresses"),
        &json!({
            "web/slack": slack,
            "web/email": [format!("lead-{tag}@acme.test"), format!("team-{tag}@acme.test")],
        })
        .to_string(),
    )
    .await;
    let config = Config::parse(
        "[[services]]\nname = \"shop\"\nteam = \"web\"\nrepositories = [\"acme/shop\"]\n\n\
         [[teams]]\nname = \"web\"\nchannels = [\"slack\", \"email\"]\ntime_zone = \"Europe/Berlin\"\n",
    )
    .expect("config");
    // reqwest's TLS takes the process's crypto provider, which the function installs at start-up.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let web = Sender::new(Policy {
        attempts: 2,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        timeout: Duration::from_secs(5),
        breaker_failures: 10,
        breaker_open: Duration::from_secs(300),
    })
    .expect("sender");
    let h = Handler {
        store: DynamoStore::new(&sdk, names.table),
        addresses: SecretsManagerSecrets::new(&sdk, secret, Layout::PerProvider),
        out: Outbound::on_aws(web, &sdk, Some(from.clone())),
        config,
    };
    (h, from)
}

fn at(time: &str) -> Scheduled {
    Scheduled {
        scheduled_time: Some(time.to_string()),
    }
}

fn outcomes(answer: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = answer["reports"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r["channel"].as_str().unwrap_or_default().to_string(),
                r["outcome"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_that_fires_twice_sends_each_channel_once() {
    let (slack, url) = slack_hook(&[]).await;
    let (h, from) = handler(&url).await;
    // Monday 09:00 in Berlin (07:00 UTC), fired twice at once, as EventBridge Scheduler may.
    let monday = "2025-04-14T07:00:00Z";
    let (a, b) = tokio::join!(h.handle(at(monday), 0), h.handle(at(monday), 0));
    let (a, b) = (a.expect("first run"), b.expect("second run"));
    let mut all = outcomes(&a);
    all.extend(outcomes(&b));
    all.sort();
    assert_eq!(
        all,
        [
            ("email".to_string(), "already_claimed".to_string()),
            ("email".to_string(), "sent".to_string()),
            ("slack".to_string(), "already_claimed".to_string()),
            ("slack".to_string(), "sent".to_string()),
        ],
        "{a} {b}"
    );
    // The next hourly run (and a retry of it) sends nothing more.
    let later = h
        .handle(at("2025-04-14T08:00:00Z"), 0)
        .await
        .expect("later run");
    assert_eq!(
        outcomes(&later),
        [
            ("email".to_string(), "already_claimed".to_string()),
            ("slack".to_string(), "already_claimed".to_string()),
        ]
    );
    let posted = hits(&slack);
    assert_eq!(posted.len(), 1, "one Slack message: {posted:?}");
    // The week of Berlin's calendar that ended on Monday.
    let text = posted[0].to_string();
    assert!(
        text.contains("2025-04-07 to 2025-04-14 (Europe/Berlin)"),
        "{text}"
    );
    let emails = common::aws::emails_from(&from).await;
    assert_eq!(emails.len(), 1, "one email: {emails:?}");
    let to = emails[0]["destinations"].to_string();
    assert!(
        to.contains("lead-") && to.contains("team-"),
        "both addresses of the secret's list: {to}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_waits_for_the_teams_local_hour_and_a_late_run_catches_up() {
    let (slack, url) = slack_hook(&[]).await;
    let (h, from) = handler(&url).await;
    // Sunday 22:00 in Berlin: the week that ended on Monday 2025-04-07 never went out (the function was
    // down, or just deployed), so this run sends it.
    let sunday = h.handle(at("2025-04-13T20:00:00Z"), 0).await.expect("run");
    let froms: Vec<&str> = sunday["reports"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["from"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        froms,
        ["2025-03-30T22:00:00.000Z", "2025-03-30T22:00:00.000Z"],
        "Monday 2025-03-31 00:00 in Berlin: {sunday}"
    );
    assert_eq!(hits(&slack).len(), 1);
    // Monday 08:00 in Berlin: the week that just ended waits for 09:00, and the one before went out.
    let early = h.handle(at("2025-04-14T06:00:00Z"), 0).await.expect("run");
    assert_eq!(outcomes(&early), [], "{early}");
    assert_eq!(hits(&slack).len(), 1);
    assert_eq!(common::aws::emails_from(&from).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_channel_goes_out_on_the_next_run_and_the_rest_are_not_resent() {
    // Slack refuses the first post (a 404 is not retried); the email goes out.
    let (slack, url) = slack_hook(&[404]).await;
    let (h, from) = handler(&url).await;
    let first = h.handle(at("2025-04-14T07:00:00Z"), 0).await;
    let err = first
        .expect_err("a failed channel fails the invocation, so it is retried")
        .to_string();
    assert!(err.contains("1 digest channel(s) failed"), "{err}");
    assert!(!err.contains(&url), "no webhook URL in the answer: {err}");
    assert_eq!(common::aws::emails_from(&from).await.len(), 1);

    let second = h
        .handle(at("2025-04-14T08:00:00Z"), 0)
        .await
        .expect("retry");
    assert_eq!(
        outcomes(&second),
        [
            ("email".to_string(), "already_claimed".to_string()),
            ("slack".to_string(), "sent".to_string()),
        ]
    );
    assert_eq!(
        hits(&slack).len(),
        2,
        "the refused post and the one that went through"
    );
    assert_eq!(
        common::aws::emails_from(&from).await.len(),
        1,
        "the email is not sent again"
    );
}
