//! Real-time notices: after the aggregator links a batch, each team that asked for them (`notices = true`)
//! hears of its services' new production deployments (with their lead time), rollbacks and incidents
//! attributed to a deployment, through its channels, once each (docs/digests.md).

use std::collections::BTreeSet;
use std::sync::Arc;

use em_core::config::{Channel, Config, Links, ORGANISATION};
use em_core::ports::{AfterLinking, PortError, SecretSource};
use em_core::rows::Linked;
use em_core::time::{format_millis, Millis};
use em_metrics::rules::provider_of;
use em_notify::{short_sha, Notice};

use crate::channels::{self, Content};
use crate::{addresses_of, DigestStore, Outbound, Outcome, LEASE};

/// Only what happened this recently is news: a re-link of older history (a configuration change, a late
/// push) sends nothing.
pub const NOTICE_WINDOW: Millis = 24 * 3600 * 1000;

/// `2025-04-14 09:30 UTC`.
fn when(t: Millis) -> String {
    let s = format_millis(t);
    format!(
        "{} {} UTC",
        &s[..10.min(s.len())],
        s.get(11..16).unwrap_or_default()
    )
}

/// The notices `service`'s rows hold for events at or after `since`, each under the key that makes it
/// once-only: a deployment (its changes' lead times), a rollback, an incident attributed to a deployment.
pub fn notices_of(
    service: &str,
    rows: &Linked,
    links: &Links,
    since: Millis,
) -> Vec<(String, Notice)> {
    let mut out = Vec::new();
    for d in rows.deployments.iter().filter(|d| d.time >= since) {
        let url = links.commit_url(provider_of(&d.key), &d.repo, &d.sha);
        let mut leads: Vec<Millis> = rows
            .changes
            .iter()
            .filter(|c| c.deployment_key == d.key && c.deployment_time > c.commit_time)
            .map(|c| c.deployment_time - c.commit_time)
            .collect();
        leads.sort_unstable();
        let shipped = match leads.len() {
            0 => "no new commits".to_string(),
            n => format!(
                "{n} commit{}, lead time {} (median), {} (longest)",
                if n == 1 { "" } else { "s" },
                em_notify::duration(leads[(n - 1) / 2] as f64 / 1000.0),
                em_notify::duration(leads[n - 1] as f64 / 1000.0)
            ),
        };
        out.push((
            format!("notice/deployment/{service}/{}", d.key),
            Notice {
                title: format!("Deployed to {} — {service}", d.environment),
                text: format!(
                    "{} {} at {}: {shipped}",
                    d.repo,
                    short_sha(&d.sha),
                    when(d.time)
                ),
                url: url.clone(),
            },
        ));
        if d.rollback {
            out.push((
                format!("notice/rollback/{service}/{}", d.key),
                Notice {
                    title: format!("Rollback — {service}"),
                    text: format!(
                        "{} went back to {} at {}: the deployment before it counts as failed",
                        d.repo,
                        short_sha(&d.sha),
                        when(d.time)
                    ),
                    url,
                },
            ));
        }
    }
    // An outage several tools reported is one notice, of its first report.
    for i in rows
        .incidents
        .iter()
        .filter(|i| i.opened >= since && i.outage.is_none())
    {
        let Some(a) = &i.attributed_to else { continue };
        let deployed = rows
            .deployments
            .iter()
            .find(|d| d.key == a.deployment_key)
            .map(|d| format!("{} {} at {}", d.repo, short_sha(&d.sha), when(d.time)))
            .unwrap_or_else(|| a.repo.clone());
        out.push((
            format!("notice/incident/{service}/{}/{}", i.id, a.deployment_key),
            Notice {
                title: format!("Incident attributed to a deployment — {service}"),
                text: format!(
                    "Incident {} opened at {} follows the deployment of {deployed}: that deployment counts as failed",
                    i.id,
                    when(i.opened)
                ),
                url: links.incident_url(&i.id),
            },
        ));
    }
    out
}

/// How notices are sent: they go out while the aggregator holds its batch, so fewer, shorter attempts
/// than a digest's; a notice that fails is logged and counted, and the batch goes on.
pub fn policy() -> em_notify::send::Policy {
    em_notify::send::Policy {
        attempts: 2,
        base_delay: std::time::Duration::from_millis(200),
        max_delay: std::time::Duration::from_secs(1),
        timeout: std::time::Duration::from_secs(5),
        ..em_notify::send::Policy::default()
    }
}

