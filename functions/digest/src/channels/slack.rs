//! Slack: Block Kit posted to the team's incoming webhook.

use em_core::config::Channel;

use super::notifier::{Content, Notifier, Sending};
use crate::outbound::Outbound;

pub struct Slack;

impl Notifier for Slack {
    fn channel(&self) -> Channel {
        Channel::Slack
    }

    fn send<'a>(
        &'a self,
        out: &'a Outbound,
        addresses: &'a [String],
        content: Content<'a>,
    ) -> Sending<'a> {
        Box::pin(async move {
            let body = match content {
                Content::Digest { who, digest } => em_notify::slack(digest, who),
                Content::Notice(n) => em_notify::notice_slack(n),
            };
            super::notifier::post(out, Channel::Slack, addresses, &body).await
        })
    }
}
