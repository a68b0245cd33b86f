//! The provider contract against real payloads: authentication over the raw body, delivery ids, and the facts
//! each delivery yields (or, for events the product does not use, does not yield).
//!
//! Expected values are read from the payloads themselves; instants are written out by hand in UTC so that a
//! wrong offset conversion shows up as a mismatch.

use std::collections::HashMap;
use std::path::Path;

use em_core::domain::{
    is_null_sha, Deployment, DeploymentOutcome, Fact, IncidentEvent, IncidentEventKind,
    PullRequestEvent, PullRequestEventKind, Push, NULL_SHA,
};
use em_providers::{AuthError, BodyError, Clock, Provider};
use hmac::{Hmac, Mac};
use http::HeaderMap;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::{headers, headers_of, FIXTURES};

const SCENARIO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/data/scenarios/basic"
);

// ---------------------------------------------------------------------------------------------------------------
// Helpers

fn provider(name: &str) -> &'static Provider {
    em_providers::by_name(name).unwrap_or_else(|| panic!("no provider {name}"))
}

/// A clock for schemes without a replay window (every one these tests check).
const CLOCK: Clock = Clock {
    now: 0,
    replay_window: 0,
};

fn auth(p: &Provider, h: &HeaderMap, body: &[u8], secrets: &[Vec<u8>]) -> Result<(), AuthError> {
    p.authenticate(h, body, secrets, CLOCK)
}

