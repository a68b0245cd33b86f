//! The channels a digest or a notice goes out through: one file per channel, each a [`Notifier`] that puts
//! the message in its channel's form and sends it. [`NOTIFIERS`] declares them; adding a channel is its
//! `Channel` variant (the configuration's name for it), its file and its line here
//! (docs/adding-a-channel.md).

mod email;
mod notifier;
mod slack;
mod sns;
mod teams;

pub use notifier::{Content, Notifier, Sending};

use em_core::config::Channel;

use crate::error::SendError;
use crate::outbound::Outbound;

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
) -> Result<(), SendError> {
    let notifier = notifier(channel).ok_or(SendError::NoNotifier(channel.as_str()))?;
    notifier.send(out, addresses, content).await
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
