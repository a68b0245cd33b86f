//! `em-agent digest`: each team's (and the organisation's) digest of the period just ended, rendered as
//! every channel's message into files (docs/digests.md).

use std::path::Path;

use em_core::config::{Channel, Config, ORGANISATION};
use em_core::ports::MetricsReader;
use em_core::rows::DAY;
use em_core::time::Millis;
use em_metrics::digest::{self, Period};
use em_notify::Audience;

/// The start of the period that contains `now`: 00:00 UTC today, or Monday 00:00 UTC of this week.
pub fn current_boundary(now: Millis, period: Period) -> Millis {
    let today = now.div_euclid(DAY) * DAY;
    match period {
        Period::Day => today,
        // 1970-01-01 was a Thursday: days since the epoch + 3, mod 7, counts from Monday.
        Period::Week => today - ((now.div_euclid(DAY) + 3).rem_euclid(7)) * DAY,
    }
}

/// Who gets a digest: `team` alone, or every team of the configuration and the whole organisation.
fn audiences(config: &Config, team: Option<String>) -> Result<Vec<Audience>, String> {
    match team {
        Some(t) if config.has_team(&t) => Ok(vec![Audience::Team(t)]),
        Some(t) => Err(format!("no service in the configuration has team {t:?}")),
        None => {
            let mut teams: Vec<String> = config
                .services()
                .iter()
                .filter_map(|s| s.team.clone())
                .collect();
            teams.sort();
            teams.dedup();
            let mut out: Vec<Audience> = teams.into_iter().map(Audience::Team).collect();
            out.push(Audience::Organisation);
            Ok(out)
        }
    }
}

/// The digest of `who` for the period ending at `to`.
pub async fn digest_of<R: MetricsReader>(
    reader: &R,
    config: &Config,
    who: &Audience,
    period: Period,
    to: Millis,
) -> Result<digest::Digest, String> {
    let services = match who {
        Audience::Team(t) => Some(config.services_of_team(t)),
        Audience::Organisation => None,
    };
    let (from, to) = digest::reads(period, to);
    let obs = em_metrics::delivery::with_day_observations(reader, config, services, from, to)
        .await
        .map_err(|e| e.to_string())?;
    Ok(digest::digest(&obs, period, to))
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    std::fs::write(dir.join(name), text).map_err(|e| format!("{}: {e}", dir.join(name).display()))
}

/// The environment variable holding a team's address for `channel`: `EM_AGENT_DIGEST_<TEAM>_<CHANNEL>`,
/// the team's name upper-cased with anything but letters and digits as `_` (`all` for the organisation).
pub fn address_var(team: &str, channel: Channel) -> String {
    let team: String = team
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "EM_AGENT_DIGEST_{team}_{}",
        channel.as_str().to_ascii_uppercase()
    )
}

/// What `--send` sends with: webhooks over HTTP, SES and SNS through the AWS configuration of the
/// environment (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL`).
pub struct Outbound {
    pub web: em_notify::send::Sender,
    pub aws: aws_config::SdkConfig,
}

/// The verified address digests are emailed from.
pub const FROM_VAR: &str = "EM_AGENT_DIGEST_FROM";

/// The addresses of a list: comma-separated, blanks dropped.
fn addresses_of(list: &str) -> Vec<String> {
    list.split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect()
}

