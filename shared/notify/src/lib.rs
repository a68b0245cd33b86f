//! Digests as messages: plain text (SNS, the email's text part), Slack Block Kit and a Microsoft Teams
//! Adaptive Card. Pure: sending is the channels' work (docs/digests.md).

pub mod email;
pub mod escape;
pub mod send;

use em_core::calendar;
use em_core::time::rfc3339::format as format_millis;
use em_metrics::digest::{Anomaly, Digest, Period, Trend};
use em_metrics::figures::{Unit, FIGURES};
use em_metrics::levels::Level;
use serde_json::{json, Value};

/// Slack's limits (Block Kit reference): a header's text, a section's text and a field's text.
pub const SLACK_HEADER_MAX: usize = 150;
pub const SLACK_TEXT_MAX: usize = 3000;
pub const SLACK_FIELD_MAX: usize = 2000;
pub const SLACK_FIELDS_MAX: usize = 10;
pub const SLACK_BLOCKS_MAX: usize = 50;
/// What a Teams webhook accepts in one message, in bytes.
pub const TEAMS_BYTES_MAX: usize = 28 * 1024;

/// Who a digest is about: a team, or the whole organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    Team(String),
    Organisation,
}

impl Audience {
    pub fn name(&self) -> String {
        match self {
            Audience::Team(t) => format!("team {t}"),
            Audience::Organisation => "all teams".into(),
        }
    }
}

/// A duration for people (`2d 3h`), as every figure shows one.
pub use em_metrics::figures::duration;

fn level(l: Option<Level>) -> String {
    l.map_or_else(|| "no level".into(), |l| l.as_str().to_string())
}

/// `▲ 20% vs 1h 40m`, `▼ 50% vs 2.00/day`, `new`, or nothing to compare with.
fn versus(t: &Trend, show: impl Fn(f64) -> String) -> String {
    match (t.change, t.previous) {
        (Some(c), Some(p)) if c > 0.0 => format!("▲ {:.0}% vs {}", c * 100.0, show(p)),
        (Some(c), Some(p)) if c < 0.0 => format!("▼ {:.0}% vs {}", -c * 100.0, show(p)),
        (Some(_), Some(p)) => format!("= vs {}", show(p)),
        (None, Some(p)) if t.current.is_some() => format!("vs {}", show(p)),
        (None, None) if t.current.is_some() => "nothing to compare with".into(),
        _ => String::new(),
    }
}

/// One line per figure: name, value with its level, and the change against the period before.
pub fn figure_lines(d: &Digest) -> Vec<(String, String, String)> {
    FIGURES
        .iter()
        .map(|fig| {
            let show = |v: f64| fig.unit.show(v);
            let value = (fig.value)(&d.figures).map_or("n/a".into(), show);
            let shown = match fig.level {
                Some(level_of) => format!("{value} ({})", level(level_of(&d.figures))),
                None => value,
            };
            (
                fig.headline.into(),
                shown,
                versus((fig.trend)(&d.trends), show),
            )
        })
        .collect()
}

/// The counts as two lines: deployments, then incidents.
pub fn count_lines(d: &Digest) -> [String; 2] {
    let c = &d.counts;
    [
        format!(
            "Deployments {} · failed attempts {} · rollbacks {} · rework {}",
            c.deployments, c.failed_attempts, d.highlights.rollbacks, c.rework
        ),
        format!(
            "Incidents opened {} · resolved {} · still open {}{}",
            c.incidents_opened,
            c.incidents_resolved,
            c.incidents_open,
            c.acknowledged_median_seconds
                .map(|s| format!(" · acknowledged in {} (median)", duration(s as f64)))
                .unwrap_or_default()
        ),
    ]
}

/// A commit as people name it: its first 7 characters.
pub fn short_sha(sha: &str) -> String {
    sha.chars().take(7).collect()
}

/// One named change or incident: what it is, how long it took, and its page where known.
pub struct Named {
    pub label: String,
    pub took: String,
    pub url: Option<String>,
}

