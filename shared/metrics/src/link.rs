//! Incremental linking: which changes each deployment ships, which deployment each incident is attributed
//! to, which deployments failed, were rolled back or were rework — re-done only from the earliest point a
//! batch of facts can change, with the rows before that point as the link state.
//!
//! The rules ([`crate::rules`], shared with [`crate::derive`], the reference):
//! - a deployment ships every commit reachable from its sha through the pushes' parent links that no earlier
//!   deployment shipped;
//! - a deployment of a sha deployed before the immediately previous deployment (and different from the
//!   previous one) is a rollback: it is rework and the previous deployment failed;
//! - an incident is attributed to the latest deployment at or before its opening, within the attribution
//!   window: that deployment failed;
//! - a deployment that ships a revert or hotfix, or goes out while an incident attributed to an earlier
//!   deployment is open, is rework.
//!
//! Where each fact kind cuts ([`cut_for`]) follows from them: a deployment at `t` changes rows from the
//! deployment before `t` on (that one's rolled-back flag); an incident opened at `o` changes rows from
//! `o - window` on; a push changes rows from the deployment before the earliest deployment whose change walk
//! stopped at one of its commits. Rows before the cut are read, never rewritten: the two deployments before
//! it, the shas deployed and commits shipped before it, the incidents open across it.

use std::collections::{BTreeMap, HashMap, HashSet};

use em_core::config::Config;
use em_core::domain::{Fact, IncidentEventKind, IncidentSpan, NULL_SHA};
use em_core::ports::{CommitRow, Cut, Links, PortError};
use em_core::rows::{Attribution, ChangeRow, DeploymentRow, IncidentRow, Linked};
use em_core::time::Millis;

use crate::rules::{self, Report};
use em_core::domain::same_sha;

/// One service and where its facts come from.
#[derive(Debug, Clone)]
pub struct Service<'a> {
    pub name: &'a str,
    pub repos: Vec<String>,
    pub aliases: Vec<String>,
    pub config: &'a Config,
}

impl<'a> Service<'a> {
    pub fn of(config: &'a Config, name: &'a str) -> Self {
        Service {
            name,
            repos: config.repositories_of(name),
            aliases: config.aliases_of(name),
            config,
        }
    }

    fn owns_repo(&self, repo: &str) -> bool {
        self.repos.iter().any(|r| r.eq_ignore_ascii_case(repo))
    }

    fn owns_alias(&self, alias: &str) -> bool {
        self.aliases.iter().any(|a| a == alias)
    }
}

/// What a batch of new facts asks of one service: where to re-link from, and the incidents it touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Work {
    pub cut: Cut,
    pub incidents: Vec<String>,
}

/// Whether the facts a cut is worked out for are stored yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Not yet: a push's commits are compared with those known before it.
    NotYet,
    /// Already (a write that lost a race, re-linking from state another writer changed): every pushed
    /// commit is taken to be new or re-parented, which can only widen the cut.
    Already,
}

