//! Incidents from every kind of tool at once, over HTTP to `em-agent serve`: one outage that Alertmanager,
//! Opsgenie and incident.io all report, a Grafana warning that does not count, a Datadog monitor, and an
//! Opsgenie alert long after the last deployment. The DORA and incident figures are worked out by hand
//! below, and must come out the same whatever order the deliveries arrive in and however often.

use crate::common;

use crate::common::{delivery, post_signed, secrets, Delivery, Server};
use serde_json::{json, Value};

const REPO: &str = "acme/shop";
const C1: &str = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1";
const C2: &str = "c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2";
const C3: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";
const NULL: &str = "0000000000000000000000000000000000000000";

const CONFIG: &str = r#"
production_environments = ["production"]
incident_attribution_window = "24h"

[[services]]
name = "shop"
team = "web"
repositories = ["acme/shop"]
aliases = ["shop", "Shop Checkout"]
"#;

/// Epoch milliseconds of an RFC 3339 instant.
fn ms(t: &str) -> i64 {
    em_core::time::parse_timestamp(t).expect("an instant")
}

fn push(id: &str, before: &str, sha: &str, time: &str) -> Delivery {
    common::github_push(REPO, id, before, &[(sha, time)])
}

fn deployed(id: &str, n: u64, sha: &str, time: &str) -> Delivery {
    common::github_deployment(REPO, id, n, sha, time)
}

/// An Alertmanager notification of one alert, resolved when `ends` is given.
fn alertmanager(name: &str, severity: &str, starts: &str, ends: Option<&str>) -> Delivery {
    delivery(
        "alertmanager",
        name,
        &[],
        json!({
            "version": "4", "status": if ends.is_some() { "resolved" } else { "firing" },
            "receiver": "em-agent", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "groupKey": "{}:{}",
            "alerts": [{
                "status": if ends.is_some() { "resolved" } else { "firing" },
                "labels": {"alertname": "CheckoutErrors", "service": "shop", "severity": severity},
                "annotations": {"summary": "Checkout errors above 5%"},
                "startsAt": starts, "endsAt": ends.unwrap_or("0001-01-01T00:00:00Z"),
                "fingerprint": "5e1a2b3c4d5e6f70",
            }],
        }),
    )
}

/// An Opsgenie alert action; `at` is the action's time.
fn opsgenie(name: &str, action: &str, alert: &str, created: &str, at: &str) -> Delivery {
    delivery(
        "opsgenie",
        name,
        &[],
        json!({
            "action": action,
            "alert": {
                "alertId": alert, "message": "Checkout is failing", "entity": "shop", "tags": [],
                "teams": [], "createdAt": ms(created), "updatedAt": ms(at) * 1_000_000, "priority": "P2",
            },
        }),
    )
}

/// An incident.io status change of incident `id`, created at `created`, changed at `at`.
fn incident_io(name: &str, from: &str, to: &str, created: &str, at: &str) -> Delivery {
    let event = "public_incident.incident_status_updated_v2";
    delivery(
        "incident-io",
        name,
        &[],
        json!({
            "event_type": event,
            event: {
                "incident": {
                    "id": "01HZX0INCIDENTIO", "name": "Checkout down", "created_at": created, "updated_at": at,
                    "incident_status": {"category": to, "name": to},
                    "severity": {"name": "Major", "rank": 2},
                    "custom_field_entries": [{
                        "custom_field": {"name": "Affected services"},
                        "values": [{"value_catalog_entry": {"name": "Shop Checkout"}}],
                    }],
                },
                "previous_status": {"category": from, "name": from},
                "new_status": {"category": to, "name": to},
            },
        }),
    )
}

/// A Datadog monitor notification from the recommended template.
fn datadog(name: &str, transition: &str, at: &str) -> Delivery {
    delivery(
        "datadog",
        name,
        &[],
        json!({
            "id": name, "alert_id": "4242", "alert_cycle_key": "4242-cycle-1", "alert_transition": transition,
            "alert_scope": "", "alert_type": if transition == "Recovered" { "success" } else { "error" },
            "title": format!("[{transition}] Checkout latency"), "date": ms(at).to_string(),
            "tags": "env:prod,service:shop",
        }),
    )
}

