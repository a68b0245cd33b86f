//! `em-agent digest`: each team's (and the organisation's) digest of the period just ended, rendered as
//! every channel's message into files (docs/digests.md).

use crate::error::CliError;
use std::path::Path;

use chrono::NaiveDate;
use em_core::calendar::{self, Period};
use em_core::config::Config;
use em_core::ports::MetricsReader;
use em_core::time::Millis;
use em_digest::{DigestStore, EnvAddresses, Outbound, Outcome};
use em_notify::Audience;

/// Who gets a digest: `team` alone, or every team of the configuration and the whole organisation.
fn audiences(config: &Config, team: Option<String>) -> Result<Vec<Audience>, CliError> {
    match team {
        Some(t) if config.has_team(&t) => Ok(vec![Audience::Team(t)]),
        Some(t) => Err(format!("no service in the configuration has team {t:?}").into()),
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

/// Where `--at` puts a period's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// A date: local midnight of it, in each team's time zone.
    Date(NaiveDate),
    /// An instant, for every team alike.
    Instant(Millis),
    /// The start of the current day or week, in each team's time zone.
    Now(Millis),
}

impl At {
    /// `--at`: a date (YYYY-MM-DD) or an RFC 3339 instant; without it, the current period's start.
    pub fn parse(raw: Option<&str>, now: Millis) -> Result<At, CliError> {
        match raw {
            None => Ok(At::Now(now)),
            Some(r) => match NaiveDate::parse_from_str(r, "%Y-%m-%d") {
                Ok(d) => Ok(At::Date(d)),
                Err(_) => em_api::parse_instant("at", r)
                    .map(At::Instant)
                    .map_err(|e| CliError::Invalid(e.to_string())),
            },
        }
    }

    fn end(self, config: &Config, who: &Audience, period: Period) -> Millis {
        let tz = em_digest::time_zone(config, who);
        match self {
            At::Date(d) => calendar::midnight(d, tz),
            At::Instant(t) => t,
            At::Now(now) => calendar::boundary(now, period, tz),
        }
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), CliError> {
    std::fs::write(dir.join(name), bytes).map_err(CliError::io(dir.join(name)))
}

/// Renders each audience's digest into `out` (`out/<team>/` and `out/all/` without `team`), and with
/// `send` sends it through the audience's channels too.
#[allow(clippy::too_many_arguments)]
pub async fn render<R: MetricsReader + DigestStore>(
    reader: &R,
    config: &Config,
    team: Option<String>,
    period: Period,
    at: At,
    out: &Path,
    outbound: Option<&Outbound>,
    now: Millis,
) -> Result<(), CliError> {
    let mut failed = 0;
    let single = team.is_some();
    for who in audiences(config, team)? {
        let to = at.end(config, &who, period);
        let d = em_digest::digest_of(reader, config, &who, period, to)
            .await
            .map_err(|e| e.to_string())?;
        let dir = match (&who, single) {
            (_, true) => out.to_path_buf(),
            (Audience::Team(t), false) => out.join(t),
            (Audience::Organisation, false) => out.join("all"),
        };
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let text = em_notify::text(&d, &who);
        let json = |v: serde_json::Value| serde_json::to_string_pretty(&v).unwrap_or_default();
        write(&dir, "sns.txt", text.as_bytes())?;
        write(&dir, "email.txt", text.as_bytes())?;
        let html = em_notify::email::html(&d, &who, Some("chart.png"));
        write(&dir, "email.html", html.as_bytes())?;
        let png = em_notify::email::chart_png(&d.trend).map_err(|e| e.to_string())?;
        write(&dir, "chart.png", &png)?;
        write(
            &dir,
            "slack.json",
            json(em_notify::slack(&d, &who)).as_bytes(),
        )?;
        write(
            &dir,
            "teams.json",
            json(em_notify::teams(&d, &who)).as_bytes(),
        )?;
        let whole = serde_json::to_string_pretty(&d).unwrap_or_default();
        write(&dir, "digest.json", whole.as_bytes())?;
        println!("{}: {}", who.name(), dir.display());
        if let Some(out) = outbound {
            // Once per team, period and channel, as the scheduled function sends.
            let reports =
                em_digest::deliver(reader, &EnvAddresses, out, config, &who, period, to, now).await;
            for r in reports {
                match r.outcome {
                    Outcome::Sent => println!("{}: sent to {}", who.name(), r.channel),
                    Outcome::AlreadyClaimed => println!(
                        "{}: {} already has this digest (sent before)",
                        who.name(),
                        r.channel
                    ),
                    Outcome::Failed(e) => {
                        eprintln!("{}: {}: {e}", who.name(), r.channel);
                        failed += 1;
                    }
                }
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(format!("{n} channel(s) did not get their digest").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_is_a_local_date_an_instant_or_the_current_period() {
        let config = Config::parse(
            "[[services]]\nname = \"shop\"\nteam = \"web\"\nrepositories = [\"acme/shop\"]\n\
             [[teams]]\nname = \"web\"\ntime_zone = \"Europe/Berlin\"\n",
        )
        .unwrap();
        let web = Audience::Team("web".into());
        let all = Audience::Organisation;
        let date = At::parse(Some("2025-04-14"), 0).unwrap();
        // Berlin is at +02:00 in April; the organisation has no zone: UTC.
        assert_eq!(date.end(&config, &web, Period::Week), 1_744_581_600_000);
        assert_eq!(date.end(&config, &all, Period::Week), 1_744_588_800_000);
        let instant = At::parse(Some("2025-04-14T06:00:00Z"), 0).unwrap();
        assert_eq!(instant.end(&config, &web, Period::Week), 1_744_610_400_000);
        // Wednesday 2025-04-16T15:00:00Z: this week began on Monday.
        let now = At::parse(None, 1_744_815_600_000).unwrap();
        assert_eq!(now.end(&config, &all, Period::Week), 1_744_588_800_000);
        assert_eq!(now.end(&config, &all, Period::Day), 1_744_761_600_000);
        assert!(At::parse(Some("next week"), 0).is_err());
    }
}
