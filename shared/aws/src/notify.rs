//! Digests out through AWS: email by SES (the raw MIME message, so the inline chart travels with it) and a
//! plain-text summary to an SNS topic.

use aws_config::SdkConfig;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
use em_core::ports::{Mail, PortError, Sending, Topics};

use crate::sdk_error;

/// SNS's limits: a subject is ASCII, one line, under 100 characters; a message at most 256 KiB.
pub const SNS_SUBJECT_MAX: usize = 99;
pub const SNS_MESSAGE_MAX: usize = 256 * 1024;

/// Sends raw MIME messages through SES (API v2).
#[derive(Clone)]
pub struct SesMailer {
    client: aws_sdk_sesv2::Client,
}

impl SesMailer {
    pub fn new(sdk: &SdkConfig) -> Self {
        SesMailer {
            client: aws_sdk_sesv2::Client::new(sdk),
        }
    }

    /// Sends `raw` (a whole MIME message) from the verified address `from` to `to`; SES's message id.
    pub async fn send_raw(
        &self,
        from: &str,
        to: &[String],
        raw: Vec<u8>,
    ) -> Result<String, PortError> {
        let raw = RawMessage::builder()
            .data(Blob::new(raw))
            .build()
            .map_err(PortError::invalid)?;
        let out = self
            .client
            .send_email()
            .from_email_address(from)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(to.to_vec()))
                    .build(),
            )
            .content(EmailContent::builder().raw(raw).build())
            .send()
            .await
            .map_err(|e| sdk_error("ses send email", e))?;
        Ok(out.message_id.unwrap_or_default())
    }
}

impl Mail for SesMailer {
    fn send_raw<'a>(&'a self, from: &'a str, to: &'a [String], raw: Vec<u8>) -> Sending<'a> {
        Box::pin(async move { SesMailer::send_raw(self, from, to, raw).await.map(|_| ()) })
    }
}

/// `subject` as SNS takes it: ASCII (a dash for an em dash, `?` for other characters), one line, cut.
pub fn sns_subject(subject: &str) -> String {
    let ascii: String = subject
        .chars()
        .map(|c| match c {
            '—' | '–' => '-',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '?',
        })
        .collect();
    ascii.chars().take(SNS_SUBJECT_MAX).collect()
}

/// Publishes plain-text messages to SNS topics.
#[derive(Clone)]
pub struct SnsPublisher {
    client: aws_sdk_sns::Client,
}

impl SnsPublisher {
    pub fn new(sdk: &SdkConfig) -> Self {
        SnsPublisher {
            client: aws_sdk_sns::Client::new(sdk),
        }
    }

    /// Publishes `message` (cut to SNS's limit at a character boundary) under `subject`; SNS's message id.
    pub async fn publish(
        &self,
        topic_arn: &str,
        subject: &str,
        message: &str,
    ) -> Result<String, PortError> {
        let mut end = message.len().min(SNS_MESSAGE_MAX);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let out = self
            .client
            .publish()
            .topic_arn(topic_arn)
            .subject(sns_subject(subject))
            .message(&message[..end])
            .send()
            .await
            .map_err(|e| sdk_error("sns publish", e))?;
        Ok(out.message_id.unwrap_or_default())
    }
}

impl Topics for SnsPublisher {
    fn publish<'a>(&'a self, topic: &'a str, subject: &'a str, message: &'a str) -> Sending<'a> {
        Box::pin(async move {
            SnsPublisher::publish(self, topic, subject, message)
                .await
                .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_made_what_sns_accepts() {
        assert_eq!(
            sns_subject("Weekly DORA digest — team web"),
            "Weekly DORA digest - team web"
        );
        assert_eq!(sns_subject("a\nb é"), "a?b ?");
        assert_eq!(sns_subject(&"x".repeat(300)).len(), SNS_SUBJECT_MAX);
    }
}
