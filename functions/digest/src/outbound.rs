//! What a digest or a notice is sent with.

use std::sync::Arc;

use em_core::ports::{Mail, Topics};

/// What sends: webhooks over HTTP, email and topic messages through their ports, email from `from`.
pub struct Outbound {
    pub web: em_notify::send::Sender,
    pub mail: Arc<dyn Mail>,
    pub topics: Arc<dyn Topics>,
    /// The verified address digests are emailed from.
    pub from: Option<String>,
}

impl Outbound {
    /// Email through SES and topics through SNS, with `sdk`'s credentials and region.
    pub fn on_aws(
        web: em_notify::send::Sender,
        sdk: &aws_config::SdkConfig,
        from: Option<String>,
    ) -> Outbound {
        Outbound {
            web,
            mail: Arc::new(em_aws::notify::SesMailer::new(sdk)),
            topics: Arc::new(em_aws::notify::SnsPublisher::new(sdk)),
            from,
        }
    }
}

/// The environment variable (or, in the function, the setting) naming the email sender.
pub const FROM_VAR: &str = "EM_AGENT_DIGEST_FROM";
