//! The basic scenario through the AWS path, as the Lambda functions run it: API Gateway v2 events into the
//! webhook handler (secrets from Secrets Manager, deliveries onto SQS), SQS batches into the aggregator
//! handler (facts and metric rows in DynamoDB), and API Gateway events into the API handler — all against
//! the AWS-compatible server over real HTTP. Every query of `expected.json` must match, in two delivery
//! orders.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::common::{
    assert_adds_up, assert_matches, figures_of, load_deliveries, scenario_dir, secret_of, shuffle,
    Delivery,
};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use em_aggregator::Aggregator;
use em_aws::secrets::Layout;
use em_aws::{DynamoStore, S3Payloads, SecretsManagerSecrets, SqsQueue};
use em_core::config::Config;
use em_webhook::WebhookHandler;
use serde_json::{json, Value};

/// An API Gateway HTTP API (payload 2.0) event, as the service sends it to the function.
fn apigw_event(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    body: Option<&str>,
) -> lambda_http::Request {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone())))
        .collect();
    let mut event = json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "scenario", "domainName": "scenario.example",
            "domainPrefix": "scenario", "requestId": "r", "routeKey": format!("{method} {path}"),
            "stage": "$default", "time": "01/Mar/2025:00:00:00 +0000", "timeEpoch": 0,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "t"}
        },
        "isBase64Encoded": false
    });
    if let Some(b) = body {
        event["body"] = Value::String(b.to_string());
    }
    lambda_http::request::from_str(&event.to_string()).expect("an API Gateway v2 event")
}

fn signed_headers(d: &Delivery) -> Vec<(String, String)> {
    let p = em_providers::by_name(&d.provider).expect("provider");
    let mut headers = d.headers.clone();
    headers.extend(
        p.sign(
            secret_of(&d.provider).as_bytes(),
            d.body.as_bytes(),
            em_core::time::now_millis(),
        )
        .into_iter()
        .map(|(k, v)| (k.to_string(), v)),
    );
    headers
}

fn body_json(r: &lambda_http::Response<lambda_http::Body>) -> Value {
    match r.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).expect("json"),
        other => panic!("unexpected body {other:?}"),
    }
}