/// Sends one message through `channel` to `address` (a webhook URL, email addresses, a topic ARN).
async fn send_one(
    out: &Outbound,
    channel: Channel,
    address: &str,
    who: &Audience,
    d: &digest::Digest,
) -> Result<(), String> {
    match channel {
        Channel::Slack | Channel::Teams => {
            let message = match channel {
                Channel::Slack => em_notify::slack(d, who),
                _ => em_notify::teams(d, who),
            };
            out.web
                .post_json(channel, address, &message)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        Channel::Email => {
            let from = std::env::var(FROM_VAR)
                .ok()
                .filter(|f| !f.is_empty())
                .ok_or_else(|| format!("email needs a sender: set {FROM_VAR}"))?;
            let to = addresses_of(address);
            let raw = em_notify::email::message(d, who, &from, &to).map_err(|e| e.to_string())?;
            em_aws::notify::SesMailer::new(&out.aws, from)
                .send_raw(&to, raw)
                .await
                .map(|_| ())
                .map_err(|e| format!("email: {e}"))
        }
        Channel::Sns => em_aws::notify::SnsPublisher::new(&out.aws)
            .publish(address, &em_notify::title(d, who), &em_notify::text(d, who))
            .await
            .map(|_| ())
            .map_err(|e| format!("sns: {e}")),
    }
}

/// Sends `who`'s digest through each channel its team has, one after the other: a channel that fails is
/// reported and the others still get theirs. The number of channels that failed.
async fn send(out: &Outbound, config: &Config, who: &Audience, d: &digest::Digest) -> usize {
    let team = match who {
        Audience::Team(t) => t.as_str(),
        Audience::Organisation => ORGANISATION,
    };
    let mut failed = 0;
    for &channel in config.channels_of(team) {
        let var = address_var(team, channel);
        let address = addresses_of(&std::env::var(&var).unwrap_or_default()).join(",");
        if address.is_empty() {
            eprintln!(
                "{}: {} has no address: set {var}",
                who.name(),
                channel.as_str()
            );
            failed += 1;
            continue;
        }
        match send_one(out, channel, &address, who, d).await {
            Ok(()) => println!("{}: sent to {}", who.name(), channel.as_str()),
            Err(e) => {
                eprintln!("{}: {e}", who.name());
                failed += 1;
            }
        }
    }
    failed
}

/// Renders each audience's digest into `out` (`out/<team>/` and `out/all/` without `team`), and with
/// `send` sends it through the audience's channels too.
pub async fn render<R: MetricsReader>(
    reader: &R,
    config: &Config,
    team: Option<String>,
    period: Period,
    at: Millis,
    out: &Path,
    outbound: Option<&Outbound>,
) -> Result<(), String> {
    let mut failed = 0;
    let single = team.is_some();
    for who in audiences(config, team)? {
        let d = digest_of(reader, config, &who, period, at).await?;
        let dir = match (&who, single) {
            (_, true) => out.to_path_buf(),
            (Audience::Team(t), false) => out.join(t),
            (Audience::Organisation, false) => out.join("all"),
        };
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let text = em_notify::text(&d, &who);
        let json = |v: serde_json::Value| serde_json::to_string_pretty(&v).unwrap_or_default();
        write(&dir, "sns.txt", &text)?;
        write(&dir, "email.txt", &text)?;
        write(
            &dir,
            "email.html",
            &em_notify::email::html(&d, &who, Some("chart.png")),
        )?;
        let png = em_notify::email::chart_png(&d.trend).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("chart.png"), png)
            .map_err(|e| format!("{}: {e}", dir.join("chart.png").display()))?;
        write(&dir, "slack.json", &json(em_notify::slack(&d, &who)))?;
        write(&dir, "teams.json", &json(em_notify::teams(&d, &who)))?;
        write(
            &dir,
            "digest.json",
            &serde_json::to_string_pretty(&d).unwrap_or_default(),
        )?;
        println!("{}: {}", who.name(), dir.display());
        if let Some(out) = outbound {
            failed += send(out, config, &who, &d).await;
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(format!("{n} channel(s) did not get their digest")),
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
    }

    #[test]
    fn periods_start_at_midnight_and_on_mondays() {
        // 2025-04-16T15:00:00Z, a Wednesday.
        let wed = 1_744_815_600_000;
        assert_eq!(current_boundary(wed, Period::Day), 1_744_761_600_000);
        // Monday 2025-04-14T00:00:00Z.
        assert_eq!(current_boundary(wed, Period::Week), 1_744_588_800_000);
        assert_eq!(
            current_boundary(1_744_588_800_000, Period::Week),
            1_744_588_800_000
        );
    }
}
