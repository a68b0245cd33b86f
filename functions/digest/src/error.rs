//! Why a digest or a notice was not sent, and whether an operator has to act before a retry can work.

use em_core::ports::PortError;

use crate::outbound::FROM_VAR;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The team gave no address for the channel.
    #[error("{who} has no address for {channel}: {hint}")]
    NoAddress {
        who: String,
        channel: &'static str,
        hint: String,
    },
    #[error("email needs a sender: set {FROM_VAR}")]
    NoSender,
    #[error("no notifier sends {0}")]
    NoNotifier(&'static str),
    /// Reading the addresses or the figures.
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: PortError,
    },
    /// The message could not be put in the channel's form.
    #[error(transparent)]
    Render(#[from] em_notify::email::EmailError),
    /// A webhook channel (Slack, Teams) refused or could not be reached.
    #[error(transparent)]
    Webhook(#[from] em_notify::send::SendError),
    /// Email or a topic: the port's error.
    #[error("{channel}: {source}")]
    Port {
        channel: &'static str,
        #[source]
        source: PortError,
    },
}

impl SendError {
    /// Whether the same send will fail again until an operator acts (a missing address or sender, a
    /// destination that refuses): logged at error level rather than left for the next run.
    pub fn is_permanent(&self) -> bool {
        use em_notify::send::SendError as Web;
        match self {
            SendError::NoAddress { .. }
            | SendError::NoSender
            | SendError::NoNotifier(_)
            | SendError::Render(_) => true,
            SendError::Read { source, .. } | SendError::Port { source, .. } => {
                source.is_permanent()
            }
            SendError::Webhook(e) => matches!(e, Web::Refused { .. } | Web::Client(_)),
        }
    }

    /// Logs a send that failed: at error level when an operator has to act.
    pub fn log(&self, team: &str, channel: &str, what: &str) {
        if self.is_permanent() {
            tracing::error!(team, channel, error = %self, "{what} not sent: fix the configuration");
        } else {
            tracing::warn!(team, channel, error = %self, "{what} not sent: the next run tries again");
        }
    }
}

/// The digest function's failure: channels that failed (each reported and logged on its own), so that the
/// invocation is retried; the channels that were sent are not sent again.
#[derive(Debug, thiserror::Error)]
#[error("{0} digest channel(s) failed; see the logs")]
pub struct ChannelsFailed(pub usize);

#[cfg(test)]
mod tests {
    use super::*;
    use em_notify::send::SendError as Web;

    #[test]
    fn a_missing_address_or_a_refusal_needs_an_operator_an_outage_does_not() {
        let no_address = SendError::NoAddress {
            who: "team web".into(),
            channel: "slack",
            hint: "set EM_AGENT_TEAM_WEB_SLACK".into(),
        };
        assert!(no_address.is_permanent());
        assert!(SendError::NoSender.is_permanent());
        let refused = Web::Refused {
            channel: "slack",
            destination: "hooks.slack.com".into(),
            status: 404,
        };
        assert!(SendError::Webhook(refused).is_permanent());
        let exhausted = Web::Exhausted {
            channel: "teams",
            destination: "example.webhook.office.com".into(),
            attempts: 3,
            last: "503".into(),
        };
        assert!(!SendError::Webhook(exhausted).is_permanent());
        let port = |source| SendError::Port {
            channel: "email",
            source,
        };
        assert!(!port(PortError::transient("throttled")).is_permanent());
        assert!(port(PortError::invalid("MessageRejected")).is_permanent());
        assert_eq!(
            no_address.to_string(),
            "team web has no address for slack: set EM_AGENT_TEAM_WEB_SLACK"
        );
    }
}
