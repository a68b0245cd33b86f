//! The metrics API Lambda function: wiring only; the routes are in the library.

use std::sync::Arc;

use em_api::{Api, API_TOKEN};
use em_aws::secrets::Layout;
use em_aws::{sdk_config, AwsNames, DynamoStore, SecretsManagerSecrets};
use em_core::config::Config;
use em_core::time::Clock;
use lambda_http::{run, Error};

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
    let api = Api {
        reader: DynamoStore::new(&sdk, names.table),
        config: Arc::new(config),
        tokens: Some(Arc::new(SecretsManagerSecrets::new(
            &sdk,
            token_secret,
            Layout::Single(API_TOKEN),
        ))),
        clock: Clock::system(),
    };
    run(em_api::app(Arc::new(api))).await
}
