//! The metrics API Lambda function: wiring only; the logic is in the library.

use em_agent_shared::config::Config;
use em_agent_shared::embedded::sqlite::now_millis;
use em_agent_shared::embedded::{EmbeddedStore, Options};
use em_api::lambda;
use lambda_http::{run, service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    em_agent_shared::logging::init_lambda_json();
    let data_dir = std::env::var("EM_AGENT_DATA_DIR").unwrap_or_else(|_| "/tmp/em-agent".into());
    let config = Config::from_env()?;
    let store = EmbeddedStore::open(data_dir.as_ref(), Options::default())?;
    let (store, config) = (&store, &config);
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(lambda::handle(store, config, req, now_millis()).await)
    }))
    .await
}
