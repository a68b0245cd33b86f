//! The AWS adapters of the ports: DynamoDB store, SQS queue, S3 for large bodies, Secrets Manager secrets.
//! The SDK takes its endpoint from `AWS_ENDPOINT_URL` when set, so the same code runs against an
//! AWS-compatible server on the loopback.

pub mod dynamodb;
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

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::error::display::DisplayErrorContext;
use em_core::ports::{PortError, PortErrorKind};

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
    sdk_loader().load().await
}

/// [`sdk_config`]'s loader, for a caller that sets more before loading (an endpoint of its own, which then
/// wins over `AWS_ENDPOINT_URL` for every client built from it).
pub fn sdk_loader() -> aws_config::ConfigLoader {
    let attempt = std::env::var("EM_AGENT_AWS_ATTEMPT_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(5));
    aws_config::defaults(BehaviorVersion::latest()).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(2))
            .operation_attempt_timeout(attempt)
            .operation_timeout(attempt * 3)
            .build(),
    )
}

/// A port error from an SDK error: its kind from [`classify`], the service's own message (the SDK's
/// `Display` is terse), and the SDK error as its source. A permanent one is logged at error level here, once,
/// since no retry will clear it.
pub(crate) fn sdk_error<E>(what: &str, e: SdkError<E, HttpResponse>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let kind = classify(&e);
    let message = format!("{what}: {}", DisplayErrorContext(&e));
    if kind == PortErrorKind::Invalid {
        tracing::error!(error = %message, "AWS refused the request: fix the deployment (not retried)");
    }
    PortError::of(kind, message).with_source(e)
}

/// Error codes AWS answers with a 4xx that clear by themselves: throttling, an expired session, a
/// transaction that met another, a resource still being created.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "ExpiredToken",
    "ExpiredTokenException",
    "TransactionConflictException",
    "TransactionInProgressException",
    "TransactionCanceledException",
    "ResourceInUseException",
    "KMSThrottlingException",
    "AWS.SimpleQueueService.RequestThrottled",
];

/// The one place an AWS error gets its kind: what did not arrive or came back late or 5xx, and throttling,
/// is transient; any other answer of the service (validation, not found, access denied) is permanent.
pub fn classify<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> PortErrorKind {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            PortErrorKind::Transient
        }
        SdkError::ConstructionFailure(_) => PortErrorKind::Invalid,
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code().unwrap_or_default();
            if status >= 500 || status == 429 || TRANSIENT_CODES.contains(&code) {
                PortErrorKind::Transient
            } else {
                PortErrorKind::Invalid
            }
        }
        // A kind of failure this SDK does not name yet: assume it may pass.
        _ => PortErrorKind::Transient,
    }
}

/// Seconds since the epoch, for DynamoDB TTL attributes.
pub(crate) fn epoch_seconds_in(days: u32) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    now + i64::from(days) * 86_400
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    use aws_smithy_types::body::SdkBody;

    fn answered(status: u16, code: &str) -> SdkError<PutItemError, HttpResponse> {
        let err = PutItemError::generic(ErrorMetadata::builder().code(code).build());
        let raw = HttpResponse::new(status.try_into().expect("a status"), SdkBody::empty());
        SdkError::service_error(err, raw)
    }

    #[test]
    fn throttling_timeouts_and_5xx_are_transient_the_rest_permanent() {
        use PortErrorKind::*;
        for (status, code, kind) in [
            (400, "ThrottlingException", Transient),
            (400, "ProvisionedThroughputExceededException", Transient),
            (400, "TransactionConflictException", Transient),
            (429, "SomethingNew", Transient),
            (500, "InternalServerError", Transient),
            (503, "ServiceUnavailable", Transient),
            (400, "ResourceNotFoundException", Invalid),
            (400, "AccessDeniedException", Invalid),
            (400, "ValidationException", Invalid),
            (403, "UnrecognizedClientException", Invalid),
        ] {
            assert_eq!(classify(&answered(status, code)), kind, "{status} {code}");
        }
        let timeout: SdkError<PutItemError, HttpResponse> = SdkError::timeout_error("slow");
        assert_eq!(classify(&timeout), Transient);
        let unbuilt: SdkError<PutItemError, HttpResponse> = SdkError::construction_failure("bad");
        assert_eq!(classify(&unbuilt), Invalid);
    }

    #[test]
    fn the_sdk_error_is_kept_as_the_source() {
        let e = sdk_error("dynamodb put", answered(400, "ResourceNotFoundException"));
        assert!(e.is_permanent());
        let source = std::error::Error::source(&e).expect("a source");
        assert!(
            DisplayErrorContext(source)
                .to_string()
                .contains("ResourceNotFoundException"),
            "{source}"
        );
    }
}
