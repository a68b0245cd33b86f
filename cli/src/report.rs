//! `em-agent report`: the DORA table in the terminal.

use em_notify::duration;
use serde_json::Value;

fn pct(ratio: Option<f64>) -> String {
    ratio.map_or("n/a".into(), |r| format!("{:.1}%", r * 100.0))
}

fn level(v: &Value) -> String {
    v.as_str().unwrap_or("—").to_string()
}

/// Renders a report (as JSON, so it works for a local or a remote API alike).
pub fn render(r: &Value) -> String {
    let scope = match (r["scope"]["service"].as_str(), r["scope"]["team"].as_str()) {
        (Some(s), _) => format!("service {s}"),
        (None, Some(t)) => format!("team {t}"),
        _ => "all services".to_string(),
    };
    let df = &r["deployment_frequency"];
    let lt = &r["lead_time"];
    let cfr = &r["change_failure_rate"];
    let rt = &r["recovery_time"];
    let rw = &r["rework_rate"];
    let opt_dur = |v: &Value| v.as_f64().map_or("n/a".into(), duration);
    let rows = [
        (
            "Deployment frequency",
            format!(
                "{} deployments, {:.2}/day",
                df["deployments"],
                df["per_day"].as_f64().unwrap_or_default()
            ),
            level(&df["level"]),
        ),
        (
            "Lead time for changes",
            format!(
                "median {}, p90 {} ({} changes, {} excluded{})",
                opt_dur(&lt["median_seconds"]),
                opt_dur(&lt["p90_seconds"]),
                lt["changes"],
                lt["excluded"],
                // Said only when some commits went unlisted: most histories have none.
                match lt["unlisted"].as_u64() {
                    Some(n) if n > 0 => format!(", {n} unlisted by their pushes"),
                    _ => String::new(),
                }
            ),
            level(&lt["level"]),
        ),
        (
            "Change failure rate",
            format!(
                "{} ({} of {})",
                pct(cfr["ratio"].as_f64()),
                cfr["failed"],
                cfr["deployments"]
            ),
            level(&cfr["level"]),
        ),
        (
            "Failed deployment recovery",
            format!(
                "median {} ({} recovered, {} open)",
                opt_dur(&rt["median_seconds"]),
                rt["incidents"],
                rt["open"]
            ),
            level(&rt["level"]),
        ),
        (
            "Rework rate",
            format!(
                "{} ({} of {})",
                pct(rw["ratio"].as_f64()),
                rw["rework"],
                rw["deployments"]
            ),
            "—".to_string(),
        ),
    ];
    let mut out = format!(
        "DORA metrics for {scope}, {} to {}\n\n",
        r["from"].as_str().unwrap_or_default(),
        r["to"].as_str().unwrap_or_default()
    );
    let w = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    out.push_str(&format!("{:<28}{:<w$}  {}\n", "METRIC", "VALUE", "LEVEL"));
    for (name, value, level) in rows {
        out.push_str(&format!("{name:<28}{value:<w$}  {level}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(34_743.0), "9h 39m");
        assert_eq!(duration(400_116.0), "4d 15h");
        assert_eq!(duration(677.119), "11m 17s");
        assert_eq!(duration(5.0), "5s");
    }
}
