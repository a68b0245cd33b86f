//! The metrics API Lambda function: wiring only; the logic is in the library.

use em_api::{lambda, API_TOKEN};
use em_aws::secrets::Layout;
use em_aws::{sdk_config, AwsNames, DynamoStore, SecretsManagerSecrets};
use em_core::config::Config;
use em_core::time::now_millis;
use lambda_http::{run, service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    em_aws::logging::init_lambda_json();
    let config = Config::from_env()?;
    // Never public: without a token secret the function does not start.
    let token_secret = std::env::var("EM_AGENT_API_TOKEN_SECRET_ID").map_err(|_| {
        "EM_AGENT_API_TOKEN_SECRET_ID is not set: the API is never served without a token"
    })?;
    let sdk = sdk_config().await;
    let names = AwsNames::from_env(&["EM_AGENT_TABLE"])?;
    let store = DynamoStore::new(&sdk, names.table);
    let tokens = SecretsManagerSecrets::new(&sdk, token_secret, Layout::Single(API_TOKEN));
    let (store, config, tokens) = (&store, &config, &tokens);
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(lambda::handle(store, config, Some(tokens), req, now_millis()).await)
    }))
    .await
}