/// The slowest changes and the longest recoveries, each under its heading; a heading without any is left
/// out.
pub fn highlight_lines(d: &Digest) -> Vec<(&'static str, Vec<Named>)> {
    let h = &d.highlights;
    let changes: Vec<Named> = h
        .slowest_changes
        .iter()
        .map(|c| Named {
            label: format!("{} {} ({})", short_sha(&c.sha), c.repo, c.service),
            took: duration(c.lead_time_seconds),
            url: c.url.clone(),
        })
        .collect();
    let recoveries: Vec<Named> = h
        .longest_recoveries
        .iter()
        .map(|r| Named {
            label: format!("{} ({})", r.incident, r.service),
            took: duration(r.recovery_seconds),
            url: r.url.clone(),
        })
        .collect();
    [
        ("Slowest changes", changes),
        ("Longest recoveries", recoveries),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .collect()
}

/// A real-time notice: one event in a title and a line, and its page where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub title: String,
    pub text: String,
    pub url: Option<String>,
}

/// A notice as plain text: SNS's message and an email's body.
pub fn notice_text(n: &Notice) -> String {
    let (title, text) = (escape::plain(&n.title), escape::plain(&n.text));
    match &n.url {
        Some(u) => format!("{title}\n{text}\n{u}\n"),
        None => format!("{title}\n{text}\n"),
    }
}

/// A notice as a Slack message (one section, its title in bold, the page linked).
pub fn notice_slack(n: &Notice) -> Value {
    let (title, line) = (escape::slack(&n.title), escape::slack(&n.text));
    let mut text = format!("*{title}*\n{line}");
    if let Some(u) = &n.url {
        text.push_str(&format!(" <{}|open>", escape::slack(u)));
    }
    json!({
        "text": cut(format!("{title} · {line}"), SLACK_TEXT_MAX),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": cut(text, SLACK_TEXT_MAX)}}],
    })
}

/// An address inside a Teams markdown link: a `)` or space would end it early, so they are encoded (the
/// values in it are already percent-encoded by the link templates; this covers the template's own text).
fn teams_url(url: &str) -> String {
    url.replace(' ', "%20")
        .replace('(', "%28")
        .replace(')', "%29")
        .replace('<', "%3C")
        .replace('>', "%3E")
}

/// A Teams message of one Adaptive Card (version 1.4, what Workflows and incoming webhooks render) with `body`.
fn adaptive_card(body: Vec<Value>) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            },
        }],
    })
}

/// A notice as a Microsoft Teams message: a small Adaptive Card.
pub fn notice_teams(n: &Notice) -> Value {
    let mut body = vec![
        json!({"type": "TextBlock", "text": escape::teams(&n.title), "weight": "Bolder", "wrap": true}),
        json!({"type": "TextBlock", "text": escape::teams(&n.text), "wrap": true}),
    ];
    if let Some(u) = &n.url {
        body.push(
            json!({"type": "TextBlock", "text": format!("[Open]({})", teams_url(u)), "wrap": true}),
        );
    }
    adaptive_card(body)
}

/// An anomaly in a sentence.
pub fn anomaly_line(a: &Anomaly, period: Period) -> String {
    let before = match period {
        Period::Week => "the week before",
        Period::Day => "the day before",
    };
    let how_far = |sigmas: Option<f64>| {
        sigmas.map_or_else(
            || "above a baseline that never varied".to_string(),
            |s| format!("{s:.1} standard deviations above the usual"),
        )
    };
    match a {
        Anomaly::DeploymentsDown {
            current,
            previous,
            change,
        } => format!(
            "Deployments down {:.0}%: {current} against {previous} {before}",
            -change * 100.0
        ),
        Anomaly::FailureRateUp {
            current,
            baseline_mean,
            sigmas,
            ..
        } => format!(
            "Change failure rate {} against a usual {} ({})",
            Unit::Ratio.show(*current),
            Unit::Ratio.show(*baseline_mean),
            how_far(*sigmas)
        ),
        Anomaly::IncidentsUp {
            current,
            baseline_mean,
            sigmas,
            ..
        } => format!(
            "{current} incidents against a usual {baseline_mean:.1} ({})",
            how_far(*sigmas)
        ),
    }
}

/// `Weekly DORA digest — team web`.
pub fn title(d: &Digest, who: &Audience) -> String {
    let period = match d.period {
        Period::Week => "Weekly",
        Period::Day => "Daily",
    };
    format!("{period} DORA digest — {}", who.name())
}