/// A Grafana notification of one firing alert.
fn grafana(name: &str, severity: &str, starts: &str) -> Delivery {
    delivery(
        "grafana",
        name,
        &[],
        json!({
            "receiver": "em-agent", "status": "firing", "orgId": 1, "version": "1",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://grafana",
            "groupKey": "{}:{}", "truncatedAlerts": 0, "title": "[FIRING:1]", "state": "alerting", "message": "",
            "alerts": [{
                "status": "firing",
                "labels": {"alertname": "SlowPages", "service": "shop", "severity": severity},
                "annotations": {}, "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": "9f8e7d6c5b4a3921", "generatorURL": "", "silenceURL": "",
                "dashboardURL": "", "panelURL": "", "values": null, "valueString": "",
            }],
        }),
    )
}

/// Three deployments of `acme/shop` (D1 at 10:00 and D2 at 12:00 on 1 May, D3 at 09:00 on 2 May), each
/// shipping one commit made an hour before it, and the incidents around them.
fn history() -> Vec<Delivery> {
    vec![
        push("p1", NULL, C1, "2025-05-01T09:00:00Z"),
        push("p2", C1, C2, "2025-05-01T11:00:00Z"),
        push("p3", C2, C3, "2025-05-02T08:00:00Z"),
        deployed("d1", 1, C1, "2025-05-01T10:00:00Z"),
        deployed("d2", 2, C2, "2025-05-01T12:00:00Z"),
        deployed("d3", 3, C3, "2025-05-02T09:00:00Z"),
        // One outage after D1, three tools: Alertmanager fires at 10:30 (resolved 11:30), Opsgenie opens at
        // 10:35 (closed 12:30), incident.io's incident is created at 12:05 — after D2, while Opsgenie's alert
        // is open — accepted at 12:08 and closed at 12:45. It counts once: opened 10:30, acknowledged 12:08,
        // resolved 12:45, and blamed on D1 alone.
        alertmanager(
            "am-resolved",
            "critical",
            "2025-05-01T10:30:00Z",
            Some("2025-05-01T11:30:00Z"),
        ),
        opsgenie(
            "og-create",
            "Create",
            "og-1",
            "2025-05-01T10:35:00Z",
            "2025-05-01T10:35:00Z",
        ),
        opsgenie(
            "og-close",
            "Close",
            "og-1",
            "2025-05-01T10:35:00Z",
            "2025-05-01T12:30:00Z",
        ),
        incident_io(
            "io-accepted",
            "triage",
            "live",
            "2025-05-01T12:05:00Z",
            "2025-05-01T12:08:00Z",
        ),
        incident_io(
            "io-closed",
            "live",
            "closed",
            "2025-05-01T12:05:00Z",
            "2025-05-01T12:45:00Z",
        ),
        // A Grafana warning after D2: stored, not an incident (Grafana counts `critical` by default).
        grafana("gf-warning", "warning", "2025-05-01T14:00:00Z"),
        // Datadog after D3: triggered at 09:20, recovered at 09:50.
        datadog("dd-triggered", "Triggered", "2025-05-02T09:20:00Z"),
        datadog("dd-recovered", "Recovered", "2025-05-02T09:50:00Z"),
        // Opsgenie, 27 hours after D3: no deployment to blame. Acknowledged after 10 minutes, closed after 60.
        opsgenie(
            "og2-create",
            "Create",
            "og-2",
            "2025-05-03T12:00:00Z",
            "2025-05-03T12:00:00Z",
        ),
        opsgenie(
            "og2-ack",
            "Acknowledge",
            "og-2",
            "2025-05-03T12:00:00Z",
            "2025-05-03T12:10:00Z",
        ),
        opsgenie(
            "og2-close",
            "Close",
            "og-2",
            "2025-05-03T12:00:00Z",
            "2025-05-03T13:00:00Z",
        ),
    ]
}

