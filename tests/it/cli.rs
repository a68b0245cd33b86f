//! `em-agent providers` and `em-agent parse` as a user runs them: the real binary, its output and exit codes.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use em_core::domain::Fact;
use serde_json::Value;

fn em_agent(args: &[&str]) -> Output {
    Command::new(common::binary())
        .args(args)
        .current_dir(common::workspace())
        .output()
        .expect("em-agent runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn providers_lists_every_registered_provider() {
    let out = em_agent(&["providers", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), em_providers::all().len());
    for (entry, p) in listed.iter().zip(em_providers::all()) {
        assert_eq!(entry["name"], p.name);
        assert_eq!(entry["route"], format!("POST /webhooks/{}", p.name));
        assert_eq!(entry["authentication"]["scheme"], p.auth.kind());
        let vars = entry["secret_variables"].as_array().expect("variables");
        let upper = p.name.to_uppercase().replace('-', "_");
        assert_eq!(vars[0], format!("EM_AGENT_{upper}_SECRET"));
        assert_eq!(vars[1], format!("EM_AGENT_{upper}_SECRET_PREVIOUS"));
        let events: Vec<&str> = entry["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(events, p.events);
    }
    let github = &listed[0];
    assert_eq!(github["authentication"]["scheme"], "hmac");
    assert!(github["authentication"]["description"]
        .as_str()
        .unwrap_or_default()
        .contains("X-Hub-Signature-256"));

    let text = em_agent(&["providers"]);
    assert!(text.status.success());
    for p in em_providers::all() {
        assert!(stdout(&text).contains(&format!("POST /webhooks/{}", p.name)));
    }
}

/// The facts written by hand beside a fixture.
fn expected(path: &Path) -> Vec<Fact> {
    std::fs::read_to_string(path)
        .expect("a facts file")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a fact"))
        .collect()
}

fn printed(out: &Output) -> Vec<Fact> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn parse_prints_the_facts_of_a_payload_as_json_lines() {
    let fixtures = "shared/providers/tests/fixtures/github";
    let root = common::workspace();

    // The event from the headers file, from --event, or guessed from the payload: the same facts.
    let want = expected(&root.join(fixtures).join("push-branch.facts.jsonl"));
    assert!(!want.is_empty());
    let file = format!("{fixtures}/push-branch.json");
    let headers = format!("{fixtures}/push-branch.headers.json");
    for args in [
        vec![
            "parse",
            "--provider",
            "github",
            &file,
            "--headers",
            &headers,
        ],
        vec!["parse", "--provider", "github", &file, "--event", "push"],
        vec!["parse", "--provider", "github", &file],
    ] {
        let out = em_agent(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(printed(&out), want, "{args:?}");
    }
    // --event wins over the headers file: a push body read as a release counts nothing.
    let out = em_agent(&[
        "parse",
        "--provider",
        "github",
        &file,
        "--headers",
        &headers,
        "--event",
        "release",
    ]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "");

    // A recorded delivery carries its own headers.
    let out = em_agent(&[
        "parse",
        "--provider",
        "gitlab",
        "tests/data/scenarios/basic/deliveries/00018.json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        printed(&out),
        expected(
            &root.join("shared/providers/tests/fixtures/gitlab/scenario-deployment.facts.jsonl")
        )
    );
    let line: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON line");
    assert_eq!(line["kind"], "deployment");
    assert_eq!(line["time"], "2025-03-04T20:23:48Z");

    // Errors are messages and a failing exit code, not panics.
    let out = em_agent(&["parse", "--provider", "nosuch", &file]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown provider"));
    let out = em_agent(&["parse", "--provider", "github", "README.md"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid JSON"));
}

/// `em-agent report` without `--url` reads the data directory and writes nothing to it: a running server
/// may hold rows linked from newer facts, and applying a configuration change is the server's work. Under a
/// changed configuration it answers with the rows as they are and says they reflect an earlier one.
#[tokio::test]
async fn a_local_report_reads_and_never_writes() {
    use em_core::config::{Config, FIGURES_CONFIG_KEY};
    use em_core::domain::{Deployment, DeploymentOutcome};
    use em_core::ports::{MetricsReader, Store};

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let shop = r#"
[[services]]
name = "shop"
repositories = ["acme/shop"]
"#;
    let now = em_core::time::now_millis();
    let applied = {
        let store =
            em_sqlite::EmbeddedStore::open(&data, em_sqlite::Options::default()).expect("store");
        let config = std::sync::Arc::new(Config::parse(shop).expect("config"));
        let aggregator = em_aggregator::Aggregator::new(store.clone(), config.clone());
        aggregator.ensure_config_current().await.expect("config");
        let deployment = Fact::Deployment(Deployment {
            provider: "github".into(),
            repo: "acme/shop".into(),
            deployment_id: "1".into(),
            environment: "production".into(),
            production: Some(true),
            sha: "a".repeat(40),
            time: now - 86_400_000,
            outcome: DeploymentOutcome::Success,
            rollback: false,
            rework: false,
        });
        let (results, _) = aggregator
            .process_facts(vec![vec![deployment]], vec![Ok(())])
            .await;
        assert!(results[0].is_ok());
        store
            .get_meta(FIGURES_CONFIG_KEY.into())
            .await
            .expect("meta")
            .expect("applied")
    };

    // Another configuration: the repository now belongs to "store".
    let changed = dir.path().join("changed.toml");
    std::fs::write(&changed, shop.replace("\"shop\"", "\"store\"")).expect("config file");
    let out = em_agent(&[
        "report",
        "--json",
        "--service",
        "shop",
        "--data-dir",
        data.to_str().expect("utf-8 path"),
        "--config",
        changed.to_str().expect("utf-8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(v["configuration"]["current"], false, "{v}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("earlier configuration"));

    let store =
        em_sqlite::EmbeddedStore::open(&data, em_sqlite::Options::default()).expect("store");
    assert_eq!(
        store
            .get_meta(FIGURES_CONFIG_KEY.into())
            .await
            .expect("meta")
            .as_deref(),
        Some(applied.as_str()),
        "the report applied nothing"
    );
    let obs = store
        .observations(Some(vec!["shop".into()]), now - 7 * 86_400_000, now)
        .await
        .expect("observations");
    assert_eq!(
        obs.deployments.len(),
        1,
        "the rows stand as the server left them"
    );
}

/// `em-agent digest` renders a team's week as every channel's message, and its figures are the API's for
/// the same team and window.
#[tokio::test]
async fn a_digest_renders_each_channel_with_the_apis_figures() {
    use em_core::config::Config;
    use em_core::domain::{Commit, Deployment, DeploymentOutcome, Push};

    const DAY: i64 = 86_400_000;
    // 2025-04-14T00:00:00Z, a Monday: the digest covers [2025-04-07, 2025-04-14).
    const AT: i64 = 1_744_588_800_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let toml = r#"
[[services]]
name = "shop"
team = "web"
repositories = ["acme/shop"]

[[services]]
name = "search"
team = "find"
repositories = ["acme/search"]
"#;
    let config_path = dir.path().join("em-agent.toml");
    std::fs::write(&config_path, toml).expect("config file");
    let config = std::sync::Arc::new(Config::parse(toml).expect("config"));
    let store =
        em_sqlite::EmbeddedStore::open(&data, em_sqlite::Options::default()).expect("store");
    let aggregator = em_aggregator::Aggregator::new(store.clone(), config.clone());
    aggregator.ensure_config_current().await.expect("config");
    let sha = |n: i64| format!("{n:040}");
    let mut facts = Vec::new();
    // Eight deployments the week before and four last week, in that order; deployment n ships its own
    // commit n, made n hours before it.
    for (n, t) in (0..8)
        .map(|i| AT - 13 * DAY + i * 12 * 3_600_000)
        .chain((0..4).map(|i| AT - 6 * DAY + i * DAY))
        .enumerate()
    {
        let n = n as i64 + 1;
        facts.push(Fact::Push(Push {
            provider: "github".into(),
            repo: "acme/shop".into(),
            before: sha(n - 1),
            after: sha(n),
            commits: vec![Commit {
                sha: sha(n),
                time: t - 3_600_000 * n,
                message: "change".into(),
            }],
            unlisted: 0,
        }));
        facts.push(Fact::Deployment(Deployment {
            provider: "github".into(),
            repo: "acme/shop".into(),
            deployment_id: n.to_string(),
            environment: "production".into(),
            production: Some(true),
            sha: sha(n),
            time: t,
            outcome: DeploymentOutcome::Success,
            rollback: false,
            rework: false,
        }));
    }
    let (results, _) = aggregator.process_facts(vec![facts], vec![Ok(())]).await;
    assert!(results[0].is_ok());

    let out = dir.path().join("digest");
    let (data, config_file) = (
        data.to_str().expect("utf-8 path").to_string(),
        config_path.to_str().expect("utf-8 path").to_string(),
    );
    let run_digest = |args: &[&str]| {
        let mut all = vec!["digest"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--data-dir", &data, "--config", &config_file]);
        em_agent(&all)
    };
    let run = run_digest(&[
        "--team",
        "web",
        "--at",
        "2025-04-14",
        "--out",
        out.to_str().expect("utf-8 path"),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let read = |name: &str| std::fs::read_to_string(out.join(name)).expect(name);
    let digest: Value = serde_json::from_str(&read("digest.json")).expect("digest JSON");
    let api = em_api::dora(
        &store,
        &config,
        em_api::DoraQuery {
            team: Some("web".into()),
            from: Some("2025-04-07".into()),
            to: Some("2025-04-14".into()),
            ..Default::default()
        },
        AT,
    )
    .await
    .expect("api");
    let api = serde_json::to_value(&api).expect("json");
    for metric in [
        "deployment_frequency",
        "lead_time",
        "change_failure_rate",
        "recovery_time",
        "rework_rate",
    ] {
        assert_eq!(digest["figures"][metric], api[metric], "{metric}");
    }
    assert_eq!(api["deployment_frequency"]["deployments"], 4);
    // Last week's commits (9 to 12) took 9 to 12 hours to production: the three slowest, with their pages.
    let slow: Vec<(String, f64, String)> = digest["highlights"]["slowest_changes"]
        .as_array()
        .expect("slowest changes")
        .iter()
        .map(|c| {
            (
                c["sha"].as_str().unwrap_or_default().to_string(),
                c["lead_time_seconds"].as_f64().unwrap_or_default(),
                c["url"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let commit = |n: i64| format!("https://github.com/acme/shop/commit/{}", sha(n));
    assert_eq!(
        slow,
        [
            (sha(12), 12.0 * 3600.0, commit(12)),
            (sha(11), 11.0 * 3600.0, commit(11)),
            (sha(10), 10.0 * 3600.0, commit(10)),
        ]
    );
    assert_eq!(digest["highlights"]["rollbacks"], 0);
    assert_eq!(
        digest["highlights"]["longest_recoveries"],
        serde_json::json!([])
    );
    // Four against eight the week before: down by half, which the digest says.
    assert_eq!(digest["counts"]["deployments"], 4);
    assert_eq!(digest["anomalies"][0]["kind"], "deployments_down");
    let text = read("sns.txt");
    assert!(text.starts_with("Weekly DORA digest — team web\n2025-04-07 to 2025-04-14 (UTC)"));
    assert!(text.contains("0.57/day (high)"), "{text}");
    assert!(text.contains("▼ 50% vs 1.14/day"), "{text}");
    assert!(
        text.contains("Deployments down 50%: 4 against 8 the week before"),
        "{text}"
    );
    assert_eq!(read("email.txt"), text);
    let html = read("email.html");
    assert!(
        html.contains("0.57/day (high)") && html.contains("src=\"chart.png\""),
        "{html}"
    );
    let png = std::fs::read(out.join("chart.png")).expect("chart.png");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");

    // The email as a person sees it, in headless Chromium: its rendered text holds the API's figures for the
    // same team and week, the chart loaded, and the screenshot is a page with content, not a blank one.
    let page = common::browser::render(&out.join("email.html"), 720, 1400).await;
    let df = &api["deployment_frequency"];
    let mut want = vec![
        "Weekly DORA digest — team web".to_string(),
        "2025-04-07 to 2025-04-14 (UTC)".to_string(),
        format!(
            "{:.2}/day ({})",
            df["per_day"].as_f64().expect("per day"),
            df["level"].as_str().expect("a level")
        ),
        format!("Deployments {} · failed attempts", df["deployments"]),
    ];
    if let Some(s) = api["lead_time"]["median_seconds"].as_f64() {
        want.push(em_notify::duration(s));
    }
    if let Some(r) = api["change_failure_rate"]["ratio"].as_f64() {
        want.push(format!("{:.1}%", r * 100.0));
    }
    for w in &want {
        assert!(
            page.text.contains(w.as_str()),
            "{w:?} in the rendered page:\n{}",
            page.text
        );
    }
    assert!(
        page.text.contains("Slowest changes")
            && page.text.contains("0000000 acme/shop (shop): 12h 0m"),
        "{}",
        page.text
    );
    assert!(html.contains(&format!("href=\"{}\"", commit(12))), "{html}");
    assert_eq!(page.image_widths, [600], "the chart loaded at its width");
    let (colours, inked) = common::browser::ink(&page.png);
    assert!(
        colours > 16 && inked > 0.02,
        "a screenshot with content: {colours} colours, {:.1}% inked",
        inked * 100.0
    );
    let slack: Value = serde_json::from_str(&read("slack.json")).expect("slack JSON");
    assert_eq!(slack["blocks"][0]["type"], "header");
    let teams: Value = serde_json::from_str(&read("teams.json")).expect("teams JSON");
    assert_eq!(teams["attachments"][0]["content"]["type"], "AdaptiveCard");

    // Without --team: every team's, and the organisation's.
    let all = dir.path().join("all-teams");
    let all_dir = all.to_str().expect("utf-8 path");
    let run = run_digest(&["--at", "2025-04-14", "--out", all_dir]);
    assert!(run.status.success());
    for sub in ["web", "find", "all"] {
        assert!(all.join(sub).join("slack.json").is_file(), "{sub}");
    }
    let unknown = run_digest(&["--team", "nobody", "--out", all_dir]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nobody"));
}