/// What became of one notice on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeReport {
    pub team: String,
    pub key: String,
    pub channel: Channel,
    pub outcome: Outcome,
}

/// Sends the notices of `services`' events of the last [`NOTICE_WINDOW`] before `now` to every team that
/// asked for them, each once per team and channel.
pub async fn send_notices<S: DigestStore, A: SecretSource>(
    store: &S,
    addresses: &A,
    out: &Outbound,
    config: &Config,
    services: &BTreeSet<String>,
    now: Millis,
) -> Result<Vec<NoticeReport>, PortError> {
    let since = now - NOTICE_WINDOW;
    let owner = uuid::Uuid::new_v4().to_string();
    let mut reports = Vec::new();
    for team in config
        .teams()
        .iter()
        .filter(|t| t.notices && !t.channels.is_empty())
    {
        let theirs: Vec<String> = match team.name.as_str() {
            ORGANISATION => services.iter().cloned().collect(),
            name => config
                .services_of_team(name)
                .into_iter()
                .filter(|s| services.contains(s))
                .collect(),
        };
        if theirs.is_empty() {
            continue;
        }
        // Up to a window ahead too: a provider's clock a little ahead of ours is still news.
        let rows = store.rows(Some(theirs), since, now + NOTICE_WINDOW).await?;
        for (service, linked) in &rows {
            for (key, notice) in notices_of(service, linked, config.links(), since) {
                for &channel in &team.channels {
                    let claim = format!("{key}/{}/{}", team.name, channel.as_str());
                    let outcome = match store
                        .claim(claim.clone(), owner.clone(), now, now + LEASE)
                        .await?
                    {
                        false => Outcome::AlreadyClaimed,
                        true => {
                            let sent = match addresses_of(addresses, &team.name, channel).await {
                                Ok(list) => {
                                    channels::send(out, channel, &list, Content::Notice(&notice))
                                        .await
                                }
                                Err(e) => Err(e),
                            };
                            store.settle(claim, owner.clone(), sent.is_ok()).await?;
                            match sent {
                                Ok(()) => Outcome::Sent,
                                Err(e) => {
                                    e.log(&team.name, channel.as_str(), "notice");
                                    Outcome::Failed(e.to_string())
                                }
                            }
                        }
                    };
                    reports.push(NoticeReport {
                        team: team.name.clone(),
                        key: key.clone(),
                        channel,
                        outcome,
                    });
                }
            }
        }
    }
    Ok(reports)
}

/// The aggregator's hook: notices after each batch, at the clock's time. Failures are logged and counted,
/// never the batch's.
pub struct Notices<S, A> {
    pub store: S,
    pub addresses: A,
    pub out: Outbound,
    pub config: Arc<Config>,
    pub clock: fn() -> Millis,
}

impl<S: DigestStore + Clone, A: SecretSource> AfterLinking for Notices<S, A> {
    fn linked<'a>(
        &'a self,
        services: &'a BTreeSet<String>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let now = (self.clock)();
            match send_notices(
                &self.store,
                &self.addresses,
                &self.out,
                &self.config,
                services,
                now,
            )
            .await
            {
                Ok(reports) => {
                    for r in reports {
                        match &r.outcome {
                            // Logged where it failed, at the level its kind calls for.
                            Outcome::Failed(_) => {}
                            Outcome::Sent => {
                                tracing::info!(team = %r.team, notice = %r.key, channel = r.channel.as_str(), "notice sent")
                            }
                            Outcome::AlreadyClaimed => {}
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "notices not sent"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use em_core::rows::{Attribution, IncidentRow};

    #[test]
    fn an_outage_several_tools_reported_is_one_notice() {
        let attribution = Some(Attribution {
            deployment_key: "github/acme/shop/d1".into(),
            repo: "acme/shop".into(),
            environment: "production".into(),
        });
        let report = |id: &str, outage: Option<&str>| IncidentRow {
            id: id.into(),
            opened: 1_000,
            acknowledged: None,
            resolved: None,
            attributed_to: attribution.clone(),
            outage: outage.map(Into::into),
        };
        let rows = Linked {
            deployments: vec![],
            changes: vec![],
            incidents: vec![
                report("am", None),
                report("pd", Some("am")),
                report("io", Some("am")),
            ],
        };
        let keys: Vec<String> = notices_of("shop", &rows, &Links::default(), 0)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["notice/incident/shop/am/github/acme/shop/d1"]);
    }
}
