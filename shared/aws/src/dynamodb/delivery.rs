//! The delivery facts of a window on DynamoDB. Each build, failed attempt and merge gets a time-ordered
//! index item under its repository (`T#<time>#<b|f|m>#...`) when stored, so a window's are one query per
//! repository; repositories that have any are listed under the sources item (`x#<repo>`) for queries over
//! every service. A merged pull request's other events and its merge commit's push are then read by key.

use std::collections::{BTreeMap, HashMap};

use em_core::domain::DeploymentOutcome;
use em_core::ports::{DeliveryFacts, MergedPullRequest, PortError};
use em_core::time::Millis;

use super::codec::{get_n, get_s, parse_build, parse_deployment, parse_pull_request, parse_push};
use super::keys::{metric_pk, repo_pk, tkey, SOURCES};
use super::store::{DynamoStore, Range};

/// Keeps the earliest of several reports of one fact (index items of reports with different times).
fn earliest<T>(items: Vec<(String, Millis, T)>) -> Vec<T> {
    let mut by_id: BTreeMap<String, (Millis, T)> = BTreeMap::new();
    for (id, t, v) in items {
        match by_id.get(&id) {
            Some((seen, _)) if *seen <= t => {}
            _ => {
                by_id.insert(id, (t, v));
            }
        }
    }
    by_id.into_values().map(|(_, v)| v).collect()
}

impl DynamoStore {
    async fn delivery_repos(&self) -> Result<Vec<String>, PortError> {
        let items = self
            .query_range(SOURCES, Range::BeginsWith("x#".into()), true, None)
            .await?;
        items.iter().map(|i| get_s(i, "name")).collect()
    }

    pub(crate) async fn delivery_facts(
        &self,
        repos: Option<Vec<String>>,
        from: Millis,
        to: Millis,
    ) -> Result<DeliveryFacts, PortError> {
        if from >= to {
            return Ok(DeliveryFacts::default());
        }
        let repos = match repos {
            Some(r) => r,
            None => self.delivery_repos().await?,
        };
        let mut builds = Vec::new();
        let mut failed = Vec::new();
        let mut merged = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for repo in repos {
            if !seen.insert(repo.to_lowercase()) {
                continue;
            }
            let items = self
                .query_range(
                    &repo_pk(&repo),
                    Range::Between(format!("T#{}", tkey(from)), format!("T#{}#~", tkey(to - 1))),
                    true,
                    None,
                )
                .await?;
            for item in items {
                let sk = get_s(&item, "sk")?;
                match sk.split('#').nth(2) {
                    Some("b") => {
                        let b = parse_build(&item)?;
                        let id = format!(
                            "{}#{}#{}#{}",
                            b.repo.to_lowercase(),
                            b.provider,
                            b.run_id,
                            b.attempt
                        );
                        builds.push((id, b.finished, b));
                    }
                    Some("f") => {
                        let mut d = parse_deployment(&item)?;
                        d.outcome = DeploymentOutcome::Failure;
                        let id = format!(
                            "{}#{}#{}",
                            d.repo.to_lowercase(),
                            d.provider,
                            d.deployment_id
                        );
                        failed.push((id, d.time, d));
                    }
                    Some("m") => {
                        let p = parse_pull_request(&item)?;
                        let id = format!("{}#{}#{}", p.repo.to_lowercase(), p.provider, p.number);
                        merged.push((id, p.time, p));
                    }
                    _ => {}
                }
            }
        }
        let merged = earliest(merged);
        let pull_requests = self.stages(merged).await?;
        Ok(DeliveryFacts {
            builds: earliest(builds),
            failed_attempts: earliest(failed),
            pull_requests,
        })
    }