/// The DORA figures from 1 to 4 May.
fn expected_dora() -> Value {
    json!({
        // Three deployments in three days.
        "deployment_frequency": {"deployments": 3, "per_day": 1.0, "level": "elite"},
        // Each shipped a commit made an hour before.
        "lead_time": {"changes": 3, "excluded": 0, "median_seconds": 3600.0, "p90_seconds": 3600.0,
                      "level": "elite"},
        // D1 by the outage (blamed by its first opening, 10:30, though incident.io's report came after D2),
        // D3 by Datadog's monitor; D2 by nothing: the Grafana warning does not count.
        "change_failure_rate": {"deployments": 3, "failed": 2, "ratio": 2.0 / 3.0, "level": "low"},
        // The outage once (10:30 → 12:45: 135 minutes) and Datadog's (30 minutes); the median is 82.5
        // minutes. The last Opsgenie alert is no deployment's failure.
        "recovery_time": {"incidents": 2, "open": 0, "median_seconds": 4950.0, "level": "high"},
        // D2 went out at 12:00 while D1's outage was open (until 12:45).
        "rework_rate": {"deployments": 3, "rework": 1, "ratio": 1.0 / 3.0},
    })
}

/// The incident figures from 1 to 4 May.
fn expected_incidents() -> Value {
    json!({
        // The outage, Datadog's and the last Opsgenie alert; all resolved, two attributed.
        "incidents": {"opened": 3, "resolved": 3, "open": 0, "attributed": 2},
        // The outage acknowledged 98 minutes after it opened (incident.io's acceptance, its first), the last
        // Opsgenie alert after 10; Datadog's never. Median 54 minutes, 90th percentile (2nd of 2) 98.
        "time_to_acknowledge": {"incidents": 2, "median_seconds": 3240.0, "p90_seconds": 5880.0},
        // 30, 60 and 135 minutes.
        "time_to_resolve": {"incidents": 3, "median_seconds": 3600.0, "p90_seconds": 8100.0},
        "incidents_per_deployment": {"incidents": 3, "deployments": 3, "ratio": 1.0},
    })
}