/// `2025-04-07 to 2025-04-14 (UTC)`: the period's first day and the day it ends on (exclusive), in the
/// digest's time zone.
pub fn span(d: &Digest) -> String {
    let Some(tz) = calendar::time_zone(&d.time_zone) else {
        let day = |t| format_millis(t).chars().take(10).collect::<String>();
        return format!("{} to {} (UTC)", day(d.from), day(d.to));
    };
    let day = |t| calendar::local_date(t, tz).format("%Y-%m-%d").to_string();
    format!("{} to {} ({})", day(d.from), day(d.to), d.time_zone)
}

/// The digest as plain text: SNS's message and the email's text part.
pub fn text(d: &Digest, who: &Audience) -> String {
    let mut out = format!("{}\n{}\n\n", escape::plain(&title(d, who)), span(d));
    for (name, value, change) in figure_lines(d) {
        out.push_str(&format!("{name:<26}{value:<22}{change}\n").replace("  \n", "\n"));
    }
    out.push('\n');
    for line in count_lines(d) {
        out.push_str(&line);
        out.push('\n');
    }
    if !d.anomalies.is_empty() {
        out.push_str("\nLook at:\n");
        for a in &d.anomalies {
            out.push_str(&format!("- {}\n", anomaly_line(a, d.period)));
        }
    }
    for (heading, named) in highlight_lines(d) {
        out.push_str(&format!("\n{heading}:\n"));
        for n in named {
            let label = escape::plain(&n.label);
            match n.url {
                Some(u) => out.push_str(&format!("- {label}: {} {u}\n", n.took)),
                None => out.push_str(&format!("- {label}: {}\n", n.took)),
            }
        }
    }
    out
}

fn cut(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut t: String = text.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// The digest as a Slack message (Block Kit) for an incoming webhook, within Slack's limits.
pub fn slack(d: &Digest, who: &Audience) -> Value {
    let fields: Vec<Value> = figure_lines(d)
        .into_iter()
        .take(SLACK_FIELDS_MAX)
        .map(|(name, value, change)| {
            let text = if change.is_empty() {
                format!("*{name}*\n{value}")
            } else {
                format!("*{name}*\n{value}\n{change}")
            };
            json!({"type": "mrkdwn", "text": cut(text, SLACK_FIELD_MAX)})
        })
        .collect();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut(escape::plain(&title(d, who)), SLACK_HEADER_MAX)}}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": span(d)}]}),
        json!({"type": "section", "fields": fields}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(count_lines(d).join("\n"), SLACK_TEXT_MAX)}}),
    ];
    if !d.anomalies.is_empty() {
        let lines: Vec<String> = d
            .anomalies
            .iter()
            .map(|a| format!("• {}", anomaly_line(a, d.period)))
            .collect();
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": cut(format!("*Look at*\n{}", lines.join("\n")), SLACK_TEXT_MAX)}}));
    }
    for (heading, named) in highlight_lines(d) {
        let lines: Vec<String> = named
            .iter()
            .map(|n| match &n.url {
                Some(u) => format!(
                    "• <{}|{}>: {}",
                    escape::slack(u),
                    escape::slack_label(&n.label),
                    n.took
                ),
                None => format!("• {}: {}", escape::slack(&n.label), n.took),
            })
            .collect();
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": cut(format!("*{heading}*\n{}", lines.join("\n")), SLACK_TEXT_MAX)}}));
    }
    blocks.truncate(SLACK_BLOCKS_MAX);
    json!({"text": cut(format!("{} · {}", escape::slack(&title(d, who)), span(d)), SLACK_TEXT_MAX), "blocks": blocks})
}