    /// The stages of merged pull requests: their other events, their merge commit in full and the
    /// earliest commit of the push that brought it, each read by key.
    async fn stages(
        &self,
        merged: Vec<em_core::domain::PullRequestEvent>,
    ) -> Result<Vec<MergedPullRequest>, PortError> {
        let mut keys = Vec::new();
        for p in &merged {
            for kind in ["opened", "reviewed", "approved"] {
                keys.push((
                    repo_pk(&p.repo),
                    format!("q#{}#{}#{}", p.provider, p.number, kind),
                ));
            }
        }
        let mut events: HashMap<(String, String), Millis> = HashMap::new();
        for item in self.batch_get(keys).await? {
            events.insert(
                (get_s(&item, "pk")?, get_s(&item, "sk")?),
                get_n(&item, "time")?,
            );
        }
        let mut out = Vec::with_capacity(merged.len());
        for p in merged {
            let at = |kind: &str| {
                events
                    .get(&(
                        repo_pk(&p.repo),
                        format!("q#{}#{}#{}", p.provider, p.number, kind),
                    ))
                    .copied()
            };
            let approved = at("approved");
            let first_review = match (at("reviewed"), approved) {
                (Some(r), Some(a)) => Some(r.min(a)),
                (r, a) => r.or(a),
            };
            let sha = match p.sha {
                Some(sha) if sha.len() < 40 => {
                    Some(self.full_sha(&p.repo, &sha).await?.unwrap_or(sha))
                }
                other => other,
            };
            out.push(MergedPullRequest {
                opened: at("opened"),
                first_review,
                approved,
                first_commit: None,
                merged: p.time,
                sha,
                provider: p.provider,
                repo: p.repo,
                number: p.number,
            });
        }
        self.first_commits(&mut out).await?;
        Ok(out)
    }

    /// The one known commit of `repo` whose sha starts with `prefix`.
    pub(crate) async fn full_sha(
        &self,
        repo: &str,
        prefix: &str,
    ) -> Result<Option<String>, PortError> {
        let hits = self
            .query_range(
                &repo_pk(repo),
                Range::BeginsWith(format!("c#{prefix}")),
                true,
                Some(2),
            )
            .await?;
        Ok(match hits.as_slice() {
            [one] => Some(get_s(one, "sha")?),
            _ => None,
        })
    }

    /// Fills in each pull request's first commit: the earliest of the push that first listed its merge
    /// commit (the commit item names that push).
    async fn first_commits(&self, prs: &mut [MergedPullRequest]) -> Result<(), PortError> {
        let commit_keys: Vec<(String, String)> = prs
            .iter()
            .filter_map(|p| Some((repo_pk(&p.repo), format!("c#{}", p.sha.as_ref()?))))
            .collect();
        let mut push_of: HashMap<(String, String), (String, String)> = HashMap::new();
        for item in self.batch_get(commit_keys).await? {
            push_of.insert(
                (get_s(&item, "pk")?, get_s(&item, "sk")?),
                (get_s(&item, "pb")?, get_s(&item, "pa")?),
            );
        }
        let push_keys: Vec<(String, String)> = push_of
            .iter()
            .map(|((pk, _), (b, a))| (pk.clone(), format!("p#{b}#{a}")))
            .collect();
        let mut earliest: HashMap<(String, String), Millis> = HashMap::new();
        for item in self.batch_get(push_keys).await? {
            // Pushes name their earliest commit time; those stored before that have all their commits in
            // the one item.
            let first = match item.get("first_time") {
                Some(_) => Some(get_n(&item, "first_time")?),
                None => parse_push(&item, &[])?.commits.iter().map(|c| c.time).min(),
            };
            if let Some(t) = first {
                earliest.insert((get_s(&item, "pk")?, get_s(&item, "sk")?), t);
            }
        }
        for p in prs {
            let Some(sha) = &p.sha else { continue };
            let pk = repo_pk(&p.repo);
            if let Some((b, a)) = push_of.get(&(pk.clone(), format!("c#{sha}"))) {
                p.first_commit = earliest.get(&(pk, format!("p#{b}#{a}"))).copied();
            }
        }
        Ok(())
    }

    /// When `service` shipped each of `shas` that it did: the change items, read by key.
    pub(crate) async fn shipped_shas(
        &self,
        service: &str,
        shas: Vec<String>,
    ) -> Result<Vec<(String, Millis)>, PortError> {
        let keys = shas
            .iter()
            .map(|sha| (metric_pk(service), format!("C#{sha}")))
            .collect();
        let mut out = Vec::new();
        for item in self.batch_get(keys).await? {
            let sk = get_s(&item, "sk")?;
            if let Some(sha) = sk.strip_prefix("C#") {
                out.push((sha.to_string(), get_n(&item, "deployment_time")?));
            }
        }
        Ok(out)
    }
}