fn sign(p: &Provider, secret: &[u8], body: &[u8]) -> Vec<(String, String)> {
    p.sign(secret, body, 0)
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn json_of(rel: &str) -> Value {
    serde_json::from_slice(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

fn text(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

/// Milliseconds of an instant written out by hand as RFC 3339 in UTC.
fn utc(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .timestamp_millis()
}

/// HMAC-SHA256 computed here, independently of the crate, as lowercase hex.
fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn body_hash(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// The event a fixture was sent as, for providers that name it in a header: from `<case>.headers.json`.
fn event_for(provider_name: &str, rel: &str) -> Option<String> {
    let header = provider(provider_name).event_header?.header;
    let file = Path::new(FIXTURES).join(rel.replace(".json", ".headers.json"));
    let h: Value = serde_json::from_slice(&std::fs::read(&file).ok()?).ok()?;
    h.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(header))
        .map(|(_, v)| text(v))
}

fn parse_ok(provider_name: &str, event: Option<&str>, body: &[u8]) -> Vec<Fact> {
    provider(provider_name)
        .parse(event, body)
        .unwrap_or_else(|e| panic!("{provider_name} {event:?}: {e}"))
}

fn parse_fixture(provider_name: &str, rel: &str) -> Vec<Fact> {
    parse_ok(
        provider_name,
        event_for(provider_name, rel).as_deref(),
        &read(rel),
    )
}

fn one_push(facts: Vec<Fact>) -> Push {
    match facts.as_slice() {
        [Fact::Push(p)] => p.clone(),
        other => panic!("expected one push, got {other:?}"),
    }
}

fn one_deployment(facts: Vec<Fact>) -> Deployment {
    match facts.as_slice() {
        [Fact::Deployment(d)] => d.clone(),
        other => panic!("expected one deployment, got {other:?}"),
    }
}

fn one_pull_request(facts: Vec<Fact>) -> PullRequestEvent {
    match facts.as_slice() {
        [Fact::PullRequest(p)] => p.clone(),
        other => panic!("expected one pull request event, got {other:?}"),
    }
}

fn one_incident(facts: Vec<Fact>) -> IncidentEvent {
    match facts.as_slice() {
        [Fact::Incident(i)] => i.clone(),
        other => panic!("expected one incident event, got {other:?}"),
    }
}

/// A short description of each fact, to compare what a delivery yields with what it should.
fn kinds(facts: &[Fact]) -> Vec<String> {
    facts
        .iter()
        .map(|f| match f {
            Fact::Push(_) => "push".to_string(),
            Fact::Deployment(d) => format!("deployment {}", d.outcome.as_str()),
            Fact::Incident(i) => format!("incident {}", i.kind.as_str()),
            Fact::PullRequest(p) => format!("pull_request {}", p.kind.as_str()),
            Fact::Build(b) => format!("build {}", b.outcome.as_str()),
            Fact::WorkItem(w) => format!("work_item {}", w.action.as_str()),
            Fact::QualityReport(q) => format!("quality_report {}", q.analysis_id),
        })
        .collect()
}

/// Payload files of a provider's fixture folder (headers files and the invalid-JSON doc block excluded).
fn payload_files(provider_name: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(Path::new(FIXTURES).join(provider_name))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".json") && !f.ends_with(".headers.json"))
        .map(|f| format!("{provider_name}/{f}"))
        .collect();
    out.sort();
    out
}

/// Sets `path` (slash-separated keys) in a JSON object; `None` removes the key.
fn with(mut v: Value, path: &str, new: Option<Value>) -> Value {
    let mut keys: Vec<&str> = path.split('/').collect();
    let last = keys.pop().unwrap();
    let mut at = &mut v;
    for k in keys {
        at = at.get_mut(k).unwrap_or_else(|| panic!("no {k} in {path}"));
    }
    let obj = at.as_object_mut().unwrap();
    match new {
        Some(n) => {
            obj.insert(last.to_string(), n);
        }
        None => {
            assert!(obj.remove(last).is_some(), "{path} was not there");
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------------------------
// Authentication

#[test]
fn github_published_vector_authenticates_and_sign_reproduces_it() {
    let vectors = json_of("signature-vectors.json");
    let v = vectors["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["provider"] == "github")
        .unwrap();
    let secret = text(&v["secret"]).into_bytes();
    let body = text(&v["body"]).into_bytes();
    let expected = text(&v["expected_header_value"]);
    assert_eq!(
        expected,
        format!("sha256={}", text(&v["expected_signature_hex"]))
    );
    assert_eq!(hmac_hex(&secret, &body), text(&v["expected_signature_hex"]));

    let gh = provider("github");
    let h = headers(&[(&text(&v["header"]), &expected)]);
    assert_eq!(auth(gh, &h, &body, std::slice::from_ref(&secret)), Ok(()));
    assert_eq!(
        sign(gh, &secret, &body),
        vec![("X-Hub-Signature-256".to_string(), expected)]
    );
}

#[test]
fn github_rejects_forged_unsigned_and_tampered_deliveries() {
    let vectors = json_of("signature-vectors.json");
    let v = vectors["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["provider"] == "github")
        .unwrap();
    let secret = text(&v["secret"]).into_bytes();
    let body = text(&v["body"]).into_bytes();
    let hex = text(&v["expected_signature_hex"]);
    let good = headers(&[("X-Hub-Signature-256", &format!("sha256={hex}"))]);
    let gh = provider("github");
    let secrets = vec![secret.clone()];
    let mismatch = Err(AuthError::Mismatch("X-Hub-Signature-256"));

    // Any single changed byte of the raw body breaks the signature.
    for i in 0..body.len() {
        let mut tampered = body.clone();
        tampered[i] ^= 0x01;
        assert_eq!(auth(gh, &good, &tampered, &secrets), mismatch, "byte {i}");
    }
    let mut longer = body.clone();
    longer.push(b'\n');
    assert_eq!(auth(gh, &good, &longer, &secrets), mismatch);

    // Wrong, extended or absent secrets.
    assert_eq!(
        auth(gh, &good, &body, &[b"It's a Secret to Nobody".to_vec()]),
        mismatch
    );
    let mut extended = secret.clone();
    extended.push(b'!');
    assert_eq!(auth(gh, &good, &body, &[extended]), mismatch);
    assert_eq!(auth(gh, &good, &body, &[]), Err(AuthError::NoSecret));

    // Unsigned, or signed in another shape.
    assert_eq!(
        auth(gh, &HeaderMap::new(), &body, &secrets),
        Err(AuthError::Missing("X-Hub-Signature-256"))
    );
    let sha1_only = headers(&[(
        "X-Hub-Signature",
        "sha1=7d38cdd689735b008b3c702edd92eea23791c5f6",
    )]);
    assert_eq!(
        auth(gh, &sha1_only, &body, &secrets),
        Err(AuthError::Missing("X-Hub-Signature-256"))
    );
    for malformed in [
        hex.clone(),
        format!("sha1={hex}"),
        format!("SHA256={hex}"),
        format!("sha256:{hex}"),
        // Not the lower-case hex GitHub sends.
        format!("sha256={}", hex.to_uppercase()),
        format!("sha256={}", "z".repeat(64)),
    ] {
        let h = headers(&[("X-Hub-Signature-256", &malformed)]);
        assert_eq!(
            auth(gh, &h, &body, &secrets),
            Err(AuthError::Malformed("X-Hub-Signature-256")),
            "{malformed}"
        );
    }
    for wrong in [hex[..62].to_string(), format!("{hex}00"), String::new()] {
        let h = headers(&[("X-Hub-Signature-256", &format!("sha256={wrong}"))]);
        assert_eq!(auth(gh, &h, &body, &secrets), mismatch, "{wrong:?}");
    }

    // Whitespace around a header's value is not part of it (RFC 9110, section 5.5).
    let padded = headers(&[("X-Hub-Signature-256", &format!(" sha256={hex} "))]);
    assert_eq!(auth(gh, &padded, &body, &secrets), Ok(()));

    // During a rotation either secret authenticates, in any order.
    assert_eq!(
        auth(gh, &good, &body, &[b"new".to_vec(), secret.clone()]),
        Ok(())
    );
    assert_eq!(auth(gh, &good, &body, &[secret, b"new".to_vec()]), Ok(()));
}

#[test]
fn github_sign_authenticates_a_real_payload_byte_for_byte() {
    let gh = provider("github");
    let body = read("github/push-branch.json");
    let secret = b"webhook secret".to_vec();
    let signed = sign(gh, &secret, &body);
    assert_eq!(
        signed,
        vec![(
            "X-Hub-Signature-256".to_string(),
            format!("sha256={}", hmac_hex(&secret, &body))
        )]
    );
    let h = headers(&[(&signed[0].0, &signed[0].1)]);
    assert_eq!(auth(gh, &h, &body, std::slice::from_ref(&secret)), Ok(()));
    // The same JSON re-serialised is a different body: signatures cover the raw bytes, not the value.
    let reserialised = bytes(&json_of("github/push-branch.json"));
    assert_ne!(reserialised, body);
    assert_eq!(
        auth(gh, &h, &reserialised, &[secret]),
        Err(AuthError::Mismatch("X-Hub-Signature-256"))
    );
}

#[test]
fn pagerduty_accepts_any_listed_signature_and_rotated_secrets() {
    let pd = provider("pagerduty");
    let body = read("pagerduty/incident.triggered.json");
    let (new, old) = (b"new secret".to_vec(), b"old secret".to_vec());
    let by_new = hmac_hex(&new, &body);
    let by_old = hmac_hex(&old, &body);
    let unrelated = hmac_hex(b"someone else", &body);
    let sig = |v: &str| headers(&[("X-PagerDuty-Signature", v)]);
    let mismatch = Err(AuthError::Mismatch("X-PagerDuty-Signature"));

    assert_eq!(
        sign(pd, &new, &body),
        vec![("X-PagerDuty-Signature".to_string(), format!("v1={by_new}"))]
    );

    // Several signatures, only the second one matches.
    let second = sig(&format!("v1={unrelated},v1={by_new}"));
    assert_eq!(auth(pd, &second, &body, std::slice::from_ref(&new)), Ok(()));
    let spaced = sig(&format!("v1={unrelated}, v1={by_new}"));
    assert_eq!(auth(pd, &spaced, &body, std::slice::from_ref(&new)), Ok(()));

    // None matches, or the body was changed after signing.
    let none = sig(&format!("v1={unrelated},v1={}", hmac_hex(b"other", &body)));
    assert_eq!(auth(pd, &none, &body, std::slice::from_ref(&new)), mismatch);
    let mut tampered = body.clone();
    let last = tampered.len() - 2;
    tampered[last] ^= 0x01;
    assert_eq!(
        auth(pd, &second, &tampered, std::slice::from_ref(&new)),
        mismatch
    );
    let upper = sig(&format!("v1={}", by_new.to_uppercase()));
    assert_eq!(
        auth(pd, &upper, &body, std::slice::from_ref(&new)),
        Err(AuthError::Malformed("X-PagerDuty-Signature"))
    );

    // Unsigned, or signed with an unknown scheme only.
    assert_eq!(
        auth(pd, &HeaderMap::new(), &body, std::slice::from_ref(&new)),
        Err(AuthError::Missing("X-PagerDuty-Signature"))
    );
    for malformed in [by_new.clone(), format!("v0={by_new}"), String::new()] {
        assert_eq!(
            auth(pd, &sig(&malformed), &body, std::slice::from_ref(&new)),
            Err(AuthError::Malformed("X-PagerDuty-Signature")),
            "{malformed:?}"
        );
    }

    // Rotation: a delivery still signed with the old secret is accepted while both are configured.
    let by_old_only = sig(&format!("v1={by_old}"));
    assert_eq!(
        auth(pd, &by_old_only, &body, &[new.clone(), old.clone()]),
        Ok(())
    );
    assert_eq!(
        auth(pd, &by_old_only, &body, std::slice::from_ref(&new)),
        mismatch
    );
    // PagerDuty itself signs with both during a rotation.
    let both = sig(&format!("v1={by_new},v1={by_old}"));
    assert_eq!(auth(pd, &both, &body, &[old]), Ok(()));
}

#[test]
fn gitlab_compares_the_whole_token() {
    let gl = provider("gitlab");
    let body = read("gitlab/push-hook.json");
    let token = b"s3cr3t-t0ken".to_vec();
    let tok = |v: &str| headers(&[("X-Gitlab-Token", v)]);
    let mismatch = Err(AuthError::Mismatch("X-Gitlab-Token"));

    assert_eq!(
        sign(gl, &token, &body),
        vec![("X-Gitlab-Token".to_string(), "s3cr3t-t0ken".to_string())]
    );
    assert_eq!(
        auth(
            gl,
            &tok("s3cr3t-t0ken"),
            &body,
            std::slice::from_ref(&token)
        ),
        Ok(())
    );
    for wrong in [
        "s3cr3t",
        "s3cr3t-t0ken2",
        "S3CR3T-T0KEN",
        "s3cr3t-t0ke",
        "",
        " s3cr3t-t0ken",
    ] {
        assert_eq!(
            auth(gl, &tok(wrong), &body, std::slice::from_ref(&token)),
            mismatch,
            "{wrong:?}"
        );
    }
    assert_eq!(
        auth(gl, &tok("s3cr3t-t0ken"), &body, &[]),
        Err(AuthError::NoSecret)
    );
    assert_eq!(
        auth(gl, &HeaderMap::new(), &body, std::slice::from_ref(&token)),
        Err(AuthError::Missing("X-Gitlab-Token"))
    );
    // Rotation: the old token still works while both are configured.
    assert_eq!(
        auth(
            gl,
            &tok("s3cr3t-t0ken"),
            &body,
            &[b"next-token".to_vec(), token]
        ),
        Ok(())
    );
}

#[test]
fn the_wrong_event_name_for_a_body_gives_no_facts() {
    assert!(parse_ok("github", Some("release"), &read("github/push-branch.json")).is_empty());
    assert!(parse_ok("github", None, &read("github/push-branch.json")).is_empty());
}

// ---------------------------------------------------------------------------------------------------------------
// GitHub facts

#[test]
fn github_push_to_the_default_branch_carries_its_commits() {
    let rel = "github/push-branch.json";
    let j = json_of(rel);
    assert_eq!(
        text(&j["ref"]),
        format!("refs/heads/{}", text(&j["repository"]["default_branch"]))
    );
    let push = one_push(parse_fixture("github", rel));
    assert_eq!(push.provider, "github");
    assert_eq!(push.repo, text(&j["repository"]["full_name"]));
    assert_eq!(push.repo, "woodpecker-ci/woodpecker");
    assert_eq!(push.before, text(&j["before"]));
    assert_eq!(push.after, text(&j["after"]));
    let commits = j["commits"].as_array().unwrap();
    assert_eq!(push.commits.len(), commits.len());
    assert_eq!(push.commits.len(), 1);
    assert_eq!(push.commits[0].sha, text(&commits[0]["id"]));
    assert_eq!(push.commits[0].sha, push.after);
    assert_eq!(push.commits[0].message, text(&commits[0]["message"]));
    // The commit's local time carries its offset; the fact holds the UTC instant.
    assert_eq!(text(&commits[0]["timestamp"]), "2022-01-16T22:57:37+01:00");
    assert_eq!(push.commits[0].time, utc("2022-01-16T21:57:37Z"));
}

#[test]
fn github_push_that_creates_the_default_branch_is_a_change() {
    // octokit's "with-new-branch" example creates `master`, which is also the repository's default branch.
    let rel = "github/push-new-branch.json";
    let j = json_of(rel);
    assert_eq!(j["created"], json!(true));
    assert_eq!(text(&j["ref"]), "refs/heads/master");
    assert_eq!(text(&j["repository"]["default_branch"]), "master");
    let push = one_push(parse_fixture("github", rel));
    assert_eq!(push.repo, text(&j["repository"]["full_name"]));
    assert_eq!(push.before, NULL_SHA);
    assert_eq!(push.after, text(&j["after"]));
    assert_eq!(push.commits.len(), 1);
    assert_eq!(push.commits[0].sha, text(&j["commits"][0]["id"]));
    assert_eq!(push.commits[0].message, "Initial commit");
    assert_eq!(push.commits[0].time, utc("2019-05-15T15:19:25Z"));

    // The same push to any other branch is not a change to the product.
    let feature = with(j.clone(), "ref", Some(json!("refs/heads/feature/x")));
    assert!(parse_ok("github", Some("push"), &bytes(&feature)).is_empty());
    let prefixed = with(j.clone(), "ref", Some(json!("refs/heads/master-old")));
    assert!(parse_ok("github", Some("push"), &bytes(&prefixed)).is_empty());

    // Older payloads name the default branch only as `master_branch`.
    let legacy = with(j, "repository/default_branch", None);
    assert_eq!(
        one_push(parse_ok("github", Some("push"), &bytes(&legacy))).after,
        text(&legacy["after"])
    );
}

#[test]
fn github_tag_pushes_and_deletions_carry_no_change() {
    let rel = "github/push-tag-deleted.json";
    let j = json_of(rel);
    assert_eq!(j["deleted"], json!(true));
    assert!(text(&j["ref"]).starts_with("refs/tags/"));
    assert!(is_null_sha(&text(&j["after"])));
    assert!(parse_fixture("github", rel).is_empty());

    // A tag pushed (not deleted) with the default branch's commits is still not a change.
    let branch = json_of("github/push-branch.json");
    let tag = with(branch.clone(), "ref", Some(json!("refs/tags/v1.0.0")));
    assert!(parse_ok("github", Some("push"), &bytes(&tag)).is_empty());

    // Deleting the default branch itself.
    let deleted = with(branch.clone(), "deleted", Some(json!(true)));
    let deleted = with(deleted, "after", Some(json!(NULL_SHA)));
    let deleted = with(deleted, "commits", Some(json!([])));
    assert!(parse_ok("github", Some("push"), &bytes(&deleted)).is_empty());
}

#[test]
fn github_successful_deployment_status() {
    let rel = "github/deployment_status-success.json";
    let j = json_of(rel);
    let d = one_deployment(parse_fixture("github", rel));
    assert_eq!(d.provider, "github");
    assert_eq!(d.repo, text(&j["repository"]["full_name"]));
    assert_eq!(
        d.deployment_id,
        j["deployment"]["id"].as_u64().unwrap().to_string()
    );
    assert_eq!(d.deployment_id, "145988746");
    assert_eq!(d.sha, text(&j["deployment"]["sha"]));
    assert_eq!(d.environment, text(&j["deployment_status"]["environment"]));
    assert_eq!(d.environment, "production");
    assert_eq!(d.production, None);
    // The status's time, not the deployment's creation two seconds earlier.
    assert_eq!(d.time, utc("2019-05-15T15:20:55Z"));
    assert_eq!(d.outcome, DeploymentOutcome::Success);

    for (state, outcome) in [
        ("failure", Some(DeploymentOutcome::Failure)),
        ("error", Some(DeploymentOutcome::Failure)),
        ("in_progress", None),
        ("queued", None),
        ("pending", None),
        ("inactive", None),
    ] {
        let changed = with(j.clone(), "deployment_status/state", Some(json!(state)));
        let facts = parse_ok("github", Some("deployment_status"), &bytes(&changed));
        assert_eq!(
            facts.first().map(|f| match f {
                Fact::Deployment(d) => d.outcome,
                other => panic!("{other:?}"),
            }),
            outcome,
            "{state}"
        );
    }
}

#[test]
fn github_legacy_failed_deployment_status_is_a_failed_attempt() {
    // GitHub's 2015 example shape: no `action`, no environment on the status itself.
    let rel = "github/deployment_status-failure.json";
    let j = json_of(rel);
    assert!(j.get("action").is_none());
    assert!(j["deployment_status"].get("environment").is_none());
    let d = one_deployment(parse_fixture("github", rel));
    assert_eq!(d.outcome, DeploymentOutcome::Failure);
    assert_eq!(d.repo, "baxterthehacker/public-repo");
    assert_eq!(d.repo, text(&j["repository"]["full_name"]));
    assert_eq!(
        d.deployment_id,
        j["deployment"]["id"].as_u64().unwrap().to_string()
    );
    assert_eq!(d.sha, text(&j["deployment"]["sha"]));
    assert_eq!(d.environment, text(&j["deployment"]["environment"]));
    assert_eq!(d.time, utc("2015-05-05T23:40:39Z"));
}

#[test]
fn github_deployment_in_progress_is_no_outcome_but_carries_the_production_flag_once_done() {
    let rel = "github/deployment_status-in_progress.json";
    let j = json_of(rel);
    assert!(parse_fixture("github", rel).is_empty());
    let done = with(j.clone(), "deployment_status/state", Some(json!("success")));
    let d = one_deployment(parse_ok("github", Some("deployment_status"), &bytes(&done)));
    assert_eq!(d.environment, text(&j["deployment_status"]["environment"]));
    assert_eq!(d.environment, "github-pages");
    assert_eq!(
        d.production,
        Some(j["deployment"]["production_environment"].as_bool().unwrap())
    );
    assert_eq!(d.production, Some(false));
    assert_eq!(d.time, utc("2022-01-03T01:28:40Z"));
}

#[test]
fn github_pull_request_lifecycle() {
    let opened_rel = "github/pull_request-opened.json";
    let j = json_of(opened_rel);
    let opened = one_pull_request(parse_fixture("github", opened_rel));
    assert_eq!(opened.provider, "github");
    assert_eq!(opened.kind, PullRequestEventKind::Opened);
    assert_eq!(opened.repo, text(&j["repository"]["full_name"]));
    assert_eq!(opened.number, j["pull_request"]["number"].as_u64().unwrap());
    assert_eq!(opened.title, text(&j["pull_request"]["title"]));
    assert_eq!(opened.time, utc("2019-05-15T15:20:33Z"));

    let review_rel = "github/pull_request_review-submitted.json";
    let j = json_of(review_rel);
    let reviewed = one_pull_request(parse_fixture("github", review_rel));
    assert_eq!(reviewed.kind, PullRequestEventKind::Reviewed);
    assert_eq!(
        reviewed.number,
        j["pull_request"]["number"].as_u64().unwrap()
    );
    assert_eq!(reviewed.repo, text(&j["repository"]["full_name"]));
    assert_eq!(text(&j["review"]["submitted_at"]), "2019-05-15T15:20:38Z");
    assert_eq!(reviewed.time, utc("2019-05-15T15:20:38Z"));
    // A commenting review is no approval; an approving one is both.
    assert_eq!(text(&j["review"]["state"]), "commented");
    let approving = with(j.clone(), "review/state", Some(json!("approved")));
    assert_eq!(
        kinds(&parse_ok(
            "github",
            Some("pull_request_review"),
            &bytes(&approving)
        )),
        ["pull_request reviewed", "pull_request approved"]
    );
    // Only submitted reviews count.
    let dismissed = with(j, "action", Some(json!("dismissed")));
    assert!(parse_ok("github", Some("pull_request_review"), &bytes(&dismissed)).is_empty());

    let merged_rel = "github/pull_request-closed-merged.json";
    let j = json_of(merged_rel);
    let merged = one_pull_request(parse_fixture("github", merged_rel));
    assert_eq!(merged.kind, PullRequestEventKind::Merged);
    assert_eq!(merged.repo, "anbraten/test-ready-release-go");
    assert_eq!(merged.repo, text(&j["repository"]["full_name"]));
    assert_eq!(merged.number, j["pull_request"]["number"].as_u64().unwrap());
    assert_eq!(merged.title, text(&j["pull_request"]["title"]));
    assert_eq!(merged.time, utc("2023-12-05T18:34:19Z"));

    // Closed without merging is not a merge: it is a close, at `closed_at`.
    let unmerged = json_of("github/pull_request-closed-unmerged.json");
    assert_eq!(unmerged["action"], json!("closed"));
    assert_eq!(unmerged["pull_request"]["merged_at"], Value::Null);
    let closed = one_pull_request(parse_fixture(
        "github",
        "github/pull_request-closed-unmerged.json",
    ));
    assert_eq!(closed.kind, PullRequestEventKind::Closed);
    assert_eq!(
        closed.time,
        utc(&text(&unmerged["pull_request"]["closed_at"]))
    );
}

// ---------------------------------------------------------------------------------------------------------------
// GitLab facts

#[test]
fn gitlab_push_to_the_default_branch() {
    let rel = "gitlab/push-hook.json";
    let j = json_of(rel);
    assert_eq!(
        text(&j["ref"]),
        format!("refs/heads/{}", text(&j["project"]["default_branch"]))
    );
    let push = one_push(parse_fixture("gitlab", rel));
    assert_eq!(push.provider, "gitlab");
    assert_eq!(push.repo, text(&j["project"]["path_with_namespace"]));
    assert_eq!(push.repo, "mike/diaspora");
    assert_eq!(push.before, text(&j["before"]));
    assert_eq!(push.after, text(&j["after"]));
    // GitLab lists at most some of the commits (`total_commits_count` says 4); the fact carries those listed.
    let commits = j["commits"].as_array().unwrap();
    assert_eq!(j["total_commits_count"], json!(4));
    assert_eq!(push.commits.len(), commits.len());
    assert_eq!(push.commits.len(), 2);
    for (got, c) in push.commits.iter().zip(commits) {
        assert_eq!(got.sha, text(&c["id"]));
        assert_eq!(got.message, text(&c["message"]));
    }
    assert_eq!(push.commits[0].time, utc("2011-12-12T12:27:31Z"));
    assert_eq!(push.commits[1].time, utc("2012-01-03T21:36:29Z"));

    // Another branch, a tag, a deletion: no change.
    let other = with(j.clone(), "ref", Some(json!("refs/heads/feature")));
    assert!(parse_ok("gitlab", None, &bytes(&other)).is_empty());
    let tag = with(j.clone(), "object_kind", Some(json!("tag_push")));
    let tag = with(tag, "ref", Some(json!("refs/tags/v1.0.0")));
    assert!(parse_ok("gitlab", None, &bytes(&tag)).is_empty());
    let tag_as_push = with(j.clone(), "ref", Some(json!("refs/tags/master")));
    assert!(parse_ok("gitlab", None, &bytes(&tag_as_push)).is_empty());
    let deleted = with(j, "after", Some(json!(NULL_SHA)));
    let deleted = with(deleted, "commits", Some(json!([])));
    assert!(parse_ok("gitlab", None, &bytes(&deleted)).is_empty());
}

#[test]
fn gitlab_deployment_hook() {
    let rel = "gitlab/deployment-hook.json";
    let j = json_of(rel);
    let d = one_deployment(parse_fixture("gitlab", rel));
    assert_eq!(d.provider, "gitlab");
    assert_eq!(d.outcome, DeploymentOutcome::Success);
    assert_eq!(d.repo, text(&j["project"]["path_with_namespace"]));
    assert_eq!(
        d.deployment_id,
        j["deployment_id"].as_u64().unwrap().to_string()
    );
    assert_eq!(d.environment, text(&j["environment"]));
    assert_eq!(d.production, Some(false));
    assert_eq!(d.sha, text(&j["short_sha"]));
    // `short_sha` is a prefix of the deployed commit named in `commit_url`.
    let full_sha = text(&j["commit_url"])
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(full_sha.len(), 40);
    assert!(full_sha.starts_with(&d.sha));
    assert_eq!(text(&j["status_changed_at"]), "2021-04-28 21:50:00 +0200");
    assert_eq!(d.time, utc("2021-04-28T19:50:00Z"));

    let failed = with(j.clone(), "status", Some(json!("failed")));
    assert_eq!(
        one_deployment(parse_ok("gitlab", None, &bytes(&failed))).outcome,
        DeploymentOutcome::Failure
    );
    for status in ["running", "canceled", "created"] {
        let v = with(j.clone(), "status", Some(json!(status)));
        assert!(parse_ok("gitlab", None, &bytes(&v)).is_empty(), "{status}");
    }
    let prod = with(j, "environment_tier", Some(json!("production")));
    assert_eq!(
        one_deployment(parse_ok("gitlab", None, &bytes(&prod))).production,
        Some(true)
    );
}

#[test]
fn gitlab_merge_requests() {
    let open_rel = "gitlab/merge_request-hook-open.json";
    let j = json_of(open_rel);
    let opened = one_pull_request(parse_fixture("gitlab", open_rel));
    assert_eq!(opened.provider, "gitlab");
    assert_eq!(opened.kind, PullRequestEventKind::Opened);
    assert_eq!(opened.repo, text(&j["project"]["path_with_namespace"]));
    assert_eq!(
        opened.number,
        j["object_attributes"]["iid"].as_u64().unwrap()
    );
    assert_eq!(opened.title, text(&j["object_attributes"]["title"]));
    assert_eq!(opened.time, utc("2013-12-03T17:23:34Z"));

    // A real capture: no `merged_at`, times written as `… UTC`; the merge is the last update.
    let merge_rel = "gitlab/merge_request-hook-merge.json";
    let j = json_of(merge_rel);
    assert!(j["object_attributes"].get("merged_at").is_none());
    assert_eq!(
        text(&j["object_attributes"]["updated_at"]),
        "2023-12-05 18:43:00 UTC"
    );
    let merged = one_pull_request(parse_fixture("gitlab", merge_rel));
    assert_eq!(merged.kind, PullRequestEventKind::Merged);
    assert_eq!(merged.repo, "anbraten/woodpecker-test");
    assert_eq!(
        merged.number,
        j["object_attributes"]["iid"].as_u64().unwrap()
    );
    assert_eq!(merged.time, utc("2023-12-05T18:43:00Z"));

    let closed = with(j.clone(), "object_attributes/action", Some(json!("close")));
    let closed = one_pull_request(parse_ok("gitlab", None, &bytes(&closed)));
    assert_eq!(closed.kind, PullRequestEventKind::Closed);
    assert_eq!(closed.time, utc("2023-12-05T18:43:00Z"));
    // An approval is a review and an approval, at the update.
    let approved = with(j, "object_attributes/action", Some(json!("approved")));
    let kinds: Vec<PullRequestEventKind> = parse_ok("gitlab", None, &bytes(&approved))
        .into_iter()
        .map(|f| match f {
            Fact::PullRequest(p) => p.kind,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            PullRequestEventKind::Reviewed,
            PullRequestEventKind::Approved
        ]
    );
}

#[test]
fn gitlab_event_header_is_reported_but_the_body_decides() {
    for name in [
        "push-hook",
        "deployment-hook",
        "merge_request-hook-open",
        "merge_request-hook-merge",
        "issue-hook",
        "pipeline-hook",
        "job-hook",
    ] {
        let h = json_of(&format!("gitlab/{name}.headers.json"));
        let body = read(&format!("gitlab/{name}.json"));
        let inspection = provider("gitlab").inspect(&headers_of(&h), &body).unwrap();
        assert_eq!(inspection.event, Some(text(&h["X-Gitlab-Event"])), "{name}");
        // A misleading event argument changes nothing: GitLab's event is the body's `object_kind`.
        assert_eq!(
            parse_ok("gitlab", Some("Issue Hook"), &body),
            parse_ok("gitlab", None, &body),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// PagerDuty facts

#[test]
fn pagerduty_incident_events() {
    for (rel, kind, at) in [
        (
            "pagerduty/incident.triggered.json",
            IncidentEventKind::Opened,
            "2021-06-04T13:35:29.781Z",
        ),
        (
            "pagerduty/incident.acknowledged.json",
            IncidentEventKind::Acknowledged,
            "2021-06-04T13:55:30.394Z",
        ),
        (
            "pagerduty/incident.resolved.json",
            IncidentEventKind::Resolved,
            "2021-06-04T13:16:53.816Z",
        ),
    ] {
        let j = json_of(rel);
        let e = &j["event"];
        let i = one_incident(parse_fixture("pagerduty", rel));
        assert_eq!(i.provider, "pagerduty");
        assert_eq!(i.kind, kind, "{rel}");
        assert_eq!(i.event_id, text(&e["id"]), "{rel}");
        assert_eq!(i.incident_id, text(&e["data"]["id"]), "{rel}");
        assert_eq!(
            i.service_name,
            text(&e["data"]["service"]["summary"]),
            "{rel}"
        );
        assert_eq!(i.service_name, "pig208");
        assert_eq!(i.title, text(&e["data"]["title"]), "{rel}");
        assert_eq!(i.time, utc(at), "{rel}");
    }

    // The same incident id across its life: the resolved example is another incident.
    let t = one_incident(parse_fixture(
        "pagerduty",
        "pagerduty/incident.triggered.json",
    ));
    let r = one_incident(parse_fixture(
        "pagerduty",
        "pagerduty/incident.resolved.json",
    ));
    assert_ne!(t.incident_id, r.incident_id);

    // Other incident changes are not state changes the product tracks.
    assert!(parse_fixture("pagerduty", "pagerduty/incident.priority_updated-docs.json").is_empty());
    assert!(parse_fixture("pagerduty", "pagerduty/service.updated-docs.json").is_empty());
}

// ---------------------------------------------------------------------------------------------------------------
// Delivery ids

#[test]
fn github_delivery_id_is_the_header_else_the_body_hash() {
    let h = json_of("github/issues-opened.headers.json");
    let body = read("github/issues-opened.json");
    let gh = provider("github");
    let inspection = gh.inspect(&headers_of(&h), &body).unwrap();
    assert_eq!(inspection.delivery_id, text(&h["X-GitHub-Delivery"]));
    assert_eq!(
        inspection.delivery_id,
        "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    );
    assert_eq!(inspection.event, Some(text(&h["X-GitHub-Event"])));

    let bare = gh.inspect(&HeaderMap::new(), &body).unwrap();
    assert_eq!(bare.delivery_id, body_hash(&body));
    assert_eq!(bare.event, None);
    let empty = gh
        .inspect(&headers(&[("X-GitHub-Delivery", "")]), &body)
        .unwrap();
    assert_eq!(empty.delivery_id, body_hash(&body));
}

#[test]
fn gitlab_delivery_id_prefers_the_idempotency_key() {
    let gl = provider("gitlab");
    let body = read("gitlab/push-hook.json");
    let id = |pairs: &[(&str, &str)]| gl.inspect(&headers(pairs), &body).unwrap().delivery_id;
    let key = "66de3655-589f-4d45-85f1-c8ea96a11c29";
    let uuid = "344641e1-a199-42a8-9990-62ecf48f1a07";

    assert_eq!(
        id(&[("X-Gitlab-Event-UUID", uuid), ("Idempotency-Key", key)]),
        key
    );
    assert_eq!(id(&[("X-Gitlab-Event-UUID", uuid)]), uuid);
    assert_eq!(id(&[("Idempotency-Key", key)]), key);
    assert_eq!(
        id(&[("Idempotency-Key", ""), ("X-Gitlab-Event-UUID", uuid)]),
        uuid
    );
    // The webhook's own UUID names the hook, not the delivery.
    assert_eq!(
        id(&[(
            "X-Gitlab-Webhook-UUID",
            "eb4e6656-529b-4edf-983a-182bb748256a"
        )]),
        body_hash(&body)
    );
    assert_eq!(id(&[]), body_hash(&body));
}

#[test]
fn pagerduty_delivery_id_is_the_event_id_in_the_body() {
    let pd = provider("pagerduty");
    for rel in payload_files("pagerduty") {
        let body = read(&rel);
        let j = json_of(&rel);
        // Header ids (per subscription) do not name the event.
        let h = headers(&[("X-Webhook-Id", "4a8d4e7c-0000-0000-0000-000000000000")]);
        assert_eq!(
            pd.inspect(&h, &body).unwrap().delivery_id,
            text(&j["event"]["id"]),
            "{rel}"
        );
    }
    let j = json_of("pagerduty/incident.triggered.json");
    let no_id = bytes(&with(j.clone(), "event/id", None));
    assert_eq!(
        pd.inspect(&HeaderMap::new(), &no_id).unwrap().delivery_id,
        body_hash(&no_id)
    );
    let empty_id = bytes(&with(j, "event/id", Some(json!(""))));
    assert_eq!(
        pd.inspect(&HeaderMap::new(), &empty_id)
            .unwrap()
            .delivery_id,
        body_hash(&empty_id)
    );
    let no_event = br#"{"messages": []}"#;
    assert_eq!(
        pd.inspect(&HeaderMap::new(), no_event).unwrap().delivery_id,
        body_hash(no_event)
    );
}

#[test]
fn body_hash_fallback_is_stable_and_tells_bodies_apart() {
    let a = read("github/ping.json");
    let b = read("github/ping-app.json");
    for p in ["github", "gitlab"] {
        let id = |body: &[u8]| {
            provider(p)
                .inspect(&HeaderMap::new(), body)
                .unwrap()
                .delivery_id
        };
        let first = id(&a);
        assert_eq!(first, id(&a), "{p}");
        assert_eq!(first, id(&a.clone()), "{p}");
        assert_ne!(first, id(&b), "{p}");
        let hex = first.strip_prefix("sha256:").unwrap();
        assert_eq!(hex.len(), 64);
        assert!(hex
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        // The raw bytes are hashed: equal JSON written differently is another delivery.
        assert_ne!(id(br#"{"a":1}"#), id(br#"{"a": 1}"#), "{p}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Bad bodies

#[test]
fn bodies_that_are_not_json_objects_are_rejected_on_inspection() {
    // GitLab's published job-hook example, with comments and a trailing comma, as a real non-JSON body.
    let jsonc = read("gitlab/job-hook.doc.jsonc");
    let half = read("github/push-branch.json");
    let truncated = &half[..half.len() / 2];
    for p in ["github", "gitlab", "pagerduty"] {
        let inspect = |body: &[u8]| provider(p).inspect(&HeaderMap::new(), body);
        for not_json in [
            &b"not json"[..],
            b"",
            b"{\"a\": ",
            b"{'a': 1}",
            truncated,
            &jsonc,
        ] {
            assert!(
                matches!(inspect(not_json), Err(BodyError::NotJson(_))),
                "{p}: {:?}",
                String::from_utf8_lossy(&not_json[..not_json.len().min(40)])
            );
        }
        for not_object in [&b"[1, 2]"[..], b"  []", b"\"push\"", b"42", b"null"] {
            assert_eq!(inspect(not_object), Err(BodyError::NotObject), "{p}");
        }
    }
}

#[test]
fn known_events_missing_required_fields_are_parse_errors() {
    let cases: Vec<(&str, Option<&str>, Value, &str)> = vec![
        (
            "github",
            Some("push"),
            with(json_of("github/push-branch.json"), "after", None),
            "push",
        ),
        (
            "github",
            Some("push"),
            with(json_of("github/push-branch.json"), "repository", None),
            "push",
        ),
        (
            "github",
            Some("push"),
            {
                let j = json_of("github/push-branch.json");
                let mut commits = j["commits"].clone();
                commits[0].as_object_mut().unwrap().remove("timestamp");
                with(j, "commits", Some(commits))
            },
            "push",
        ),
        (
            "github",
            Some("deployment_status"),
            with(
                json_of("github/deployment_status-success.json"),
                "deployment",
                None,
            ),
            "deployment_status",
        ),
        (
            "github",
            Some("deployment_status"),
            with(
                json_of("github/deployment_status-success.json"),
                "deployment_status/created_at",
                None,
            ),
            "deployment_status",
        ),
        (
            "github",
            Some("pull_request"),
            with(
                json_of("github/pull_request-opened.json"),
                "pull_request/number",
                None,
            ),
            "pull_request",
        ),
        (
            "gitlab",
            None,
            with(
                json_of("gitlab/deployment-hook.json"),
                "status_changed_at",
                None,
            ),
            "deployment",
        ),
        (
            "gitlab",
            None,
            with(json_of("gitlab/push-hook.json"), "project", None),
            "push",
        ),
        (
            "gitlab",
            None,
            with(
                json_of("gitlab/merge_request-hook-open.json"),
                "object_attributes/iid",
                None,
            ),
            "merge_request",
        ),
        (
            "pagerduty",
            None,
            with(
                json_of("pagerduty/incident.triggered.json"),
                "event/data",
                None,
            ),
            "incident.triggered",
        ),
        (
            "pagerduty",
            None,
            with(
                json_of("pagerduty/incident.resolved.json"),
                "event/occurred_at",
                None,
            ),
            "incident.resolved",
        ),
    ];
    for (p, event, body, named) in cases {
        let err = provider(p)
            .parse(event, &bytes(&body))
            .expect_err(&format!("{p} {named}"));
        assert_eq!(err.provider, p);
        assert_eq!(err.event, named, "{err}");
        assert!(!err.message.is_empty());
    }

    // Bodies that are not JSON at all, for events the product reads.
    assert!(provider("github").parse(Some("push"), b"not json").is_err());
    assert!(provider("gitlab").parse(None, b"not json").is_err());
    assert!(provider("pagerduty").parse(None, b"not json").is_err());
}

#[test]
fn unused_events_are_ignored_whatever_they_carry() {
    assert!(parse_ok("github", Some("release"), b"{}").is_empty());
    assert!(parse_ok(
        "github",
        Some("ping"),
        br#"{"zen": "Keep it logically awesome."}"#
    )
    .is_empty());
    assert!(parse_ok("github", Some("deployment"), b"{}").is_empty());
    assert!(parse_ok("gitlab", None, b"{}").is_empty());
    assert!(parse_ok("gitlab", None, br#"{"object_kind": "note"}"#).is_empty());
    assert!(parse_ok(
        "pagerduty",
        None,
        br#"{"event": {"event_type": "service.updated"}}"#
    )
    .is_empty());
    assert!(parse_ok(
        "pagerduty",
        None,
        br#"{"event": {"event_type": "incident.annotated"}}"#
    )
    .is_empty());
    // A PagerDuty v2 (`messages`) body carries no v3 event.
    assert!(parse_ok(
        "pagerduty",
        None,
        br#"{"messages": [{"event": "incident.trigger"}]}"#
    )
    .is_empty());
    assert!(parse_ok("pagerduty", None, br#"{"event": null}"#).is_empty());
}

// ---------------------------------------------------------------------------------------------------------------
// Tolerance of real shapes

#[test]
fn gitlab_timestamps_in_every_known_shape() {
    let j = json_of("gitlab/deployment-hook.json");
    for (raw, want) in [
        (json!("2016-08-12 15:23:28 UTC"), "2016-08-12T15:23:28Z"),
        (json!("2021-04-28 21:50:00 +0200"), "2021-04-28T19:50:00Z"),
        (
            json!("2021-02-23T02:41:37.886Z"),
            "2021-02-23T02:41:37.886Z",
        ),
        (json!("2013-12-03T17:23:34Z"), "2013-12-03T17:23:34Z"),
        (json!("2015-05-05T23:40:15+01:00"), "2015-05-05T22:40:15Z"),
        (json!(1462879124), "2016-05-10T11:18:44Z"),
        (json!(1462879124123_i64), "2016-05-10T11:18:44.123Z"),
        (json!("1462879124"), "2016-05-10T11:18:44Z"),
    ] {
        let v = with(j.clone(), "status_changed_at", Some(raw.clone()));
        let d = one_deployment(parse_ok("gitlab", None, &bytes(&v)));
        assert_eq!(d.time, utc(want), "{raw}");
    }
    // A typo in GitLab's own docs is refused rather than read as some other instant.
    for broken in ["2015-04-08T21: 00:25-07:00", "yesterday", ""] {
        let v = with(j.clone(), "status_changed_at", Some(json!(broken)));
        assert!(
            provider("gitlab").parse(None, &bytes(&v)).is_err(),
            "{broken}"
        );
    }
}

#[test]
fn numbers_and_strings_are_both_accepted_as_ids() {
    // GitLab deployment id as a string.
    let gl = with(
        json_of("gitlab/deployment-hook.json"),
        "deployment_id",
        Some(json!("15")),
    );
    assert_eq!(
        one_deployment(parse_ok("gitlab", None, &bytes(&gl))).deployment_id,
        "15"
    );

    // GitHub deployment id as a string, status time as epoch seconds.
    let gh = with(
        json_of("github/deployment_status-success.json"),
        "deployment/id",
        Some(json!("145988746")),
    );
    let gh = with(gh, "deployment_status/created_at", Some(json!(1700000000)));
    let d = one_deployment(parse_ok("github", Some("deployment_status"), &bytes(&gh)));
    assert_eq!(d.deployment_id, "145988746");
    assert_eq!(d.time, utc("2023-11-14T22:13:20Z"));

    // PagerDuty ids as numbers, occurred_at as epoch milliseconds.
    let pd = with(
        json_of("pagerduty/incident.triggered.json"),
        "event/id",
        Some(json!(42)),
    );
    let pd = with(pd, "event/data/id", Some(json!(7)));
    let pd = with(pd, "event/occurred_at", Some(json!(1622813729781_i64)));
    let body = bytes(&pd);
    assert_eq!(
        provider("pagerduty")
            .inspect(&HeaderMap::new(), &body)
            .unwrap()
            .delivery_id,
        "42"
    );
    let i = one_incident(parse_ok("pagerduty", None, &body));
    assert_eq!(i.event_id, "42");
    assert_eq!(i.incident_id, "7");
    assert_eq!(i.time, utc("2021-06-04T13:35:29.781Z"));
}

// ---------------------------------------------------------------------------------------------------------------
// The basic scenario's deliveries

#[test]
fn every_scenario_delivery_inspects_and_parses_as_labelled() {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(format!("{SCENARIO}/manifest.json")).unwrap())
            .unwrap();
    let labels = manifest["files"].as_object().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(format!("{SCENARIO}/deliveries"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len() as u64, manifest["deliveries"].as_u64().unwrap());

    let mut seen: HashMap<(String, String), Vec<u8>> = HashMap::new();
    for name in &names {
        let d: Value = serde_json::from_slice(
            &std::fs::read(format!("{SCENARIO}/deliveries/{name}")).unwrap(),
        )
        .unwrap();
        let p = text(&d["provider"]);
        let h = headers_of(&d["headers"]);
        let body = text(&d["body"]).into_bytes();
        let label = text(&labels[name.as_str()]);

        let inspection = provider(&p)
            .inspect(&h, &body)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let event = if p == "github" {
            let e = h
                .get("x-github-event")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            assert_eq!(inspection.event.as_deref(), Some(e.as_str()), "{name}");
            Some(e)
        } else {
            None
        };
        let facts = provider(&p)
            .parse(event.as_deref(), &body)
            .unwrap_or_else(|e| panic!("{name} ({label}): {e}"));

        // Only re-deliveries repeat a delivery id, and they repeat the body too.
        let key = (p.clone(), inspection.delivery_id.clone());
        if label.contains("re-delivery") {
            assert_eq!(seen.get(&key), Some(&body), "{name}");
        } else {
            assert!(
                seen.insert(key, body.clone()).is_none(),
                "{name}: repeated id"
            );
        }

        let want: Option<Vec<&str>> = if label.contains("push (default branch)") {
            Some(vec!["push"])
        } else if label.contains("push (") {
            Some(vec![])
        } else if label.contains("deployment_status success")
            || label.contains("deployment success")
        {
            Some(vec!["deployment success"])
        } else if label.contains("deployment_status failure")
            || label.contains("deployment_status error")
            || label.contains("deployment failed")
        {
            Some(vec!["deployment failure"])
        } else if label.ends_with(" in_progress")
            || label.ends_with(" inactive")
            || label.ends_with(" running")
        {
            Some(vec![])
        } else if label == "pagerduty incident.triggered" {
            Some(vec!["incident opened"])
        } else if label == "pagerduty incident.acknowledged" {
            Some(vec!["incident acknowledged"])
        } else if label == "pagerduty incident.resolved" {
            Some(vec!["incident resolved"])
        } else {
            assert!(label.contains("re-"), "unlabelled kind {label}");
            None
        };
        if let Some(want) = want {
            assert_eq!(kinds(&facts), want, "{name} ({label})");
        }

        // A change carries exactly the commits the body lists.
        if let [Fact::Push(push)] = facts.as_slice() {
            let j: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(push.after, text(&j["after"]), "{name}");
            assert_eq!(
                push.commits.len(),
                j["commits"].as_array().unwrap().len(),
                "{name}"
            );
        }
    }
}

/// `heroku rollback` makes a release described `Rollback to v<N>` (Heroku Dev Center, Releases): the
/// deployment is marked as a rollback; a deploy's release is not.
#[test]
fn heroku_rollback_releases_are_marked_as_rollbacks() {
    let p = provider("heroku");
    let deploy =
        std::fs::read_to_string(Path::new(FIXTURES).join("heroku/api-release-update.json"))
            .expect("fixture");
    assert!(deploy.contains("\"Deploy 48AKJH\""));
    for (body, want) in [
        (deploy.clone(), false),
        (
            deploy.replace("\"Deploy 48AKJH\"", "\"Rollback to v41\""),
            true,
        ),
    ] {
        let facts = p.parse(None, body.as_bytes()).expect("parses");
        match facts.as_slice() {
            [Fact::Deployment(d)] => assert_eq!(d.rollback, want, "{}", d.deployment_id),
            other => panic!("{other:?}"),
        }
    }
}
