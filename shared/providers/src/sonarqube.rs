//! SonarQube and SonarCloud webhooks: each project analysis a quality report, signed with
//! `X-Sonar-Webhook-HMAC-SHA256: <hex HMAC-SHA256 of the body>` under the webhook's secret. SonarQube sends
//! no delivery id: a delivery is named by its analysis (`taskId`), which a retry repeats
//! (docs/providers/sonarqube.md).

use em_core::domain::{Fact, QualityReport};
use em_core::time::Timestamp;
use serde::Deserialize;

use crate::auth::{Auth, Hmac};
use crate::{parse_error, IdSource, ParseError, Provider};

const NAME: &str = "sonarqube";

pub const PROVIDER: Provider = Provider {
    name: NAME,
    title: "SonarQube",
    auth: Auth::Hmac(Hmac::sha256_hex_of_body(
        "X-Sonar-Webhook-HMAC-SHA256",
        "",
        None,
    )),
    delivery_id: &[IdSource::Body(&["taskId"])],
    event_header: None,
    events: &["analysis"],
    parse,
    sample: "branch-main-error",
    validate: false,
};

#[derive(Deserialize)]
struct Project {
    key: String,
}

#[derive(Deserialize)]
struct Branch {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct Condition {
    #[serde(default)]
    metric: String,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Deserialize)]
struct Gate {
    #[serde(default)]
    status: String,
    #[serde(default)]
    conditions: Vec<Condition>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Analysis {
    #[serde(default)]
    task_id: Option<String>,
    #[serde(default)]
    status: String,
    analysed_at: Timestamp,
    #[serde(default)]
    revision: Option<String>,
    project: Project,
    #[serde(default)]
    branch: Option<Branch>,
    #[serde(default)]
    quality_gate: Option<Gate>,
}

impl Gate {
    /// A condition's value, where the analysis measured it.
    fn value(&self, metric: &str) -> Option<&str> {
        self.conditions
            .iter()
            .find(|c| c.metric == metric)
            .and_then(|c| c.value.as_deref())
            .map(str::trim)
    }
}

/// A percentage (`"81.25"`) in hundredths of a percent, rounded; `None` when it is not one.
fn basis_points(percent: &str) -> Option<u32> {
    let v: f64 = percent.parse().ok()?;
    (v.is_finite() && (0.0..=100.0).contains(&v)).then(|| (v * 100.0).round() as u32)
}

fn parse(_event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
    let a: Analysis =
        serde_json::from_slice(body).map_err(|e| parse_error(NAME, "analysis", e))?;
    // An analysis that failed to run measured nothing.
    if !a.status.eq_ignore_ascii_case("SUCCESS") {
        return Ok(Vec::new());
    }
    let gate = a.quality_gate.as_ref();
    let passed = gate.and_then(|g| match g.status.as_str() {
        "OK" | "WARN" => Some(true),
        "ERROR" => Some(false),
        _ => None,
    });
    let time = a.analysed_at.0;
    Ok(vec![Fact::QualityReport(QualityReport {
        provider: NAME.into(),
        analysis_id: a
            .task_id
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| format!("{}@{time}", a.project.key)),
        repo: a.project.key,
        sha: a.revision.unwrap_or_default(),
        branch: a.branch.map(|b| b.name).unwrap_or_default(),
        time,
        passed,
        coverage_bp: gate.and_then(|g| g.value("coverage")).and_then(basis_points),
        new_issues: gate
            .and_then(|g| g.value("new_violations"))
            .and_then(|v| v.parse().ok()),
    })])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_is_kept_in_hundredths_of_a_percent() {
        assert_eq!(basis_points("81.25"), Some(8125));
        assert_eq!(basis_points("89.39828080229226"), Some(8940));
        assert_eq!(basis_points("0.0"), Some(0));
        assert_eq!(basis_points("100"), Some(10_000));
        assert_eq!(basis_points("101"), None);
        assert_eq!(basis_points("-1"), None);
        assert_eq!(basis_points("NaN"), None);
        assert_eq!(basis_points("A"), None);
    }
}
