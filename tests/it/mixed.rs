//! Services seen through several providers at once, over HTTP to `em-agent serve`: GitHub pushes deployed
//! by CircleCI deploy workflows (one of them also reported as a GitHub deployment), a reviewed pull request,
//! an incident reported by a script through the generic provider, a rollback, and the same service's ECS
//! deployments from EventBridge with a circuit breaker's rollback; a GitLab project deployed by ArgoCD; a
//! Bitbucket repository, its pull request and its Jenkins jobs; and a Heroku app with a rollback release.
//! The DORA and delivery figures are worked out by hand below, and must come out the same whatever order
//! the deliveries arrive in and however often.

use crate::common;

use crate::common::{delivery, post_signed, secrets, Delivery, Server};
use serde_json::{json, Value};

const REPO: &str = "acme/shop";
const C1: &str = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1";
const C2: &str = "c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2";
const C3: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";
const G1: &str = "9191919191919191919191919191919191919191";
const L1: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const L2: &str = "a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2";
const L0: &str = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0";
const NULL: &str = "0000000000000000000000000000000000000000";

const CONFIG: &str = r#"
production_environments = ["production", "prod", "acme-billing"]
incident_attribution_window = "24h"

[[services]]
name = "shop"
team = "web"
repositories = ["acme/shop", "ecs:prod/shop"]

[[services]]
name = "catalog"
team = "web"
repositories = ["group/catalog"]

[[services]]
name = "ledger"
team = "money"
repositories = ["acme/ledger"]

[[services]]
name = "billing"
team = "money"
repositories = ["acme-billing"]
"#;

fn push(id: &str, before: &str, commits: &[(&str, &str)]) -> Delivery {
    common::github_push(REPO, id, before, commits)
}

/// A CircleCI `deploy-prod` workflow of `sha` created at `created` that finished at `stopped`.
fn circleci_deploy(id: &str, sha: &str, created: &str, stopped: &str, status: &str) -> Delivery {
    delivery(
        "circleci",
        id,
        &[("circleci-event-type", "workflow-completed")],
        json!({
            "id": id, "type": "workflow-completed", "happened_at": stopped,
            "project": {"id": "p", "name": "shop", "slug": "gh/acme/shop"},
            "organization": {"id": "o", "name": "acme"},
            "workflow": {"id": format!("wf-{id}"), "name": "deploy-prod", "created_at": created,
                         "stopped_at": stopped, "url": "https://app.circleci.com/x", "status": status},
            "pipeline": {"id": "pl", "number": 1, "created_at": stopped, "trigger": {"type": "webhook"},
                         "vcs": {"provider_name": "github", "origin_repository_url": "https://github.com/acme/shop",
                                 "target_repository_url": "https://github.com/acme/shop", "revision": sha,
                                 "branch": "main"}},
        }),
    )
}