/// Where re-linking must start for `facts`; `None` when they change no row.
pub async fn cut_for<L: Links>(
    links: &L,
    service: &Service<'_>,
    facts: &[&Fact],
    stored: Stored,
) -> Result<Option<Work>, PortError> {
    if !links.keeps_rows() {
        return Ok(Some(Work::all(service, facts)));
    }
    let mut cut: Option<Cut> = None;
    let mut widen = |c: Cut| cut = Some(cut.map_or(c, |x| x.min(c)));
    let window = service.config.attribution_window();
    let mut opened: BTreeMap<&str, Option<Millis>> = BTreeMap::new();
    // Deployments cut from the one before the earliest of them; pushes are looked up together per repository.
    let mut earliest_deployment: BTreeMap<String, Millis> = BTreeMap::new();
    let mut pushed: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for fact in facts {
        match fact {
            Fact::Deployment(d) => {
                if d.outcome != em_core::domain::DeploymentOutcome::Success
                    || !service.owns_repo(&d.repo)
                    || !service.config.is_production(&d.environment, d.production)
                {
                    continue;
                }
                let t = earliest_deployment
                    .entry(d.repo.to_lowercase())
                    .or_insert(d.time);
                *t = (*t).min(d.time);
            }
            Fact::Push(p) => {
                if !service.owns_repo(&p.repo) {
                    continue;
                }
                let commits = pushed.entry(p.repo.as_str()).or_default();
                let mut parent = p.before.as_str();
                for c in &p.commits {
                    commits.push((c.sha.as_str(), parent));
                    parent = c.sha.as_str();
                }
            }
            Fact::Incident(i) => {
                if !service.owns_alias(&i.service_name) {
                    continue;
                }
                let slot = opened.entry(i.incident_id.as_str()).or_insert(None);
                if i.kind == IncidentEventKind::Opened {
                    *slot = Some(slot.map_or(i.time, |t| t.min(i.time)));
                }
            }
            // Pull requests, builds and work items change no link.
            Fact::PullRequest(_) | Fact::Build(_) | Fact::WorkItem(_) | Fact::QualityReport(_) => {}
        }
    }
    for (repo, t) in &earliest_deployment {
        widen(before(links, service, repo, *t).await?);
    }
    for (repo, commits) in pushed {
        // Commits that are new, or that a push gives another parent, change what reaches them.
        let shas: Vec<String> = commits.iter().map(|(sha, _)| sha.to_string()).collect();
        let known: BTreeMap<String, String> = match stored {
            Stored::NotYet => links
                .commits(repo, &shas)
                .await?
                .into_iter()
                .map(|c| (c.sha, c.parent))
                .collect(),
            Stored::Already => BTreeMap::new(),
        };
        let changed: Vec<String> = commits
            .iter()
            .filter(|(sha, _)| !known.contains_key(*sha))
            .map(|(sha, _)| sha.to_string())
            .collect();
        if !changed.is_empty() {
            if let Some(d) = links.waiting_on(service.name, &changed).await? {
                widen(before(links, service, &d.repo, d.time).await?);
            }
        }
        for (sha, parent) in commits {
            let reparented = match stored {
                Stored::NotYet => known.get(sha).is_some_and(|p| p != parent),
                Stored::Already => true,
            };
            if reparented {
                if let Some(t) = links.shipped_at(service.name, sha).await? {
                    widen(before(links, service, repo, t).await?);
                }
            }
        }
    }
    let incidents: Vec<String> = opened.keys().map(|s| s.to_string()).collect();
    if !incidents.is_empty() {
        let stored: BTreeMap<String, Millis> = links
            .incident_rows(service.name, &incidents)
            .await?
            .into_iter()
            .map(|r| (r.id, r.opened))
            .collect();
        for (id, t) in &opened {
            // An incident never seen triggered has no row and changes none until its trigger arrives.
            let earliest = [*t, stored.get(*id).copied()].into_iter().flatten().min();
            // An outage it joins began at most one window before it (and, begun before it, keeps the
            // attribution it had, through the deployment before the cut); one it begins is attributed
            // within one window.
            if let Some(o) = earliest {
                widen(Cut::From(o - window));
            }
        }
    }
    Ok(cut.map(|cut| Work { cut, incidents }))
}

impl Work {
    /// A whole re-link, for a store without link state or a configuration change.
    pub fn all(service: &Service<'_>, facts: &[&Fact]) -> Work {
        Work {
            cut: Cut::All,
            incidents: touched_incidents(service, facts),
        }
    }

    /// `work` re-linking from `unsettled` at the latest (rows a store cannot vouch for).
    pub fn widened(
        work: Option<Work>,
        unsettled: Option<Cut>,
        service: &Service<'_>,
        facts: &[&Fact],
    ) -> Option<Work> {
        match (work, unsettled) {
            (w, None) => w,
            (Some(w), Some(u)) => Some(Work {
                cut: w.cut.min(u),
                ..w
            }),
            (None, Some(u)) => Some(Work {
                cut: u,
                incidents: touched_incidents(service, facts),
            }),
        }
    }
}

