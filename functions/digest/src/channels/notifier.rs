//! What every channel implements: [`Notifier`], the [`Content`] it sends, and the helpers channels share.

use std::future::Future;
use std::pin::Pin;

use em_core::config::Channel;
use em_core::emf;
use em_metrics::digest::Digest;
use em_notify::{Audience, Notice};

use crate::error::SendError;
use crate::outbound::Outbound;

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
pub type Sending<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

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

/// Posts a webhook channel's JSON to the first address (the team's webhook URL).
pub(super) async fn post(
    out: &Outbound,
    channel: Channel,
    addresses: &[String],
    body: &serde_json::Value,
) -> Result<(), SendError> {
    let url = addresses.first().map(String::as_str).unwrap_or_default();
    out.web.post_json(channel, url, body).await?;
    Ok(())
}

/// Counts a send through AWS (`Notifications` by channel and outcome); the webhooks count their own
/// (`em_notify::send`).
pub(super) fn count(channel: Channel, sent: bool) {
    let outcome = if sent { "sent" } else { "failed" };
    emf::emit(emf::line(
        em_core::time::now_millis(),
        &[("Channel", channel.as_str()), ("Outcome", outcome)],
        &[("Notifications", 1.0, emf::Unit::Count)],
    ));
}
