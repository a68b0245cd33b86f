//! Drives a real `em-agent serve` process over real HTTP.

#![allow(dead_code)]

pub mod aws;
pub mod browser;
pub mod hooks;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Every registered provider with a test secret of its own.
pub fn secrets() -> &'static [(&'static str, &'static str)] {
    static SECRETS: OnceLock<Vec<(&'static str, &'static str)>> = OnceLock::new();
    SECRETS.get_or_init(|| {
        em_providers::all()
            .iter()
            .map(|p| {
                let secret: &'static str =
                    Box::leak(format!("test-{}-secret", p.name).into_boxed_str());
                (p.name, secret)
            })
            .collect()
    })
}

/// The providers' secrets as the AWS webhook reads them: one JSON object, a key per provider.
pub fn secrets_json() -> serde_json::Value {
    secrets()
        .iter()
        .map(|(p, s)| (p.to_string(), serde_json::Value::from(*s)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

pub fn scenario_dir() -> PathBuf {
    workspace().join("tests/data/scenarios/basic")
}

/// A cargo for a build inside a test: without the variables cargo sets for a test run (they would make the
/// build look different from a plain `cargo build` and rebuild everything), with the ones a person or CI
/// sets to configure cargo (home, target directory, incremental, profiles, registries).
pub fn nested_cargo() -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        let keep = matches!(
            k.as_str(),
            "CARGO_HOME" | "CARGO_TARGET_DIR" | "CARGO_INCREMENTAL"
        ) || [
            "CARGO_REGISTRIES_",
            "CARGO_PROFILE_",
            "CARGO_BUILD_",
            "CARGO_NET_",
        ]
        .iter()
        .any(|p| k.starts_with(p));
        if (k.starts_with("CARGO") && !keep) || k == "OUT_DIR" || k.starts_with("RUSTC") {
            cmd.env_remove(&k);
        }
    }
    cmd
}

/// Builds the binary under test once per test process, so a test never runs a stale one.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("EM_AGENT_BIN") {
            return PathBuf::from(p);
        }
        let status = nested_cargo()
            .args(["build", "--quiet", "-p", "em-agent", "--bin", "em-agent"])
            .current_dir(workspace())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building em-agent failed");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace().join("target"));
        target.join("debug/em-agent")
    })
    .clone()
}

/// An HTTP client for the tests. reqwest leaves the TLS crypto provider to the process (the CLI installs
/// aws-lc-rs at start-up), so the tests install the same one first.
pub fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
}

pub fn client() -> reqwest::Client {
    client_builder().build().expect("an HTTP client")
}

