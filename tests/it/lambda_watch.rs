//! The three Lambda functions as Lambda runs them: their binaries under `cargo lambda watch` (the Lambda
//! runtime API emulator), invoked with the sample events of `events/`, against an AWS-compatible server.
//!
//! webhook: the GitHub event is accepted (202), the same again is a duplicate (200), every other registered
//! provider's sample is accepted; aggregator: an SQS event made of the queued messages is processed without a
//! failure, and the scheduled event re-publishes the figures of every service; api: the DORA query answers
//! with the figures an in-process run computes from the same deliveries, and 401 without the token.
//!
//! One emulator per function, all with the same environment: the resources of [`common::aws::fresh_names`],
//! the webhook's secret (`EM_AGENT_SECRET_ID`, no `EM_AGENT_PROVIDER`: the path parameter names the
//! provider), the API token's secret, and the sample scenario's configuration.

use crate::common;

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::aws::{
    delete_messages, fresh_names, put_secret, put_webhook_secret, queue_arn, receive_messages, sdk,
    server_log_hint, sqs_event_json, unique_name,
};
use em_core::config::Config;
use em_core::ports::Envelope;
use serde_json::{json, Value};

const WEBHOOK_SECRET: &str = "em-agent-test-secret";
const API_TOKEN: &str = "em-agent-test-token";
const FUNCTIONS: [&str; 4] = ["webhook", "aggregator", "api", "digest"];
/// The first invocation starts the function, building it when it is not up to date: minutes on a busy
/// machine.
const FIRST_INVOKE_PATIENCE: Duration = Duration::from_secs(15 * 60);

/// The target directory this test was built in (`<target>/<profile>/deps/<test binary>`), so the functions
/// are built beside it rather than from scratch elsewhere.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("{} is not under <target>/<profile>/deps", exe.display()))
}

