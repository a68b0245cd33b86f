//! The AWS backend's flags and connection, for `serve --backend aws`.

use em_aws::secrets::Layout;
use em_aws::{
    create_resources, sdk_config, AwsNames, DynamoStore, SecretsManagerSecrets, SqsQueue,
};
use em_core::secrets::EnvSecrets;

use crate::server::{self, ServeOptions};

/// Resource names: from flags, or the environment the Lambda functions use. The endpoint, region and
/// credentials come from the usual AWS settings (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_PROFILE`, ...).
#[derive(clap::Args, Debug, Clone)]
pub struct AwsArgs {
    /// DynamoDB table of facts and metric rows (--backend aws).
    #[arg(long, env = "EM_AGENT_TABLE", default_value = "em-agent")]
    pub table: String,
    /// DynamoDB table of delivery markers (--backend aws).
    #[arg(
        long,
        env = "EM_AGENT_DELIVERIES_TABLE",
        default_value = "em-agent-deliveries"
    )]
    pub deliveries_table: String,
    /// SQS queue, name or URL (--backend aws).
    #[arg(long, env = "EM_AGENT_QUEUE", default_value = "em-agent-deliveries")]
    pub queue: String,
    /// SQS dead-letter queue, name or URL (--backend aws).
    #[arg(
        long,
        env = "EM_AGENT_DEAD_LETTER_QUEUE",
        default_value = "em-agent-dead-letters"
    )]
    pub dead_letter_queue: String,
    /// S3 bucket for deliveries larger than one SQS message (--backend aws).
    #[arg(long, env = "EM_AGENT_BUCKET", default_value = "em-agent-bodies")]
    pub bucket: String,
    /// Days delivery markers (de-duplication) and dead letters are kept, on either backend.
    #[arg(long, env = "EM_AGENT_RETENTION_DAYS", default_value_t = 30)]
    pub retention_days: u32,
    /// Secrets Manager secret with the providers' secrets as JSON ({"github": "..."}); without it the
    /// EM_AGENT_<PROVIDER>_SECRET variables are used (--backend aws).
    #[arg(long, env = "EM_AGENT_SECRET_ID")]
    pub secret_id: Option<String>,
    /// Create the tables, queues and bucket that are missing: for a test server or a sandbox account
    /// (--backend aws).
    #[arg(long)]
    pub create_resources: bool,
}

impl AwsArgs {
    pub fn names(&self) -> AwsNames {
        AwsNames {
            table: self.table.clone(),
            deliveries_table: self.deliveries_table.clone(),
            queue: self.queue.clone(),
            dead_letter_queue: Some(self.dead_letter_queue.clone()),
            bucket: self.bucket.clone(),
            retention_days: self.retention_days,
        }
    }
}

pub async fn serve(
    opts: ServeOptions,
    args: AwsArgs,
    max_receives: u32,
    visibility_timeout_seconds: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    let sdk = sdk_config().await;
    let mut names = args.names();
    if args.create_resources {
        names = create_resources(&sdk, &names, max_receives, visibility_timeout_seconds).await?;
    }
    let queue = SqsQueue::connect(&sdk, &names).await?;
    let store = DynamoStore::new(&sdk, names.table.clone());
    let describe = format!("aws table {} queue {}", names.table, queue.queue_url());
    match args.secret_id {
        Some(id) => {
            let secrets = SecretsManagerSecrets::new(&sdk, id.clone(), Layout::PerProvider);
            let enabled = vec![format!("as in secret {id}")];
            server::serve(opts, queue, store, secrets, describe, enabled).await
        }
        None => {
            let secrets = EnvSecrets::from_env(em_providers::secret_vars());
            let enabled = secrets.enabled().iter().map(|s| s.to_string()).collect();
            server::serve(opts, queue, store, secrets, describe, enabled).await
        }
    }
}
