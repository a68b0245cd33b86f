//! The webhook Lambda function: wiring only; the logic is in the library. One deployment per provider,
//! named by `EM_AGENT_PROVIDER`, with that provider's secret in `EM_AGENT_SECRET_ID`.

use em_aws::secrets::Layout;
use em_aws::{sdk_config, AwsNames, SecretsManagerSecrets, SqsQueue};
use em_core::config::duration_from_env;
use em_webhook::{WebhookHandler, Webhooks};
use lambda_http::{run, Error};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    em_aws::logging::init_lambda_json();
    let provider = std::env::var("EM_AGENT_PROVIDER").ok();
    let secret_id = std::env::var("EM_AGENT_SECRET_ID")
        .map_err(|_| "EM_AGENT_SECRET_ID is not set: the webhook fails closed without secrets")?;
    let sdk = sdk_config().await;
    let names = AwsNames::from_env(&[
        "EM_AGENT_DELIVERIES_TABLE",
        "EM_AGENT_QUEUE",
        "EM_AGENT_BUCKET",
    ])?;
    let queue = SqsQueue::connect(&sdk, &names).await?;
    // Deployed per provider, the function reads that provider's own secret; one function for every
    // provider (no EM_AGENT_PROVIDER) reads a JSON object of them all.
    let layout = match &provider {
        Some(name) => Layout::Provider(name.clone()),
        None => Layout::PerProvider,
    };
    let secrets = SecretsManagerSecrets::new(&sdk, secret_id, layout);
    let mut handler = WebhookHandler::new(queue, secrets);
    if let Some(window) = duration_from_env("EM_AGENT_REPLAY_WINDOW")? {
        handler = handler.with_replay_window(window);
    }
    let webhooks = Webhooks::new(handler).pinned_to(provider).with_metrics();
    run(em_webhook::app(Arc::new(webhooks))).await
}
