//! The aggregator Lambda function: wiring only; the logic is in the library.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use em_agent_shared::config::Config;
use em_agent_shared::embedded::{EmbeddedStore, Options};
use em_aggregator::{lambda, Aggregator};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    em_agent_shared::logging::init_lambda_json();
    let data_dir = std::env::var("EM_AGENT_DATA_DIR").unwrap_or_else(|_| "/tmp/em-agent".into());
    let config = Config::from_env()?;
    let store = EmbeddedStore::open(data_dir.as_ref(), Options::default())?;
    let aggregator = Aggregator::new(store, Arc::new(config));
    aggregator.ensure_config_current().await?;
    let aggregator = &aggregator;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(lambda::handle(aggregator, event.payload).await)
    }))
    .await
}
