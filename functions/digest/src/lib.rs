//! The digest function: each configured team's (and the organisation's) digest of the period just ended,
//! sent through its channels once, however often the schedule fires or the function is retried
//! (docs/digests.md). `em-agent digest --send` runs the same code on the embedded store.

use std::future::Future;

pub mod channels;
mod error;
pub mod notices;
mod outbound;

pub use error::{ChannelsFailed, SendError};
pub use outbound::{Outbound, FROM_VAR};

use em_core::calendar::{self, Period};
use em_core::config::{Channel, Config, TeamConfig, ORGANISATION};
use em_core::ports::{MetricsReader, Outbox, PortError, SecretSource};
use em_core::time::{format_millis, parse_timestamp, Millis};
use em_metrics::digest::{self, Digest, PERIODS_READ};
use em_notify::Audience;
use serde::{Deserialize, Serialize};

/// How long a claim holds a channel's digest: longer than the function may run (its timeout is 5 minutes),
/// so a live sender never loses its claim, and a dead one's key is free by the next hourly run.
pub const LEASE: Millis = 15 * 60 * 1000;

/// The name `[[teams]]` and the address keys use for an audience.
pub fn team_name(who: &Audience) -> &str {
    match who {
        Audience::Team(t) => t,
        Audience::Organisation => ORGANISATION,
    }
}

/// The audience a `[[teams]]` entry stands for.
pub fn audience(name: &str) -> Audience {
    match name {
        ORGANISATION => Audience::Organisation,
        t => Audience::Team(t.to_string()),
    }
}

/// The time zone of an audience's periods: its team's, else UTC.
pub fn time_zone(config: &Config, who: &Audience) -> calendar::Tz {
    config
        .team(team_name(who))
        .map_or(calendar::UTC, TeamConfig::tz)
}

/// The digest of `who` for the period that ends at `to` (a local midnight of its time zone).
pub async fn digest_of<R: MetricsReader>(
    reader: &R,
    config: &Config,
    who: &Audience,
    period: Period,
    to: Millis,
) -> Result<Digest, PortError> {
    let services = match who {
        Audience::Team(t) => Some(config.services_of_team(t)),
        Audience::Organisation => None,
    };
    let tz = time_zone(config, who);
    let bounds = calendar::boundaries(to, period, tz, PERIODS_READ);
    let (from, to) = digest::reads(&bounds);
    let mut obs = reader.observations(services.clone(), from, to).await?;
    // Of the delivery facts a digest counts only its own period's failed attempts: not the builds, the
    // pull requests or their deployments, nor the trend's and baseline's periods.
    let start = bounds.get(1).copied().unwrap_or(from);
    let attempts =
        em_metrics::delivery::attempts(reader, config, services.as_deref(), start, to).await?;
    obs.extend_within(attempts, start, to);
    let mut d = digest::digest_with(&obs, period, &bounds, tz.name());
    let rows = reader.rows(services, d.from, d.to).await?;
    d.highlights = digest::highlights(&rows, d.from, d.to, config.links());
    Ok(d)
}

/// Where a team's address for `channel` is kept: `<team>/<channel>` in the addresses secret (a JSON object;
/// a value is a string or a list of strings, several email addresses say).
pub fn address_key(team: &str, channel: Channel) -> String {
    format!("{}/{}", team.to_ascii_lowercase(), channel.as_str())
}

/// The environment variable holding a team's address for `channel` locally:
/// `EM_AGENT_DIGEST_<TEAM>_<CHANNEL>`, the team's name upper-cased with anything but letters and digits as
/// `_` (`ALL` for the organisation); several addresses are separated by commas.
pub fn address_var(team: &str, channel: Channel) -> String {
    let team: String = team
        .chars()
        .map(|c| match c.is_ascii_alphanumeric() {
            true => c.to_ascii_uppercase(),
            false => '_',
        })
        .collect();
    format!(
        "EM_AGENT_DIGEST_{team}_{}",
        channel.as_str().to_ascii_uppercase()
    )
}

/// The addresses in the environment ([`address_var`]), for the embedded store and the CLI.
#[derive(Debug, Clone, Default)]
pub struct EnvAddresses;

