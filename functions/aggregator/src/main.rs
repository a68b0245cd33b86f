//! The aggregator Lambda function: wiring only; the logic is in the library. The same binary serves the SQS
//! event source and the hourly schedule that re-publishes the figures. Nothing is rebuilt at start-up: a
//! configuration change is applied in steps by the invocations (see `Aggregator::rebuild_step`).

use std::sync::Arc;

use em_aggregator::{lambda, Aggregator};
use em_aws::{sdk_config, AwsNames, DynamoStore, S3Payloads};
use em_core::config::Config;
use em_core::time::now_millis;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    em_aws::logging::init_lambda_json();
    let config = Config::from_env()?;
    let sdk = sdk_config().await;
    let names = AwsNames::from_env(&["EM_AGENT_TABLE", "EM_AGENT_BUCKET"])?;
    let store = DynamoStore::new(&sdk, names.table.clone());
    let payloads = S3Payloads::new(&sdk, names.bucket.clone());
    let aggregator = Aggregator::new(store, Arc::new(config));
    let (aggregator, payloads) = (&aggregator, &payloads);
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            lambda::invoke(aggregator, payloads, event.payload, now_millis()).await
        },
    ))
    .await
}
