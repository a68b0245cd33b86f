//! Services seen through several providers at once, over HTTP to `em-agent serve`: GitHub pushes deployed
//! by CircleCI deploy workflows (one of them also reported as a GitHub deployment), an incident reported by
//! a script through the generic provider, a rollback, and the same service's ECS deployments from
//! EventBridge; and a GitLab project deployed by ArgoCD. The figures are worked out by hand below, and must
//! come out the same whatever order the deliveries arrive in and however often.

mod common;

use common::{post_signed, secrets, Delivery, Server};
use serde_json::{json, Value};

const REPO: &str = "acme/shop";
const C1: &str = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1";
const C2: &str = "c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2";
const C3: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";
const G1: &str = "9191919191919191919191919191919191919191";
const NULL: &str = "0000000000000000000000000000000000000000";

const CONFIG: &str = r#"
production_environments = ["production", "prod"]
incident_attribution_window = "24h"

[[services]]
name = "shop"
team = "web"
repositories = ["acme/shop", "ecs:prod/shop"]

[[services]]
name = "catalog"
team = "web"
repositories = ["group/catalog"]
"#;

fn delivery(provider: &str, name: &str, headers: &[(&str, &str)], body: Value) -> Delivery {
    let mut h: Vec<(String, String)> = vec![("Content-Type".into(), "application/json".into())];
    h.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Delivery {
        name: name.into(),
        provider: provider.into(),
        headers: h,
        body: body.to_string(),
    }
}

fn push(id: &str, before: &str, commits: &[(&str, &str)]) -> Delivery {
    let after = commits.last().map_or(NULL, |c| c.0);
    delivery(
        "github",
        id,
        &[("X-GitHub-Event", "push"), ("X-GitHub-Delivery", id)],
        json!({
            "ref": "refs/heads/main", "before": before, "after": after, "deleted": false,
            "repository": {"full_name": REPO, "default_branch": "main"},
            "commits": commits.iter().map(|(sha, time)| json!({"id": sha, "timestamp": time, "message": "change"}))
                .collect::<Vec<_>>(),
        }),
    )
}

/// A CircleCI `deploy-prod` workflow of `sha` that finished at `stopped`.
fn circleci_deploy(id: &str, sha: &str, stopped: &str, status: &str) -> Delivery {
    delivery(
        "circleci",
        id,
        &[("circleci-event-type", "workflow-completed")],
        json!({
            "id": id, "type": "workflow-completed", "happened_at": stopped,
            "project": {"id": "p", "name": "shop", "slug": "gh/acme/shop"},
            "organization": {"id": "o", "name": "acme"},
            "workflow": {"id": format!("wf-{id}"), "name": "deploy-prod", "created_at": stopped,
                         "stopped_at": stopped, "url": "https://app.circleci.com/x", "status": status},
            "pipeline": {"id": "pl", "number": 1, "created_at": stopped, "trigger": {"type": "webhook"},
                         "vcs": {"provider_name": "github", "origin_repository_url": "https://github.com/acme/shop",
                                 "target_repository_url": "https://github.com/acme/shop", "revision": sha,
                                 "branch": "main"}},
        }),
    )
}

fn github_deployment(id: &str, sha: &str, time: &str) -> Delivery {
    delivery(
        "github",
        id,
        &[
            ("X-GitHub-Event", "deployment_status"),
            ("X-GitHub-Delivery", id),
        ],
        json!({
            "action": "created",
            "deployment_status": {"id": 1, "state": "success", "environment": "production", "created_at": time},
            "deployment": {"id": 77, "sha": sha, "environment": "production", "production_environment": true},
            "repository": {"full_name": REPO, "default_branch": "main"},
        }),
    )
}

fn incident(id: &str, status: &str, time: &str) -> Delivery {
    delivery(
        "generic",
        id,
        &[],
        json!({"version": 1, "type": "incident", "id": id, "incident_id": "INC-7", "service": "shop",
               "status": status, "time": time, "title": "Checkout errors"}),
    )
}