impl SecretSource for EnvAddresses {
    async fn secrets(&self, key: &str) -> Result<Option<Vec<Vec<u8>>>, PortError> {
        let Some((team, channel)) = key.split_once('/') else {
            return Ok(None);
        };
        let Some(channel) = Channel::parse(channel) else {
            return Ok(None);
        };
        let list = std::env::var(address_var(team, channel)).unwrap_or_default();
        let values: Vec<Vec<u8>> = list
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| a.as_bytes().to_vec())
            .collect();
        Ok((!values.is_empty()).then_some(values))
    }

    fn enable_hint(&self, key: &str) -> String {
        match key
            .split_once('/')
            .and_then(|(team, channel)| Some((team, Channel::parse(channel)?)))
        {
            Some((team, channel)) => format!(
                "set {} (comma-separated for several addresses)",
                address_var(team, channel)
            ),
            None => format!("set the address of {key}"),
        }
    }
}

/// What became of one channel's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    Sent,
    /// Sent before, or being sent by another invocation right now.
    AlreadyClaimed,
    /// Not sent; the next run tries again.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub team: String,
    pub period: Period,
    /// The start of the period, RFC 3339.
    pub from: String,
    pub channel: &'static str,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The outbox key of a channel's digest of one period: one send per team, period and channel.
pub fn outbox_key(team: &str, period: Period, from: Millis, channel: Channel) -> String {
    format!(
        "digest/{team}/{}/{}/{}",
        period.as_str(),
        format_millis(from),
        channel.as_str()
    )
}

/// A store digests read from and claim their sends in.
pub trait DigestStore: MetricsReader + Outbox {}
impl<T: MetricsReader + Outbox> DigestStore for T {}

/// Sends `who`'s digest of the period ending at `to` through each channel its team has that has not had it:
/// each channel is claimed first, the digest is read only when one is won, and a channel that fails is
/// released for the next run while the others still get theirs.
#[allow(clippy::too_many_arguments)]
pub async fn deliver<S: DigestStore, A: SecretSource>(
    store: &S,
    addresses: &A,
    out: &Outbound,
    config: &Config,
    who: &Audience,
    period: Period,
    to: Millis,
    now: Millis,
) -> Vec<Report> {
    let team = team_name(who);
    let from = calendar::boundaries(to, period, time_zone(config, who), 1)
        .last()
        .copied()
        .unwrap_or(to);
    let owner = uuid::Uuid::new_v4().to_string();
    let report = |channel: Channel, outcome: Outcome| Report {
        team: team.to_string(),
        period,
        from: format_millis(from),
        channel: channel.as_str(),
        outcome,
    };
    let mut reports = Vec::new();
    let mut won = Vec::new();
    for &channel in config.channels_of(team) {
        let key = outbox_key(team, period, from, channel);
        match store
            .claim(key.clone(), owner.clone(), now, now + LEASE)
            .await
        {
            Ok(true) => won.push((channel, key)),
            Ok(false) => reports.push(report(channel, Outcome::AlreadyClaimed)),
            Err(e) => reports.push(report(channel, Outcome::Failed(e.to_string()))),
        }
    }
    if won.is_empty() {
        return reports;
    }
    let d = digest_of(store, config, who, period, to).await;
    for (channel, key) in won {
        let sent = match &d {
            Ok(d) => send_through(addresses, out, team, channel, who, d).await,
            Err(e) => Err(SendError::Read {
                what: "the digest's figures".into(),
                source: e.clone(),
            }),
        };
        if let Err(e) = store.settle(key, owner.clone(), sent.is_ok()).await {
            tracing::error!(team, channel = channel.as_str(), error = %e, "digest claim not settled");
        }
        match sent {
            Ok(()) => reports.push(report(channel, Outcome::Sent)),
            Err(e) => {
                e.log(team, channel.as_str(), "digest");
                reports.push(report(channel, Outcome::Failed(e.to_string())));
            }
        }
    }
    reports
}