/// The address a server started on port 0 listens on, from the line its log writes once it listens
/// (`em-agent listening addr=127.0.0.1:41234 ...`), written after `from` in `log`.
fn listening_addr(child: &mut Child, log: &Path, from: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read(log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text[(from as usize).min(text.len())..]).into_owned();
        if let Some(line) = text.lines().find(|l| l.contains("em-agent listening")) {
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .unwrap_or_else(|| panic!("no addr= in {line:?}"));
            return addr.to_string();
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("em-agent exited ({status}) before listening: {text}");
        }
        assert!(Instant::now() < deadline, "em-agent did not start: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A port free now, for a program that cannot take port 0 and say which it got (`cargo lambda watch`,
/// chromedriver): another process may take it before the program binds it, which those tests survive by
/// failing loudly, never by answering for the wrong server.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub struct Server {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl Server {
    /// Starts `em-agent serve` with the given secrets (provider, secret) and waits until it answers.
    pub fn start(config: Option<&Path>, data_dir: &Path, secrets: &[(&str, &str)]) -> Server {
        Self::start_with(config, data_dir, secrets, &[], &[])
    }

    /// [`Server::start`] with more arguments and environment (e.g. `--backend aws`).
    pub fn start_with(
        config: Option<&Path>,
        data_dir: &Path,
        secrets: &[(&str, &str)],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        Self::spawn(config, data_dir, secrets, args, env, None)
    }

    /// [`Server::start`] as on a disk that is full past `kib` KiB: no file the server writes (its
    /// database, its WAL, its log) may grow beyond that (`ulimit -f`, with SIGXFSZ ignored so a write
    /// past it fails with an error, as on a full disk, instead of killing the process).
    pub fn start_on_full_disk(data_dir: &Path, secrets: &[(&str, &str)], kib: u64) -> Server {
        Self::spawn(None, data_dir, secrets, &[], &[], Some(kib))
    }

    fn spawn(
        config: Option<&Path>,
        data_dir: &Path,
        secrets: &[(&str, &str)],
        args: &[&str],
        env: &[(&str, &str)],
        file_size_kib: Option<u64>,
    ) -> Server {
        let log = data_dir.with_extension("log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        // A restart appends to the same log: its address is in what comes after.
        let log_start = log_file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = match file_size_kib {
            None => Command::new(binary()),
            Some(kib) => {
                // bash counts `ulimit -f` in KiB; the ignored signal stays ignored across exec.
                let mut c = Command::new("bash");
                c.arg("-c")
                    .arg(format!(
                        "trap '' XFSZ; ulimit -f {kib} && exec \"$0\" \"$@\""
                    ))
                    .arg(binary());
                c
            }
        };
        // Port 0: the server takes a free port itself and says which in its log, so no other process can
        // take it between a test choosing it and the server binding it.
        cmd.arg("serve")
            .arg("--addr")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .stdout(Stdio::null())
            .stderr(log_file)
            .env_remove("RUST_LOG")
            .env_remove("EM_AGENT_API_TOKEN")
            .env_remove("EM_AGENT_API_TOKEN_PREVIOUS");
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        } else {
            cmd.arg("--config")
                .arg(data_dir.with_extension("empty.toml"));
            std::fs::write(data_dir.with_extension("empty.toml"), "").expect("empty config");
        }
        for p in em_providers::all() {
            for var in p.secret_vars() {
                cmd.env_remove(var);
            }
        }
        for (p, s) in secrets {
            cmd.env(em_providers::secret_env_var(p), s);
        }
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("em-agent starts");
        let addr = listening_addr(&mut child, &log, log_start);
        Server {
            child,
            base: format!("http://{addr}"),
            data_dir: data_dir.to_path_buf(),
            log,
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path?query` on this server, as JSON.
    pub async fn get_json(
        &self,
        client: &reqwest::Client,
        path: &str,
        query: &[(&str, &str)],
    ) -> Value {
        client
            .get(self.url(path))
            .query(query)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} answers: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path} is JSON: {e}"))
    }

    pub async fn stats(&self, client: &reqwest::Client) -> Value {
        self.get_json(client, "/v1/stats", &[]).await
    }

    /// Waits until every accepted delivery has been processed.
    pub async fn wait_drained(&self, client: &reqwest::Client) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let s = self.stats(client).await;
            if s["queued"] == 0 {
                return s;
            }
            assert!(Instant::now() < deadline, "queue did not drain: {s}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A recorded delivery: `{"provider", "headers", "body"}`.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub name: String,
    pub provider: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// A JSON delivery of `provider` with the given headers (and `Content-Type: application/json`).
pub fn delivery(
    provider: &str,
    name: &str,
    headers: &[(&str, &str)],
    body: serde_json::Value,
) -> Delivery {
    let mut h: Vec<(String, String)> = vec![("Content-Type".into(), "application/json".into())];
    h.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Delivery {
        name: name.into(),
        provider: provider.into(),
        headers: h,
        body: body.to_string(),
    }
}

/// A GitHub push of `commits` (sha, commit time) to `repo`'s default branch after `before`.
pub fn github_push(repo: &str, id: &str, before: &str, commits: &[(&str, &str)]) -> Delivery {
    let after = commits
        .last()
        .map_or("0000000000000000000000000000000000000000", |c| c.0);
    delivery(
        "github",
        id,
        &[("X-GitHub-Event", "push"), ("X-GitHub-Delivery", id)],
        serde_json::json!({
            "ref": "refs/heads/main", "before": before, "after": after, "deleted": false,
            "repository": {"full_name": repo, "default_branch": "main"},
            "commits": commits.iter().map(|(sha, time)| serde_json::json!({"id": sha, "timestamp": time, "message": "change"}))
                .collect::<Vec<_>>(),
        }),
    )
}

/// A GitHub deployment `n` of `sha` to `repo`'s production environment that succeeded at `time`.
pub fn github_deployment(repo: &str, id: &str, n: u64, sha: &str, time: &str) -> Delivery {
    delivery(
        "github",
        id,
        &[
            ("X-GitHub-Event", "deployment_status"),
            ("X-GitHub-Delivery", id),
        ],
        serde_json::json!({
            "action": "created",
            "deployment_status": {"id": n, "state": "success", "environment": "production", "created_at": time},
            "deployment": {"id": n, "sha": sha, "environment": "production", "production_environment": true},
            "repository": {"full_name": repo, "default_branch": "main"},
        }),
    )
}

pub fn load_deliveries(dir: &Path) -> Vec<Delivery> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("deliveries dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files.iter().map(|f| load_delivery(f)).collect()
}

/// One delivery file of a scenario (`provider`, `headers`, `body`).
pub fn load_delivery(f: &Path) -> Delivery {
    let v: Value = serde_json::from_slice(&std::fs::read(f).expect("read")).expect("json");
    Delivery {
        name: f.file_name().unwrap_or_default().to_string_lossy().into(),
        provider: v["provider"].as_str().expect("provider").into(),
        headers: v["headers"]
            .as_object()
            .expect("headers")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
        body: v["body"].as_str().expect("body").into(),
    }
}

pub fn secret_of(provider: &str) -> &'static str {
    secrets()
        .iter()
        .find(|(p, _)| *p == provider)
        .map(|(_, s)| *s)
        .expect("known provider")
}

/// Posts a delivery signed as its provider signs it; returns the status and JSON body.
pub async fn post_signed(
    client: &reqwest::Client,
    base: &str,
    d: &Delivery,
) -> reqwest::Result<(u16, Value)> {
    post_signed_as(client, base, d, secret_of(&d.provider)).await
}

/// Like [`post_signed`], with a given secret.
pub async fn post_signed_as(
    client: &reqwest::Client,
    base: &str,
    d: &Delivery,
    secret: &str,
) -> reqwest::Result<(u16, Value)> {
    let p = em_providers::by_name(&d.provider).expect("provider");

    let mut req = client
        .post(format!("{base}/webhooks/{}", d.provider))
        .body(d.body.clone());
    for (k, v) in &d.headers {
        req = req.header(k, v);
    }
    for (k, v) in p.sign(
        secret.as_bytes(),
        d.body.as_bytes(),
        em_core::time::now_millis(),
    ) {
        req = req.header(k, v);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// A figures answer without its `configuration` (which says what configuration the figures reflect, and is
/// checked to be there): what the scenarios' expected figures describe.
pub fn figures_of(answer: &Value) -> Value {
    let mut v = answer.clone();
    if let Some(o) = v.as_object_mut() {
        let c = o.remove("configuration");
        assert!(
            c.as_ref().is_some_and(|c| c["fingerprint"].is_string()),
            "the answer says which configuration it reflects: {answer}"
        );
    }
    v
}

/// The figures that add up: a window's equals the sum over its series buckets or its groups.
const ADDITIVE: &[(&str, &str)] = &[
    ("deployment_frequency", "deployments"),
    ("change_failure_rate", "failed"),
    ("rework_rate", "rework"),
    ("lead_time", "changes"),
    ("lead_time", "excluded"),
    ("recovery_time", "incidents"),
    ("recovery_time", "open"),
];

/// Every additive figure of `window` equals the sum of it over `parts` (series buckets or groups).
pub fn assert_adds_up(window: &Value, parts: &Value, what: &str) {
    let parts = parts
        .as_array()
        .unwrap_or_else(|| panic!("{what}: a list: {parts}"));
    for (figure, field) in ADDITIVE {
        let sum: u64 = parts
            .iter()
            .map(|p| p[figure][field].as_u64().expect("a count"))
            .sum();
        assert_eq!(
            Some(sum),
            window[figure][field].as_u64(),
            "{what}: {figure}.{field} of the parts does not add up to the window's"
        );
    }
    // Counts answered only when not zero: absent is zero.
    for (figure, field) in [("lead_time", "unlisted"), ("recovery_time", "excluded")] {
        let count = |v: &Value| v[figure][field].as_u64().unwrap_or(0);
        let sum: u64 = parts.iter().map(count).sum();
        assert_eq!(
            sum,
            count(window),
            "{what}: {figure}.{field} does not add up"
        );
    }
}

/// Integers must match exactly; other numbers within 1e-9 relative (the rounding of a float printed and
/// read back, no more: a rank off by one in a percentile or a window an hour short fails); everything else
/// exactly.
pub fn assert_matches(got: &Value, want: &Value, path: &str) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let mut gk: Vec<_> = g.keys().collect();
            let mut wk: Vec<_> = w.keys().collect();
            gk.sort();
            wk.sort();
            assert_eq!(gk, wk, "keys differ at {path}");
            for (k, wv) in w {
                assert_matches(&g[k], wv, &format!("{path}.{k}"));
            }
        }
        (Value::Number(g), Value::Number(w)) if w.is_f64() => {
            let (g, w) = (
                g.as_f64().unwrap_or(f64::NAN),
                w.as_f64().unwrap_or(f64::NAN),
            );
            assert!(close(g, w), "{path}: got {g}, want {w}");
        }
        _ => assert_eq!(got, want, "at {path}"),
    }
}

/// Equal within 1e-9 of the larger magnitude (exactly, for zero).
pub fn close(got: f64, want: f64) -> bool {
    got == want || (got - want).abs() <= 1e-9 * got.abs().max(want.abs())
}

/// A small deterministic shuffle (xorshift), so a failing order can be replayed.
pub fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

/// `em-agent digest --team web --at 2025-04-14 --send` over an empty data directory whose configuration
/// gives team `web` (service `shop`) `channels`, with `envs` added to the environment; run off the async
/// runtime, so a receiver in the test keeps answering.
pub async fn send_web_digest(
    channels: &[&str],
    envs: Vec<(String, String)>,
) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("em-agent.toml");
    let list: Vec<String> = channels.iter().map(|c| format!("{c:?}")).collect();
    std::fs::write(
        &config,
        format!(
            "[[services]]\nname = \"shop\"\nteam = \"web\"\nrepositories = [\"acme/shop\"]\n\n\
             [[teams]]\nname = \"web\"\nchannels = [{}]\n",
            list.join(", ")
        ),
    )
    .expect("config");
    let bin = binary();
    tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args([
                "digest",
                "--team",
                "web",
                "--at",
                "2025-04-14",
                "--send",
                "--out",
            ])
            .arg(dir.path().join("out"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&config)
            .envs(envs)
            .output()
            .expect("em-agent runs")
    })
    .await
    .expect("joined")
}