/// The digest as a Microsoft Teams message: one Adaptive Card, as a Workflows or incoming webhook takes it.
pub fn teams(d: &Digest, who: &Audience) -> Value {
    let facts: Vec<Value> = figure_lines(d)
        .into_iter()
        .map(|(name, value, change)| {
            let value = if change.is_empty() {
                value
            } else {
                format!("{value} · {change}")
            };
            json!({"title": name, "value": value})
        })
        .collect();
    let mut body = vec![
        json!({"type": "TextBlock", "text": escape::teams(&title(d, who)), "weight": "Bolder", "size": "Medium", "wrap": true}),
        json!({"type": "TextBlock", "text": span(d), "isSubtle": true, "spacing": "None", "wrap": true}),
        json!({"type": "FactSet", "facts": facts}),
    ];
    for line in count_lines(d) {
        body.push(json!({"type": "TextBlock", "text": line, "wrap": true}));
    }
    if !d.anomalies.is_empty() {
        body.push(
            json!({"type": "TextBlock", "text": "Look at", "weight": "Bolder", "wrap": true}),
        );
        for a in &d.anomalies {
            body.push(
                json!({"type": "TextBlock", "text": format!("- {}", anomaly_line(a, d.period)),
                             "wrap": true, "color": "Attention"}),
            );
        }
    }
    for (heading, named) in highlight_lines(d) {
        body.push(json!({"type": "TextBlock", "text": heading, "weight": "Bolder", "wrap": true}));
        for n in named {
            let label = escape::teams(&n.label);
            let text = match &n.url {
                Some(u) => format!("- [{label}]({}): {}", teams_url(u), n.took),
                None => format!("- {label}: {}", n.took),
            };
            body.push(json!({"type": "TextBlock", "text": text, "wrap": true}));
        }
    }
    adaptive_card(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use em_core::rows::{DeploymentObs, IncidentObs, Observations, DAY};

    /// 2025-04-14T00:00:00Z, a Monday.
    const T: i64 = 1_744_588_800_000;
    const WEEK: i64 = 7 * DAY;

    /// A week of 7 deployments (one failed) and two incidents against a week of 14, so deployments are
    /// down by half.
    fn sample() -> Digest {
        let mut obs = Observations {
            origins: vec![Default::default()],
            ..Default::default()
        };
        for (week, n) in [(0, 7), (1, 14)] {
            for i in 0..n {
                obs.deployments.push(DeploymentObs {
                    origin: 0,
                    time: T - (week + 1) * WEEK + i * 3_600_000,
                    failed: week == 0 && i == 0,
                    rework: false,
                });
            }
        }
        // The first acknowledged 4 minutes after it opened.
        for (recovery, acknowledged) in [(Some(3_000_000), Some(240_000)), (None, None)] {
            obs.incidents.push(IncidentObs {
                origin: 0,
                opened: T - WEEK + DAY,
                acknowledged: acknowledged.map(|a| T - WEEK + DAY + a),
                recovery,
                attributed: true,
            });
        }
        em_metrics::digest::digest(&obs, Period::Week, T)
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(duration(8.0), "8s");
        assert_eq!(duration(367.0), "6m 7s");
        assert_eq!(duration(7_200.0 + 300.0), "2h 5m");
        assert_eq!(duration(2.0 * 86_400.0 + 3.0 * 3_600.0), "2d 3h");
    }

    #[test]
    fn the_text_holds_the_figures_counts_and_anomalies() {
        let t = text(&sample(), &Audience::Team("web".into()));
        assert!(
            t.starts_with("Weekly DORA digest — team web\n2025-04-07 to 2025-04-14 (UTC)\n"),
            "{t}"
        );
        assert!(t.contains("1.00/day (elite)"), "{t}");
        assert!(t.contains("▼ 50% vs 2.00/day"), "{t}");
        assert!(t.contains("14.3% (medium)"), "{t}");
        assert!(t.contains("50m 0s (elite)"), "{t}");
        assert!(
            t.contains("Deployments 7 · failed attempts 0 · rollbacks 0 · rework 0"),
            "{t}"
        );
        assert!(
            t.contains(
                "Incidents opened 2 · resolved 1 · still open 1 · acknowledged in 4m 0s (median)"
            ),
            "{t}"
        );
        assert!(
            t.contains("- Deployments down 50%: 7 against 14 the week before"),
            "{t}"
        );
    }

    #[test]
    fn slack_gets_block_kit_within_its_limits() {
        let m = slack(&sample(), &Audience::Organisation);
        let blocks = m["blocks"].as_array().expect("blocks");
        assert!(!blocks.is_empty() && blocks.len() <= SLACK_BLOCKS_MAX);
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["text"], "Weekly DORA digest — all teams");
        let fields = blocks[2]["fields"].as_array().expect("fields");
        assert_eq!(fields.len(), 5);
        assert!(fields[0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("*Deployment frequency*\n1.00/day (elite)")));
        for b in blocks {
            let text = b["text"]["text"].as_str().unwrap_or_default();
            assert!(text.chars().count() <= SLACK_TEXT_MAX);
        }
        assert!(
            m["text"].as_str().is_some_and(|t| !t.is_empty()),
            "a fallback text"
        );
        assert!(m.to_string().contains("Deployments down 50%"));
        // A long team name is cut to the header's limit.
        let long = slack(&sample(), &Audience::Team("x".repeat(400)));
        let header = long["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(header.chars().count(), SLACK_HEADER_MAX);
    }

    #[test]
    fn teams_gets_one_adaptive_card_within_its_size() {
        let m = teams(&sample(), &Audience::Team("web".into()));
        assert_eq!(m["type"], "message");
        let card = &m["attachments"][0];
        assert_eq!(
            card["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(card["content"]["type"], "AdaptiveCard");
        let body = card["content"]["body"].as_array().expect("body");
        assert_eq!(body[0]["text"], "Weekly DORA digest — team web");
        let facts = body[2]["facts"].as_array().expect("facts");
        assert_eq!(facts[2]["title"], "Change failure rate");
        assert!(m.to_string().len() <= TEAMS_BYTES_MAX);
        assert!(m.to_string().contains("Deployments down 50%"));
    }

    #[test]
    fn the_email_holds_both_parts_and_the_chart() {
        let d = sample();
        let who = Audience::Team("<web & ops>".into());
        let html = email::html(&d, &who, Some("chart.png"));
        assert!(html.contains("team &lt;web &amp; ops&gt;"), "escaped");
        assert!(!html.contains("<web"), "no raw team name");
        assert!(!html.contains("<script"), "no script");
        assert!(html.contains("1.00/day (elite)"));
        assert!(html.contains("src=\"chart.png\""));
        let raw = email::message(&d, &who, "digests@acme.test", &["web@acme.test".into()]).unwrap();
        let raw = String::from_utf8_lossy(&raw);
        // The title's dash is not ASCII: the subject is an encoded word.
        assert!(
            raw.contains("Subject: =?utf-8?Q?Weekly_DORA_digest_=E2=80=94_team_"),
            "{raw}"
        );
        assert!(raw.contains("multipart/related"), "{raw}");
        assert!(raw.contains("text/plain"));
        assert!(raw.contains("text/html"));
        assert!(raw.contains("image/png"));
        assert!(
            raw.contains(&format!("<{}>", email::CHART_CID)),
            "the chart's Content-ID"
        );
    }

    #[test]
    fn named_changes_and_recoveries_link_to_their_pages_in_every_channel() {
        use em_metrics::digest::{Highlights, LongRecovery, SlowChange};
        let mut d = sample();
        let url = "https://github.com/acme/shop/commit/0123456789abcdef";
        d.highlights = Highlights {
            rollbacks: 2,
            slowest_changes: vec![SlowChange {
                service: "shop".into(),
                repo: "acme/shop".into(),
                sha: "0123456789abcdef".into(),
                lead_time_seconds: 90_000.0,
                url: Some(url.into()),
            }],
            longest_recoveries: vec![LongRecovery {
                service: "shop".into(),
                incident: "P<1>&".into(),
                recovery_seconds: 3_660.0,
                url: None,
            }],
        };
        let who = Audience::Team("web".into());
        let t = text(&d, &who);
        assert!(t.contains(" · rollbacks 2 · "), "{t}");
        assert!(
            t.contains(&format!(
                "Slowest changes:\n- 0123456 acme/shop (shop): 1d 1h {url}\n"
            )),
            "{t}"
        );
        assert!(
            t.contains("Longest recoveries:\n- P<1>& (shop): 1h 1m\n"),
            "{t}"
        );
        let s = slack(&d, &who).to_string();
        assert!(
            s.contains(&format!("<{url}|0123456 acme/shop (shop)>: 1d 1h")),
            "{s}"
        );
        assert!(s.contains("• P&lt;1&gt;&amp; (shop): 1h 1m"), "{s}");
        let card = teams(&d, &who).to_string();
        assert!(
            card.contains(&format!("[0123456 acme/shop \\\\(shop\\\\)]({url}): 1d 1h")),
            "{card}"
        );
        let html = email::html(&d, &who, None);
        assert!(
            html.contains(&format!("<a href=\"{url}\"")) && html.contains("P&lt;1&gt;&amp; (shop)"),
            "{html}"
        );
    }

    /// What a payload may write: a markdown link, a Slack link, a mass ping and a right-to-left override.
    const HOSTILE: &str =
        "[Re-login](https://evil.example) <https://evil.example|Open> <!channel> \u{202E}exe.gpj";

    fn assert_inert_slack(s: &str) {
        assert!(!s.contains("<!channel>"), "{s}");
        assert!(!s.contains("<https://evil"), "{s}");
        assert!(!s.contains('\u{202E}'), "{s}");
    }

    fn assert_inert_teams(s: &str) {
        assert!(!s.contains("](https://evil"), "{s}");
        assert!(!s.contains('\u{202E}'), "{s}");
    }

    #[test]
    fn payload_text_carries_no_link_ping_or_override_in_any_channel() {
        use em_metrics::digest::{Highlights, LongRecovery, SlowChange};
        let n = Notice {
            title: format!("Deployed to {HOSTILE}"),
            text: HOSTILE.into(),
            url: Some("https://github.com/acme/shop/commit/0123".into()),
        };
        // Slack: the message (blocks and the notification's fallback text) as sent, as JSON text.
        let slack_json = notice_slack(&n);
        assert_inert_slack(slack_json["text"].as_str().unwrap());
        assert_inert_slack(slack_json["blocks"][0]["text"]["text"].as_str().unwrap());
        assert!(slack_json["text"]
            .as_str()
            .unwrap()
            .contains("&lt;!channel&gt;"));
        let card = notice_teams(&n);
        for block in card["attachments"][0]["content"]["body"]
            .as_array()
            .unwrap()
        {
            assert_inert_teams(block["text"].as_str().unwrap());
        }
        let plain = notice_text(&n);
        assert!(!plain.contains('\u{202E}'), "{plain}");
        let mail = String::from_utf8(
            email::notice_message(&n, "em@example.com", &["lead@example.com".into()]).unwrap(),
        )
        .unwrap();
        assert!(!mail.contains('\u{202E}'));

        let mut d = sample();
        d.highlights = Highlights {
            rollbacks: 0,
            slowest_changes: vec![SlowChange {
                service: "shop".into(),
                repo: format!("acme/{HOSTILE}|x"),
                sha: "0123456789abcdef".into(),
                lead_time_seconds: 60.0,
                url: Some("https://github.com/acme/shop/commit/0123".into()),
            }],
            longest_recoveries: vec![LongRecovery {
                service: "shop".into(),
                incident: HOSTILE.into(),
                recovery_seconds: 60.0,
                url: None,
            }],
        };
        let who = Audience::Team(HOSTILE.into());
        let s = slack(&d, &who);
        assert_inert_slack(s["text"].as_str().unwrap());
        for block in s["blocks"].as_array().unwrap() {
            if block["type"] == "header" {
                // plain_text: Slack shows it as written, with no links or mentions.
                assert!(!block.to_string().contains('\u{202E}'));
            } else {
                assert_inert_slack(&block.to_string());
            }
        }
        // One link per named change, its label unable to end the address part.
        let changes = s["blocks"].to_string();
        assert!(
            changes.contains("|0123456 acme/[Re-login](https://evil.example)"),
            "{changes}"
        );
        assert!(
            !changes.contains("|x ("),
            "a label's | is not Slack's: {changes}"
        );
        let card = teams(&d, &who).to_string();
        assert_inert_teams(&card);
        let t = text(&d, &who);
        assert!(!t.contains('\u{202E}'), "{t}");
        let html = email::html(&d, &who, None);
        assert!(!html.contains("<https://evil") && !html.contains('\u{202E}'));
        assert!(!html.contains("href=\"https://evil"), "{html}");
    }
}