async fn run(deliveries: Vec<Delivery>, tag: &str) {
    // The second server, when there is one: this test alone keeps one busy for minutes.
    let sdk = common::aws::sdk_apart().await;
    let names = common::aws::fresh_names_with(&sdk, tag, 3, 30).await;
    let secret_id = format!("{}-webhooks", names.table);
    let secret_json = common::secrets_json();
    common::aws::put_webhook_secret(&sdk, &secret_id, &secret_json.to_string()).await;

    // Webhook functions: one per provider, as deployed.
    let queue = SqsQueue::connect(&sdk, &names)
        .await
        .expect("queue")
        .with_wait_seconds(0);
    let webhook = common::aws::webhook_app(
        WebhookHandler::new(
            queue.clone(),
            SecretsManagerSecrets::new(&sdk, &secret_id, Layout::PerProvider),
        ),
        Some(0),
    );
    let total = deliveries.len();
    let mut accepted = 0;
    for d in &deliveries {
        let req = apigw_event(
            "POST",
            &format!("/webhooks/{}", d.provider),
            "",
            &signed_headers(d),
            Some(&d.body),
        );
        let r = common::aws::invoke(&webhook, req).await;
        let status = r.status().as_u16();
        let v = body_json(&r);
        assert!(
            status == 202 || (status == 200 && v["status"] == "duplicate"),
            "{}: {status} {v}",
            d.name
        );
        accepted += usize::from(status == 202);
    }
    assert!(accepted > 0 && accepted <= total);

    // The aggregator function, fed as the SQS event source feeds it: batches of up to 10, messages that
    // did not fail deleted, failed ones left to be received again.
    let config = Config::load(&scenario_dir().join("em-agent.toml")).expect("config");
    let store = DynamoStore::new(&sdk, names.table.clone());
    let aggregator = Aggregator::new(store.clone(), Arc::new(config.clone()));
    aggregator
        .ensure_config_current()
        .await
        .expect("config current");
    let payloads = S3Payloads::new(&sdk, names.bucket.clone());
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut processed = 0;
    let mut empty_receives = 0;
    while empty_receives < 3 {
        let out = sqs
            .receive_message()
            .queue_url(queue.queue_url())
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        let messages = out.messages();
        if messages.is_empty() {
            empty_receives += 1;
            continue;
        }
        empty_receives = 0;
        let mut receipts = BTreeMap::new();
        let mut event = SqsEvent::default();
        for m in messages {
            let mut record = SqsMessage::default();
            record.message_id = m.message_id().map(str::to_string);
            record.receipt_handle = m.receipt_handle().map(str::to_string);
            record.body = m.body().map(str::to_string);
            receipts.insert(
                m.message_id().unwrap_or_default().to_string(),
                m.receipt_handle().unwrap_or_default().to_string(),
            );
            event.records.push(record);
        }
        let response = em_aggregator::lambda::handle(&aggregator, &payloads, event, 0)
            .await
            .expect("the batch is handled");
        assert!(
            response.batch_item_failures.is_empty(),
            "no message of the scenario fails: {:?}",
            response
                .batch_item_failures
                .iter()
                .map(|f| &f.item_identifier)
                .collect::<Vec<_>>()
        );
        for (_, receipt) in receipts {
            sqs.delete_message()
                .queue_url(queue.queue_url())
                .receipt_handle(receipt)
                .send()
                .await
                .expect("delete");
            processed += 1;
        }
    }
    assert_eq!(
        processed, accepted,
        "every accepted delivery was processed once"
    );

    // The API function, with its bearer token from Secrets Manager.
    let token_id = format!("{}-api-token", names.table);
    common::aws::put_secret(&sdk, &token_id, "scenario-token").await;
    let tokens = SecretsManagerSecrets::new(&sdk, &token_id, Layout::Single(em_api::API_TOKEN));
    let api = em_api::app(Arc::new(em_api::Api {
        reader: store.clone(),
        config: Arc::new(config.clone()),
        tokens: Some(Arc::new(tokens)),
        clock: em_core::time::Clock::from_fn(|| 0),
    }));
    let expected: Value = serde_json::from_slice(
        &std::fs::read(scenario_dir().join("expected.json")).expect("expected.json"),
    )
    .expect("json");
    let cases = expected.as_array().expect("a list");
    assert!(cases.len() >= 16);
    let auth = vec![(
        "authorization".to_string(),
        "Bearer scenario-token".to_string(),
    )];
    for case in cases {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in case["query"].as_object().expect("query") {
            q.append_pair(k, v.as_str().unwrap_or_default());
        }
        let query = q.finish();
        let req = apigw_event("GET", "/v1/metrics/dora", &query, &auth, None);
        let r = common::aws::invoke(&api, req).await;
        assert_eq!(r.status(), 200, "{query}: {}", body_json(&r));
        let window = body_json(&r);
        assert_matches(&figures_of(&window), &case["expect"], &query);
        for (path, extra, list) in [
            ("/v1/metrics/dora/series", "interval=week", "buckets"),
            ("/v1/metrics/dora/series", "interval=month", "buckets"),
            ("/v1/metrics/dora", "group_by=service", "groups"),
            ("/v1/metrics/dora", "group_by=repository", "groups"),
        ] {
            let q = format!("{query}&{extra}");
            let req = apigw_event("GET", path, &q, &auth, None);
            let r = common::aws::invoke(&api, req).await;
            assert_eq!(r.status(), 200, "{path}?{q}: {}", body_json(&r));
            assert_adds_up(&window, &body_json(&r)[list], &format!("{path}?{q}"));
        }
        // The delivery metrics of the same scope: its successful attempts are the window's deployments,
        // and the weekly buckets' counts add up to the window's.
        let req = apigw_event("GET", "/v1/metrics/delivery", &query, &auth, None);
        let r = common::aws::invoke(&api, req).await;
        assert_eq!(r.status(), 200, "delivery?{query}: {}", body_json(&r));
        let delivery = body_json(&r);
        assert_eq!(
            delivery["deployment_success_rate"]["succeeded"],
            window["deployment_frequency"]["deployments"],
            "delivery?{query}"
        );
        let q = format!("{query}&interval=week");
        let req = apigw_event("GET", "/v1/metrics/delivery/series", &q, &auth, None);
        let r = common::aws::invoke(&api, req).await;
        assert_eq!(r.status(), 200, "delivery/series?{q}: {}", body_json(&r));
        let buckets = body_json(&r)["buckets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for (metric, count) in [
            ("deployment_success_rate", "attempts"),
            ("deployment_success_rate", "failed"),
            ("build_duration", "builds"),
            ("pr_cycle_time", "pull_requests"),
            ("pr_cycle_time", "deployed"),
        ] {
            let sum: u64 = buckets
                .iter()
                .map(|b| b[metric][count].as_u64().unwrap_or(0))
                .sum();
            assert_eq!(
                Some(sum),
                delivery[metric][count].as_u64(),
                "delivery/series?{q}: {metric}.{count}"
            );
        }
    }
    let req = apigw_event("GET", "/v1/metrics/dora", "", &[], None);
    let r = common::aws::invoke(&api, req).await;
    assert_eq!(r.status(), 401, "never public");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scenario_through_lambda_handlers_on_aws_in_file_order() {
    let deliveries = load_deliveries(&scenario_dir().join("deliveries"));
    run(deliveries, "scenario-a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scenario_through_lambda_handlers_on_aws_shuffled_with_redeliveries() {
    let mut deliveries = load_deliveries(&scenario_dir().join("deliveries"));
    // Reversed, then a third of them again shuffled in: at-least-once delivery from the providers.
    deliveries.reverse();
    let mut again: Vec<Delivery> = deliveries.iter().step_by(3).cloned().collect();
    deliveries.append(&mut again);
    shuffle(&mut deliveries, 0x5eed);
    run(deliveries, "scenario-b").await;
}

/// The stack's EventBridge rule sends this account's deployment events straight to the delivery queue:
/// here the rule is put on the AWS-compatible server with boto3 (the pattern of `DeploymentEventsRule` in
/// `infra/template.in.yaml`), AWS's published ECS and CodeDeploy events are put on its bus, and what reaches
/// the queue goes through the aggregator's handler into DynamoDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_deployment_events_reach_the_queue_through_the_rule_and_count_once() {
    let sdk = common::aws::sdk().await;
    let names = common::aws::fresh_names_with(&sdk, "account-events", 3, 30).await;
    let arn = common::aws::queue_arn(&sdk, &names.queue).await;
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/providers/tests/fixtures/aws"
    );
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/template.yaml"
    ))
    .expect("the template");
    let pattern = json!({
        "source": ["aws.ecs", "aws.codedeploy", "aws.codepipeline", "aws.cloudwatch"],
        "detail-type": [
            "ECS Deployment State Change",
            "CodeDeploy Deployment State-change Notification",
            "CodePipeline Pipeline Execution State Change",
            "CloudWatch Alarm State Change",
        ],
    });
    for value in [
        "aws.ecs",
        "aws.codedeploy",
        "aws.codepipeline",
        "aws.cloudwatch",
        "ECS Deployment State Change",
        "CloudWatch Alarm State Change",
    ] {
        assert!(template.contains(value), "the stack's rule names {value}");
    }
    let script = r#"
