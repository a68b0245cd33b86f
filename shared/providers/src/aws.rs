//! AWS deployments and alarms as EventBridge events: ECS service deployments, CodeDeploy deployments and
//! CodePipeline executions that finished, and CloudWatch alarms' state changes ([`alarm`]). From another account (or anywhere), an EventBridge API destination posts each
//! event with the secret in `X-EM-Agent-Token` (its API-key connection); the event is named by its `id`.
//! None of these events carries a commit, so their deployments count in frequency, failure rate and
//! recovery, but ship no changes (docs/providers/aws.md).

use em_core::domain::{Deployment, DeploymentOutcome, Fact};
use em_core::time::Timestamp;
use serde::Deserialize;

mod alarm;

use crate::auth::Auth;
use crate::{parse_error, IdSource, ParseError, Provider};

const NAME: &str = "aws";

pub const PROVIDER: Provider = Provider {
    name: NAME,
    title: "AWS",
    auth: Auth::Token {
        header: "X-EM-Agent-Token",
    },
    delivery_id: &[IdSource::Body(&["id"])],
    event_header: None,
    events: &[
        "ECS Deployment State Change",
        "CodeDeploy Deployment State-change Notification",
        "CodePipeline Pipeline Execution State Change",
        "CloudWatch Alarm State Change",
    ],
    parse,
    sample: "ecs-deployment-completed",
    validate: false,
};

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "detail-type", default)]
    detail_type: String,
}

#[derive(Deserialize)]
struct Event<D> {
    time: Timestamp,
    #[serde(default)]
    resources: Vec<String>,
    detail: D,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EcsDeployment {
    event_name: String,
    deployment_id: String,
    #[serde(default)]
    updated_at: Option<Timestamp>,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CodeDeployDeployment {
    application: String,
    deployment_group: String,
    deployment_id: String,
    state: String,
}

#[derive(Deserialize)]
struct PipelineExecution {
    pipeline: String,
    #[serde(rename = "execution-id")]
    execution_id: String,
    state: String,
}

/// How the circuit breaker names a rollback it starts: `ECS deployment circuit breaker: rolling back to
/// deploymentId <id>.` (the deployment in progress is the rollback).
const CIRCUIT_BREAKER_ROLLBACK: &str = "ECS deployment circuit breaker: rolling back";

fn deployment(
    repo: String,
    deployment_id: String,
    environment: String,
    time: Timestamp,
    outcome: DeploymentOutcome,
) -> Vec<Fact> {
    vec![Fact::Deployment(Deployment {
        provider: NAME.into(),
        repo,
        deployment_id,
        environment,
        production: None,
        // None of these events names a commit.
        sha: String::new(),
        time: time.0,
        outcome,
        rollback: false,
        rework: false,
    })]
}

fn parse(_event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
    let head: Head =
        serde_json::from_slice(body).map_err(|e| parse_error(NAME, "detail-type", e))?;
    let kind = head.detail_type.as_str();
    let err = |e: serde_json::Error| parse_error(NAME, kind, e);
    match kind {
        "ECS Deployment State Change" => {
            let e: Event<EcsDeployment> = serde_json::from_slice(body).map_err(err)?;
            // A rollback the circuit breaker starts is a deployment from its start: it restores the version
            // that ran before the failed attempt, so it is rework and fails nothing (the attempt failed). Its
            // completion is a later report of the same deployment, and the earliest report stands.
            let rework = e.detail.event_name == "SERVICE_DEPLOYMENT_IN_PROGRESS"
                && e.detail.reason.starts_with(CIRCUIT_BREAKER_ROLLBACK);
            let outcome = match e.detail.event_name.as_str() {
                "SERVICE_DEPLOYMENT_COMPLETED" => DeploymentOutcome::Success,
                "SERVICE_DEPLOYMENT_IN_PROGRESS" if rework => DeploymentOutcome::Success,
                "SERVICE_DEPLOYMENT_FAILED" => DeploymentOutcome::Failure,
                _ => return Ok(Vec::new()),
            };
            // arn:aws:ecs:<region>:<account>:service/<cluster>/<service>
            let Some((cluster, service)) = e
                .resources
                .iter()
                .find_map(|r| r.split_once(":service/"))
                .and_then(|(_, path)| path.split_once('/'))
            else {
                return Err(parse_error(NAME, kind, "no ECS service ARN in `resources`"));
            };
            let mut facts = deployment(
                format!("ecs:{cluster}/{service}"),
                e.detail.deployment_id,
                cluster.to_string(),
                e.detail.updated_at.unwrap_or(e.time),
                outcome,
            );
            if let Some(Fact::Deployment(d)) = facts.first_mut() {
                d.rework = rework;
            }
            Ok(facts)
        }
        "CodeDeploy Deployment State-change Notification" => {
            let e: Event<CodeDeployDeployment> = serde_json::from_slice(body).map_err(err)?;
            let outcome = match e.detail.state.as_str() {
                "SUCCESS" => DeploymentOutcome::Success,
                "FAILURE" => DeploymentOutcome::Failure,
                _ => return Ok(Vec::new()),
            };
            Ok(deployment(
                format!("codedeploy:{}", e.detail.application),
                e.detail.deployment_id,
                e.detail.deployment_group,
                e.time,
                outcome,
            ))
        }
        "CodePipeline Pipeline Execution State Change" => {
            let e: Event<PipelineExecution> = serde_json::from_slice(body).map_err(err)?;
            let outcome = match e.detail.state.as_str() {
                "SUCCEEDED" => DeploymentOutcome::Success,
                "FAILED" => DeploymentOutcome::Failure,
                _ => return Ok(Vec::new()),
            };
            Ok(deployment(
                format!("codepipeline:{}", e.detail.pipeline),
                e.detail.execution_id,
                e.detail.pipeline,
                e.time,
                outcome,
            ))
        }
        "CloudWatch Alarm State Change" => {
            let e: alarm::AlarmEvent = serde_json::from_slice(body).map_err(err)?;
            Ok(alarm::facts(NAME, e))
        }
        _ => Ok(Vec::new()),
    }
}
