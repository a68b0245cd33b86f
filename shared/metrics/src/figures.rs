//! The five DORA figures, declared once: what each is called, which value heads it, in what unit, its
//! level, its change against the period before and its CloudWatch metric. The digest's figure lines and the
//! aggregator's EMF lines iterate over [`FIGURES`]; adding a figure is its computation in `dora.rs`, its
//! field in [`Figures`] and [`Trends`], and its entry here (docs/adding-a-figure.md).

use crate::digest::{Trend, Trends};
use crate::dora::Figures;
use crate::levels::Level;

/// How a figure's headline value reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Deployments a day.
    PerDay,
    /// A duration.
    Seconds,
    /// A share of deployments, 0 to 1.
    Ratio,
}

/// One figure.
pub struct Figure {
    /// The figure's name, as the report's table calls it.
    pub name: &'static str,
    /// The name of its headline value, as a digest lists it.
    pub headline: &'static str,
    pub unit: Unit,
    /// The headline value; `None` when the window has nothing to measure.
    pub value: fn(&Figures) -> Option<f64>,
    /// Its level, for a figure that has levels.
    pub level: Option<fn(&Figures) -> Option<Level>>,
    /// Its change against the period before.
    pub trend: fn(&Trends) -> &Trend,
    /// The CloudWatch metric the aggregator publishes it as.
    pub metric: &'static str,
}

/// The five figures, in the order every message lists them.
pub static FIGURES: [Figure; 5] = [
    Figure {
        name: "Deployment frequency",
        headline: "Deployment frequency",
        unit: Unit::PerDay,
        value: |f| Some(f.deployment_frequency.per_day),
        level: Some(|f| Some(f.deployment_frequency.level)),
        trend: |t| &t.deployments_per_day,
        metric: "DeploymentsPerDay",
    },
    Figure {
        name: "Lead time for changes",
        headline: "Lead time (median)",
        unit: Unit::Seconds,
        value: |f| f.lead_time.median_seconds,
        level: Some(|f| f.lead_time.level),
        trend: |t| &t.lead_time_median_seconds,
        metric: "LeadTimeMedianSeconds",
    },
    Figure {
        name: "Change failure rate",
        headline: "Change failure rate",
        unit: Unit::Ratio,
        value: |f| f.change_failure_rate.ratio,
        level: Some(|f| f.change_failure_rate.level),
        trend: |t| &t.change_failure_rate,
        metric: "ChangeFailureRate",
    },
    Figure {
        name: "Failed deployment recovery",
        headline: "Time to restore (median)",
        unit: Unit::Seconds,
        value: |f| f.recovery_time.median_seconds,
        level: Some(|f| f.recovery_time.level),
        trend: |t| &t.recovery_time_median_seconds,
        metric: "RecoveryMedianSeconds",
    },
    Figure {
        name: "Rework rate",
        headline: "Rework rate",
        unit: Unit::Ratio,
        value: |f| f.rework_rate.ratio,
        level: None,
        trend: |t| &t.rework_rate,
        metric: "ReworkRate",
    },
];