import boto3, json, os, sys
kw = dict(endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ.get("AWS_REGION", "us-east-1"))
events = boto3.client("events", **kw)
rule, arn, pattern, fixtures = sys.argv[1:5]
events.put_rule(Name=rule, EventPattern=pattern, State="ENABLED")
events.put_targets(Rule=rule, Targets=[{"Id": "DeliveryQueue", "Arn": arn}])
entries = []
for name in ["ecs-deployment-completed", "codedeploy-deployment-state-change", "ecs-deployment-in-progress",
             "cloudwatch-alarm-single-metric", "cloudwatch-alarm-ok"]:
    e = json.load(open(f"{fixtures}/{name}.json"))
    entries.append({"Source": e["source"], "DetailType": e["detail-type"], "Detail": json.dumps(e["detail"]),
                    "Resources": e["resources"], "Time": e["time"]})
# A third party's event on the same bus matches no rule of ours.
entries.append({"Source": "acme.deployer", "DetailType": "ECS Deployment State Change", "Detail": "{}"})
out = events.put_events(Entries=entries)
assert out["FailedEntryCount"] == 0, out
"#;
    let rule = common::aws::unique_name("deployment-events");
    let status = std::process::Command::new("python3")
        .args(["-c", script, &rule, &arn, &pattern.to_string(), fixtures])
        .status()
        .expect("python3 with boto3 (installed with moto by scripts/test.sh)");
    assert!(status.success(), "putting the rule and the events failed");

    let messages =
        common::aws::receive_messages(&sdk, &names.queue, 6, std::time::Duration::from_secs(3))
            .await;
    assert_eq!(
        messages.len(),
        5,
        "the rule delivers AWS's events, and only them"
    );
    let event = common::aws::sqs_event(&messages, &arn);
    let config = Config::parse(
        "production_environments = [\"default\", \"myDeploymentGroup\"]\n\
         [[services]]\nname = \"checkout\"\n\
         repositories = [\"ecs:default/servicetest\", \"codedeploy:myApplication\"]\n\
         aliases = [\"ServerCpuTooHigh\", \"flaky-service\"]\n",
    )
    .expect("config");
    let store = DynamoStore::new(&sdk, names.table.clone());
    let aggregator = Aggregator::new(store.clone(), Arc::new(config.clone()));
    let payloads = S3Payloads::new(&sdk, names.bucket.clone());
    for _ in 0..2 {
        // SQS delivers at least once: a batch handled twice counts once.
        let out = em_aggregator::lambda::handle(&aggregator, &payloads, event.clone(), 0)
            .await
            .expect("the batch is handled");
        assert!(
            out.batch_item_failures.is_empty(),
            "{:?}",
            out.batch_item_failures
        );
    }
    let report = em_api::dora(
        &store,
        &config,
        em_api::DoraQuery {
            service: Some("checkout".into()),
            from: Some("2016-06-01".into()),
            to: Some("2020-06-01".into()),
            ..Default::default()
        },
        0,
    )
    .await
    .expect("a report");
    // The ECS deployment (2020-05-23) and the CodeDeploy one (2016-06-30); the in-progress one is nothing.
    assert_eq!(
        serde_json::to_value(&report.report).expect("JSON")["deployment_frequency"]["deployments"],
        json!(2)
    );
    // The alarms: ServerCpuTooHigh in ALARM since 2019-10-02 17:04:40.989, flaky-service in ALARM from
    // 2019-11-21 04:13:51.675 to 04:18:51.695 (300.02 s).
    let incidents = em_api::incidents(
        &store,
        &config,
        em_api::DoraQuery {
            service: Some("checkout".into()),
            from: Some("2016-06-01".into()),
            to: Some("2020-06-01".into()),
            ..Default::default()
        },
        0,
    )
    .await
    .expect("incident figures");
    let v = serde_json::to_value(&incidents).expect("JSON");
    assert_eq!(
        v["incidents"],
        json!({"opened": 2, "resolved": 1, "open": 1, "attributed": 0})
    );
    assert_eq!(v["time_to_resolve"]["median_seconds"], json!(300.02));
}