/// A team's addresses for `channel`; an error that says how to set them when there are none.
pub(crate) async fn addresses_of<A: SecretSource>(
    addresses: &A,
    team: &str,
    channel: Channel,
) -> Result<Vec<String>, SendError> {
    let key = address_key(team, channel);
    let found = addresses
        .secrets(&key)
        .await
        .map_err(|source| SendError::Read {
            what: format!("{key}'s address"),
            source,
        })?;
    let list: Vec<String> = found
        .unwrap_or_default()
        .into_iter()
        .map(|a| String::from_utf8_lossy(&a).trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    if list.is_empty() {
        return Err(SendError::NoAddress {
            who: audience(team).name(),
            channel: channel.as_str(),
            hint: addresses.enable_hint(&key),
        });
    }
    Ok(list)
}

async fn send_through<A: SecretSource>(
    addresses: &A,
    out: &Outbound,
    team: &str,
    channel: Channel,
    who: &Audience,
    d: &Digest,
) -> Result<(), SendError> {
    let list = addresses_of(addresses, team, channel).await?;
    channels::send(
        out,
        channel,
        &list,
        channels::Content::Digest { who, digest: d },
    )
    .await
}

/// What a scheduled run at `now` sends: for each `[[teams]]` entry with channels and each of its periods,
/// the digest of the period that ended last, once the team's send hour has come on the period's first
/// day. An hourly schedule so sends each team's digest at its own local hour, and a later run catches up
/// what an outage missed while the period lasts.
pub async fn run<S: DigestStore, A: SecretSource>(
    store: &S,
    addresses: &A,
    out: &Outbound,
    config: &Config,
    now: Millis,
) -> Vec<Report> {
    let mut reports = Vec::new();
    for team in config.teams().iter().filter(|t| !t.channels.is_empty()) {
        let tz = team.tz();
        for &period in &team.periods {
            let to = calendar::boundary(now, period, tz);
            if now < calendar::send_time(to, team.send_hour, tz) {
                continue;
            }
            let who = audience(&team.name);
            reports.extend(deliver(store, addresses, out, config, &who, period, to, now).await);
        }
    }
    reports
}

/// The event EventBridge Scheduler sends: the schedule's own time, so a retried or twice-fired invocation
/// works on the same period as the first.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Scheduled {
    #[serde(default)]
    pub scheduled_time: Option<String>,
}

/// The instant a run works at: the scheduled time when the event has a valid one, else the clock's.
pub fn now_of(event: &Scheduled, clock: Millis) -> Millis {
    event
        .scheduled_time
        .as_deref()
        .and_then(parse_timestamp)
        .unwrap_or(clock)
}

/// The function's answer: every channel's report; an error when one failed, so the invocation is retried
/// (the channels that were sent are not sent again).
pub fn answer(reports: Vec<Report>) -> Result<serde_json::Value, ChannelsFailed> {
    let failed = reports
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
        .count();
    let value = serde_json::json!({ "reports": reports });
    match failed {
        0 => Ok(value),
        n => Err(ChannelsFailed(n)),
    }
}

/// The handler's ports, built once per process.
pub struct Handler<S, A> {
    pub store: S,
    pub addresses: A,
    pub out: Outbound,
    pub config: Config,
}

impl<S: DigestStore, A: SecretSource> Handler<S, A> {
    pub fn handle(
        &self,
        event: Scheduled,
        clock: Millis,
    ) -> impl Future<Output = Result<serde_json::Value, ChannelsFailed>> + Send + '_ {
        let now = now_of(&event, clock);
        async move {
            let reports = run(&self.store, &self.addresses, &self.out, &self.config, now).await;
            for r in &reports {
                tracing::info!(team = %r.team, channel = r.channel, period = r.period.as_str(), outcome = ?r.outcome, "digest");
            }
            answer(reports)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_named_by_team_and_channel() {
        assert_eq!(
            address_var("web-platform", Channel::Slack),
            "EM_AGENT_DIGEST_WEB_PLATFORM_SLACK"
        );
        assert_eq!(
            address_var(ORGANISATION, Channel::Teams),
            "EM_AGENT_DIGEST_ALL_TEAMS"
        );
        assert_eq!(address_key("Payments", Channel::Email), "payments/email");
    }

    #[test]
    fn a_run_works_at_the_scheduled_time() {
        let event: Scheduled =
            serde_json::from_str(r#"{"scheduled_time": "2025-04-14T09:00:00Z"}"#).unwrap();
        assert_eq!(now_of(&event, 5), 1_744_621_200_000);
        assert_eq!(now_of(&Scheduled::default(), 5), 5);
        let bad: Scheduled = serde_json::from_str(r#"{"scheduled_time": "soon"}"#).unwrap();
        assert_eq!(now_of(&bad, 5), 5);
    }

    #[test]
    fn one_key_per_team_period_and_channel() {
        assert_eq!(
            outbox_key("web", Period::Week, 1_744_588_800_000, Channel::Slack),
            "digest/web/week/2025-04-14T00:00:00.000Z/slack"
        );
    }
}
