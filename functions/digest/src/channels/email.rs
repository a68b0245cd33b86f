//! Email: an HTML and text message (with the chart) sent raw through SES from the verified sender.

use em_core::config::Channel;

use super::notifier::{count, Content, Notifier, Sending};
use crate::outbound::{Outbound, FROM_VAR};

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
                .ok_or_else(|| format!("email needs a sender: set {FROM_VAR}"))?;
            let raw = match content {
                Content::Digest { who, digest } => {
                    em_notify::email::message(digest, who, &from, addresses)
                }
                Content::Notice(n) => em_notify::email::notice_message(n, &from, addresses),
            }
            .map_err(|e| e.to_string())?;
            let sent = em_aws::notify::SesMailer::new(&out.aws, from)
                .send_raw(addresses, raw)
                .await;
            count(Channel::Email, sent.is_ok());
            sent.map(|_| ()).map_err(|e| format!("email: {e}"))
        })
    }
}
