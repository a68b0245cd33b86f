//! Helpers for the tests that run against an AWS-compatible server (moto's `moto_server`), found through
//! `AWS_ENDPOINT_URL`; `scripts/test.sh` starts one and sets it.
//!
//! Every test creates its own resources under unique names ([`fresh_names`]), so one server serves all the
//! tests of a run concurrently and nothing needs cleaning up between them.
//!
//! - [`endpoint`] / [`sdk`]: the server, or a panic that says how to start one (an AWS test never skips).
//! - [`fresh_names`] / [`fresh_names_with`]: new tables, queue + dead-letter queue, bucket.
//! - [`put_webhook_secret`] / [`put_secret`]: Secrets Manager secrets for the webhook and the API token.
//! - [`webhook_request`]: a delivery signed as its provider signs it, as API Gateway hands it to the webhook.
//! - [`receive_messages`], [`sqs_event_json`], [`sqs_event`], [`delete_messages`]: the SQS event source's
//!   side: receive, build the Lambda event, delete what the function did not report as failed.

#![allow(dead_code)]

use std::sync::Once;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use em_aws::{create_resources, AwsNames};
use serde_json::{json, Value};

pub const SERVER_HELP: &str = "the AWS tests need an AWS-compatible server: run ./scripts/test.sh, or start \
     `moto_server -H 127.0.0.1 -p 5000` and set AWS_ENDPOINT_URL=http://127.0.0.1:5000 (plus AWS_REGION and \
     dummy credentials)";

/// The region the tests use when none is set.
pub const REGION: &str = "us-east-1";

/// The AWS-compatible server's URL (`AWS_ENDPOINT_URL`). Panics, saying how to start one, when it is not
/// set. Also sets, once per process, the region, dummy credentials and `AWS_EC2_METADATA_DISABLED` when they
/// are not set, so the SDK never looks for real ones.
pub fn endpoint() -> String {
    let url = match std::env::var("AWS_ENDPOINT_URL") {
        Ok(u) if !u.trim().is_empty() => u.trim().to_string(),
        _ => panic!("{SERVER_HELP}"),
    };
    static DEFAULTS: Once = Once::new();
    DEFAULTS.call_once(|| {
        let has = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
        let region_set = has("AWS_REGION") || has("AWS_DEFAULT_REGION");
        let mut defaults = vec![
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ];
        if !region_set {
            defaults.push(("AWS_REGION", REGION));
        }
        for (k, v) in defaults {
            if !has(k) {
                std::env::set_var(k, v);
            }
        }
    });
    url
}

/// Where the server's log is, for failure messages (`EM_AGENT_TEST_MOTO_LOG`, set by `scripts/test.sh`).
pub fn server_log_hint() -> String {
    match std::env::var("EM_AGENT_TEST_MOTO_LOG") {
        Ok(p) if !p.is_empty() => format!(" (server log: {p})"),
        _ => String::new(),
    }
}

/// The SDK configuration the functions use (`em_aws::sdk_config`), pointed at the server.
pub async fn sdk() -> SdkConfig {
    endpoint();
    em_aws::sdk_config().await
}

/// The same configuration for the heaviest tests, pointed at the second AWS-compatible server when the run
/// has one (`EM_AGENT_TEST_AWS_ENDPOINT_2`, which `scripts/test.sh` starts), so that they do not queue behind
/// the others on one server; at the first one otherwise.
pub async fn sdk_apart() -> SdkConfig {
    endpoint();
    match std::env::var("EM_AGENT_TEST_AWS_ENDPOINT_2") {
        Ok(url) if !url.trim().is_empty() => {
            em_aws::sdk_loader().endpoint_url(url.trim()).load().await
        }
        _ => em_aws::sdk_config().await,
    }
}

/// A name no other test uses: `em-<tag>-<12 hex digits>`, valid for tables, queues and buckets (the tag is
/// lower-cased and cut to 20 characters of letters, digits and hyphens).
pub fn unique_name(tag: &str) -> String {
    let tag: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(20)
        .collect();
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("em-{}-{}", tag.trim_matches('-'), &id[..12])
}

/// Fresh resources for one test: the facts table, the deliveries table, the queue with its dead-letter queue
/// (messages move there after 3 receives; visibility timeout 30 s) and the bucket. The returned names carry
/// the queues' URLs.
pub async fn fresh_names(tag: &str) -> AwsNames {
    fresh_names_with(&sdk().await, tag, 3, 30).await
}

