//! Day items: a service's observations by day, as blobs split into parts that fit an item, and the day
//! items a replacement puts or deletes.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_dynamodb::types::AttributeValue;

use super::codec::Item;
use super::keys::{day_sk, day_text, metric_pk, DAYS};
use super::store::DynamoStore;
use em_core::ports::PortError;
use em_core::rows::{blob, Linked, Observations};

/// Observations per day item: at most 29 bytes each keeps an item well under DynamoDB's 400 KB.
const ROWS_PER_PART: usize = 8_000;

/// A service's rows as observation blobs by day, each day split into parts that fit in an item.
pub(super) fn days_of(linked: &Linked) -> BTreeMap<String, Vec<Vec<u8>>> {
    em_core::rows::days_of(linked)
        .into_iter()
        .map(|(day, obs)| (day_text(day * em_core::rows::DAY), split(obs)))
        .collect()
}

fn split(obs: Observations) -> Vec<Vec<u8>> {
    let total = obs.deployments.len() + obs.changes.len() + obs.incidents.len();
    if total <= ROWS_PER_PART {
        return vec![blob::encode(&obs)];
    }
    let mut parts = Vec::new();
    let empty = || Observations {
        origins: obs.origins.clone(),
        ..Default::default()
    };
    let mut part = empty();
    let full = |p: &Observations| {
        p.deployments.len() + p.changes.len() + p.incidents.len() >= ROWS_PER_PART
    };
    for d in &obs.deployments {
        part.deployments.push(*d);
        if full(&part) {
            parts.push(blob::encode(&std::mem::replace(&mut part, empty())));
        }
    }
    for c in &obs.changes {
        part.changes.push(*c);
        if full(&part) {
            parts.push(blob::encode(&std::mem::replace(&mut part, empty())));
        }
    }
    for i in &obs.incidents {
        part.incidents.push(*i);
        if full(&part) {
            parts.push(blob::encode(&std::mem::replace(&mut part, empty())));
        }
    }
    if part.deployments.len() + part.changes.len() + part.incidents.len() > 0 {
        parts.push(blob::encode(&part));
    }
    parts
}

/// The part count a legacy day digest (`parts:hash`) gives.
fn part_count(digest: &str) -> usize {
    digest
        .split(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// What a replacement changes: row items (put, or deleted when `None`) and the day observations before and
/// after.
pub(super) struct Changes {
    pub(super) rows: Vec<(String, Option<Item>)>,
    pub(super) old_days: BTreeMap<String, Vec<Vec<u8>>>,
    pub(super) new_days: BTreeMap<String, Vec<Vec<u8>>>,
    /// Day items may not match the rows (a dead writer's): write every day.
    pub(super) takeover: bool,
}

impl Changes {
    /// The day items to put or delete in generation `g`: those of days whose observations changed.
    pub(super) fn day_ops(
        &self,
        service: &str,
        g: &str,
        store: &DynamoStore,
    ) -> Vec<(String, Option<Item>)> {
        let days: BTreeSet<&String> = self.old_days.keys().chain(self.new_days.keys()).collect();
        let mut out = Vec::new();
        for day in days {
            let (old, new) = (self.old_days.get(day), self.new_days.get(day));
            if old == new && !self.takeover {
                continue;
            }
            let new = new.map_or(&[][..], Vec::as_slice);
            for (i, rows) in new.iter().enumerate() {
                out.push((
                    day_sk(g, day, i),
                    Some(store.day_item(service, g, day, i, rows)),
                ));
            }
            for i in new.len()..old.map_or(0, Vec::len) {
                out.push((day_sk(g, day, i), None));
            }
        }
        out
    }

    pub(super) fn old_day_keys(&self, g: &str) -> Vec<String> {
        self.old_days
            .iter()
            .flat_map(|(day, parts)| (0..parts.len()).map(move |i| day_sk(g, day, i)))
            .collect()
    }
}

impl DynamoStore {
    pub(super) async fn day_digests(
        &self,
        service: &str,
    ) -> Result<BTreeMap<String, String>, PortError> {
        let Some(item) = self.get(metric_pk(service), DAYS, true).await? else {
            return Ok(BTreeMap::new());
        };
        Ok(item
            .get("days")
            .and_then(|v| v.as_m().ok())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_s().ok()?.clone())))
                    .collect()
            })
            .unwrap_or_default())
    }

    pub(super) fn day_item(
        &self,
        service: &str,
        generation: &str,
        day: &str,
        part: usize,
        rows: &[u8],
    ) -> Item {
        let mut item = self.key(metric_pk(service), day_sk(generation, day, part));
        item.insert(
            "rows".into(),
            AttributeValue::B(aws_smithy_types::Blob::new(rows.to_vec())),
        );
        item
    }

    /// The keys of every day item a digest map describes.
    pub(super) fn day_keys(generation: &str, digests: &BTreeMap<String, String>) -> Vec<String> {
        digests
            .iter()
            .flat_map(|(day, d)| (0..part_count(d)).map(move |p| day_sk(generation, day, p)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use em_core::rows::{ChangeRow, DeploymentRow, DAY};

    #[test]
    fn days_split_into_parts_that_fit_an_item() {
        let change = |i: i64| ChangeRow {
            sha: format!("{i}"),
            repo: "r".into(),
            environment: "production".into(),
            deployment_key: "k".into(),
            deployment_time: 2 * DAY + i,
            commit_time: 2 * DAY,
            unlisted: 0,
        };
        let linked = Linked {
            deployments: vec![DeploymentRow {
                key: "k".into(),
                repo: "r".into(),
                environment: "production".into(),
                time: DAY + 5,
                sha: "a".into(),
                frontier: None,
                failed: true,
                rework: false,
                rollback: false,
            }],
            changes: (0..(ROWS_PER_PART as i64 + 1)).map(change).collect(),
            incidents: vec![],
        };
        let days = days_of(&linked);
        assert_eq!(
            days.keys().collect::<Vec<_>>(),
            ["1970-01-02", "1970-01-03"]
        );
        assert_eq!(days["1970-01-03"].len(), 2);
        assert!(days["1970-01-03"].iter().all(|p| p.len() < 400_000));
        let back: usize = days["1970-01-03"]
            .iter()
            .map(|p| blob::decode(p, "s").unwrap().changes.len())
            .sum();
        assert_eq!(back, ROWS_PER_PART + 1);
        assert_eq!(part_count("2:0a1b"), 2);
    }
}
