//! The digest function: wiring only; the logic is in the library. EventBridge Scheduler invokes it every
//! hour; each team's digest goes out once its local send hour has come (docs/digests.md).

use em_aws::secrets::Layout;
use em_aws::{sdk_config, AwsNames, DynamoStore, SecretsManagerSecrets};
use em_core::config::Config;
use em_core::time::now_millis;
use em_digest::{Handler, Outbound, Scheduled, FROM_VAR};
use em_notify::send::{Policy, Sender};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    em_aws::logging::init_lambda_json();
    // reqwest (Slack, Teams) leaves the TLS crypto provider to the process: the one the AWS SDK builds.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = Config::from_env()?;
    let addresses_secret = std::env::var("EM_AGENT_DIGEST_SECRET_ID")
        .map_err(|_| "EM_AGENT_DIGEST_SECRET_ID is not set: the digests' addresses live there")?;
    let sdk = sdk_config().await;
    let names = AwsNames::from_env(&["EM_AGENT_TABLE"])?;
    let handler = Handler {
        store: DynamoStore::new(&sdk, names.table),
        addresses: SecretsManagerSecrets::new(&sdk, addresses_secret, Layout::PerProvider),
        out: Outbound::on_aws(
            Sender::new(Policy::default())?,
            &sdk,
            std::env::var(FROM_VAR).ok().filter(|f| !f.is_empty()),
        ),
        config,
    };
    let handler = &handler;
    run(service_fn(
        move |event: LambdaEvent<Scheduled>| async move {
            handler
                .handle(event.payload, now_millis())
                .await
                .map_err(Error::from)
        },
    ))
    .await
}
