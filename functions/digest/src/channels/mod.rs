//! The channels a digest or a notice goes out through: one file per channel, each a [`Notifier`] that puts
//! the message in its channel's form and sends it. [`NOTIFIERS`] declares them; adding a channel is its
//! `Channel` variant (the configuration's name for it), its file and its line here
//! (docs/adding-a-channel.md).

mod email;
mod slack;
mod sns;
mod teams;

use std::future::Future;
use std::pin::Pin;

use em_core::config::Channel;
use em_core::emf;
use em_metrics::digest::Digest;
use em_notify::{Audience, Notice};

use crate::Outbound;

/// What goes out: a digest as the audience it is for reads it, or a real-time notice.
#[derive(Clone, Copy)]
pub enum Content<'a> {
    Digest {
        who: &'a Audience,
        digest: &'a Digest,
    },
    Notice(&'a Notice),
}

impl Content<'_> {
    /// The subject of an email or an SNS message.
    pub fn subject(&self) -> String {
        match self {
            Content::Digest { who, digest } => em_notify::title(digest, who),
            Content::Notice(n) => n.title.clone(),
        }
    }

    /// The plain text of an SNS message.
    pub fn text(&self) -> String {
        match self {
            Content::Digest { who, digest } => em_notify::text(digest, who),
            Content::Notice(n) => em_notify::notice_text(n),
        }
    }
}

/// A send in progress.
pub type Sending<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// One channel: how a message looks there and how it is sent to the addresses a team gave for it (a
/// webhook URL, email addresses, a topic ARN).
pub trait Notifier: Sync {
    fn channel(&self) -> Channel;

    fn send<'a>(
        &'a self,
        out: &'a Outbound,
        addresses: &'a [String],
        content: Content<'a>,
    ) -> Sending<'a>;
}

/// Every channel, in the order `Channel::ALL` lists them.
pub static NOTIFIERS: [&dyn Notifier; 4] = [&slack::Slack, &teams::Teams, &email::Email, &sns::Sns];

/// The notifier of `channel`.
pub fn notifier(channel: Channel) -> Option<&'static dyn Notifier> {
    NOTIFIERS.iter().copied().find(|n| n.channel() == channel)
}

/// Sends `content` through `channel` to `addresses`.
pub async fn send(
    out: &Outbound,
    channel: Channel,
    addresses: &[String],
    content: Content<'_>,
) -> Result<(), String> {
    let notifier =
        notifier(channel).ok_or_else(|| format!("no notifier sends {}", channel.as_str()))?;
    notifier.send(out, addresses, content).await
}

/// Posts a webhook channel's JSON to the first address (the team's webhook URL).
async fn post(
    out: &Outbound,
    channel: Channel,
    addresses: &[String],
    body: &serde_json::Value,
) -> Result<(), String> {
    let url = addresses.first().map(String::as_str).unwrap_or_default();
    out.web
        .post_json(channel, url, body)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Counts a send through AWS (`Notifications` by channel and outcome); the webhooks count their own
/// (`em_notify::send`).
fn count(channel: Channel, sent: bool) {
    let outcome = if sent { "sent" } else { "failed" };
    emf::emit(emf::line(
        em_core::time::now_millis(),
        &[("Channel", channel.as_str()), ("Outcome", outcome)],
        &[("Notifications", 1.0, emf::Unit::Count)],
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_channel_has_its_one_notifier() {
        for channel in Channel::ALL {
            let n = notifier(channel).unwrap_or_else(|| panic!("{}", channel.as_str()));
            assert_eq!(n.channel(), channel);
        }
        assert_eq!(NOTIFIERS.len(), Channel::ALL.len());
    }
}
