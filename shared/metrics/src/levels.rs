//! Performance levels: the DORA 2023 bands as the peers use them. Versioned so a change of bands is visible.

use serde::{Deserialize, Serialize};

/// The version of the band table below.
pub const BANDS_VERSION: &str = "dora-2023";

const DAY: f64 = 86_400.0;
const HOUR: f64 = 3_600.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Elite,
    High,
    Medium,
    Low,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Elite => "elite",
            Level::High => "high",
            Level::Medium => "medium",
            Level::Low => "low",
        }
    }
}

/// Deployments a day: elite ≥ 1, high ≥ 1/7, medium ≥ 1/30, else low (also with no deployment).
pub fn deployment_frequency(per_day: f64) -> Level {
    if per_day >= 1.0 {
        Level::Elite
    } else if per_day >= 1.0 / 7.0 {
        Level::High
    } else if per_day >= 1.0 / 30.0 {
        Level::Medium
    } else {
        Level::Low
    }
}

/// Median lead time: elite < 1 day, high < 7 days, medium < 30 days, else low.
pub fn lead_time(median_seconds: f64) -> Level {
    if median_seconds < DAY {
        Level::Elite
    } else if median_seconds < 7.0 * DAY {
        Level::High
    } else if median_seconds < 30.0 * DAY {
        Level::Medium
    } else {
        Level::Low
    }
}

/// Change failure ratio: elite ≤ 5 %, high ≤ 10 %, medium ≤ 15 %, else low.
pub fn change_failure_rate(ratio: f64) -> Level {
    if ratio <= 0.05 {
        Level::Elite
    } else if ratio <= 0.10 {
        Level::High
    } else if ratio <= 0.15 {
        Level::Medium
    } else {
        Level::Low
    }
}

/// Median recovery time: elite < 1 hour, high < 1 day, medium < 7 days, else low.
pub fn recovery_time(median_seconds: f64) -> Level {
    if median_seconds < HOUR {
        Level::Elite
    } else if median_seconds < DAY {
        Level::High
    } else if median_seconds < 7.0 * DAY {
        Level::Medium
    } else {
        Level::Low
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_edges() {
        assert_eq!(deployment_frequency(1.0), Level::Elite);
        assert_eq!(deployment_frequency(1.0 / 7.0), Level::High);
        assert_eq!(deployment_frequency(0.99 / 7.0), Level::Medium);
        assert_eq!(deployment_frequency(0.0), Level::Low);
        assert_eq!(lead_time(DAY - 1.0), Level::Elite);
        assert_eq!(lead_time(DAY), Level::High);
        assert_eq!(lead_time(30.0 * DAY), Level::Low);
        assert_eq!(change_failure_rate(0.05), Level::Elite);
        assert_eq!(change_failure_rate(0.1), Level::High);
        assert_eq!(change_failure_rate(0.15), Level::Medium);
        assert_eq!(change_failure_rate(0.151), Level::Low);
        assert_eq!(recovery_time(HOUR), Level::High);
        assert_eq!(recovery_time(7.0 * DAY), Level::Low);
    }
}
