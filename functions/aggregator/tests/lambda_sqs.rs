//! The sample SQS batch in `events/` through the aggregator's Lambda handler: facts land in a real embedded
//! store, and an unreadable message fails alone.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use em_aggregator::{lambda, Aggregator};
use em_core::config::Config;
use em_core::ports::{MetricsReader, NoPayloads};
use em_sqlite::{EmbeddedStore, Options};

/// The times of `service`'s deployments on the UTC day starting at `day`.
async fn deployment_times(store: &EmbeddedStore, service: &str, day: i64) -> Vec<i64> {
    store
        .observations(Some(vec![service.into()]), day, day + 86_400_000)
        .await
        .expect("rows")
        .deployments
        .iter()
        .map(|d| d.time)
        .collect()
}

#[tokio::test]
async fn a_batch_is_stored_and_only_the_bad_message_fails() {
    let path = format!("{}/../../events/sqs-batch.json", env!("CARGO_MANIFEST_DIR"));
    let mut event: SqsEvent =
        serde_json::from_str(&std::fs::read_to_string(path).expect("event")).expect("an SQS event");
    // One sample delivery per registered provider (events/ is generated from the registry).
    assert_eq!(event.records.len(), em_providers::all().len());
    let mut bad = event.records[0].clone();
    bad.message_id = Some("not-an-envelope".into());
    bad.body = Some("{\"provider\": 1}".into());
    event.records.push(bad);
    let mut unknown = event.records[0].clone();
    unknown.message_id = Some("unknown-provider".into());
    unknown.body =
        Some(r#"{"provider":"nosuch","delivery_id":"x","received_at":1,"body":"{}"}"#.into());
    event.records.push(unknown);

    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path(), Options::default()).expect("store");
    let config = Config::parse(
        &std::fs::read_to_string(format!(
            "{}/../../em-agent.toml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("config"),
    )
    .expect("valid config");
    let aggregator = Aggregator::new(store.clone(), Arc::new(config));
    let response = lambda::handle(&aggregator, &NoPayloads, event.clone(), 0)
        .await
        .expect("the batch is handled");
    let mut failed: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    failed.sort();
    assert_eq!(failed, vec!["not-an-envelope", "unknown-provider"]);

    // The GitLab production deployment of search (2025-03-04 22:23:48 +02:00) is a deployment.
    let from = 1_741_046_400_000; // 2025-03-04T00:00:00Z
    let rows = store
        .observations(Some(vec!["search".into()]), from, from + 86_400_000)
        .await
        .expect("rows");
    assert_eq!(rows.deployments.len(), 1);

    // CircleCI's sample workflow `build-test-deploy` finished at 2021-09-01T22:49:34.170Z: a build that the
    // default deploy rule (CircleCI builds that say deploy) makes a production deployment of its repository.
    let day = 1_630_454_400_000; // 2021-09-01T00:00:00Z
    assert_eq!(
        deployment_times(&store, "circleci/webhook-service", day).await,
        vec![1_630_536_574_170]
    );

    // The same batch again (SQS delivers at least once) changes nothing: the same two messages fail (they
    // can never succeed), every other one succeeds again, and the rows stay as they were.
    let again = lambda::handle(&aggregator, &NoPayloads, event, 0)
        .await
        .expect("the batch is handled");
    let mut failed_again: Vec<String> = again
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    failed_again.sort();
    assert_eq!(failed_again, failed);
    let again = store
        .observations(Some(vec!["search".into()]), from, from + 86_400_000)
        .await
        .expect("rows");
    assert_eq!(again, rows);
}

/// An EventBridge rule of the account sends AWS's own events to the queue, with no webhook in between: the
/// aggregator reads them as the `aws` provider's deliveries. Anything else that is not one of our messages
/// still fails alone.
#[tokio::test]
async fn account_events_sent_straight_to_the_queue_are_read_as_the_aws_providers() {
    let fixtures = format!(
        "{}/../../shared/providers/tests/fixtures/aws",
        env!("CARGO_MANIFEST_DIR")
    );
    let record = |id: &str, body: String| {
        let mut r = aws_lambda_events::event::sqs::SqsMessage::default();
        r.message_id = Some(id.into());
        r.body = Some(body);
        r
    };
    let read = |name: &str| {
        std::fs::read_to_string(format!("{fixtures}/{name}.json")).expect("an AWS event")
    };
    let mut event = SqsEvent::default();
    event.records = vec![
        record("ecs-completed", read("ecs-deployment-completed")),
        record("codedeploy", read("codedeploy-deployment-state-change")),
        // Not AWS's: a third party's event is no delivery of ours.
        record(
            "custom",
            read("ecs-deployment-completed").replace("\"aws.ecs\"", "\"acme.deployer\""),
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path(), Options::default()).expect("store");
    let config = Config::parse("production_environments = [\"default\"]").expect("config");
    let aggregator = Aggregator::new(store.clone(), Arc::new(config));
    let response = lambda::handle(&aggregator, &NoPayloads, event.clone(), 0)
        .await
        .expect("the batch is handled");
    let failed: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, vec!["custom"]);

    // The ECS service deployment completed at 2020-05-23T11:11:11Z: a production deployment (its cluster,
    // `default`, is listed as production) of the service `ecs:default/servicetest`.
    let day = 1_590_192_000_000; // 2020-05-23T00:00:00Z
    let service = "ecs:default/servicetest";
    assert_eq!(
        deployment_times(&store, service, day).await,
        vec![1_590_232_271_000]
    );

    // Delivered again (EventBridge and SQS both deliver at least once): still one.
    let again = lambda::handle(&aggregator, &NoPayloads, event, 0)
        .await
        .expect("the batch is handled");
    assert_eq!(again.batch_item_failures.len(), 1);
    assert_eq!(deployment_times(&store, service, day).await.len(), 1);
}
