//! The AWS adapters of the ports: DynamoDB store, SQS queue, S3 for large bodies, Secrets Manager secrets.
//! The SDK takes its endpoint from `AWS_ENDPOINT_URL` when set, so the same code runs against an
//! AWS-compatible server on the loopback.

pub mod delivery;
pub mod dynamodb;
pub mod linkstate;
pub mod logging;
#[cfg(feature = "notify")]
pub mod notify;
pub mod outbox;
pub mod s3;
pub mod secrets;
pub mod setup;
pub mod sqs;

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

pub use dynamodb::DynamoStore;
pub use s3::S3Payloads;
pub use secrets::SecretsManagerSecrets;
pub use setup::create_resources;
pub use sqs::SqsQueue;

use em_core::ports::PortError;

/// Where the deployment's resources are, by name (or URL, for queues).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsNames {
    /// Facts, metric rows and metadata.
    pub table: String,
    /// One item per delivery: the de-duplication marker, with a TTL.
    pub deliveries_table: String,
    /// The delivery queue's name or URL.
    pub queue: String,
    /// The dead-letter queue's name or URL, where the CLI needs it (replay, `serve`).
    pub dead_letter_queue: Option<String>,
    /// Bodies too large for one queue message.
    pub bucket: String,
    /// How long delivery markers and put-aside bodies are kept.
    pub retention_days: u32,
}

pub const DEFAULT_RETENTION_DAYS: u32 = 30;

impl AwsNames {
    /// From `EM_AGENT_TABLE`, `EM_AGENT_DELIVERIES_TABLE`, `EM_AGENT_QUEUE`, `EM_AGENT_DEAD_LETTER_QUEUE`,
    /// `EM_AGENT_BUCKET` and `EM_AGENT_RETENTION_DAYS`; only the ones `needed` must be set.
    pub fn from_env(needed: &[&str]) -> Result<AwsNames, PortError> {
        let get = |name: &str| -> Result<String, PortError> {
            match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(v),
                _ if needed.contains(&name) => {
                    Err(PortError::invalid(format!("{name} is not set")))
                }
                _ => Ok(String::new()),
            }
        };
        let retention_days = match std::env::var("EM_AGENT_RETENTION_DAYS") {
            Ok(v) => v.parse().map_err(|_| {
                PortError::invalid(format!(
                    "EM_AGENT_RETENTION_DAYS={v:?} is not a number of days"
                ))
            })?,
            Err(_) => DEFAULT_RETENTION_DAYS,
        };
        Ok(AwsNames {
            table: get("EM_AGENT_TABLE")?,
            deliveries_table: get("EM_AGENT_DELIVERIES_TABLE")?,
            queue: get("EM_AGENT_QUEUE")?,
            dead_letter_queue: Some(get("EM_AGENT_DEAD_LETTER_QUEUE")?).filter(|s| !s.is_empty()),
            bucket: get("EM_AGENT_BUCKET")?,
            retention_days,
        })
    }
}

/// The SDK configuration from the environment, with timeouts short enough that a stalled connection
/// fails the request (and so the message or the delivery) instead of hanging until the function's own
/// timeout.
pub async fn sdk_config() -> SdkConfig {
    let attempt = std::env::var("EM_AGENT_AWS_ATTEMPT_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(5));
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(attempt)
                .operation_timeout(attempt * 3)
                .build(),
        )
        .load()
        .await
}

/// A port error from an SDK error, with the service's own message (the SDK's `Display` is terse).
pub(crate) fn sdk_error<E, R>(what: &str, e: aws_sdk_dynamodb::error::SdkError<E, R>) -> PortError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    PortError::transient(format!(
        "{what}: {}",
        aws_smithy_types::error::display::DisplayErrorContext(&e)
    ))
}

/// Seconds since the epoch, for DynamoDB TTL attributes.
pub(crate) fn epoch_seconds_in(days: u32) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    now + i64::from(days) * 86_400
}
