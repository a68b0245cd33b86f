//! Logging set-up shared by the Lambda functions: JSON lines, which CloudWatch Logs indexes per field.

/// JSON logs at `RUST_LOG` (default `info`), without ANSI colours and without a timestamp of our own
/// (CloudWatch stamps each line).
pub fn init_lambda_json() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .with_current_span(false)
        // A line that cannot be written is lost rather than reported with a panicking `eprintln!`.
        .log_internal_errors(false)
        .try_init();
}