/// A nested cargo (`common::nested_cargo`) building into the test's target directory, with `.venv/bin`
/// (where `scripts/test.sh` installs cargo-lambda) and this cargo's directory first on the `PATH`.
fn cargo() -> Command {
    let cargo = PathBuf::from(env!("CARGO"));
    let mut cmd = common::nested_cargo();
    let mut path: Vec<PathBuf> = vec![common::workspace().join(".venv/bin")];
    if let Some(dir) = cargo.parent() {
        path.push(dir.to_path_buf());
    }
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    cmd.env("PATH", std::env::join_paths(path).expect("a valid PATH"))
        .env("CARGO_TARGET_DIR", target_dir())
        .current_dir(common::workspace());
    cmd
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `cargo lambda watch` serving one function, in its own process group so everything it starts goes with
/// it. One per function: the workspace's default member is the CLI, so the emulator is pointed at each
/// function's own manifest (`cargo run --manifest-path functions/<f>/Cargo.toml --bin <f>`).
struct Watch {
    function: &'static str,
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Watch {
    fn start(function: &'static str, env: &[(&str, String)]) -> Watch {
        let dir = tempfile::tempdir().expect("a temp dir");
        let env_file = dir.path().join("function.env");
        let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(&env_file, text).expect("env file");
        let log = dir.path().join("watch.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let port = common::free_port();
        let mut cmd = cargo();
        cmd.args(["lambda", "watch", "--ignore-changes", "--invoke-address"])
            .arg("127.0.0.1")
            .arg("--invoke-port")
            .arg(port.to_string())
            .arg("--manifest-path")
            .arg(format!("functions/{function}/Cargo.toml"))
            .arg("--env-file")
            .arg(&env_file)
            .env_remove("EM_AGENT_PROVIDER")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "`cargo lambda watch` did not start ({e}): the test needs cargo-lambda 1.9.2 on the PATH or \
                 in .venv/bin (./scripts/test.sh installs it)"
            )
        });
        let mut watch = Watch {
            function,
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = watch.child.try_wait() {
                panic!(
                    "`cargo lambda watch` for {function} exited ({status}):\n{}",
                    tail(&watch.log, 40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "`cargo lambda watch` for {function} does not listen on {port}:\n{}",
                tail(&watch.log, 40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        watch
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `cargo lambda invoke <function> --data-file <event>`, given up after `patience`. An invocation waits
    /// for the function to start (and so to be built), and forever when it never does: the emulator's log
    /// is watched for the function's process exiting.
    fn invoke_within(&self, event: &Path, patience: Duration) -> Value {
        let seen = self.log_text().len();
        let mut child = cargo()
            .args([
                "lambda",
                "invoke",
                self.function,
                "--invoke-address",
                "127.0.0.1",
            ])
            .arg("--invoke-port")
            .arg(self.port.to_string())
            .arg("--data-file")
            .arg(event)
            .args(["--output-format", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cargo lambda invoke runs");
        let deadline = Instant::now() + patience;
        let problem = loop {
            match child.try_wait() {
                Ok(Some(_)) => break None,
                Ok(None) => {}
                Err(e) => break Some(format!("waiting for cargo lambda invoke: {e}")),
            }
            let log = self.log_text();
            if log
                .get(seen..)
                .is_some_and(|new| new.contains("command exited"))
            {
                break Some(format!("the {} function exited", self.function));
            }
            if Instant::now() > deadline {
                break Some(format!("no answer within {} s", patience.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        if problem.is_some() {
            let _ = child.kill();
        }
        let out = child
            .wait_with_output()
            .expect("cargo lambda invoke's output");
        assert!(
            problem.is_none() && out.status.success(),
            "invoking {} with {} failed: {}\n{}\n{}\n--- cargo lambda watch ---\n{}{}",
            self.function,
            event.display(),
            problem.unwrap_or_default(),
            lossy(&out.stdout),
            lossy(&out.stderr),
            tail(&self.log, 60),
            server_log_hint()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{} answered with something not JSON ({e}): {}",
                self.function,
                lossy(&out.stdout)
            )
        })
    }

    /// An invocation of a function that is already running.
    fn invoke(&self, event: &Path) -> Value {
        self.invoke_within(event, Duration::from_secs(120))
    }

    /// The first invocation, which starts the function (building it if it is not up to date).
    fn invoke_first(&self, event: &Path) -> Value {
        self.invoke_within(event, FIRST_INVOKE_PATIENCE)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // The emulator, the cargo it runs and the function: the whole group this test started.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// An API Gateway response's status and JSON body.
fn http_answer(v: &Value) -> (u64, Value) {
    let status = v["statusCode"]
        .as_u64()
        .unwrap_or_else(|| panic!("not an API Gateway response: {v}"));
    let body = v["body"].as_str().unwrap_or_default();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("body not JSON ({e}): {v}"));
    (status, body)
}

fn event(name: &str) -> PathBuf {
    common::workspace().join("events").join(name)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("an event file")).expect("JSON event")
}

/// The delivery an API Gateway webhook event carries, as the webhook names it.
fn envelope_of(event: &Value) -> Envelope {
    let provider = event["pathParameters"]["provider"]
        .as_str()
        .expect("a provider path parameter");
    let p = em_providers::by_name(provider).expect("a known provider");
    let mut headers = http::HeaderMap::new();
    for (k, v) in event["headers"].as_object().expect("headers") {
        headers.insert(
            http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            http::HeaderValue::from_str(v.as_str().unwrap_or_default()).expect("header value"),
        );
    }
    let body = bytes::Bytes::from(event["body"].as_str().expect("a body").to_string());
    let inspection = p.inspect(&headers, &body).expect("a valid delivery");
    Envelope {
        provider: provider.to_string(),
        delivery_id: inspection.delivery_id,
        event: inspection.event,
        received_at: 0,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_functions_run_under_cargo_lambda_watch_with_the_sample_events() {
    let started = Instant::now();
    let endpoint = common::aws::endpoint();
    let sdk = sdk().await;
    let names = fresh_names("lambda-watch").await;
    // Every registered provider's sample event is signed with the same test secret.
    let secrets: serde_json::Map<String, Value> = em_providers::all()
        .iter()
        .map(|p| (p.name.to_string(), json!(WEBHOOK_SECRET)))
        .collect();
    let webhook_secret =
        put_webhook_secret(&sdk, &unique_name("watch-webhook"), Value::Object(secrets)).await;
    let token_secret = put_secret(&sdk, &unique_name("watch-api-token"), API_TOKEN).await;
    let config_path = common::scenario_dir().join("em-agent.toml");
    let config = Arc::new(Config::load(&config_path).expect("the scenario's configuration"));

    // Built before the emulators start, each as `cargo run` under the emulator builds it, so the first
    // invocations do not wait for a build.
    for function in FUNCTIONS {
        let build = cargo()
            .args(["build", "--quiet", "--manifest-path"])
            .arg(format!("functions/{function}/Cargo.toml"))
            .args(["--bin", function])
            .status()
            .expect("cargo build runs");
        assert!(build.success(), "building the {function} function failed");
    }

    let var = |k: &str, default: &str| std::env::var(k).unwrap_or_else(|_| default.to_string());
    let env: Vec<(&str, String)> = vec![
        ("AWS_ENDPOINT_URL", endpoint.clone()),
        (
            "AWS_REGION",
            std::env::var("AWS_REGION")
                .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|_| common::aws::REGION.to_string()),
        ),
        ("AWS_ACCESS_KEY_ID", var("AWS_ACCESS_KEY_ID", "testing")),
        (
            "AWS_SECRET_ACCESS_KEY",
            var("AWS_SECRET_ACCESS_KEY", "testing"),
        ),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("EM_AGENT_SECRET_ID", webhook_secret),
        ("EM_AGENT_API_TOKEN_SECRET_ID", token_secret),
        ("EM_AGENT_TABLE", names.table.clone()),
        ("EM_AGENT_DELIVERIES_TABLE", names.deliveries_table.clone()),
        ("EM_AGENT_QUEUE", names.queue.clone()),
        ("EM_AGENT_BUCKET", names.bucket.clone()),
        ("EM_AGENT_CONFIG", config_path.display().to_string()),
        // The samples that sign a timestamp (incident.io, Grafana) were signed when they were generated:
        // a window wider than their age lets them through, as `EM_AGENT_REPLAY_WINDOW` would for anyone
        // invoking them (events/README.md); the window itself is tested on the handler.
        ("EM_AGENT_REPLAY_WINDOW", "36500days".into()),
    ];
    let webhook = Watch::start("webhook", &env);
    let aggregator = Watch::start("aggregator", &env);
    let api = Watch::start("api", &env);

    // webhook: accepted, then a duplicate; the other providers accepted.
    let github = event("webhook-github.json");
    let (status, body) = http_answer(&webhook.invoke_first(&github));
    assert_eq!(
        (status, &body["status"]),
        (202, &json!("accepted")),
        "{body}"
    );
    let (status, body) = http_answer(&webhook.invoke(&github));
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("duplicate")),
        "{body}"
    );
    let samples: Vec<String> = em_providers::all()
        .iter()
        .map(|p| format!("webhook-{}.json", p.name))
        .collect();
    for name in samples.iter().filter(|n| *n != "webhook-github.json") {
        let (status, body) = http_answer(&webhook.invoke(&event(name)));
        assert_eq!(
            (status, &body["status"]),
            (202, &json!("accepted")),
            "{name}: {body}"
        );
    }

    // aggregator: the queued deliveries, one per provider, as the SQS event source hands them over.
    let messages = receive_messages(
        &sdk,
        &names.queue,
        samples.len() + 1,
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(
        messages.len(),
        samples.len(),
        "the queue should hold every accepted delivery, once each"
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let sqs_file = dir.path().join("sqs.json");
    let arn = queue_arn(&sdk, &names.queue).await;
    std::fs::write(&sqs_file, sqs_event_json(&messages, &arn).to_string()).expect("event file");
    let answer = aggregator.invoke_first(&sqs_file);
    assert_eq!(
        answer["batchItemFailures"],
        json!([]),
        "the aggregator reported failures: {answer}"
    );
    let receipts: Vec<String> = messages
        .iter()
        .map(|m| m.receipt_handle().unwrap_or_default().to_string())
        .collect();
    delete_messages(&sdk, &names.queue, &receipts).await;

    // What the same deliveries give in-process, on a table of their own.
    let reference =
        common::aws::reference_aggregator(&sdk, "watch-reference", config.clone()).await;
    let envelopes: Vec<Envelope> = samples
        .iter()
        .map(|n| envelope_of(&read_json(&event(n))))
        .collect();
    let results = reference.process_batch(&envelopes).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let services = reference
        .services()
        .await
        .expect("the reference's services");

    // The schedule re-publishes the figures: one line per configured service, one for all the others.
    let configured = services.iter().filter(|s| config.is_configured(s)).count();
    let answer = aggregator.invoke(&event("scheduled.json"));
    assert_eq!(
        answer,
        json!({ "published": configured + usize::from(services.len() > configured) }),
        "services: {services:?}"
    );

    // api: the sample query, and the same for the service the GitLab deployment belongs to.
    let api_event = read_json(&event("api-dora.json"));
    let query = |q: &Value| em_api::DoraQuery {
        service: q["service"].as_str().map(str::to_string),
        team: q["team"].as_str().map(str::to_string),
        from: q["from"].as_str().map(str::to_string),
        to: q["to"].as_str().map(str::to_string),
        ..Default::default()
    };
    let mut search_event = api_event.clone();
    search_event["rawQueryString"] = json!("service=search&from=2025-03-03&to=2025-05-02");
    search_event["queryStringParameters"]["service"] = json!("search");
    let search_file = dir.path().join("api-search.json");
    std::fs::write(&search_file, search_event.to_string()).expect("event file");
    let mut answers = Vec::new();
    for (i, (file, e)) in [
        (event("api-dora.json"), &api_event),
        (search_file, &search_event),
    ]
    .iter()
    .enumerate()
    {
        let got = if i == 0 {
            api.invoke_first(file)
        } else {
            api.invoke(file)
        };
        let (status, body) = http_answer(&got);
        assert_eq!(status, 200, "{}: {body}", file.display());
        let want = em_api::dora(
            &reference.store,
            &config,
            query(&e["queryStringParameters"]),
            0,
        )
        .await
        .expect("the reference report");
        assert_eq!(
            body["configuration"]["current"],
            json!(true),
            "the function applied the configuration: {body}"
        );
        assert_eq!(
            serde_json::to_value(&want.report).expect("JSON"),
            {
                let mut b = body.clone();
                b.as_object_mut().map(|o| o.remove("configuration"));
                b
            },
            "{}: the function's figures differ from the in-process ones",
            file.display()
        );
        answers.push(body);
    }
    assert_eq!(answers[0]["scope"]["service"], json!("checkout"));
    assert_eq!(
        answers[0]["deployment_frequency"]["deployments"],
        json!(1),
        "the generic provider's sample deployment of checkout-api: {}",
        answers[0]
    );
    assert_eq!(
        answers[1]["deployment_frequency"]["deployments"],
        json!(1),
        "the GitLab production deployment of search-indexer: {}",
        answers[1]
    );

    // Without the token: 401.
    let mut no_token = api_event.clone();
    no_token["headers"]
        .as_object_mut()
        .expect("headers")
        .remove("authorization");
    let no_token_file = dir.path().join("api-no-token.json");
    std::fs::write(&no_token_file, no_token.to_string()).expect("event file");
    let (status, body) = http_answer(&api.invoke(&no_token_file));
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].is_string(), "{body}");

    // digest: the scheduled run at Monday 09:00 UTC sends team payments' weekly digest to its Slack hook
    // (a receiver on the loopback, its URL in the addresses secret); the same schedule again sends nothing.
    let (hooks, base) = common::hooks::receiver().await;
    let addresses = put_secret(
        &sdk,
        &unique_name("watch-digest-addresses"),
        &json!({ "payments/slack": format!("{base}/payments") }).to_string(),
    )
    .await;
    let digest_config = dir.path().join("em-agent.toml");
    std::fs::write(
        &digest_config,
        format!(
            "{}\n[[teams]]\nname = \"payments\"\nchannels = [\"slack\"]\n",
            std::fs::read_to_string(&config_path).expect("the scenario's configuration")
        ),
    )
    .expect("config file");
    let mut digest_env = env.clone();
    digest_env.retain(|(k, _)| *k != "EM_AGENT_CONFIG");
    digest_env.push(("EM_AGENT_CONFIG", digest_config.display().to_string()));
    digest_env.push(("EM_AGENT_DIGEST_SECRET_ID", addresses));
    let digest = Watch::start("digest", &digest_env);
    let schedule = event("digest-scheduled.json");
    let first = digest.invoke_first(&schedule);
    let outcomes = |v: &Value| -> Vec<(String, String)> {
        v["reports"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|r| {
                        (
                            r["team"].as_str().unwrap_or_default().to_string(),
                            r["outcome"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        outcomes(&first),
        [("payments".to_string(), "sent".to_string())],
        "{first}"
    );
    let again = digest.invoke(&schedule);
    assert_eq!(
        outcomes(&again),
        [("payments".to_string(), "already_claimed".to_string())],
        "{again}"
    );
    let posted = hooks.hits("payments");
    assert_eq!(posted.len(), 1, "{posted:?}");
    assert_eq!(
        posted[0]["blocks"][0]["text"]["text"],
        "Weekly DORA digest — team payments"
    );

    for w in [&webhook, &aggregator, &api, &digest] {
        let panics: Vec<String> = w
            .log_text()
            .lines()
            .filter(|l| l.contains("panicked at"))
            .map(str::to_string)
            .collect();
        assert!(
            panics.is_empty(),
            "the {} function panicked: {panics:?}",
            w.function
        );
    }
    drop((webhook, aggregator, api, digest));
    eprintln!(
        "the functions ran under cargo lambda watch in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
