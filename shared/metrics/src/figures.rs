//! The five DORA figures, declared once: what each is called, which value heads it, in what unit, its
//! level, the counts behind it, its change against the period before and its CloudWatch metrics. The
//! digest's figure lines, the aggregator's EMF lines and `em-agent report` iterate over [`FIGURES`]; adding
//! a figure is its computation in `dora.rs`, its field in [`Figures`] and [`Trends`], and its entry here
//! (docs/adding-a-figure.md).

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

impl Unit {
    /// A value as people read it: `0.57/day`, `9h 39m`, `12.5%`.
    pub fn show(self, v: f64) -> String {
        match self {
            Unit::PerDay => format!("{v:.2}/day"),
            Unit::Seconds => duration(v),
            Unit::Ratio => format!("{:.1}%", v * 100.0),
        }
    }
}

/// A duration for people: `2d 3h`, `4h 5m`, `6m 7s`, `8s`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.round() as i64;
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3_600, (s % 3_600) / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", s % 60)
    } else {
        format!("{s}s")
    }
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
    /// What the headline value rests on, as the report's table says it after the value.
    pub detail: fn(&Figures) -> String,
    /// Its change against the period before.
    pub trend: fn(&Trends) -> &Trend,
    /// The CloudWatch metric the aggregator publishes it as.
    pub metric: &'static str,
    /// A count the aggregator publishes beside it, if any.
    pub count: Option<Count>,
}

/// A count published beside a figure: its CloudWatch metric and how it is counted.
pub type Count = (&'static str, fn(&Figures) -> u64);

fn duration_or_na(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), duration)
}

/// The five figures, in the order every message lists them.
pub static FIGURES: [Figure; 5] = [
    Figure {
        name: "Deployment frequency",
        headline: "Deployment frequency",
        unit: Unit::PerDay,
        value: |f| Some(f.deployment_frequency.per_day),
        level: Some(|f| Some(f.deployment_frequency.level)),
        detail: |f| format!("{} deployments", f.deployment_frequency.deployments),
        trend: |t| &t.deployments_per_day,
        metric: "DeploymentsPerDay",
        count: Some(("Deployments", |f| f.deployment_frequency.deployments)),
    },
    Figure {
        name: "Lead time for changes",
        headline: "Lead time (median)",
        unit: Unit::Seconds,
        value: |f| f.lead_time.median_seconds,
        level: Some(|f| f.lead_time.level),
        detail: |f| {
            let lt = &f.lead_time;
            // Said only when some commits went unlisted: most histories have none.
            let unlisted = match lt.unlisted {
                0 => String::new(),
                n => format!(", {n} unlisted by their pushes"),
            };
            format!(
                "median; p90 {}; {} changes, {} excluded{unlisted}",
                duration_or_na(lt.p90_seconds),
                lt.changes,
                lt.excluded
            )
        },
        trend: |t| &t.lead_time_median_seconds,
        metric: "LeadTimeMedianSeconds",
        count: None,
    },
    Figure {
        name: "Change failure rate",
        headline: "Change failure rate",
        unit: Unit::Ratio,
        value: |f| f.change_failure_rate.ratio,
        level: Some(|f| f.change_failure_rate.level),
        detail: |f| {
            let c = &f.change_failure_rate;
            format!("{} of {} deployments failed", c.failed, c.deployments)
        },
        trend: |t| &t.change_failure_rate,
        metric: "ChangeFailureRate",
        count: None,
    },
    Figure {
        name: "Failed deployment recovery",
        headline: "Time to restore (median)",
        unit: Unit::Seconds,
        value: |f| f.recovery_time.median_seconds,
        level: Some(|f| f.recovery_time.level),
        detail: |f| {
            let r = &f.recovery_time;
            format!("median; {} recovered, {} open", r.incidents, r.open)
        },
        trend: |t| &t.recovery_time_median_seconds,
        metric: "RecoveryMedianSeconds",
        count: None,
    },
    Figure {
        name: "Rework rate",
        headline: "Rework rate",
        unit: Unit::Ratio,
        value: |f| f.rework_rate.ratio,
        level: None,
        detail: |f| {
            let r = &f.rework_rate;
            format!("{} of {} deployments", r.rework, r.deployments)
        },
        trend: |t| &t.rework_rate,
        metric: "ReworkRate",
        count: None,
    },
];
