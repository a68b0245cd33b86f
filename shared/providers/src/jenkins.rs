//! Jenkins: job notifications of the Notification plugin (jenkinsci/notification-plugin), or a report of the
//! generic provider's schema posted from a pipeline step (docs/providers/jenkins.md). Jenkins signs nothing:
//! the plugin only takes basic-auth credentials in its endpoint URL and a pipeline step sets a header as
//! easily, so either the token header or basic auth carries the secret. Jenkins sends no delivery id either:
//! a notification is named by its build and phase, a report by its `id`.
//!
//! A notification of a finished build (phase `COMPLETED` or `FINALIZED`) is a build of the job; the
//! aggregator makes a deployment of it when the job's name matches a deploy rule. `QUEUED` and `STARTED`
//! count nothing, and neither does a notification without `build.timestamp` (plugins before 1.12): its
//! time would be the time of receipt.

use em_core::domain::{Build, BuildOutcome, Fact};
use em_core::time::Millis;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::auth::Auth;
use crate::{generic, parse_error, IdSource, ParseError, Provider};

const NAME: &str = "jenkins";

/// The phases whose notification carries the build's result.
const COMPLETED: &str = "COMPLETED";
const FINALIZED: &str = "FINALIZED";

pub const PROVIDER: Provider = Provider {
    name: NAME,
    title: "Jenkins",
    auth: Auth::TokenOrBasic {
        header: "X-EM-Agent-Token",
    },
    delivery_id: &[IdSource::Body(&["id"]), IdSource::Derived(notification_id)],
    event_header: None,
    events: &[COMPLETED, FINALIZED, "deployment"],
    parse,
    sample: "deployment-report",
    // Reports are EM Agent's schema, refused at the door when broken; the plugin's notifications of phases
    // the product does not read parse to nothing, so they pass.
    validate: true,
};

/// What names a notification: the build (its URLs, job and number) and the phase. The plugin rebuilds the
/// body for every attempt (its `log` grows), so the body's digest would not name a retry.
fn notification_id(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Build {
        number: u64,
        #[serde(default)]
        phase: String,
        #[serde(default)]
        full_url: String,
    }
    #[derive(Deserialize)]
    struct Head {
        name: String,
        #[serde(default)]
        url: String,
        build: Build,
    }
    let h: Head = serde_json::from_slice(body).ok()?;
    let mut digest = Sha256::new();
    for part in [
        h.build.full_url.as_str(),
        h.url.as_str(),
        h.name.as_str(),
        &h.build.number.to_string(),
        h.build.phase.as_str(),
    ] {
        // Each part after its length: text moved from one part to the next changes the digest.
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part.as_bytes());
    }
    Some(format!("jenkins:{}", hex::encode(digest.finalize())))
}

#[derive(Deserialize, Default)]
struct Scm {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    commit: Option<String>,
}

#[derive(Deserialize)]
struct BuildState {
    number: u64,
    #[serde(default)]
    full_url: Option<String>,
    /// Absent until the build has a result (`QUEUED`, `STARTED`).
    #[serde(default)]
    status: Option<String>,
    /// Epoch milliseconds, by phase (the plugin's `JobListener`): `COMPLETED` the build's start plus its
    /// duration, its end; `FINALIZED` the moment post-build actions finished. Since plugin 1.12.
    #[serde(default)]
    timestamp: Option<Millis>,
    /// Milliseconds the build ran; since plugin 1.15.
    #[serde(default)]
    duration: Option<Millis>,
    #[serde(default)]
    scm: Option<Scm>,
}

#[derive(Deserialize)]
struct Notification {
    name: String,
    #[serde(default)]
    url: String,
    build: BuildState,
}

/// A finished build's result as an outcome; other statuses count nothing.
fn outcome(status: &str) -> Option<BuildOutcome> {
    match status {
        "SUCCESS" => Some(BuildOutcome::Success),
        // UNSTABLE: it built, but tests failed.
        "FAILURE" | "UNSTABLE" => Some(BuildOutcome::Failure),
        "ABORTED" => Some(BuildOutcome::Cancelled),
        "NOT_BUILT" => Some(BuildOutcome::Skipped),
        _ => None,
    }
}

