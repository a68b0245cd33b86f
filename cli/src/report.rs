//! `em-agent report`: the DORA table in the terminal, one row per figure of [`FIGURES`].

use em_metrics::dora::Figures;
use em_metrics::figures::FIGURES;
use serde::Deserialize;
use serde_json::Value;

use crate::error::CliError;

/// Renders a report (as JSON, so it works for a local or a remote API alike); an answer without the
/// figures is an error that says so.
pub fn render(r: &Value) -> Result<String, CliError> {
    let figures = Figures::deserialize(r)
        .map_err(|e| CliError::Invalid(format!("the answer holds no DORA figures: {e}")))?;
    let scope = match (r["scope"]["service"].as_str(), r["scope"]["team"].as_str()) {
        (Some(s), _) => format!("service {s}"),
        (None, Some(t)) => format!("team {t}"),
        _ => "all services".to_string(),
    };
    let rows: Vec<(&str, String, &str)> = FIGURES
        .iter()
        .map(|fig| {
            let value = (fig.value)(&figures).map_or_else(|| "n/a".into(), |v| fig.unit.show(v));
            let level = fig
                .level
                .and_then(|level_of| level_of(&figures))
                .map_or("—", |l| l.as_str());
            (
                fig.name,
                format!("{value} ({})", (fig.detail)(&figures)),
                level,
            )
        })
        .collect();
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
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use em_notify::duration;
    use serde_json::json;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(34_743.0), "9h 39m");
        assert_eq!(duration(400_116.0), "4d 15h");
        assert_eq!(duration(677.119), "11m 17s");
        assert_eq!(duration(5.0), "5s");
    }

    /// An API answer as `GET /v1/metrics/dora` gives it: 4 deployments over 7 days, 1 failed and rolled
    /// back (rework), 3 changes with a 2 h median, one incident recovered in 30 min.
    fn answer() -> Value {
        json!({
            "scope": {"service": "web", "team": null},
            "from": "2026-11-01T00:00:00Z", "to": "2026-11-08T00:00:00Z",
            "deployment_frequency": {"deployments": 4, "per_day": 0.5714285714285714, "level": "high"},
            "lead_time": {"changes": 3, "excluded": 1, "median_seconds": 7200.0, "p90_seconds": 10800.0,
                          "level": "high"},
            "change_failure_rate": {"deployments": 4, "failed": 1, "ratio": 0.25, "level": "medium"},
            "recovery_time": {"incidents": 1, "open": 0, "median_seconds": 1800.0, "level": "elite"},
            "rework_rate": {"deployments": 4, "rework": 1, "ratio": 0.25}
        })
    }

    #[test]
    fn each_figure_is_a_row_with_its_value_what_it_rests_on_and_its_level() {
        let text = render(&answer()).unwrap();
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip(3)
            .map(|l| {
                l.split("  ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .collect();
        assert!(text.starts_with(
            "DORA metrics for service web, 2026-11-01T00:00:00Z to 2026-11-08T00:00:00Z\n"
        ));
        assert_eq!(
            rows,
            vec![
                vec!["Deployment frequency", "0.57/day (4 deployments)", "high"],
                vec![
                    "Lead time for changes",
                    "2h 0m (median; p90 3h 0m; 3 changes, 1 excluded)",
                    "high"
                ],
                vec![
                    "Change failure rate",
                    "25.0% (1 of 4 deployments failed)",
                    "medium"
                ],
                vec![
                    "Failed deployment recovery",
                    "30m 0s (median; 1 recovered, 0 open)",
                    "elite"
                ],
                vec!["Rework rate", "25.0% (1 of 4 deployments)", "—"],
            ]
        );
    }

    #[test]
    fn a_window_with_nothing_to_measure_says_n_a_and_an_answer_without_figures_is_an_error() {
        let mut a = answer();
        a["lead_time"] = json!({"changes": 0, "excluded": 0, "median_seconds": null, "p90_seconds": null,
                                "level": null, "unlisted": 2});
        let text = render(&a).unwrap();
        assert!(
            text.contains(
                "n/a (median; p90 n/a; 0 changes, 0 excluded, 2 unlisted by their pushes)"
            ),
            "{text}"
        );
        assert!(render(&json!({"error": "unauthorized"})).is_err());
    }
}
