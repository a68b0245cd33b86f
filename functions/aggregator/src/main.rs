//! The aggregator Lambda function: wiring only; the logic is in the library. The same binary serves the SQS
//! event source and the hourly schedule that re-publishes the figures. Nothing is rebuilt at start-up: a
//! configuration change is applied in steps by the invocations (see `Aggregator::rebuild_step`).

use std::sync::Arc;

use em_aggregator::{lambda, Aggregator};
use em_aws::secrets::Layout;
use em_aws::{sdk_config, AwsNames, DynamoStore, S3Payloads, SecretsManagerSecrets};
use em_core::config::Config;
use em_core::time::now_millis;
use em_digest::notices::{self, Notices};
use em_digest::{Outbound, FROM_VAR};
use em_notify::send::Sender;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    em_aws::logging::init_lambda_json();
    let config = Config::from_env()?;
    let sdk = sdk_config().await;
    let names = AwsNames::from_env(&["EM_AGENT_TABLE", "EM_AGENT_BUCKET"])?;
    let store = DynamoStore::new(&sdk, names.table.clone());
    let payloads = S3Payloads::new(&sdk, names.bucket.clone());
    let config = Arc::new(config);
    let mut aggregator = Aggregator::new(store.clone(), config.clone());
    // Real-time notices, for teams that asked for them (docs/digests.md).
    if config.teams().iter().any(|t| t.notices) {
        // reqwest (Slack, Teams) leaves the TLS crypto provider to the process: the AWS SDK's.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let secret = std::env::var("EM_AGENT_DIGEST_SECRET_ID").map_err(|_| {
            "EM_AGENT_DIGEST_SECRET_ID is not set: notices need the digests' addresses"
        })?;
        aggregator = aggregator.with_after_linking(Arc::new(Notices {
            store,
            addresses: SecretsManagerSecrets::new(&sdk, secret, Layout::PerProvider),
            out: Outbound::on_aws(
                Sender::new(notices::policy())?,
                &sdk,
                std::env::var(FROM_VAR).ok().filter(|f| !f.is_empty()),
            ),
            config,
            clock: now_millis,
        }));
    }
    let (aggregator, payloads) = (&aggregator, &payloads);
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            lambda::invoke(aggregator, payloads, event.payload, now_millis()).await
        },
    ))
    .await
}
