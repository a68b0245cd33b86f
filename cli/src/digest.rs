//! `em-agent digest`: each team's (and the organisation's) digest of the period just ended, rendered as
//! every channel's message into files (docs/digests.md).

use std::path::Path;

use em_core::config::Config;
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
    let delivery = em_metrics::delivery::read(reader, config, services.as_deref(), from, to)
        .await
        .map_err(|e| e.to_string())?;
    let mut obs = reader
        .observations(services, from, to)
        .await
        .map_err(|e| e.to_string())?;
    obs.extend_within(delivery, from, to);
    Ok(digest::digest(&obs, period, to))
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    std::fs::write(dir.join(name), text).map_err(|e| format!("{}: {e}", dir.join(name).display()))
}

/// Renders each audience's digest into `out` (`out/<team>/` and `out/all/` without `team`).
pub async fn render<R: MetricsReader>(
    reader: &R,
    config: &Config,
    team: Option<String>,
    period: Period,
    at: Millis,
    out: &Path,
) -> Result<(), String> {
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
        write(&dir, "slack.json", &json(em_notify::slack(&d, &who)))?;
        write(&dir, "teams.json", &json(em_notify::teams(&d, &who)))?;
        write(
            &dir,
            "digest.json",
            &serde_json::to_string_pretty(&d).unwrap_or_default(),
        )?;
        println!("{}: {}", who.name(), dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