fn touched_incidents(service: &Service<'_>, facts: &[&Fact]) -> Vec<String> {
    let mut ids: Vec<String> = facts
        .iter()
        .filter_map(|f| match f {
            Fact::Incident(i) if service.owns_alias(&i.service_name) => Some(i.incident_id.clone()),
            _ => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The cut for a change at `t` to a deployment of `repo`: the earlier of the repository's deployment before
/// it (whose rolled-back flag the change may set) and the service's (which may lose incidents to it).
async fn before<L: Links>(
    links: &L,
    service: &Service<'_>,
    repo: &str,
    t: Millis,
) -> Result<Cut, PortError> {
    let in_repo = links
        .deployment_rows_before(service.name, Some(repo), t, "", 1)
        .await?;
    let in_service = links
        .deployment_rows_before(service.name, None, t, "", 1)
        .await?;
    let earliest = in_repo
        .iter()
        .chain(in_service.iter())
        .map(|d| d.time)
        .min();
    Ok(Cut::From(earliest.map_or(t, |e| e.min(t))))
}

struct Dep {
    key: String,
    repo: String,
    environment: String,
    sha: String,
    time: Millis,
    /// Signalled by the provider as a rollback of the previous deployment.
    rollback: bool,
    /// Signalled by the provider as restoring an earlier version after a failed attempt.
    rework: bool,
}

/// One re-linked deployment's state, which each phase of [`relink`] adds to.
struct Linking {
    dep: Dep,
    /// The commit its sha names (a short sha resolved to a known commit), else the sha as reported.
    sha: String,
    /// The commit its change walk stopped at because it is not known yet: a push to come may extend it.
    frontier: Option<String>,
    /// It ships a revert or a hotfix ([`rules::is_rework_message`]).
    ships_rework: bool,
    /// It is a rollback ([`rules::is_rollback`]).
    rollback: bool,
    /// A later deployment of its repository rolled it back.
    rolled_back: bool,
    /// An incident is attributed to it.
    has_incident: bool,
}

impl Linking {
    fn of(dep: Dep) -> Linking {
        Linking {
            sha: dep.sha.clone(),
            dep,
            frontier: None,
            ships_rework: false,
            rollback: false,
            rolled_back: false,
            has_incident: false,
        }
    }
}

/// An incident open across the re-linked deployments, and the deployment it is attributed to: a re-linked
/// one (its index) or, `None`, one before the cut.
struct OpenIncident {
    attributed: Option<usize>,
    opened: Millis,
    resolved: Option<Millis>,
}

/// Each repository's deployment row just before the cut, read once per re-link (by lower-cased
/// repository): the duplicate rule and the rollback rule both start from it.
type RowsBeforeCut = HashMap<String, Option<DeploymentRow>>;

/// Re-links one service from `work.cut`: the rows at or after it, for [`em_core::ports::Store::replace_rows`].
/// Linking runs in phases over one state per deployment, each phase one rule of [`crate::rules`].
pub async fn relink<L: Links>(
    links: &L,
    service: &Service<'_>,
    work: &Work,
) -> Result<Linked, PortError> {
    let from = work.cut.from();
    let deps = production_deployments(links, service, from).await?;
    let (deps, before_cut) = without_reports_of_one_deployment(links, service, from, deps).await?;
    let mut linking: Vec<Linking> = deps.into_iter().map(Linking::of).collect();
    let changes = ship_changes(links, service, from, &mut linking).await?;
    mark_rollbacks(links, service, from, &before_cut, &mut linking).await?;
    let (incidents, open) = attribute_incidents(links, service, work, &mut linking).await?;
    Ok(Linked {
        deployments: deployment_rows(linking, &open),
        changes,
        incidents,
    }
    .sorted())
}

/// Phase 1: the service's production deployments at or after the cut, in time order, each key once.
async fn production_deployments<L: Links>(
    links: &L,
    service: &Service<'_>,
    from: Option<Millis>,
) -> Result<Vec<Dep>, PortError> {
    let mut deps: BTreeMap<(Millis, String), Dep> = BTreeMap::new();
    let mut keys = HashSet::new();
    for d in links.deployments_since(&service.repos, from).await? {
        if !service.config.is_production(&d.environment, d.production) {
            continue;
        }
        let key = format!("{}/{}/{}", d.provider, d.repo, d.deployment_id);
        if !keys.insert(key.clone()) {
            continue;
        }
        deps.insert(
            (d.time, key.clone()),
            Dep {
                key,
                repo: d.repo,
                environment: d.environment,
                sha: d.sha,
                time: d.time,
                rollback: d.rollback,
                rework: d.rework,
            },
        );
    }
    Ok(deps.into_values().collect())
}

/// Phase 2: `deps` (in time order) without the deployments that are another provider's report of the one
/// kept just before them in their repository ([`rules::is_another_report`]). The first report stands; the
/// repository's deployment before the cut (a row) counts as kept. Also gives the rows before the cut it
/// read.
async fn without_reports_of_one_deployment<L: Links>(
    links: &L,
    service: &Service<'_>,
    from: Option<Millis>,
    deps: Vec<Dep>,
) -> Result<(Vec<Dep>, RowsBeforeCut), PortError> {
    // Per repository: the last kept deployment.
    let mut kept: HashMap<String, Option<Report>> = HashMap::new();
    let mut before_cut = RowsBeforeCut::new();
    let mut out = Vec::new();
    for d in deps {
        let repo = d.repo.to_lowercase();
        if !kept.contains_key(&repo) {
            let row = match from {
                Some(f) => links
                    .deployment_rows_before(service.name, Some(&d.repo), f, "", 1)
                    .await?
                    .into_iter()
                    .next(),
                None => None,
            };
            let before = row
                .as_ref()
                .map(|r| Report::of(&r.key, &r.sha, &r.environment, r.time));
            before_cut.insert(repo.clone(), row);
            kept.insert(repo.clone(), before);
        }
        let report = Report::of(&d.key, &d.sha, &d.environment, d.time);
        let duplicate = kept
            .get(&repo)
            .and_then(Option::as_ref)
            .is_some_and(|last| rules::is_another_report(last, &report));
        if !duplicate {
            kept.insert(repo, Some(report));
            out.push(d);
        }
    }
    Ok((out, before_cut))
}

/// Phase 3, what each deployment ships: in deployment order, each commit goes to the first deployment that
/// reaches it through the pushes' parent links. Sets each deployment's resolved sha, frontier and
/// whether it ships rework.
async fn ship_changes<L: Links>(
    links: &L,
    service: &Service<'_>,
    from: Option<Millis>,
    linking: &mut [Linking],
) -> Result<Vec<ChangeRow>, PortError> {
    let mut shipped: HashSet<String> = HashSet::new();
    let mut changes = Vec::new();
    for l in linking.iter_mut() {
        let d = &l.dep;
        let start = resolve(links, &d.repo, &d.sha).await?;
        let Some(start) = start else {
            l.frontier = Some(d.sha.clone()).filter(|s| !s.is_empty());
            continue;
        };
        l.sha = start.sha.clone();
        let mut cur = start.sha.clone();
        // The deployed commit is already read; the walk reads each earlier one.
        let mut read = Some(start);
        loop {
            if shipped.contains(&cur) {
                break;
            }
            // Where the commit shipped and the commit itself, read at once: each is one request on DynamoDB.
            let shipped_at = async {
                match from {
                    Some(_) => links.shipped_at(service.name, &cur).await,
                    None => Ok(None),
                }
            };
            let prefetched = read.take();
            let node = async {
                match prefetched {
                    Some(node) => Ok(Some(node)),
                    None => links.commit(&d.repo, &cur).await,
                }
            };
            let (shipped_at, node) = tokio::join!(shipped_at, node);
            if let (Some(f), Some(t)) = (from, shipped_at?) {
                if t < f {
                    break;
                }
            }
            let node = node?;
            let Some(node) = node else {
                if !cur.is_empty() && cur != NULL_SHA {
                    l.frontier = Some(cur);
                }
                break;
            };
            l.ships_rework |= rules::is_rework_message(&node.message);
            changes.push(ChangeRow {
                sha: node.sha.clone(),
                repo: d.repo.clone(),
                environment: d.environment.clone(),
                deployment_key: d.key.clone(),
                deployment_time: d.time,
                commit_time: node.time,
                unlisted: node.unlisted,
            });
            shipped.insert(cur);
            cur = node.parent;
        }
    }
    Ok(changes)
}

/// Phase 4, rollbacks within each repository ([`rules::is_rollback`]): a sha the repository deployed before
/// its immediately previous deployment, and not the previous one's, or one its provider signals. The
/// previous deployment, re-linked or before the cut, is compared through the rows before the cut.
async fn mark_rollbacks<L: Links>(
    links: &L,
    service: &Service<'_>,
    from: Option<Millis>,
    before_cut: &RowsBeforeCut,
    linking: &mut [Linking],
) -> Result<(), PortError> {
    // Each repository's re-linked deployments so far, in order.
    let mut in_repo: HashMap<String, Vec<usize>> = HashMap::new();
    for i in 0..linking.len() {
        let earlier = in_repo
            .entry(linking[i].dep.repo.to_lowercase())
            .or_default();
        let (d, sha) = (&linking[i].dep, linking[i].sha.as_str());
        // A provider-signalled rollback needs no sha and no read.
        let by_sha = !d.rollback
            && match earlier.split_last() {
                // The previous deployment is re-linked too: compare with those before it, then the rows
                // before the cut.
                Some((&j, before)) => {
                    rules::may_roll_back(sha, &linking[j].sha)
                        && (before.iter().any(|&k| same_sha(&linking[k].sha, sha))
                            || match from {
                                Some(f) => {
                                    links
                                        .deployed_before(service.name, &d.repo, sha, f, "")
                                        .await?
                                }
                                None => false,
                            })
                }
                // The previous deployment is before the cut (its rolled-back flag was set when this one
                // was first linked): compare with the rows before it.
                None => match from {
                    Some(f) => {
                        // Read once already, by the duplicate rule.
                        let previous: Vec<DeploymentRow> = match before_cut
                            .get(&d.repo.to_lowercase())
                        {
                            Some(row) => row.iter().cloned().collect(),
                            None => {
                                links
                                    .deployment_rows_before(service.name, Some(&d.repo), f, "", 1)
                                    .await?
                            }
                        };
                        match previous.first() {
                            Some(p) if rules::may_roll_back(sha, &p.sha) => {
                                links
                                    .deployed_before(service.name, &p.repo, sha, p.time, &p.key)
                                    .await?
                            }
                            _ => false,
                        }
                    }
                    None => false,
                },
            };
        if rules::is_rollback(d.rollback, by_sha) {
            linking[i].rollback = true;
            if let Some(&j) = earlier.last() {
                linking[j].rolled_back = true;
            }
        }
        earlier.push(i);
    }
    Ok(())
}

/// Phase 5, incidents opened at or after the cut: folded from all their events, grouped into outages
/// ([`rules::outages`]: several tools' reports of one outage count once), each outage attributed
/// ([`rules::attributed_to`]) to the latest deployment at or before its first opening (the one before the cut
/// included) within the window. Incidents opened up to one window before the cut are read too, as stored:
/// an outage they began may still take reports after it. Also gives every incident open across the
/// re-linked deployments.
async fn attribute_incidents<L: Links>(
    links: &L,
    service: &Service<'_>,
    work: &Work,
    linking: &mut [Linking],
) -> Result<(Vec<IncidentRow>, Vec<OpenIncident>), PortError> {
    let from = work.cut.from();
    let window = service.config.attribution_window();
    // The deployment before the cut an outage just after it may be attributed to.
    let prior = match from {
        Some(t) => {
            links
                .deployment_rows_before(service.name, None, t, "", 1)
                .await?
        }
        None => Vec::new(),
    };
    let context_from = from.map(|f| f - window);
    let mut ids: Vec<String> = links
        .incident_ids_since(&service.aliases, context_from)
        .await?
        .into_iter()
        .chain(work.incidents.iter().cloned())
        .collect();
    ids.sort();
    ids.dedup();
    let events = if ids.is_empty() {
        Vec::new()
    } else {
        links.incident_events(&service.aliases, &ids).await?
    };
    // Each incident's tool, its events, and what each one's severity says of whether it counts.
    type Events = (String, Vec<(IncidentEventKind, Millis)>, Vec<Option<bool>>);
    let mut by_incident: BTreeMap<String, Events> = BTreeMap::new();
    for e in events {
        let counts = service.config.counts_incident(&e.provider, &e.severity);
        let (provider, events, said) = by_incident.entry(e.incident_id).or_default();
        if provider.is_empty() {
            *provider = e.provider;
        }
        events.push((e.kind, e.time));
        said.push(counts);
    }
    // The incidents that count, in order of opening (then id), from one window before the cut.
    let mut folded: Vec<(String, String, IncidentSpan)> = by_incident
        .into_iter()
        .filter(|(_, (_, _, said))| rules::is_incident(said.iter().copied()))
        .filter_map(|(id, (provider, events, _))| {
            let span = IncidentSpan::fold(events);
            let opened = span.opened?;
            context_from
                .is_none_or(|c| opened >= c)
                .then_some((id, provider, span))
        })
        .collect();
    folded.sort_by(|a, b| (a.2.opened, &a.0).cmp(&(b.2.opened, &b.0)));
    let before_cut = |span: &IncidentSpan| from.is_some_and(|f| span.opened.is_some_and(|o| o < f));
    let context: Vec<String> = folded
        .iter()
        .filter(|(_, _, span)| before_cut(span))
        .map(|(id, _, _)| id.clone())
        .collect();
    let stored: HashMap<String, IncidentRow> = if context.is_empty() {
        HashMap::new()
    } else {
        links
            .incident_rows(service.name, &context)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect()
    };
    let index: HashMap<&str, usize> = folded
        .iter()
        .enumerate()
        .map(|(i, (id, _, _))| (id.as_str(), i))
        .collect();
    let alarms: Vec<rules::Alarm> = folded
        .iter()
        .map(|(_, provider, span)| rules::Alarm {
            provider: provider.clone(),
            opened: span.opened.unwrap_or_default(),
            resolved: span.resolved,
        })
        .collect();
    // Before the cut, each incident's outage is what its row says; one whose outage began more than a
    // window before the cut takes no part.
    let leads = rules::outages(&alarms, window, |i| {
        let (id, _, span) = &folded[i];
        before_cut(span).then(|| match stored.get(id) {
            Some(r) => match &r.outage {
                None => Some(i),
                Some(lead) => index.get(lead.as_str()).copied(),
            },
            None => None,
        })
    });
    let mut incidents = Vec::new();
    let mut open = Vec::new();
    // Each outage's attribution, by its first incident: the re-linked deployment's index, and the row's.
    let mut attributions: HashMap<usize, (Option<usize>, Option<Attribution>)> = HashMap::new();
    for (i, (id, _, span)) in folded.iter().enumerate() {
        let Some(lead) = leads[i] else { continue };
        if before_cut(span) {
            if lead == i {
                let stored = stored.get(id).and_then(|r| r.attributed_to.clone());
                attributions.insert(i, (None, stored));
            }
            continue;
        }
        let (at, attribution) = match attributions.get(&lead) {
            Some(a) => a.clone(),
            None => {
                let opened = alarms[lead].opened;
                let a = match rules::attributed_to(linking, |l| l.dep.time, opened, window) {
                    Ok(Some(j)) => {
                        linking[j].has_incident = true;
                        let d = &linking[j].dep;
                        (
                            Some(j),
                            Some(Attribution {
                                deployment_key: d.key.clone(),
                                repo: d.repo.clone(),
                                environment: d.environment.clone(),
                            }),
                        )
                    }
                    Ok(None) => (None, None),
                    Err(()) => match prior.first() {
                        Some(p) if rules::within_window(p.time, opened, window) => (
                            None,
                            Some(Attribution {
                                deployment_key: p.key.clone(),
                                repo: p.repo.clone(),
                                environment: p.environment.clone(),
                            }),
                        ),
                        _ => (None, None),
                    },
                };
                attributions.insert(lead, a.clone());
                a
            }
        };
        let opened = alarms[i].opened;
        // The first incident of an outage stands for it: acknowledged at the earliest of its reports'
        // acknowledgements, resolved when all of them are.
        let (acknowledged, resolved) = if lead == i {
            let members: Vec<usize> = leads
                .iter()
                .enumerate()
                .filter(|(_, l)| **l == Some(i))
                .map(|(m, _)| m)
                .collect();
            (
                members
                    .iter()
                    .filter_map(|&m| folded[m].2.acknowledged)
                    .min(),
                rules::outage_resolved(members.iter().map(|&m| alarms[m].resolved)),
            )
        } else {
            (span.acknowledged, span.resolved)
        };
        if attribution.is_some() {
            open.push(OpenIncident {
                attributed: at,
                opened,
                resolved,
            });
        }
        incidents.push(IncidentRow {
            id: id.clone(),
            opened,
            acknowledged,
            resolved,
            attributed_to: attribution,
            outage: (lead != i).then(|| folded[lead].0.clone()),
        });
    }
    if let Some(f) = from {
        for r in links.incidents_open_at(service.name, f).await? {
            open.push(OpenIncident {
                attributed: None,
                opened: r.opened,
                resolved: r.resolved,
            });
        }
    }
    Ok((incidents, open))
}

/// Phase 6, each deployment's row: failed ([`rules::failed`]) and rework ([`rules::is_rework`]), with an
/// incident attributed to an earlier deployment open at its time counting as rework.
fn deployment_rows(linking: Vec<Linking>, open: &[OpenIncident]) -> Vec<DeploymentRow> {
    linking
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let during_incident = open.iter().any(|o| {
                o.attributed.is_none_or(|j| j < i)
                    && rules::open_at(o.opened, o.resolved, l.dep.time)
            });
            DeploymentRow {
                failed: rules::failed(l.has_incident, l.rolled_back),
                rework: rules::is_rework(l.rollback, during_incident, l.ships_rework, l.dep.rework),
                rollback: l.rollback || l.dep.rework,
                frontier: l.frontier,
                sha: l.sha,
                key: l.dep.key,
                repo: l.dep.repo,
                environment: l.dep.environment,
                time: l.dep.time,
            }
        })
        .collect()
}

/// The commit a deployment names: its sha when known, or the one known commit it is a prefix of.
async fn resolve<L: Links>(
    links: &L,
    repo: &str,
    sha: &str,
) -> Result<Option<CommitRow>, PortError> {
    if sha.is_empty() {
        return Ok(None);
    }
    if let Some(c) = links.commit(repo, sha).await? {
        return Ok(Some(c));
    }
    if sha.len() < 4 {
        return Ok(None);
    }
    match links.resolve_prefix(repo, sha).await? {
        Some(full) => links.commit(repo, &full).await,
        None => Ok(None),
    }
}
