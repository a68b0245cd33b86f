//! The webhook Lambda function: wiring only; the logic is in the library.

use em_agent_shared::embedded::sqlite::now_millis;
use em_agent_shared::embedded::{EmbeddedStore, EnvSecrets, Options};
use em_webhook::{lambda, WebhookHandler};
use lambda_http::{run, service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    em_agent_shared::logging::init_lambda_json();
    let data_dir = std::env::var("EM_AGENT_DATA_DIR").unwrap_or_else(|_| "/tmp/em-agent".into());
    let provider = std::env::var("EM_AGENT_PROVIDER").ok();
    let store = EmbeddedStore::open(data_dir.as_ref(), Options::default())?;
    let handler = WebhookHandler::new(store, EnvSecrets::from_env());
    let (handler, provider) = (&handler, provider.as_deref());
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(lambda::handle(handler, provider, req, now_millis()).await)
    }))
    .await
}