/// [`fresh_names`] with the queue's redrive policy (`max_receives`) and visibility timeout chosen: a test
/// that wants failed messages to reach the dead-letter queue fast takes 1 and 1.
pub async fn fresh_names_with(
    sdk: &SdkConfig,
    tag: &str,
    max_receives: u32,
    visibility_timeout_seconds: u32,
) -> AwsNames {
    endpoint();
    let base = unique_name(tag);
    let names = AwsNames {
        table: format!("{base}-facts"),
        deliveries_table: format!("{base}-deliveries"),
        queue: format!("{base}-queue"),
        dead_letter_queue: Some(format!("{base}-dlq")),
        bucket: base.clone(),
        retention_days: 1,
    };
    create_resources(sdk, &names, max_receives, visibility_timeout_seconds)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "creating {base}'s resources on {} failed: {e}{}",
                endpoint(),
                server_log_hint()
            )
        })
}

/// Creates a Secrets Manager secret holding `text`; returns its name (the secret id the functions take).
pub async fn put_secret(sdk: &SdkConfig, name: &str, text: &str) -> String {
    aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(name)
        .secret_string(text)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "creating secret {name} failed: {}{}",
                aws_smithy_error(&e),
                server_log_hint()
            )
        });
    name.to_string()
}

/// Creates the webhook's secret: a JSON object of provider → secret (`{"github": "..."}`), given as text or
/// as a `serde_json::Value`; returns its name. Panics when it is not a JSON object.
pub async fn put_webhook_secret(
    sdk: &SdkConfig,
    name: &str,
    json: impl std::fmt::Display,
) -> String {
    let text = json.to_string();
    let parsed: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the webhook secret must be JSON: {e}: {text}"));
    assert!(
        parsed.is_object(),
        "the webhook secret must be a JSON object of provider secrets: {text}"
    );
    put_secret(sdk, name, &text).await
}

fn aws_smithy_error<E: std::error::Error>(e: &E) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A delivery as API Gateway (HTTP API, payload 2.0) hands it to the webhook function: `POST
/// /webhooks/{provider}` with the `provider` path parameter, the given headers, and the provider's
/// signature headers for `secret` over `body`.
pub fn webhook_request(
    provider: &str,
    headers: &[(&str, &str)],
    body: &str,
    secret: &str,
) -> lambda_http::Request {
    use lambda_http::RequestExt;
    let p =
        em_providers::by_name(provider).unwrap_or_else(|| panic!("unknown provider {provider}"));
    let mut b = http::Request::builder()
        .method("POST")
        .uri(format!("https://api.example.com/webhooks/{provider}"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    for (k, v) in p.sign(
        secret.as_bytes(),
        body.as_bytes(),
        em_core::time::now_millis(),
    ) {
        b = b.header(k, v);
    }
    b.body(lambda_http::Body::Text(body.to_string()))
        .expect("a valid request")
        .with_path_parameters(std::collections::HashMap::from([(
            "provider".to_string(),
            provider.to_string(),
        )]))
}

/// Receives up to `max` messages from `queue_url`, asking again until `max` have come or `patience` has
/// passed without a new one (SQS answers with what it has at hand, not always everything).
pub async fn receive_messages(
    sdk: &SdkConfig,
    queue_url: &str,
    max: usize,
    patience: Duration,
) -> Vec<Message> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut out: Vec<Message> = Vec::new();
    let mut last_new = Instant::now();
    while out.len() < max && last_new.elapsed() < patience {
        let got = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages((max - out.len()).clamp(1, 10) as i32)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "receiving from {queue_url} failed: {}{}",
                    aws_smithy_error(&e),
                    server_log_hint()
                )
            });
        let messages = got.messages.unwrap_or_default();
        if messages.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        } else {
            last_new = Instant::now();
            out.extend(messages);
        }
    }
    out
}

/// The queue's ARN, as the event source puts it in each record.
pub async fn queue_arn(sdk: &SdkConfig, queue_url: &str) -> String {
    aws_sdk_sqs::Client::new(sdk)
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .ok()
        .and_then(|o| o.attributes)
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_else(|| panic!("queue {queue_url} has no ARN{}", server_log_hint()))
}

