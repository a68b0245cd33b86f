//! SNS: the subject and the plain text, published to the team's topic.

use em_core::config::Channel;

use super::notifier::{count, Content, Notifier, Sending};
use crate::error::SendError;
use crate::outbound::Outbound;

pub struct Sns;

impl Notifier for Sns {
    fn channel(&self) -> Channel {
        Channel::Sns
    }

    fn send<'a>(
        &'a self,
        out: &'a Outbound,
        addresses: &'a [String],
        content: Content<'a>,
    ) -> Sending<'a> {
        Box::pin(async move {
            let topic = addresses.first().map(String::as_str).unwrap_or_default();
            let sent = out
                .topics
                .publish(topic, &content.subject(), &content.text())
                .await;
            count(Channel::Sns, sent.is_ok());
            sent.map_err(|source| SendError::Port {
                channel: "sns",
                source,
            })
        })
    }
}
