//! Real-time notices end to end: the aggregator stores and links facts in the embedded store (SQLite), then
//! its hook sends each new production deployment, rollback and attributed incident to a team's Slack and
//! Teams webhooks (a receiver on the loopback), once, however often the facts come again.

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;

use crate::common::hooks::receiver;
use em_aggregator::Aggregator;
use em_core::config::Config;
use em_core::domain::{Fact, IncidentEventKind, NULL_SHA};
use em_core::ports::{PortError, SecretSource};
use em_core::time::Millis;
use em_digest::notices::{policy, Notices};
use em_digest::Outbound;
use em_metrics::history::{deployment, incident, push, H};
use em_notify::send::Sender;
use serde_json::Value;

/// 2025-04-14T12:00:00Z: the notices' clock.
const NOW: Millis = 1_744_632_000_000;

fn now() -> Millis {
    NOW
}

/// Addresses from a map, as the Secrets Manager secret holds them.
struct Addresses(HashMap<String, String>);

impl SecretSource for Addresses {
    async fn secrets(&self, key: &str) -> Result<Option<Vec<Vec<u8>>>, PortError> {
        Ok(self.0.get(key).map(|a| vec![a.as_bytes().to_vec()]))
    }
}

fn texts(hits: &[Value]) -> Vec<String> {
    hits.iter()
        .map(|h| {
            h["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_rollbacks_and_attributed_incidents_are_noticed_once() {
    let (hooks, base) = receiver().await;
    let toml = r#"
incident_attribution_window = "6h"
[[services]]
name = "shop"
team = "web"
repositories = ["acme/shop"]
aliases = ["Shop"]

[[services]]
name = "search"
team = "find"
repositories = ["acme/search"]

[[teams]]
name = "web"
channels = ["slack", "teams"]
notices = true

[[teams]]
name = "find"
channels = ["slack"]
"#;
    let config = Arc::new(Config::parse(toml).expect("config"));
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        em_sqlite::EmbeddedStore::open(dir.path(), em_sqlite::Options::default()).expect("store");
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let notices = Notices {
        store: store.clone(),
        addresses: Addresses(HashMap::from([
            ("web/slack".to_string(), format!("{base}/web-slack")),
            ("web/teams".to_string(), format!("{base}/web-teams")),
            ("find/slack".to_string(), format!("{base}/find-slack")),
        ])),
        out: Outbound::on_aws(
            Sender::new(policy()).expect("sender"),
            &common::aws::sdk().await,
            None,
        ),
        config: config.clone(),
        clock: now,
    };
    let aggregator =
        Aggregator::new(store.clone(), config.clone()).with_after_linking(Arc::new(notices));
    aggregator.ensure_config_current().await.expect("config");
    let process = |facts: Vec<Fact>| {
        let aggregator = &aggregator;
        async move {
            let (results, _) = aggregator.process_facts(vec![facts], vec![Ok(())]).await;
            assert!(results[0].is_ok(), "{results:?}");
        }
    };
    let c = |sha: &str, t: Millis| (format!("{sha:0>40}"), t, format!("change {sha}"));

    // Two commits made 5 h and 3 h before the deployment that ships them (at 09:00); a deployment of
    // team find's service, which has no notices; and last week's deployment, which is no news.
    let (c1, c2) = (c("c1", NOW - 8 * H), c("c2", NOW - 6 * H));
    process(vec![
        push(NULL_SHA, &[c1.clone(), c2.clone()]),
        deployment("d1", &c2.0, NOW - 3 * H, "production"),
        em_metrics::history::deployment_to("acme/search", "s1", &c1.0, NOW - 2 * H, "production"),
        deployment("d0", &c1.0, NOW - 200 * H, "staging"),
    ])
    .await;
    let slack = texts(&hooks.hits("web-slack"));
    assert_eq!(slack.len(), 1, "{slack:?}");
    assert_eq!(
        slack[0],
        format!(
            "*Deployed to production — shop*\nacme/shop 0000000 at 2025-04-14 09:00 UTC: 2 commits, lead \
             time 3h 0m (median), 5h 0m (longest) <https://github.com/acme/shop/commit/{}|open>",
            c2.0
        )
    );
    let teams = hooks.hits("web-teams");
    assert_eq!(teams.len(), 1);
    assert_eq!(
        teams[0]["attachments"][0]["content"]["body"][0]["text"],
        "Deployed to production — shop"
    );
    assert!(
        hooks.hits("find-slack").is_empty(),
        "team find asked for none"
    );

    // The same facts again (a redelivery): nothing new.
    process(vec![deployment("d1", &c2.0, NOW - 3 * H, "production")]).await;
    assert_eq!(hooks.hits("web-slack").len(), 1);

    // A new version at 10:00, then the old one again at 11:00 (a rollback), and an incident at 11:30.
    let c3 = c("c3", NOW - 2 * H - H / 2);
    process(vec![
        push(&c2.0, std::slice::from_ref(&c3)),
        deployment("d2", &c3.0, NOW - 2 * H, "production"),
        deployment("d3", &c2.0, NOW - H, "production"),
        incident("P7", "e1", IncidentEventKind::Opened, NOW - H / 2),
    ])
    .await;
    let slack = texts(&hooks.hits("web-slack"));
    assert_eq!(slack.len(), 5, "{slack:#?}");
    let new: Vec<&str> = slack[1..]
        .iter()
        .map(|t| t.lines().next().unwrap_or_default())
        .collect();
    let mut titles = new.clone();
    titles.sort();
    assert_eq!(
        titles,
        [
            "*Deployed to production — shop*",
            "*Deployed to production — shop*",
            "*Incident attributed to a deployment — shop*",
            "*Rollback — shop*",
        ]
    );
    let rollback = slack
        .iter()
        .find(|t| t.starts_with("*Rollback"))
        .expect("a rollback notice");
    assert!(
        rollback.contains("acme/shop went back to 0000000 at 2025-04-14 11:00 UTC"),
        "{rollback}"
    );
    let incident = slack
        .iter()
        .find(|t| t.starts_with("*Incident"))
        .expect("an incident notice");
    assert!(
        incident.contains("Incident P7 opened at 2025-04-14 11:30 UTC follows the deployment of acme/shop 0000000 at 2025-04-14 11:00 UTC"),
        "{incident}"
    );
    assert_eq!(hooks.hits("web-teams").len(), 5);
}
