//! Microsoft Teams: an Adaptive Card posted to the team's webhook.

use em_core::config::Channel;

use super::notifier::{Content, Notifier, Sending};
use crate::outbound::Outbound;

pub struct Teams;

impl Notifier for Teams {
    fn channel(&self) -> Channel {
        Channel::Teams
    }

    fn send<'a>(
        &'a self,
        out: &'a Outbound,
        addresses: &'a [String],
        content: Content<'a>,
    ) -> Sending<'a> {
        Box::pin(async move {
            let body = match content {
                Content::Digest { who, digest } => em_notify::teams(digest, who),
                Content::Notice(n) => em_notify::notice_teams(n),
            };
            super::notifier::post(out, Channel::Teams, addresses, &body).await
        })
    }
}
