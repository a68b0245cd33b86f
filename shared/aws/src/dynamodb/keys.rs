//! The table's keys: the fixed partitions and sort keys, and the builders of the others.

use chrono::{DateTime, Utc};

use em_core::time::Millis;

pub(super) const HEAD: &str = "#head";
pub(super) const DAYS: &str = "#days";
pub(crate) const SOURCES: &str = "src";
pub(super) const SERVICES: &str = "svc";
pub(super) const META: &str = "meta";

/// The sort key of part `k` (1, 2, ...) of push `before..after`: `pp#` sorts apart from the heads (`p#`),
/// and the number's width keeps the parts in order.
pub(crate) fn push_part_sk(before: &str, after: &str, k: usize) -> String {
    format!("pp#{before}#{after}#{k:05}")
}

pub(crate) fn repo_pk(repo: &str) -> String {
    format!("r#{}", repo.to_lowercase())
}

pub(crate) fn incident_pk(service_name: &str) -> String {
    format!("i#{service_name}")
}

pub(crate) fn metric_pk(service: &str) -> String {
    format!("m#{service}")
}

/// The UTC day of an instant, as the sort key writes it.
pub(super) fn day_text(t: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(t)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "0000-00-00".into())
}

pub(super) fn day_sk(generation: &str, day: &str, part: usize) -> String {
    format!("d#{generation}#{day}#{part:02}")
}

/// An instant as a sort key: 20 digits of its distance from `i64::MIN`, so that keys sort as instants do,
/// negative ones included.
pub(crate) fn tkey(t: Millis) -> String {
    format!("{:020}", (i128::from(t) - i128::from(i64::MIN)) as u64)
}

pub(super) fn prefix(text: &str, n: usize) -> String {
    text.chars().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_as_instants() {
        let times = [i64::MIN, -86_400_000, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        let keys: Vec<String> = times.iter().map(|t| tkey(*t)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert!(keys.iter().all(|k| k.len() == 20));
    }
}