fn ecs(id: &str, event: &str, deployment: &str, time: &str) -> Delivery {
    delivery(
        "aws",
        id,
        &[],
        json!({
            "version": "0", "id": id, "detail-type": "ECS Deployment State Change", "source": "aws.ecs",
            "account": "111122223333", "time": time, "region": "eu-west-1",
            "resources": ["arn:aws:ecs:eu-west-1:111122223333:service/prod/shop"],
            "detail": {"eventType": "INFO", "eventName": event, "deploymentId": deployment,
                       "updatedAt": time, "reason": "ECS deployment"},
        }),
    )
}

fn gitlab_push(id: &str, before: &str, sha: &str, time: &str) -> Delivery {
    delivery(
        "gitlab",
        id,
        &[("X-Gitlab-Event", "Push Hook"), ("Idempotency-Key", id)],
        json!({
            "object_kind": "push", "ref": "refs/heads/main", "before": before, "after": sha,
            "project": {"path_with_namespace": "group/catalog", "default_branch": "main"},
            "commits": [{"id": sha, "timestamp": time, "message": "change"}],
            "total_commits_count": 1,
        }),
    )
}

/// What EM Agent's ArgoCD notification template sends for a sync that finished.
fn argocd_sync(id: &str, sha: &str, time: &str, status: &str) -> Delivery {
    delivery(
        "argocd",
        id,
        &[],
        json!({"version": 1, "type": "deployment", "id": id, "repository": "group/catalog",
               "environment": "production", "sha": sha, "status": status, "time": time}),
    )
}

fn history() -> Vec<Delivery> {
    vec![
        push(
            "push-1",
            NULL,
            &[(C1, "2025-06-02T09:00:00Z"), (C2, "2025-06-02T10:00:00Z")],
        ),
        circleci_deploy("cci-1", C2, "2025-06-02T12:00:00Z", "success"),
        // The GitHub deployment the same CircleCI job created, 3 minutes later: the same deployment.
        github_deployment("gh-dep-1", C2, "2025-06-02T12:03:00Z"),
        push("push-2", C2, &[(C3, "2025-06-03T08:00:00Z")]),
        circleci_deploy("cci-2", C3, "2025-06-03T09:00:00Z", "success"),
        incident("inc-7-opened", "opened", "2025-06-03T09:30:00Z"),
        incident("inc-7-resolved", "resolved", "2025-06-03T10:20:00Z"),
        // C2 again, after C3: a rollback.
        circleci_deploy("cci-3", C2, "2025-06-03T11:00:00Z", "success"),
        // A failed deploy workflow is a failed attempt, not a deployment.
        circleci_deploy("cci-4", C3, "2025-06-03T13:00:00Z", "failed"),
        ecs(
            "ecs-1",
            "SERVICE_DEPLOYMENT_COMPLETED",
            "ecs-svc/1",
            "2025-06-04T10:00:00Z",
        ),
        ecs(
            "ecs-2",
            "SERVICE_DEPLOYMENT_FAILED",
            "ecs-svc/2",
            "2025-06-04T11:00:00Z",
        ),
        gitlab_push("gl-push-1", NULL, G1, "2025-06-02T08:00:00+02:00"),
        argocd_sync(
            "catalog.2025-06-02T06:30:00Z",
            G1,
            "2025-06-02T06:30:00Z",
            "success",
        ),
        argocd_sync(
            "catalog.2025-06-02T07:00:00Z",
            G1,
            "2025-06-02T07:00:00Z",
            "failure",
        ),
    ]
}