/// The Lambda SQS event for received messages, as the event source mapping builds it (JSON, to write to a
/// file for `cargo lambda invoke` or to deserialize with [`sqs_event`]).
pub fn sqs_event_json(messages: &[Message], queue_arn: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_string(), Value::String(v.clone())))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id().unwrap_or_default(),
                "receiptHandle": m.receipt_handle().unwrap_or_default(),
                "body": m.body().unwrap_or_default(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body().unwrap_or_default(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// [`sqs_event_json`] as the aggregator's handler takes it.
pub fn sqs_event(messages: &[Message], queue_arn: &str) -> SqsEvent {
    serde_json::from_value(sqs_event_json(messages, queue_arn)).expect("a valid SQS event")
}

/// Deletes messages by receipt handle, as the event source does for the records a function did not report
/// as failed.
pub async fn delete_messages(sdk: &SdkConfig, queue_url: &str, receipts: &[String]) {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    for chunk in receipts.chunks(10) {
        let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .build()
                    .expect("a valid delete entry")
            })
            .collect();
        let out = sqs
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "deleting from {queue_url} failed: {}{}",
                    aws_smithy_error(&e),
                    server_log_hint()
                )
            });
        assert!(
            out.failed().is_empty(),
            "deleting from {queue_url}: {:?}",
            out.failed()
        );
    }
}

/// How many messages a queue holds, visible and in flight (approximate on AWS, exact on moto).
pub async fn queue_depth(sdk: &SdkConfig, queue_url: &str) -> u64 {
    let out = aws_sdk_sqs::Client::new(sdk)
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "attributes of {queue_url}: {}{}",
                aws_smithy_error(&e),
                server_log_hint()
            )
        });
    let get = |k: QueueAttributeName| -> u64 {
        out.attributes()
            .and_then(|a| a.get(&k))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    get(QueueAttributeName::ApproximateNumberOfMessages)
        + get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
}

/// An aggregator on fresh tables of its own (`em-<tag>-…`), to compute what deliveries give when nothing
/// fails, for comparison.
pub async fn reference_aggregator(
    sdk: &SdkConfig,
    tag: &str,
    config: std::sync::Arc<em_core::config::Config>,
) -> em_aggregator::Aggregator<em_aws::DynamoStore> {
    let table = unique_name(tag);
    em_aws::setup::create_tables(
        &aws_sdk_dynamodb::Client::new(sdk),
        &table,
        &format!("{table}-deliveries"),
    )
    .await
    .unwrap_or_else(|e| panic!("reference table: {e}{}", server_log_hint()));
    em_aggregator::Aggregator::new(em_aws::DynamoStore::new(sdk, table), config)
}

/// A sender address of its own, verified in SES.
pub async fn verified_sender(sdk: &SdkConfig, tag: &str) -> String {
    let from = format!("{tag}@acme.test");
    aws_sdk_sesv2::Client::new(sdk)
        .create_email_identity()
        .email_identity(&from)
        .send()
        .await
        .expect("verified sender");
    from
}

/// The raw emails SES took from `from`, as the server keeps them (`/moto-api/data.json`).
pub async fn emails_from(from: &str) -> Vec<Value> {
    // The server dumps its whole state for this answer, and a dump that meets a concurrent write from
    // another test fails (500): such an answer is asked again, a bounded number of times.
    let mut data = Value::Null;
    for attempt in 1..=20 {
        let answer = crate::common::client()
            .get(format!("{}/moto-api/data.json", endpoint()))
            .send()
            .await
            .expect("server data");
        let status = answer.status();
        match answer.json::<Value>().await {
            Ok(v) if status.is_success() => {
                data = v;
                break;
            }
            other => assert!(
                attempt < 20,
                "/moto-api/data.json answered {status} {other:?}{}",
                server_log_hint()
            ),
        }
        tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
    }
    data["ses"]["RawMessage"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m["source"] == from)
        .collect()
}

pub use em_agent_tests::invoke;

/// The webhook function as deployed, over `handler`, its clock at `now` (`None`: the system's).
pub fn webhook_app<Q: em_core::ports::Queue, S: em_core::ports::SecretSource>(
    handler: em_webhook::WebhookHandler<Q, S>,
    now: Option<i64>,
) -> axum::Router {
    let mut webhooks = em_webhook::Webhooks::new(handler);
    if let Some(at) = now {
        webhooks = webhooks.with_clock(em_core::time::Clock::from_fn(move || at));
    }
    em_webhook::app(std::sync::Arc::new(webhooks))
}