/// `%XX` escapes decoded, as Jenkins writes job names in URLs; the text as it is when that is not UTF-8.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|pair| hex::decode(pair).ok());
        match escaped.as_deref() {
            Some(&[byte]) => {
                out.push(byte);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

/// The job's full name (`team/deploy` for the URL `job/team/job/deploy/`): its name alone does not tell
/// apart the jobs of two folders, or the branches of two multibranch projects. `name` when the URL is not of
/// that shape.
fn full_name(url: &str, name: &str) -> String {
    let parts: Vec<&str> = url.trim_matches('/').split('/').collect();
    // Pairs of `job` and a name; an odd part out is a chunk of one, which is not of that shape.
    let names: Option<Vec<String>> = parts
        .chunks(2)
        .map(|pair| match pair {
            ["job", n] if !n.is_empty() => Some(percent_decoded(n)),
            _ => None,
        })
        .collect();
    match names {
        Some(names) if !names.is_empty() => names.join("/"),
        _ => name.to_string(),
    }
}

fn parse(_event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
    #[derive(Deserialize)]
    struct Head {
        #[serde(default)]
        build: Option<Phase>,
    }
    #[derive(Deserialize)]
    struct Phase {
        #[serde(default)]
        phase: String,
    }
    let head: Head = serde_json::from_slice(body).map_err(|e| parse_error(NAME, "payload", e))?;
    // A body without `build` is not the plugin's: a report of the generic schema, or a mistake it names.
    let Some(Phase { phase }) = head.build else {
        return generic::parse_as(NAME, body);
    };
    if phase != COMPLETED && phase != FINALIZED {
        return Ok(Vec::new());
    }
    let n: Notification = serde_json::from_slice(body).map_err(|e| parse_error(NAME, &phase, e))?;
    let b = n.build;
    let Some(outcome) = b.status.as_deref().and_then(outcome) else {
        return Ok(Vec::new());
    };
    // 0 is Jenkins' unknown time; without a time there is no fact.
    let Some(finished) = b.timestamp.filter(|t| *t > 0) else {
        return Ok(Vec::new());
    };
    // At COMPLETED the timestamp is the start plus the duration; at FINALIZED it is later by the post-build
    // actions' time, which the notification does not give.
    let started = (phase == COMPLETED)
        .then_some(b.duration)
        .flatten()
        .filter(|d| *d > 0)
        .and_then(|d| finished.checked_sub(d));
    let job = full_name(&n.url, &n.name);
    let scm = b.scm.unwrap_or_default();
    let repo = scm
        .url
        .as_deref()
        .and_then(crate::git::repo_of_url)
        .unwrap_or_else(|| format!("jenkins:{job}"));
    let run_id = match b.full_url {
        Some(url) if !url.is_empty() => url,
        _ => format!("{job}#{}", b.number),
    };
    Ok(vec![Fact::Build(Build {
        provider: NAME.into(),
        repo,
        run_id,
        attempt: 1,
        name: n.name,
        sha: scm.commit.unwrap_or_default(),
        branch: scm.branch.unwrap_or_default(),
        outcome,
        started,
        finished,
    })])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jenkins");

    /// A real notification (`tests/fixtures/jenkins/<case>.json`) as JSON, to derive what the plugin sends
    /// in shapes no published capture shows.
    fn real(case: &str) -> Value {
        let text = std::fs::read(format!("{FIXTURES}/{case}.json")).expect("fixture");
        serde_json::from_slice(&text).expect("JSON")
    }

    fn with(mut v: Value, build: &[(&str, Value)]) -> Vec<u8> {
        for (k, x) in build {
            v["build"][*k] = x.clone();
        }
        serde_json::to_vec(&v).expect("JSON")
    }

    fn one_build(facts: Vec<Fact>) -> Build {
        match facts.as_slice() {
            [Fact::Build(b)] => b.clone(),
            other => panic!("{other:?}"),
        }
    }

    /// 2024-03-08T10:15:30.250Z, and a build that ran 95 s.
    const END: Millis = 1_709_892_930_250;
    const DURATION: Millis = 95_000;

    // No published capture comes from a plugin recent enough to send `timestamp` (1.12) and `duration` (1.15),
    // so these add them, as the plugin's BuildState writes them, to the wiki's real COMPLETED notification.
    #[test]
    fn a_finished_build_of_a_recent_plugin_is_a_build() {
        let body = with(
            real("completed-wiki"),
            &[
                ("timestamp", json!(END)),
                ("duration", json!(DURATION)),
                ("queue_id", json!(17)),
            ],
        );
        let b = one_build(parse(None, &body).expect("parses"));
        assert_eq!(
            b,
            Build {
                provider: "jenkins".into(),
                repo: "evgeny-goldin/asgard".into(),
                run_id: "http://localhost:8080/job/asgard/18/".into(),
                attempt: 1,
                name: "asgard".into(),
                sha: "c6d86dc654b12425e706bcf951adfe5a8627a517".into(),
                branch: "origin/master".into(),
                outcome: BuildOutcome::Success,
                // 2024-03-08T10:13:55.250Z
                started: Some(1_709_892_835_250),
                finished: END,
            }
        );
        // FINALIZED's timestamp is after the post-build actions: the end, not the start.
        let finalized = with(
            real("completed-wiki"),
            &[
                ("phase", json!("FINALIZED")),
                ("timestamp", json!(END)),
                ("duration", json!(DURATION)),
            ],
        );
        let f = one_build(parse(None, &finalized).expect("parses"));
        assert_eq!((f.started, f.finished), (None, END));
        assert_eq!((f.run_id, f.repo), (b.run_id, b.repo), "one build, stored once");
    }

    #[test]
    fn statuses_map_to_outcomes_and_unknown_ones_count_nothing() {
        for (status, want) in [
            ("SUCCESS", Some(BuildOutcome::Success)),
            ("FAILURE", Some(BuildOutcome::Failure)),
            ("UNSTABLE", Some(BuildOutcome::Failure)),
            ("ABORTED", Some(BuildOutcome::Cancelled)),
            ("NOT_BUILT", Some(BuildOutcome::Skipped)),
            ("FAILED", None),
            ("success", None),
        ] {
            let body = with(
                real("finalized-terasology"),
                &[("status", json!(status)), ("timestamp", json!(END))],
            );
            let facts = parse(None, &body).expect("parses");
            assert_eq!(
                facts.first().map(|f| match f {
                    Fact::Build(b) => b.outcome,
                    other => panic!("{other:?}"),
                }),
                want,
                "{status}"
            );
        }
    }

    // The real STARTED capture has no `timestamp` (an older plugin); these give the intermediate phases one,
    // as a recent plugin does, and they still count nothing.
    #[test]
    fn intermediate_phases_count_nothing_even_with_a_time() {
        for phase in ["QUEUED", "STARTED", ""] {
            let body = with(
                real("started-deploy-job"),
                &[("phase", json!(phase)), ("timestamp", json!(END))],
            );
            assert_eq!(parse(None, &body), Ok(Vec::new()), "{phase}");
        }
        // A final phase without a status, or with Jenkins' unknown time, counts nothing either.
        for extra in [
            vec![("phase", json!("COMPLETED")), ("timestamp", json!(END))],
            vec![
                ("phase", json!("COMPLETED")),
                ("status", json!("SUCCESS")),
                ("timestamp", json!(0)),
            ],
        ] {
            let body = with(real("started-deploy-job"), &extra);
            assert_eq!(parse(None, &body), Ok(Vec::new()), "{extra:?}");
        }
    }

    #[test]
    fn without_a_repository_url_the_build_is_the_jobs() {
        let body = with(
            real("completed-deploy-job"),
            &[("timestamp", json!(END)), ("duration", json!(DURATION))],
        );
        let b = one_build(parse(None, &body).expect("parses"));
        assert_eq!(b.repo, "jenkins:test-deploy");
        assert_eq!(b.name, "test-deploy");
        assert_eq!((b.sha.as_str(), b.branch.as_str()), ("", ""));
        // In a folder (or a multibranch project), by the job's full name from its URL; without a full URL,
        // the run is named by that name and the number.
        let mut v = real("completed-deploy-job");
        v["url"] = json!("job/shop%20team/job/test-deploy/");
        v["build"]
            .as_object_mut()
            .expect("build")
            .remove("full_url");
        let b = one_build(
            parse(
                None,
                &with(v, &[("timestamp", json!(END)), ("duration", json!(DURATION))]),
            )
            .expect("parses"),
        );
        assert_eq!(b.repo, "jenkins:shop team/test-deploy");
        assert_eq!(b.run_id, "shop team/test-deploy#4");
        assert_eq!(b.name, "test-deploy");
    }

    #[test]
    fn job_names_come_from_the_url_where_it_has_jenkins_shape() {
        for (url, want) in [
            ("job/asgard/", "asgard"),
            ("job/a/job/b/", "a/b"),
            ("job/Deploy%20Prod/", "Deploy Prod"),
            ("job/caf%C3%A9/", "café"),
            ("job/100%25/", "100%"),
            ("job/bad%zz/", "bad%zz"),
            ("job/cut%4/", "cut%4"),
            ("job/not-utf8%FF/", "not-utf8%FF"),
            ("JobUrl", "fallback"),
            ("view/all/job/x/", "fallback"),
            ("job//", "fallback"),
            ("", "fallback"),
        ] {
            assert_eq!(full_name(url, "fallback"), want, "{url}");
        }
    }

    #[test]
    fn a_notification_is_named_by_its_build_and_phase() {
        let completed = std::fs::read(format!("{FIXTURES}/completed-wiki.json")).expect("fixture");
        let id = notification_id(&completed).expect("an id");
        assert!(id.starts_with("jenkins:") && id.len() == 8 + 64, "{id}");
        // A retry carries a longer log: the same delivery.
        let retry = with(
            real("completed-wiki"),
            &[("log", json!("Notifying endpoint...\nFailed to notify\n"))],
        );
        assert_eq!(notification_id(&retry).as_deref(), Some(id.as_str()));
        // Another phase, build, job or Jenkins is another delivery.
        for (k, v) in [
            ("phase", json!("FINALIZED")),
            ("number", json!(19)),
            ("full_url", json!("http://ci.example.com/job/asgard/18/")),
        ] {
            let other = with(real("completed-wiki"), &[(k, v)]);
            assert_ne!(notification_id(&other), Some(id.clone()), "{k}");
        }
        let mut renamed = real("completed-wiki");
        renamed["name"] = json!("asgard-2");
        let renamed = serde_json::to_vec(&renamed).expect("JSON");
        assert_ne!(notification_id(&renamed), Some(id));
        // A report has its own `id`; a body of neither shape has no derived one.
        assert_eq!(notification_id(br#"{"version":1,"id":"x"}"#), None);
    }

    #[test]
    fn a_body_that_is_not_a_notification_is_read_as_a_report() {
        let report = br#"{"version":1,"type":"deployment","id":"d-7","repository":"acme/app","environment":"production","sha":"abc1234","status":"failure","time":"2025-04-03T14:05:09Z"}"#;
        match parse(None, report).expect("parses").as_slice() {
            [Fact::Deployment(d)] => {
                assert_eq!((d.provider.as_str(), d.deployment_id.as_str()), ("jenkins", "d-7"))
            }
            other => panic!("{other:?}"),
        }
        let e = parse(None, br#"{"job":"x"}"#).expect_err("neither shape");
        assert_eq!(e.provider, "jenkins");
        assert!(e.message.contains("version"), "{}", e.message);
    }

    #[test]
    fn a_malformed_finished_build_is_an_error_an_unread_phase_is_not() {
        let body = with(
            real("finalized-terasology"),
            &[("timestamp", json!("2024-03-08T10:15:30Z"))],
        );
        let e = parse(None, &body).expect_err("a time that is not epoch milliseconds");
        assert_eq!(e.event, "FINALIZED");
        let body = with(
            real("started-deploy-job"),
            &[("timestamp", json!("2024-03-08T10:15:30Z"))],
        );
        assert_eq!(parse(None, &body), Ok(Vec::new()));
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        for (timestamp, duration) in [(i64::MIN + 1, i64::MAX), (i64::MAX, i64::MIN), (1, i64::MAX)] {
            let body = with(
                real("completed-wiki"),
                &[("timestamp", json!(timestamp)), ("duration", json!(duration))],
            );
            let _ = parse(None, &body);
        }
    }
}