fn github_deployment(id: &str, sha: &str, time: &str) -> Delivery {
    common::github_deployment(REPO, id, 77, sha, time)
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

fn ecs(id: &str, event: &str, deployment: &str, time: &str, reason: &str) -> Delivery {
    delivery(
        "aws",
        id,
        &[],
        json!({
            "version": "0", "id": id, "detail-type": "ECS Deployment State Change", "source": "aws.ecs",
            "account": "111122223333", "time": time, "region": "eu-west-1",
            "resources": ["arn:aws:ecs:eu-west-1:111122223333:service/prod/shop"],
            "detail": {"eventType": "INFO", "eventName": event, "deploymentId": deployment,
                       "updatedAt": time, "reason": reason},
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

/// A GitHub pull request event of #12 on the shop.
fn pull_request(id: &str, action: &str, merged_at: Option<&str>) -> Delivery {
    delivery(
        "github",
        id,
        &[
            ("X-GitHub-Event", "pull_request"),
            ("X-GitHub-Delivery", id),
        ],
        json!({
            "action": action,
            "pull_request": {"number": 12, "title": "Faster checkout", "created_at": "2025-06-02T15:00:00Z",
                             "merged_at": merged_at, "closed_at": merged_at, "merge_commit_sha": C3},
            "repository": {"full_name": REPO, "default_branch": "main"},
        }),
    )
}

fn review(id: &str, state: &str, submitted_at: &str) -> Delivery {
    delivery(
        "github",
        id,
        &[
            ("X-GitHub-Event", "pull_request_review"),
            ("X-GitHub-Delivery", id),
        ],
        json!({
            "action": "submitted",
            "review": {"id": 1, "state": state, "submitted_at": submitted_at},
            "pull_request": {"number": 12, "title": "Faster checkout", "created_at": "2025-06-02T15:00:00Z"},
            "repository": {"full_name": REPO, "default_branch": "main"},
        }),
    )
}

fn bitbucket(id: &str, event: &str, body: Value) -> Delivery {
    delivery(
        "bitbucket",
        id,
        &[("X-Event-Key", event), ("X-Request-UUID", id)],
        body,
    )
}

const LEDGER: &str = "acme/ledger";

/// The ledger's push to `main` that merged pull request #3: the branch's commit and the merge commit.
fn ledger_push(id: &str) -> Delivery {
    bitbucket(
        id,
        "repo:push",
        json!({
            "repository": {"full_name": LEDGER, "mainbranch": {"name": "main"}},
            "push": {"changes": [{
                "old": {"type": "branch", "name": "main", "target": {"hash": L0}},
                "new": {"type": "branch", "name": "main", "target": {"hash": L2}},
                // Newest first, as Bitbucket lists them.
                "commits": [
                    {"hash": L2, "date": "2025-06-02T12:00:00+00:00", "message": "Merged in ledger-rounding (pull request #3)"},
                    {"hash": L1, "date": "2025-06-02T07:00:00+00:00", "message": "Round half to even"},
                ],
            }]},
        }),
    )
}

fn ledger_pull_request(id: &str, event: &str, extra: Value) -> Delivery {
    let mut pr = json!({"id": 3, "title": "Round half to even", "created_on": "2025-06-02T08:00:00+00:00",
                        "state": "OPEN"});
    let mut body = json!({"repository": {"full_name": LEDGER}});
    if let (Some(pr), Some(extra)) = (pr.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if k == "approval" {
                body["approval"] = v.clone();
            } else {
                pr.insert(k.clone(), v.clone());
            }
        }
    }
    body["pullrequest"] = pr;
    bitbucket(id, event, body)
}

/// A Jenkins Notification plugin `COMPLETED` notification of job `name`, build `number`, that ended at
/// `end` (epoch ms) after `duration` ms, on the ledger's `sha`.
fn jenkins(name: &str, number: u64, status: &str, end: i64, duration: i64, sha: &str) -> Delivery {
    delivery(
        "jenkins",
        &format!("{name}-{number}"),
        &[],
        json!({
            "name": name, "url": format!("job/{name}/"),
            "build": {"full_url": format!("https://ci.acme.test/job/{name}/{number}/"), "number": number,
                      "queue_id": 7, "timestamp": end, "duration": duration, "phase": "COMPLETED",
                      "status": status, "url": format!("job/{name}/{number}/"),
                      "scm": {"url": "https://bitbucket.org/acme/ledger.git", "branch": "origin/main",
                              "commit": sha},
                      "parameters": {}, "log": "", "artifacts": {}},
        }),
    )
}

/// A Heroku `api:release` of the billing app.
fn heroku(
    id: &str,
    version: u32,
    status: &str,
    description: &str,
    commit: &str,
    time: &str,
) -> Delivery {
    delivery(
        "heroku",
        id,
        &[],
        json!({
            "id": id, "action": "update", "resource": "release",
            "webhook_metadata": {"delivery": {"id": id}, "event": {"include": "api:release"}},
            "data": {"id": format!("release-{version}"), "version": version, "status": status,
                     "description": description, "app": {"name": "acme-billing"},
                     "slug": {"commit": commit}, "created_at": time, "updated_at": time},
        }),
    )
}

fn history() -> Vec<Delivery> {
    vec![
        push(
            "push-1",
            NULL,
            &[(C1, "2025-06-02T09:00:00Z"), (C2, "2025-06-02T10:00:00Z")],
        ),
        circleci_deploy(
            "cci-1",
            C2,
            "2025-06-02T11:50:00Z",
            "2025-06-02T12:00:00Z",
            "success",
        ),
        // The GitHub deployment the same CircleCI job created, 3 minutes later: the same deployment.
        github_deployment("gh-dep-1", C2, "2025-06-02T12:03:00Z"),
        push("push-2", C2, &[(C3, "2025-06-03T08:00:00Z")]),
        circleci_deploy(
            "cci-2",
            C3,
            "2025-06-03T08:52:00Z",
            "2025-06-03T09:00:00Z",
            "success",
        ),
        incident("inc-7-opened", "opened", "2025-06-03T09:30:00Z"),
        incident("inc-7-resolved", "resolved", "2025-06-03T10:20:00Z"),
        // C2 again, after C3: a rollback.
        circleci_deploy(
            "cci-3",
            C2,
            "2025-06-03T10:55:00Z",
            "2025-06-03T11:00:00Z",
            "success",
        ),
        // A failed deploy workflow is a failed attempt, not a deployment.
        circleci_deploy(
            "cci-4",
            C3,
            "2025-06-03T12:40:00Z",
            "2025-06-03T13:00:00Z",
            "failed",
        ),
        ecs(
            "ecs-1",
            "SERVICE_DEPLOYMENT_COMPLETED",
            "ecs-svc/1",
            "2025-06-04T10:00:00Z",
            "ECS deployment ecs-svc/1 completed.",
        ),
        ecs(
            "ecs-2",
            "SERVICE_DEPLOYMENT_FAILED",
            "ecs-svc/2",
            "2025-06-04T11:00:00Z",
            "ECS deployment circuit breaker: task failed to start.",
        ),
        // The circuit breaker rolls ecs-svc/2 back: a new deployment restoring ecs-svc/1's version, which
        // completes 15 minutes later (the same deployment reported again).
        ecs(
            "ecs-3",
            "SERVICE_DEPLOYMENT_IN_PROGRESS",
            "ecs-svc/3",
            "2025-06-04T11:05:00Z",
            "ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/1.",
        ),
        ecs(
            "ecs-4",
            "SERVICE_DEPLOYMENT_COMPLETED",
            "ecs-svc/3",
            "2025-06-04T11:20:00Z",
            "ECS deployment ecs-svc/3 completed.",
        ),
        // Pull request #12, merged as C3.
        pull_request("pr-12-opened", "opened", None),
        review("pr-12-review", "approved", "2025-06-02T17:00:00Z"),
        pull_request("pr-12-merged", "closed", Some("2025-06-03T08:00:00Z")),
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
        // The ledger: pull request #3 merged as L2, whose push brings L1 too, deployed by Jenkins.
        ledger_pull_request("bb-pr-3-created", "pullrequest:created", json!({})),
        ledger_pull_request(
            "bb-pr-3-approved",
            "pullrequest:approved",
            json!({"approval": {"date": "2025-06-02T10:00:00+00:00", "user": {"display_name": "Reviewer"}}}),
        ),
        ledger_pull_request(
            "bb-pr-3-fulfilled",
            "pullrequest:fulfilled",
            json!({"state": "MERGED", "closed_on": "2025-06-02T12:00:00+00:00",
                   "merge_commit": {"hash": &L2[..12]}}),
        ),
        ledger_push("bb-push-1"),
        // A test job that failed at 11:00 after 2 minutes, and the deploy job: L2 at 14:00, 10 minutes.
        jenkins(
            "ledger-tests",
            41,
            "FAILURE",
            1_748_862_000_000,
            120_000,
            L1,
        ),
        jenkins(
            "ledger-deploy",
            17,
            "SUCCESS",
            1_748_872_800_000,
            600_000,
            L2,
        ),
        // The billing app: v1, v2, `heroku rollback` to v1, a failed release, and one still pending.
        heroku(
            "hk-1",
            1,
            "succeeded",
            "Deploy b1b1b1b",
            "b1b1b1b",
            "2025-06-02T10:00:00Z",
        ),
        heroku(
            "hk-2",
            2,
            "succeeded",
            "Deploy b2b2b2b",
            "b2b2b2b",
            "2025-06-03T10:00:00Z",
        ),
        heroku(
            "hk-3",
            3,
            "succeeded",
            "Rollback to v1",
            "b1b1b1b",
            "2025-06-03T11:00:00Z",
        ),
        heroku(
            "hk-4",
            4,
            "failed",
            "Deploy b4b4b4b",
            "b4b4b4b",
            "2025-06-04T09:00:00Z",
        ),
        heroku(
            "hk-5",
            5,
            "pending",
            "Deploy b5b5b5b",
            "b5b5b5b",
            "2025-06-04T12:00:00Z",
        ),
    ]
}

/// What the history must give for `shop` over [2025-06-02, 2025-06-05), worked out by hand:
/// - deployments: cci-1 (12:00 on the 2nd; gh-dep-1 is its second report), cci-2, cci-3, ecs-1 and the
///   circuit breaker's rollback ecs-svc/3 (from its start, 11:05 on the 4th; ecs-4 is its second report);
///   cci-4 and ecs-2 are failed attempts: 5 in 3 days, 1.67 a day (elite);
/// - lead times: cci-1 ships C2 (2 h) and C1 (3 h); cci-2 ships C3 (1 h); cci-3 ships nothing new (C2 was
///   shipped); the ECS deployments name no commit: 3 changes, median 2 h (elite), p90 the 3rd of 3, 3 h;
/// - failures: cci-2 (INC-7 opened 30 min after it, and rolled back by cci-3): 1 of 5 (low); ecs-1 did not
///   fail: the circuit breaker rolled back the failed attempt ecs-2, restoring ecs-1's version;
/// - rework: cci-3, the rollback, and ecs-svc/3, the circuit breaker's: 2 of 5;
/// - recovery: INC-7, attributed to cci-2, resolved after 50 min: median 3000 s (elite).
fn expected_shop() -> Value {
    json!({
        "deployment_frequency": {"deployments": 5, "per_day": 5.0 / 3.0, "level": "elite"},
        "lead_time": {"changes": 3, "excluded": 0, "median_seconds": 7200.0, "p90_seconds": 10800.0,
                      "level": "elite"},
        "change_failure_rate": {"deployments": 5, "failed": 1, "ratio": 0.2, "level": "low"},
        "recovery_time": {"incidents": 1, "open": 0, "median_seconds": 3000.0, "level": "elite"},
        "rework_rate": {"deployments": 5, "rework": 2, "ratio": 0.4},
    })
}

/// A pull request cycle with no pull request in it.
fn no_pull_requests() -> Value {
    let none = json!({"pull_requests": 0, "median_seconds": null});
    json!({"pull_requests": 0, "deployed": 0, "median_seconds": null, "p90_seconds": null,
           "stages": {"coding": none, "pickup": none, "review": none, "merge": none, "deploy": none}})
}

fn no_builds() -> Value {
    json!({"builds": 0, "succeeded": 0, "failed": 0, "cancelled": 0, "median_seconds": null,
           "p90_seconds": null})
}

/// The shop's delivery figures over the same window:
/// - attempts: the 5 deployments and the failed cci-4 and ecs-2: 5 of 7 succeeded;
/// - builds: the CircleCI workflows cci-1 (10 min), cci-2 (8), cci-3 (5) succeeded, cci-4 (20) failed:
///   median 9 min (540 s), p90 the 4th of 4, 1200 s;
/// - pull request #12: opened 15:00 on the 2nd, reviewed and approved 17:00, merged 08:00 on the 3rd as
///   C3, which cci-2 shipped at 09:00. Its merge's push lists C3 alone (08:00, after the opening: no coding
///   stage), so the cycle runs from the opening: 18 h; pickup 2 h, review 0, merge 15 h, deploy 1 h.
fn expected_shop_delivery() -> Value {
    let one = |s: f64| json!({"pull_requests": 1, "median_seconds": s});
    json!({
        "deployment_success_rate": {"attempts": 7, "succeeded": 5, "failed": 2, "ratio": 5.0 / 7.0},
        "build_duration": {"builds": 4, "succeeded": 3, "failed": 1, "cancelled": 0,
                           "median_seconds": 540.0, "p90_seconds": 1200.0},
        "pr_cycle_time": {"pull_requests": 1, "deployed": 1, "median_seconds": 64800.0,
                          "p90_seconds": 64800.0,
                          "stages": {"coding": {"pull_requests": 0, "median_seconds": null},
                                     "pickup": one(7200.0), "review": one(0.0), "merge": one(54000.0),
                                     "deploy": one(3600.0)}},
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

/// The catalog's: its one sync succeeded and one failed; no build, no pull request.
fn expected_catalog_delivery() -> Value {
    json!({
        "deployment_success_rate": {"attempts": 2, "succeeded": 1, "failed": 1, "ratio": 0.5},
        "build_duration": no_builds(),
        "pr_cycle_time": no_pull_requests(),
    })
}

/// The ledger: Jenkins' `ledger-deploy` (a deploy job by the default rule) shipped L2 at 14:00 on the 2nd,
/// and with it L1, the other commit of L2's push: one deployment (1/3 a day: high), lead times 2 h and 7 h
/// (median 4.5 h, 16200 s: elite; p90 the 2nd of 2, 7 h); no failure, no incident, no rework.
fn expected_ledger() -> Value {
    json!({
        "deployment_frequency": {"deployments": 1, "per_day": 1.0 / 3.0, "level": "high"},
        "lead_time": {"changes": 2, "excluded": 0, "median_seconds": 16200.0, "p90_seconds": 25200.0,
                      "level": "elite"},
        "change_failure_rate": {"deployments": 1, "failed": 0, "ratio": 0.0, "level": "elite"},
        "recovery_time": {"incidents": 0, "open": 0, "median_seconds": null, "level": null},
        "rework_rate": {"deployments": 1, "rework": 0, "ratio": 0.0},
    })
}

/// Its delivery figures: 1 of 1 attempts succeeded; builds `ledger-tests` (failed, 2 min) and
/// `ledger-deploy` (10 min): median 6 min, p90 10 min. Pull request #3: first commit L1 07:00, opened 08:00,
/// approved (its first review) 10:00, merged 12:00 as L2 (Bitbucket names its 12-character prefix),
/// deployed 14:00: a cycle of 7 h; coding 1 h, pickup 2 h, review 0, merge 2 h, deploy 2 h.
fn expected_ledger_delivery() -> Value {
    let one = |s: f64| json!({"pull_requests": 1, "median_seconds": s});
    json!({
        "deployment_success_rate": {"attempts": 1, "succeeded": 1, "failed": 0, "ratio": 1.0},
        "build_duration": {"builds": 2, "succeeded": 1, "failed": 1, "cancelled": 0,
                           "median_seconds": 360.0, "p90_seconds": 600.0},
        "pr_cycle_time": {"pull_requests": 1, "deployed": 1, "median_seconds": 25200.0,
                          "p90_seconds": 25200.0,
                          "stages": {"coding": one(3600.0), "pickup": one(7200.0), "review": one(0.0),
                                     "merge": one(7200.0), "deploy": one(7200.0)}},
    })
}

/// The billing app on Heroku (its name listed as a production environment): releases v1, v2 and v3, a
/// `Rollback to v1`: 3 deployments (1 a day: elite); v3 rolls v2 back, so v2 failed (1 of 3: low) and v3 is
/// rework; no pushes, so no lead time. v4 failed (a failed attempt); v5 is still pending (nothing).
fn expected_billing() -> Value {
    json!({
        "deployment_frequency": {"deployments": 3, "per_day": 1.0, "level": "elite"},
        "lead_time": {"changes": 0, "excluded": 0, "median_seconds": null, "p90_seconds": null,
                      "level": null},
        "change_failure_rate": {"deployments": 3, "failed": 1, "ratio": 1.0 / 3.0, "level": "low"},
        "recovery_time": {"incidents": 0, "open": 0, "median_seconds": null, "level": null},
        "rework_rate": {"deployments": 3, "rework": 1, "ratio": 1.0 / 3.0},
    })
}

fn expected_billing_delivery() -> Value {
    json!({
        "deployment_success_rate": {"attempts": 4, "succeeded": 3, "failed": 1, "ratio": 0.75},
        "build_duration": no_builds(),
        "pr_cycle_time": no_pull_requests(),
    })
}

const SERVICES: [&str; 4] = ["shop", "catalog", "ledger", "billing"];

/// Each service's DORA and delivery figures over [2025-06-02, 2025-06-05) once `order` is delivered.
async fn figures(order: Vec<Delivery>) -> Vec<(&'static str, Value, Value)> {
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
    for service in SERVICES {
        let q = [
            ("service", service),
            ("from", "2025-06-02"),
            ("to", "2025-06-05"),
        ];
        out.push((
            service,
            server.get_json(&client, "/v1/metrics/dora", &q).await,
            server.get_json(&client, "/v1/metrics/delivery", &q).await,
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_seen_through_several_providers_give_the_hand_worked_figures_in_any_order() {
    let want = [
        (expected_shop(), expected_shop_delivery()),
        (expected_catalog(), expected_catalog_delivery()),
        (expected_ledger(), expected_ledger_delivery()),
        (expected_billing(), expected_billing_delivery()),
    ];
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
        assert_eq!(got.len(), want.len());
        for ((service, dora, delivery), (want_dora, want_delivery)) in got.iter().zip(&want) {
            for metric in [
                "deployment_frequency",
                "lead_time",
                "change_failure_rate",
                "recovery_time",
                "rework_rate",
            ] {
                let at = format!("{name}: {service}: {metric}");
                common::assert_matches(&dora[metric], &want_dora[metric], &at);
            }
            for metric in ["deployment_success_rate", "build_duration", "pr_cycle_time"] {
                let at = format!("{name}: {service}: {metric}");
                common::assert_matches(&delivery[metric], &want_delivery[metric], &at);
            }
        }
    }
}

/// The rollback reports of ArgoCD, Kubernetes and Jenkins (their fixtures) after a deployment of another
/// commit: each is rework and fails the deployment it rolls back — ArgoCD's by the sha rule (its template
/// carries no mark), Kubernetes' and Jenkins' by their `rollback` mark, whatever the shas.
#[test]
fn rollback_reports_of_argocd_kubernetes_and_jenkins_fail_what_they_roll_back() {
    use em_core::domain::Fact;
    use em_core::ports::StoredFacts;
    use em_metrics::derive::{derive, ServiceFacts};
    let fixtures = common::workspace().join("shared/providers/tests/fixtures");
    let facts_of = |provider: &str, body: &Value| -> Vec<Fact> {
        em_providers::by_name(provider)
            .expect("a provider")
            .parse(None, body.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{provider}: {e}"))
    };
    let fixture = |provider: &str, case: &str| -> Value {
        serde_json::from_slice(
            &std::fs::read(fixtures.join(provider).join(format!("{case}.json"))).expect("fixture"),
        )
        .expect("json")
    };
    // (provider, the first deployment's fixture, what the second changes in it, the rollback's fixture)
    let cases = [
        (
            "argocd",
            "sync-rollback",
            json!({"id": "guestbook.2024-03-12T09:50:00Z", "time": "2024-03-12T09:50:00Z"}),
            "sync-succeeded",
            "sync-rollback",
        ),
        (
            "kubernetes",
            "rollout-complete",
            json!({"id": "prod-eu1.shop.checkout-api.8", "deployment_id": "prod-eu1.shop.checkout-api.8",
                   "sha": "5e6f708192a3b4c5d6e7f8091a2b3c4d1a2b3c4d", "time": "2025-04-03T15:20:02Z"}),
            "rollout-complete",
            "rollout-undo",
        ),
        (
            "jenkins",
            "deployment-report",
            json!({"id": "jenkins-checkout-deploy-58", "sha": "a71e3c90b4d25f8e6c1b0a9d7e4f3c2b1a0d9e8f",
                   "time": "2025-05-12T14:03:05Z"}),
            "deployment-report",
            "deployment-report-rollback",
        ),
    ];
    let config =
        em_core::config::Config::parse("production_environments = [\"production\", \"default\"]\n")
            .expect("config");
    for (provider, first_case, change, second_case, rollback_case) in cases {
        // ArgoCD's first sync is the rollback's revision, earlier; the others' first deployment is their
        // fixture, and the second another commit, later.
        let (first, second) = if provider == "argocd" {
            let mut first = fixture(provider, first_case);
            for (k, v) in change.as_object().expect("fields") {
                first[k] = v.clone();
            }
            (first, fixture(provider, second_case))
        } else {
            let mut second = fixture(provider, second_case);
            for (k, v) in change.as_object().expect("fields") {
                second[k] = v.clone();
            }
            (fixture(provider, first_case), second)
        };
        let mut stored = StoredFacts::default();
        for body in [&first, &second, &fixture(provider, rollback_case)] {
            for f in facts_of(provider, body) {
                if let Fact::Deployment(d) = f {
                    stored.deployments.push(d);
                }
            }
        }
        assert_eq!(stored.deployments.len(), 3, "{provider}");
        let derived = derive(
            &ServiceFacts::from_stored(&config, stored),
            config.attribution_window(),
        );
        let flags: Vec<(bool, bool)> = derived
            .deployments
            .iter()
            .map(|d| (d.failed, d.rework))
            .collect();
        assert_eq!(
            flags,
            [(false, false), (true, false), (false, true)],
            "{provider}: {derived:?}"
        );
    }
}
