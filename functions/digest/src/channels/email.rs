//! Email: an HTML and text message (with the chart) sent raw through SES from the verified sender.

use em_core::config::Channel;

use super::notifier::{count, Content, Notifier, Sending};
use crate::error::SendError;
use crate::outbound::Outbound;

pub struct Email;

impl Notifier for Email {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn send<'a>(
        &'a self,
        out: &'a Outbound,
        addresses: &'a [String],
        content: Content<'a>,
    ) -> Sending<'a> {
        Box::pin(async move {
            let from = out
                .from
                .clone()
                .filter(|f| !f.is_empty())
                .ok_or(SendError::NoSender)?;
            let raw = match content {
                Content::Digest { who, digest } => {
                    em_notify::email::message(digest, who, &from, addresses)
                }
                Content::Notice(n) => em_notify::email::notice_message(n, &from, addresses),
            }?;
            let sent = out.mail.send_raw(&from, addresses, raw).await;
            count(Channel::Email, sent.is_ok());
            sent.map_err(|source| SendError::Port {
                channel: "email",
                source,
            })
        })
    }
}
