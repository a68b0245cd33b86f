//! What a digest or a notice is sent with.

/// What sends: webhooks over HTTP, SES and SNS through an AWS configuration, email from `from`.
pub struct Outbound {
    pub web: em_notify::send::Sender,
    pub aws: aws_config::SdkConfig,
    /// The verified address digests are emailed from.
    pub from: Option<String>,
}

/// The environment variable (or, in the function, the setting) naming the email sender.
pub const FROM_VAR: &str = "EM_AGENT_DIGEST_FROM";
