//! CloudWatch Embedded Metric Format: metrics as structured log lines that CloudWatch Logs turns into
//! metrics, with no PutMetricData call (no extra request, no extra permission, no latency).

use serde_json::{json, Map, Value};

use crate::time::Millis;

pub const NAMESPACE: &str = "EmAgent";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
    None,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
            Unit::None => "None",
        }
    }
}

/// One EMF line: the metrics share the dimensions given.
pub fn line(
    timestamp: Millis,
    dimensions: &[(&str, &str)],
    metrics: &[(&str, f64, Unit)],
) -> String {
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions.iter().map(|d| d.0).collect::<Vec<_>>()],
                "Metrics": metrics.iter().map(|m| json!({"Name": m.0, "Unit": m.2.as_str()})).collect::<Vec<_>>(),
            }]
        }),
    );
    for (k, v) in dimensions {
        root.insert((*k).into(), Value::String((*v).into()));
    }
    for (name, value, _) in metrics {
        root.insert((*name).into(), json!(value));
    }
    Value::Object(root).to_string()
}

/// Writes a line to stdout, where the Lambda runtime sends it to CloudWatch Logs. A stdout that cannot be
/// written (a full disk, a closed pipe) loses the line: `println!` would panic the request or the
/// aggregator that counted it.
pub fn emit(line: String) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out
        .write_all(line.as_bytes())
        .and_then(|()| out.write_all(b"\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_declare_their_metrics_and_dimensions() {
        let l = line(
            1_700_000_000_000,
            &[("Provider", "github"), ("Outcome", "accepted")],
            &[("Deliveries", 1.0, Unit::Count)],
        );
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000i64);
        let m = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "EmAgent");
        assert_eq!(m["Dimensions"][0], json!(["Provider", "Outcome"]));
        assert_eq!(
            m["Metrics"][0],
            json!({"Name": "Deliveries", "Unit": "Count"})
        );
        assert_eq!(v["Provider"], "github");
        assert_eq!(v["Deliveries"], 1.0);
    }
}