/// What the history must give for `shop` over [2025-06-02, 2025-06-05), worked out by hand:
/// - deployments: cci-1 (12:00 on the 2nd; gh-dep-1 is its second report), cci-2, cci-3 and ecs-1; cci-4 and
///   ecs-2 are failed attempts: 4 in 3 days, 1.33 a day (elite);
/// - lead times: cci-1 ships C2 (2 h) and C1 (3 h); cci-2 ships C3 (1 h); cci-3 ships nothing new (C2 was
///   shipped); ecs-1 names no commit: 3 changes, median 2 h (elite), p90 the 3rd of 3, 3 h;
/// - failures: cci-2 (INC-7 opened 30 min after it, and rolled back by cci-3): 1 of 4 (low);
/// - rework: cci-3, the rollback: 1 of 4;
/// - recovery: INC-7, attributed to cci-2, resolved after 50 min: median 3000 s (elite).
fn expected_shop() -> Value {
    json!({
        "deployment_frequency": {"deployments": 4, "per_day": 4.0 / 3.0, "level": "elite"},
        "lead_time": {"changes": 3, "excluded": 0, "median_seconds": 7200.0, "p90_seconds": 10800.0,
                      "level": "elite"},
        "change_failure_rate": {"deployments": 4, "failed": 1, "ratio": 0.25, "level": "low"},
        "recovery_time": {"incidents": 1, "open": 0, "median_seconds": 3000.0, "level": "elite"},
        "rework_rate": {"deployments": 4, "rework": 1, "ratio": 0.25},
    })
}

/// And for `catalog`: G1, committed at 08:00 +02:00 (06:00 UTC), synced by ArgoCD at 06:30 UTC — one
/// deployment (1/3 a day: high), one change with a 30-minute lead time (elite); the failed sync at 07:00 is
/// a failed attempt; no incident (failure rate 0: elite; no recovery figure).
fn expected_catalog() -> Value {
    json!({
        "deployment_frequency": {"deployments": 1, "per_day": 1.0 / 3.0, "level": "high"},
        "lead_time": {"changes": 1, "excluded": 0, "median_seconds": 1800.0, "p90_seconds": 1800.0,
                      "level": "elite"},
        "change_failure_rate": {"deployments": 1, "failed": 0, "ratio": 0.0, "level": "elite"},
        "recovery_time": {"incidents": 0, "open": 0, "median_seconds": null, "level": null},
        "rework_rate": {"deployments": 1, "rework": 0, "ratio": 0.0},
    })
}

/// Each service's figures over [2025-06-02, 2025-06-05) once `order` is delivered.
async fn figures(order: Vec<Delivery>) -> Vec<(&'static str, Value)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("em-agent.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let server = Server::start(Some(&config), &dir.path().join("data"), secrets());
    let client = common::client();
    for d in &order {
        let (status, body) = post_signed(&client, &server.base, d).await.expect("post");
        assert!(
            status == 202 || status == 200,
            "{}: {status} {body}",
            d.name
        );
    }
    server.wait_drained(&client).await;
    let mut out = Vec::new();
    for service in ["shop", "catalog"] {
        let q = [
            ("service", service),
            ("from", "2025-06-02"),
            ("to", "2025-06-05"),
        ];
        out.push((
            service,
            server.get_json(&client, "/v1/metrics/dora", &q).await,
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_seen_through_several_providers_give_the_hand_worked_figures_in_any_order() {
    let want = [("shop", expected_shop()), ("catalog", expected_catalog())];
    let in_order = history();
    let mut reversed = history();
    reversed.reverse();
    // Reversed, with every delivery sent twice.
    let reversed: Vec<Delivery> = reversed
        .iter()
        .flat_map(|d| [d.clone(), d.clone()])
        .collect();
    for (name, order) in [("in order", in_order), ("reversed and repeated", reversed)] {
        let got = figures(order).await;
        for ((service, got), (_, want)) in got.iter().zip(&want) {
            for metric in [
                "deployment_frequency",
                "lead_time",
                "change_failure_rate",
                "recovery_time",
                "rework_rate",
            ] {
                let at = format!("{name}: {service}: {metric}");
                common::assert_matches(&got[metric], &want[metric], &at);
            }
        }
    }
}