async fn figures(order: &[Delivery]) -> (Value, Value, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("em-agent.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let server = Server::start(Some(&config), &dir.path().join("data"), secrets());
    let client = common::client();
    for d in order {
        let (status, body) = post_signed(&client, &server.base, d).await.expect("post");
        assert!(
            status == 202 || status == 200,
            "{}: {status} {body}",
            d.name
        );
    }
    server.wait_drained(&client).await;
    let q = [
        ("service", "shop"),
        ("from", "2025-05-01"),
        ("to", "2025-05-04"),
    ];
    let series = [
        ("service", "shop"),
        ("from", "2025-05-01"),
        ("to", "2025-05-04"),
        ("interval", "day"),
    ];
    (
        server.get_json(&client, "/v1/metrics/dora", &q).await,
        server.get_json(&client, "/v1/metrics/incidents", &q).await,
        server
            .get_json(&client, "/v1/metrics/incidents/series", &series)
            .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_outage_three_tools_report_counts_once_in_any_order() {
    let in_order = history();
    // Reversed, with every delivery sent twice.
    let reversed: Vec<Delivery> = history()
        .into_iter()
        .rev()
        .flat_map(|d| [d.clone(), d])
        .collect();
    let (want_dora, want_incidents) = (expected_dora(), expected_incidents());
    for (name, order) in [("in order", in_order), ("reversed and repeated", reversed)] {
        let (dora, incidents, series) = figures(&order).await;
        for metric in [
            "deployment_frequency",
            "lead_time",
            "change_failure_rate",
            "recovery_time",
            "rework_rate",
        ] {
            common::assert_matches(
                &dora[metric],
                &want_dora[metric],
                &format!("{name}: {metric}"),
            );
        }
        for metric in [
            "incidents",
            "time_to_acknowledge",
            "time_to_resolve",
            "incidents_per_deployment",
        ] {
            common::assert_matches(
                &incidents[metric],
                &want_incidents[metric],
                &format!("{name}: {metric}"),
            );
        }
        // By day: the outage on 1 May, Datadog's on the 2nd, the last alert on the 3rd.
        let opened: Vec<&Value> = series["buckets"]
            .as_array()
            .expect("buckets")
            .iter()
            .map(|b| &b["incidents"]["opened"])
            .collect();
        assert_eq!(
            opened,
            [&json!(1), &json!(1), &json!(1)],
            "{name}: {series}"
        );
    }
}

/// The same history through the Lambda handlers on the AWS-compatible server, reversed and every delivery
/// sent twice: the webhook function (SQS, Secrets Manager), the aggregator (DynamoDB, its rows naming the
/// outage's first report), and the same figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_outage_counts_once_through_the_lambda_handlers_on_aws() {
    use em_aws::secrets::Layout;
    use em_aws::{DynamoStore, S3Payloads, SecretsManagerSecrets, SqsQueue};
    use std::sync::Arc;

    let sdk = common::aws::sdk().await;
    let names = common::aws::fresh_names_with(&sdk, "incidents", 3, 30).await;
    let secret_id = format!("{}-webhooks", names.table);
    common::aws::put_webhook_secret(&sdk, &secret_id, &common::secrets_json().to_string()).await;
    let queue = SqsQueue::connect(&sdk, &names)
        .await
        .expect("queue")
        .with_wait_seconds(0);
    let webhook = common::aws::webhook_app(
        em_webhook::WebhookHandler::new(
            queue.clone(),
            SecretsManagerSecrets::new(&sdk, &secret_id, Layout::PerProvider),
        ),
        None,
    );
    let mut accepted = 0;
    for d in history().into_iter().rev().flat_map(|d| [d.clone(), d]) {
        let headers: Vec<(&str, &str)> = d
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let req = common::aws::webhook_request(
            &d.provider,
            &headers,
            &d.body,
            common::secret_of(&d.provider),
        );
        let r = common::aws::invoke(&webhook, req).await;
        let status = r.status().as_u16();
        assert!(status == 202 || status == 200, "{}: {status}", d.name);
        accepted += usize::from(status == 202);
    }
    assert_eq!(accepted, history().len(), "each delivery accepted once");

    let arn = common::aws::queue_arn(&sdk, queue.queue_url()).await;
    let messages = common::aws::receive_messages(
        &sdk,
        queue.queue_url(),
        accepted,
        std::time::Duration::from_secs(5),
    )
    .await;
    assert_eq!(messages.len(), accepted);
    let config = em_core::config::Config::parse(CONFIG).expect("config");
    let store = DynamoStore::new(&sdk, names.table.clone());
    let aggregator = em_aggregator::Aggregator::new(store.clone(), Arc::new(config.clone()));
    let payloads = S3Payloads::new(&sdk, names.bucket.clone());
    // As the event source hands them over: batches of up to 10.
    for batch in messages.chunks(10) {
        let event = common::aws::sqs_event(batch, &arn);
        let out = em_aggregator::lambda::handle(&aggregator, &payloads, event, 0)
            .await
            .expect("the batch is handled");
        assert!(
            out.batch_item_failures.is_empty(),
            "{:?}",
            out.batch_item_failures
        );
    }
    let q = || em_api::DoraQuery {
        service: Some("shop".into()),
        from: Some("2025-05-01".into()),
        to: Some("2025-05-04".into()),
        ..Default::default()
    };
    let dora = em_api::dora(&store, &config, q(), 0).await.expect("DORA");
    let dora = serde_json::to_value(&dora.report).expect("JSON");
    let incidents = em_api::incidents(&store, &config, q(), 0)
        .await
        .expect("incident figures");
    let incidents = serde_json::to_value(&incidents).expect("JSON");
    let (want_dora, want_incidents) = (expected_dora(), expected_incidents());
    for metric in [
        "deployment_frequency",
        "lead_time",
        "change_failure_rate",
        "recovery_time",
        "rework_rate",
    ] {
        common::assert_matches(&dora[metric], &want_dora[metric], &format!("aws: {metric}"));
    }
    for metric in [
        "incidents",
        "time_to_acknowledge",
        "time_to_resolve",
        "incidents_per_deployment",
    ] {
        common::assert_matches(
            &incidents[metric],
            &want_incidents[metric],
            &format!("aws: {metric}"),
        );
    }
}
