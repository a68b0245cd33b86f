//! The aggregator loses its connection to DynamoDB in the middle of a batch.
//!
//! The aggregator's DynamoDB client (and only it) talks to the AWS-compatible server through a TCP proxy in
//! this test. At a chosen request the proxy stops forwarding: that request and every later byte, on every
//! connection, is held and never delivered, and new connections are accepted but never connected through —
//! a cable pulled, not a refused connection, so the client only learns of it through its timeouts. When the
//! cable comes back the held connections are closed and new ones are forwarded again.
//!
//! What must hold, as on Lambda with `ReportBatchItemFailures`: the batch reports its failures; every message
//! it does not report as failed is stored and counted; the failed messages reach the dead-letter queue
//! through the redrive policy; after the connection returns and the dead-letter queue is redriven (the code
//! `em-agent replay --backend aws` runs), every delivery is counted exactly once, the figures are those of a
//! run that never failed, and processing the same batch again changes nothing.
//!
//! The webhook's side of the same fault: when SQS cannot be reached the provider gets a 503 (it retries),
//! never a 2xx, and its retry once SQS is back is accepted — not taken for a duplicate — and counted once.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::aws::{
    delete_messages, fresh_names_with, put_webhook_secret, queue_arn, queue_depth,
    receive_messages, sdk, server_log_hint, sqs_event, unique_name, webhook_app, webhook_request,
};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use em_aggregator::Aggregator;
use em_api::DoraQuery;
use em_aws::secrets::Layout;
use em_aws::{DynamoStore, S3Payloads, SecretsManagerSecrets, SqsQueue};
use em_core::config::Config;
use em_core::domain::Fact;
use em_core::ports::{DeadLetters, Envelope, MetricsReader, QueueMessage, SecretSource, Store};
use em_core::time::now_millis;
use em_webhook::WebhookHandler;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use proxy::Proxy;

/// How long one attempt of the aggregator's DynamoDB client may take, once the cable is cut, before it gives
/// up on a stalled connection; the client makes two attempts per request. While the cable is connected an
/// attempt may take as long as the suite gives moto ([`CutAwareSleep`]).
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1500);
const ATTEMPTS: u32 = 2;
const SECRET: &str = "aws-fault-github-secret";
const PER_SERVICE: usize = 3;
const SERVICES: [(&str, &str); 3] = [
    ("alpha", "fault-org/alpha"),
    ("bravo", "fault-org/bravo"),
    ("charlie", "fault-org/charlie"),
];
const CONFIG: &str = r#"
production_environments = ["production"]

[[services]]
name = "alpha"
team = "fault"
repositories = ["fault-org/alpha"]

[[services]]
name = "bravo"
team = "fault"
repositories = ["fault-org/bravo"]

[[services]]
name = "charlie"
team = "fault"
repositories = ["fault-org/charlie"]
"#;
const FROM: &str = "2025-04-01";
const TO: &str = "2025-05-01";

/// A TCP proxy that can be cut and restored, and that cuts itself at a chosen HTTP request.
mod proxy {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::watch;

    /// A request as the proxy sees it before forwarding it.
    pub struct RequestInfo<'a> {
        /// The operation of an AWS JSON protocol request (`X-Amz-Target: DynamoDB_20120810.PutItem` →
        /// `PutItem`), empty for others.
        pub operation: &'a str,
        pub body: &'a [u8],
    }

    type Trigger = Box<dyn FnMut(&RequestInfo) -> bool + Send>;

    struct Shared {
        upstream: SocketAddr,
        /// `true` while the cable is cut.
        cut: watch::Sender<bool>,
        trigger: Mutex<Option<Trigger>>,
        /// Operations forwarded, in order (for failure messages).
        forwarded: Mutex<Vec<String>>,
        /// The bodies of the requests forwarded, in the same order (what the requests cost).
        bodies: Mutex<Vec<Vec<u8>>>,
        held_requests: AtomicUsize,
        held_connections: AtomicUsize,
        cuts: AtomicUsize,
    }

    pub struct Proxy {
        addr: SocketAddr,
        shared: Arc<Shared>,
        accept: tokio::task::JoinHandle<()>,
    }

    enum End {
        /// The sender closed its side: let the other direction finish.
        Eof,
        /// Cut and then restored, or a socket error: drop the connection.
        Killed,
    }

    impl Proxy {
        /// Listens on a free loopback port and forwards to `upstream`.
        pub async fn start(upstream: SocketAddr) -> Proxy {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
            let addr = listener.local_addr().expect("proxy address");
            let shared = Arc::new(Shared {
                upstream,
                cut: watch::channel(false).0,
                trigger: Mutex::new(None),
                forwarded: Mutex::new(Vec::new()),
                bodies: Mutex::new(Vec::new()),
                held_requests: AtomicUsize::new(0),
                held_connections: AtomicUsize::new(0),
                cuts: AtomicUsize::new(0),
            });
            let s = shared.clone();
            let accept = tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let _ = client.set_nodelay(true);
                    tokio::spawn(serve(s.clone(), client));
                }
            });
            Proxy {
                addr,
                shared,
                accept,
            }
        }

        pub fn url(&self) -> String {
            format!("http://{}", self.addr)
        }

        /// Cuts the cable at the first request for which `trigger` answers `true` (that request is held).
        pub fn cut_at(&self, trigger: impl FnMut(&RequestInfo) -> bool + Send + 'static) {
            *self.shared.trigger.lock().expect("trigger lock") = Some(Box::new(trigger));
        }

        /// Brings the cable back: held connections are closed, new ones are forwarded.
        pub fn restore(&self) {
            self.shared.trigger.lock().expect("trigger lock").take();
            self.shared.cut.send_replace(false);
        }

        pub fn is_cut(&self) -> bool {
            *self.shared.cut.borrow()
        }

        /// Follows the cable's state: `true` while it is cut.
        pub fn watch_cut(&self) -> watch::Receiver<bool> {
            self.shared.cut.subscribe()
        }

        /// How many times the cable was cut.
        pub fn cuts(&self) -> usize {
            self.shared.cuts.load(Ordering::SeqCst)
        }

        /// The operations forwarded so far, in order.
        pub fn forwarded(&self) -> Vec<String> {
            self.shared.forwarded.lock().expect("log lock").clone()
        }

        /// The operations forwarded so far with their bodies, in order.
        pub fn forwarded_bodies(&self) -> Vec<(String, Vec<u8>)> {
            let ops = self.forwarded();
            let bodies = self.shared.bodies.lock().expect("log lock").clone();
            ops.into_iter().zip(bodies).collect()
        }

        /// Requests that arrived while the cable was cut (never forwarded).
        pub fn held_requests(&self) -> usize {
            self.shared.held_requests.load(Ordering::SeqCst)
        }

        /// Connections opened while the cable was cut (never connected through).
        pub fn held_connections(&self) -> usize {
            self.shared.held_connections.load(Ordering::SeqCst)
        }
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.accept.abort();
            // Whatever is held is released (and closed).
            self.shared.cut.send_replace(false);
        }
    }

    impl Shared {
        fn cut_now(&self) {
            if !self.cut.send_replace(true) {
                self.cuts.fetch_add(1, Ordering::SeqCst);
            }
        }

        fn is_cut(&self) -> bool {
            *self.cut.borrow()
        }

        /// Whether `req` may be forwarded: not when the cable is cut, or when it is the one that cuts it.
        fn admit(&self, req: &RequestInfo) -> bool {
            let mut trigger = self.trigger.lock().expect("trigger lock");
            if self.is_cut() {
                return false;
            }
            if trigger.as_mut().is_some_and(|t| t(req)) {
                trigger.take();
                self.cut_now();
                return false;
            }
            self.forwarded
                .lock()
                .expect("log lock")
                .push(req.operation.to_string());
            self.bodies
                .lock()
                .expect("log lock")
                .push(req.body.to_vec());
            true
        }
    }

    async fn serve(shared: Arc<Shared>, client: TcpStream) {
        let mut state = shared.cut.subscribe();
        if *state.borrow_and_update() {
            // Accepted, never connected through; closed when the cable comes back.
            shared.held_connections.fetch_add(1, Ordering::SeqCst);
            let _ = state.wait_for(|cut| !*cut).await;
            return;
        }
        let Ok(upstream) = TcpStream::connect(shared.upstream).await else {
            return;
        };
        let _ = upstream.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (upstream_read, upstream_write) = upstream.into_split();
        let requests = requests(shared.clone(), client_read, upstream_write);
        let responses = responses(shared.clone(), upstream_read, client_write);
        tokio::pin!(requests, responses);
        tokio::select! {
            end = &mut requests => {
                if matches!(end, End::Eof) {
                    responses.await;
                }
            }
            _ = &mut responses => {}
        }
    }

    /// Waits until the cable is cut, then until it is back.
    async fn outage(state: &mut watch::Receiver<bool>) {
        let _ = state.wait_for(|cut| *cut).await;
        let _ = state.wait_for(|cut| !*cut).await;
    }

    /// Client to server, a whole request at a time, so each one can be admitted or held.
    async fn requests(shared: Arc<Shared>, mut from: OwnedReadHalf, mut to: OwnedWriteHalf) -> End {
        let mut state = shared.cut.subscribe();
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            while let Some((len, operation, body_at)) = complete_request(&buf) {
                let request: Vec<u8> = buf.drain(..len).collect();
                let info = RequestInfo {
                    operation: &operation,
                    body: &request[body_at..],
                };
                if !shared.admit(&info) {
                    shared.held_requests.fetch_add(1, Ordering::SeqCst);
                    let _ = state.wait_for(|cut| !*cut).await;
                    return End::Killed;
                }
                if to.write_all(&request).await.is_err() {
                    return End::Killed;
                }
            }
            tokio::select! {
                n = from.read(&mut chunk) => match n {
                    Ok(0) | Err(_) => {
                        let _ = to.shutdown().await;
                        return End::Eof;
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                },
                _ = outage(&mut state) => return End::Killed,
            }
        }
    }

    /// Server to client, as it comes, while the cable is up.
    async fn responses(
        shared: Arc<Shared>,
        mut from: OwnedReadHalf,
        mut to: OwnedWriteHalf,
    ) -> End {
        let mut state = shared.cut.subscribe();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            tokio::select! {
                n = from.read(&mut chunk) => match n {
                    Ok(0) | Err(_) => {
                        let _ = to.shutdown().await;
                        return End::Eof;
                    }
                    Ok(n) => {
                        if shared.is_cut() {
                            let _ = state.wait_for(|cut| !*cut).await;
                            return End::Killed;
                        }
                        if to.write_all(&chunk[..n]).await.is_err() {
                            return End::Killed;
                        }
                    }
                },
                _ = outage(&mut state) => return End::Killed,
            }
        }
    }

    /// The length of the first complete HTTP/1.1 request in `buf` (headers and a `Content-Length` body), its
    /// operation, and where its body starts; `None` until it has all arrived.
    fn complete_request(buf: &[u8]) -> Option<(usize, String, usize)> {
        let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&buf[..head_end]);
        let mut length = 0usize;
        let mut operation = String::new();
        for line in head.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "x-amz-target" => operation = value.rsplit('.').next().unwrap_or(value).to_string(),
                "transfer-encoding" => {
                    // The SDK sends DynamoDB requests with a length; a chunked one would be forwarded whole
                    // only by luck, so say so rather than mis-frame it.
                    panic!("the proxy does not frame chunked requests: {head}")
                }
                _ => {}
            }
        }
        (buf.len() >= head_end + length).then(|| (head_end + length, operation, head_end))
    }
}

/// One GitHub `deployment_status` delivery to production.
#[derive(Clone, Debug)]
struct Deploy {
    service: &'static str,
    repo: &'static str,
    deployment_id: u64,
    delivery_id: String,
    /// RFC 3339, whole seconds.
    time: String,
    body: String,
}

/// `PER_SERVICE` production deployments of each service, each on its own day of April 2025, built from the
/// real `deployment_status` fixture with the ids, commit, time and repository changed.
fn deployments() -> Vec<Deploy> {
    let fixture: Value = serde_json::from_slice(
        &std::fs::read(
            common::workspace()
                .join("shared/providers/tests/fixtures/github/deployment_status-success.json"),
        )
        .expect("the deployment_status fixture"),
    )
    .expect("the fixture is JSON");
    let mut out = Vec::new();
    for (s, (service, repo)) in SERVICES.iter().enumerate() {
        for k in 0..PER_SERVICE {
            let day = 2 + s * PER_SERVICE + k;
            let time = format!("2025-04-{day:02}T1{k}:0{s}:00Z");
            let deployment_id = 7_100_000 + (s * 100 + k) as u64;
            let sha = hex::encode(Sha256::digest(format!("{repo}@{k}")))[..40].to_string();
            let mut body = fixture.clone();
            body["deployment"]["id"] = json!(deployment_id);
            body["deployment"]["sha"] = json!(sha);
            body["deployment"]["environment"] = json!("production");
            body["deployment"]["created_at"] = json!(time);
            body["deployment_status"]["id"] = json!(deployment_id * 10);
            body["deployment_status"]["state"] = json!("success");
            body["deployment_status"]["environment"] = json!("production");
            body["deployment_status"]["created_at"] = json!(time);
            body["repository"]["full_name"] = json!(repo);
            body["repository"]["name"] = json!(repo.rsplit('/').next().unwrap_or(repo));
            out.push(Deploy {
                service,
                repo,
                deployment_id,
                delivery_id: uuid::Uuid::new_v4().to_string(),
                time,
                body: body.to_string(),
            });
        }
    }
    out
}

fn millis(rfc3339: &str) -> i64 {
    em_api::parse_instant("t", rfc3339).expect("a valid instant")
}

fn body_text(body: &lambda_http::Body) -> String {
    match body {
        lambda_http::Body::Text(t) => t.clone(),
        lambda_http::Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

/// The SDK's clock for a client behind the proxy: a timeout runs its full (generous) length while the cable
/// is connected, so a slow moto on a loaded machine fails nothing, and ends at most `ATTEMPT_TIMEOUT` after
/// the cable is cut (every duration scaled down alike, so an operation still spans `ATTEMPTS` attempts),
/// which is what the tests wait for.
#[derive(Debug, Clone)]
struct CutAwareSleep {
    cut: tokio::sync::watch::Receiver<bool>,
    /// Once cut, each duration shrinks by this factor: the generous attempt timeout to `ATTEMPT_TIMEOUT`.
    scale: f64,
}

impl aws_smithy_async::rt::sleep::AsyncSleep for CutAwareSleep {
    fn sleep(&self, d: Duration) -> aws_smithy_async::rt::sleep::Sleep {
        let (mut cut, scale) = (self.cut.clone(), self.scale);
        aws_smithy_async::rt::sleep::Sleep::new(async move {
            let short = d.mul_f64(scale);
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = async {
                    if cut.wait_for(|c| *c).await.is_ok() {
                        tokio::time::sleep(short).await;
                    } else {
                        std::future::pending::<()>().await;
                    }
                } => {}
            }
        })
    }
}

/// The SDK configuration of the aggregator's DynamoDB client: through the proxy, giving up on a stalled
/// request after `ATTEMPTS` attempts, each `ATTEMPT_TIMEOUT` once the cable is cut.
async fn through(proxy: &Proxy) -> SdkConfig {
    common::aws::endpoint();
    let generous = std::env::var("EM_AGENT_AWS_ATTEMPT_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(30), Duration::from_millis);
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(proxy.url())
        .sleep_impl(CutAwareSleep {
            cut: proxy.watch_cut(),
            scale: (ATTEMPT_TIMEOUT.as_secs_f64() / generous.as_secs_f64()).min(1.0),
        })
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(generous)
                .operation_attempt_timeout(generous)
                .operation_timeout(generous * (ATTEMPTS + 1))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(ATTEMPTS))
        .load()
        .await
}

/// An SDK configuration for `endpoint` that gives up after `ATTEMPTS` attempts of `ATTEMPT_TIMEOUT`.
async fn short_timeouts(endpoint: String) -> SdkConfig {
    common::aws::endpoint();
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(ATTEMPT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(ATTEMPT_TIMEOUT * (ATTEMPTS + 1))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(ATTEMPTS))
        .load()
        .await
}

/// Where the cable is cut.
#[derive(Clone, Copy, Debug)]
enum CutAt {
    /// At the 5th fact write of the batch's one write: some facts are stored, the rest of the batch and the
    /// message-by-message retry find no connection; no service can be recomputed.
    FactWrites,
    /// At the first write of bravo's metric rows: every fact is stored, every service linked and alpha's rows
    /// written, then bravo's and charlie's rows cannot be written.
    SecondService,
}

/// The deployments counted in the metric rows of `services` (all when `None`) in `[from, to)`, read
/// directly (not through the proxy).
async fn counted(store: &DynamoStore, services: Option<Vec<String>>, from: i64, to: i64) -> usize {
    store
        .observations(services, from, to)
        .await
        .unwrap_or_else(|e| panic!("reading metric rows: {e}{}", server_log_hint()))
        .deployments
        .len()
}

/// Deployment facts stored for the configured repositories, read directly: (repository, deployment id).
async fn stored_deployments(store: &DynamoStore) -> Vec<(String, String)> {
    let facts = store
        .load_facts(
            SERVICES.iter().map(|(_, r)| r.to_string()).collect(),
            Vec::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("reading facts: {e}{}", server_log_hint()));
    facts
        .deployments
        .into_iter()
        .map(|d| (d.repo, d.deployment_id))
        .collect()
}

/// The DORA report of one service, or of the whole team, as the API computes it, as JSON.
async fn report(store: &DynamoStore, config: &Config, service: Option<&str>) -> Value {
    let q = DoraQuery {
        service: service.map(str::to_string),
        team: service.is_none().then(|| "fault".to_string()),
        from: Some(FROM.into()),
        to: Some(TO.into()),
        ..Default::default()
    };
    let r = em_api::dora(store, config, q, now_millis())
        .await
        .unwrap_or_else(|e| panic!("DORA query failed: {e}"));
    // The figures alone: which configuration they reflect depends on who ran the configuration steps.
    serde_json::to_value(&r.report).expect("the report is JSON")
}

/// Every figure the API can give for this data: each service's report and the team's.
async fn all_reports(store: &DynamoStore, config: &Config) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (service, _) in SERVICES {
        out.insert(
            service.to_string(),
            report(store, config, Some(service)).await,
        );
    }
    out.insert("team fault".into(), report(store, config, None).await);
    out
}

async fn run(cut_at: CutAt) {
    let started = Instant::now();
    let sdk = sdk().await;
    let upstream = upstream();
    // One receive before the dead-letter queue, and failed messages visible again after a second.
    let names = fresh_names_with(&sdk, &format!("fault-{cut_at:?}"), 1, 1).await;
    let dlq_url = names
        .dead_letter_queue
        .clone()
        .expect("the queue has a dead-letter queue");
    let config = Arc::new(Config::parse(CONFIG).expect("the test configuration"));
    let (from, to) = (millis(FROM), millis(TO));

    // The webhook and the queue talk to the server directly.
    let secret_id = put_webhook_secret(
        &sdk,
        &unique_name("fault-webhook"),
        json!({ "github": SECRET }),
    )
    .await;
    let queue = SqsQueue::connect(&sdk, &names)
        .await
        .unwrap_or_else(|e| panic!("connecting to the queue: {e}{}", server_log_hint()));
    let webhook = webhook_app(
        WebhookHandler::new(
            queue.clone(),
            SecretsManagerSecrets::new(&sdk, secret_id, Layout::PerProvider),
        ),
        None,
    );
    let deploys = deployments();
    let n = deploys.len();
    for d in &deploys {
        let req = webhook_request(
            "github",
            &[
                ("x-github-delivery", &d.delivery_id),
                ("x-github-event", "deployment_status"),
            ],
            &d.body,
            SECRET,
        );
        let resp = common::aws::invoke(&webhook, req).await;
        assert_eq!(
            resp.status(),
            202,
            "delivery {} not accepted: {}",
            d.delivery_id,
            body_text(resp.body())
        );
    }
    let by_delivery: BTreeMap<String, Deploy> = deploys
        .iter()
        .map(|d| (d.delivery_id.clone(), d.clone()))
        .collect();

    // The event source's batch: every delivery, as SQS hands them over.
    let arn = queue_arn(&sdk, queue.queue_url()).await;
    let messages = receive_messages(&sdk, queue.queue_url(), n, Duration::from_secs(5)).await;
    assert_eq!(
        messages.len(),
        n,
        "the queue did not hand over every delivery"
    );
    let delivery_of = |m: &aws_sdk_sqs::types::Message| -> String {
        match QueueMessage::from_json(m.body().unwrap_or_default()) {
            Ok(QueueMessage::Inline(e)) => e.delivery_id,
            other => panic!("a queued delivery is not an inline message: {other:?}"),
        }
    };
    let first_event = sqs_event(&messages, &arn);

    // The aggregator, whose DynamoDB client goes through the proxy.
    let proxy = Proxy::start(upstream).await;
    let store = DynamoStore::new(&through(&proxy).await, names.table.clone());
    let aggregator = Aggregator::new(store, config.clone());
    let payloads = S3Payloads::new(&sdk, names.bucket.clone());
    let direct = DynamoStore::new(&sdk, names.table.clone());

    match cut_at {
        CutAt::FactWrites => {
            let mut puts = 0;
            proxy.cut_at(move |r| {
                if r.operation == "PutItem" {
                    puts += 1;
                }
                puts == 5
            });
        }
        // The second service's write begins with the conditional update of its head (the mark).
        CutAt::SecondService => proxy.cut_at(|r| {
            r.operation == "UpdateItem"
                && r.body
                    .windows(b"m#bravo\"".len())
                    .any(|w| w == b"m#bravo\"")
        }),
    }
    let response =
        em_aggregator::lambda::handle(&aggregator, &payloads, first_event.clone(), now_millis())
            .await
            .expect("the batch is handled");
    assert!(
        proxy.is_cut() && proxy.cuts() == 1,
        "the cable was never cut: the aggregator's requests were {:?}",
        proxy.forwarded()
    );
    assert!(
        proxy.held_requests() + proxy.held_connections() > 0,
        "the cut held nothing: the aggregator's requests were {:?}",
        proxy.forwarded()
    );

    // The batch reports its failures, each a message of the batch, once.
    let ids: BTreeSet<String> = messages
        .iter()
        .map(|m| m.message_id().unwrap_or_default().to_string())
        .collect();
    let failed: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    let failed_set: BTreeSet<String> = failed.iter().cloned().collect();
    assert_eq!(
        failed.len(),
        failed_set.len(),
        "a failure is reported twice: {failed:?}"
    );
    assert!(
        failed_set.is_subset(&ids),
        "failures name messages not in the batch: {failed:?}"
    );
    let failed_deliveries: BTreeSet<String> = messages
        .iter()
        .filter(|m| failed_set.contains(m.message_id().unwrap_or_default()))
        .map(delivery_of)
        .collect();
    let acked: Vec<&aws_sdk_sqs::types::Message> = messages
        .iter()
        .filter(|m| !failed_set.contains(m.message_id().unwrap_or_default()))
        .collect();

    // Nothing unstored is acknowledged: every message not reported as failed has its deployment stored and
    // counted in its service's metric rows, once.
    let stored = stored_deployments(&direct).await;
    for m in &acked {
        let d = &by_delivery[&delivery_of(m)];
        assert!(
            stored.contains(&(d.repo.to_string(), d.deployment_id.to_string())),
            "delivery {} was acknowledged but its deployment is not stored",
            d.delivery_id
        );
        let t = millis(&d.time);
        assert_eq!(
            counted(&direct, Some(vec![d.service.to_string()]), t, t + 1).await,
            1,
            "delivery {} was acknowledged but its deployment is not counted once in {}'s rows",
            d.delivery_id,
            d.service
        );
    }
    match cut_at {
        CutAt::FactWrites => {
            assert_eq!(
                failed_set, ids,
                "with the facts half written and no connection, every message must fail"
            );
            assert!(
                !stored.is_empty() && stored.len() < n,
                "the cut should fall among the fact writes (some stored, not all): {} of {n} stored",
                stored.len()
            );
            assert_eq!(
                counted(&direct, None, from, to).await,
                0,
                "no service could be recomputed, yet deployments are counted"
            );
        }
        CutAt::SecondService => {
            let expected: BTreeSet<String> = deploys
                .iter()
                .filter(|d| d.service != "alpha")
                .map(|d| d.delivery_id.clone())
                .collect();
            assert_eq!(
                failed_deliveries, expected,
                "exactly bravo's and charlie's deliveries must fail"
            );
            assert_eq!(
                stored.len(),
                n,
                "the batch's one write should have stored every fact"
            );
            for (service, want) in [("alpha", PER_SERVICE), ("bravo", 0), ("charlie", 0)] {
                assert_eq!(
                    counted(&direct, Some(vec![service.into()]), from, to).await,
                    want,
                    "{service}'s rows right after the cut"
                );
            }
        }
    }

    // As Lambda does: delete what succeeded; the failed messages come back after their visibility timeout
    // and, past maxReceiveCount (1), the queue moves them to the dead-letter queue when next received.
    let receipts: Vec<String> = acked
        .iter()
        .map(|m| m.receipt_handle().unwrap_or_default().to_string())
        .collect();
    delete_messages(&sdk, queue.queue_url(), &receipts).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = sqs
            .receive_message()
            .queue_url(queue.queue_url())
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .unwrap_or_else(|e| panic!("receive: {e}{}", server_log_hint()));
        assert!(
            got.messages().is_empty(),
            "a failed message was delivered again past maxReceiveCount 1: {:?}",
            got.messages()
        );
        let (queued, dead) = (
            queue_depth(&sdk, queue.queue_url()).await,
            queue_depth(&sdk, &dlq_url).await,
        );
        if queued == 0 && dead == failed.len() as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the failed messages did not reach the dead-letter queue: {queued} queued, {dead} dead-lettered, \
             {} failed{}",
            failed.len(),
            server_log_hint()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        queue.dead_letter_count().await.expect("dead-letter count"),
        failed.len() as u64
    );

    // The cable comes back; the dead-letter queue is redriven as `em-agent replay` does it.
    proxy.restore();
    let forwarded_before = proxy.forwarded().len();
    let mut moved = 0;
    loop {
        let m = queue
            .redrive(10)
            .await
            .unwrap_or_else(|e| panic!("redrive: {e}{}", server_log_hint()));
        if m == 0 {
            break;
        }
        moved += m;
    }
    assert_eq!(moved, failed.len(), "the redrive moved a different number");
    assert_eq!(queue_depth(&sdk, &dlq_url).await, 0);
    let redriven = receive_messages(
        &sdk,
        queue.queue_url(),
        failed.len(),
        Duration::from_secs(5),
    )
    .await;
    let redriven_deliveries: BTreeSet<String> = redriven.iter().map(delivery_of).collect();
    assert_eq!(
        redriven.len(),
        failed.len(),
        "the redriven messages did not all come back"
    );
    assert_eq!(
        redriven_deliveries, failed_deliveries,
        "the redriven messages are not the failed ones"
    );
    if !redriven.is_empty() {
        aggregate_all(
            &aggregator,
            &payloads,
            &redriven,
            queue.queue_url(),
            "the redriven batch, with the connection back",
        )
        .await;
    }
    assert!(
        proxy.forwarded().len() > forwarded_before,
        "the aggregator did not go through the restored connection"
    );
    assert_eq!(queue_depth(&sdk, queue.queue_url()).await, 0);
    assert_eq!(queue_depth(&sdk, &dlq_url).await, 0);

    // Every delivery counted exactly once.
    assert_eq!(stored_deployments(&direct).await.len(), n);
    assert_eq!(
        counted(&direct, None, from, to).await,
        n,
        "deployments counted after the redrive"
    );
    for (service, _) in SERVICES {
        assert_eq!(
            counted(&direct, Some(vec![service.into()]), from, to).await,
            PER_SERVICE,
            "{service}'s deployments after the redrive"
        );
    }
    for d in &deploys {
        let t = millis(&d.time);
        assert_eq!(
            counted(&direct, Some(vec![d.service.into()]), t, t + 1).await,
            1,
            "delivery {} is not counted exactly once",
            d.delivery_id
        );
    }
    let reports = all_reports(&direct, &config).await;
    assert_eq!(
        reports["team fault"]["deployment_frequency"]["deployments"],
        json!(n),
        "the API's count: {}",
        reports["team fault"]
    );

    // The figures are those of a run that never lost its connection.
    let reference =
        common::aws::reference_aggregator(&sdk, "fault-reference", config.clone()).await;
    let envelopes: Vec<Envelope> = messages
        .iter()
        .map(|m| Envelope::from_json(m.body().unwrap_or_default()).expect("an inline message"))
        .collect();
    let results = reference.process_batch(&envelopes).await;
    assert!(
        results.iter().all(|r| r.is_ok()),
        "the reference run failed: {results:?}"
    );
    assert_eq!(
        reports,
        all_reports(&reference.store, &config).await,
        "the figures differ from those of an uninterrupted run"
    );

    // Processing the same batch again changes nothing.
    let again = em_aggregator::lambda::handle(&aggregator, &payloads, first_event, now_millis())
        .await
        .expect("the batch is handled");
    assert!(
        again.batch_item_failures.is_empty(),
        "processing the batch again failed: {:?}",
        again.batch_item_failures
    );
    assert_eq!(stored_deployments(&direct).await.len(), n);
    assert_eq!(
        all_reports(&direct, &config).await,
        reports,
        "processing the batch again changed the figures"
    );
    eprintln!(
        "cut at {cut_at:?}: {} of {n} messages failed, {} requests and {} connections held; {:.1} s",
        failed.len(),
        proxy.held_requests(),
        proxy.held_connections(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cut_among_the_fact_writes_fails_the_batch_and_the_redrive_counts_each_delivery_once() {
    run(CutAt::FactWrites).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cut_between_services_acknowledges_only_what_is_stored_and_the_redrive_counts_each_once() {
    run(CutAt::SecondService).await;
}

/// Hands `messages` to the aggregator's SQS handler as one batch, expects no failure, and deletes them as
/// the event source does after a batch that reported none.
async fn aggregate_all<S: Store + MetricsReader>(
    aggregator: &Aggregator<S>,
    payloads: &S3Payloads,
    messages: &[aws_sdk_sqs::types::Message],
    queue_url: &str,
    what: &str,
) {
    let sdk = sdk().await;
    let arn = queue_arn(&sdk, queue_url).await;
    let response = em_aggregator::lambda::handle(
        aggregator,
        payloads,
        sqs_event(messages, &arn),
        now_millis(),
    )
    .await
    .expect("the batch is handled");
    assert!(
        response.batch_item_failures.is_empty(),
        "{what}: {:?}",
        response.batch_item_failures
    );
    let receipts: Vec<String> = messages
        .iter()
        .map(|m| m.receipt_handle().unwrap_or_default().to_string())
        .collect();
    delete_messages(&sdk, queue_url, &receipts).await;
}

/// The upstream server's socket address, which the proxy forwards to.
fn upstream() -> std::net::SocketAddr {
    let endpoint = common::aws::endpoint();
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|_| {
            panic!("the proxy needs AWS_ENDPOINT_URL as http://<ip>:<port>, not {endpoint}")
        })
}

fn deployment_request(d: &Deploy) -> lambda_http::Request {
    webhook_request(
        "github",
        &[
            ("x-github-delivery", &d.delivery_id),
            ("x-github-event", "deployment_status"),
        ],
        &d.body,
        SECRET,
    )
}

fn json_of(resp: &lambda_http::Response<lambda_http::Body>) -> Value {
    let text = body_text(resp.body());
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "the webhook answered {} with a body that is not JSON ({e}): {text}",
            resp.status()
        )
    })
}

/// A 503 with a JSON error: the provider retries, and nothing was acknowledged.
fn assert_unavailable(resp: &lambda_http::Response<lambda_http::Body>, what: &str) {
    assert_eq!(
        resp.status(),
        503,
        "with {what} the webhook must answer 503: {}",
        body_text(resp.body())
    );
    assert!(
        json_of(resp)["error"].is_string() && json_of(resp)["request_id"].is_string(),
        "no error message or request id: {}",
        body_text(resp.body())
    );
    // Nothing internal: no endpoint, queue or table names, no SDK message.
    let text = body_text(resp.body());
    assert!(
        !text.contains("127.0.0.1") && !text.contains("queue") && !text.contains("dispatch"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqs_out_of_reach_gives_503_and_the_providers_retry_is_accepted_and_counted_once() {
    let sdk = sdk().await;
    let names = fresh_names_with(&sdk, "fault-webhook-sqs", 3, 30).await;
    let config = Config::parse(CONFIG).expect("the test configuration");
    let secret_id = put_webhook_secret(
        &sdk,
        &unique_name("fault-webhook-sqs"),
        json!({ "github": SECRET }),
    )
    .await;
    let deploys = deployments();
    let d = &deploys[0];

    // A server that is down: nothing listens where the webhook's clients connect.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("its address")
    };
    let down = short_timeouts(format!("http://{closed}")).await;
    let unreachable = webhook_app(
        WebhookHandler::new(
            SqsQueue::connect(&down, &names)
                .await
                .unwrap_or_else(|e| panic!("queue URLs need no request: {e}")),
            SecretsManagerSecrets::new(&sdk, secret_id.clone(), Layout::PerProvider),
        ),
        None,
    );
    let resp = common::aws::invoke(&unreachable, deployment_request(d)).await;
    assert_unavailable(&resp, "AWS down");

    // SQS (and only SQS) out of reach: the delivery's marker is written, SendMessage never arrives.
    let proxy = Proxy::start(upstream()).await;
    let queue = SqsQueue::connect(&through(&proxy).await, &names)
        .await
        .unwrap_or_else(|e| panic!("connecting to the queue: {e}{}", server_log_hint()));
    let webhook = webhook_app(
        WebhookHandler::new(
            queue.clone(),
            SecretsManagerSecrets::new(&sdk, secret_id, Layout::PerProvider),
        ),
        None,
    );
    proxy.cut_at(|r| r.operation == "SendMessage");
    let resp = common::aws::invoke(&webhook, deployment_request(d)).await;
    assert!(
        proxy.cuts() == 1 && proxy.held_requests() >= 1,
        "the cut was not at SendMessage; forwarded: {:?}",
        proxy.forwarded()
    );
    assert_unavailable(&resp, "SQS out of reach");
    assert_eq!(
        queue_depth(&sdk, queue.queue_url()).await,
        0,
        "nothing was queued"
    );
    proxy.restore();
    assert_eq!(
        queue
            .delivery_state("github", &d.delivery_id)
            .await
            .unwrap_or_else(|e| panic!("reading the marker: {e}")),
        Some("pending".to_string()),
        "the marker of an unqueued delivery must stay pending"
    );

    // The provider retries once SQS is back: accepted, not a duplicate; a further retry is a duplicate.
    for (attempt, expected) in [(202, "accepted"), (200, "duplicate")]
        .into_iter()
        .enumerate()
    {
        let resp = common::aws::invoke(&webhook, deployment_request(d)).await;
        assert_eq!(
            (resp.status().as_u16(), json_of(&resp)["status"].clone()),
            (expected.0, json!(expected.1)),
            "retry {} after the outage: {}",
            attempt + 1,
            body_text(resp.body())
        );
    }
    assert_eq!(
        queue
            .delivery_state("github", &d.delivery_id)
            .await
            .ok()
            .flatten(),
        Some("queued".to_string())
    );
    assert_eq!(queue_depth(&sdk, queue.queue_url()).await, 1, "queued once");

    // And counted once.
    let messages = receive_messages(&sdk, queue.queue_url(), 1, Duration::from_secs(5)).await;
    let event = sqs_event(&messages, &queue_arn(&sdk, queue.queue_url()).await);
    let store = DynamoStore::new(&sdk, names.table.clone());
    let aggregator = Aggregator::new(store.clone(), Arc::new(config));
    let payloads = S3Payloads::new(&sdk, names.bucket.clone());
    let out = em_aggregator::lambda::handle(&aggregator, &payloads, event, now_millis())
        .await
        .expect("the batch is handled");
    assert!(
        out.batch_item_failures.is_empty(),
        "{:?}",
        out.batch_item_failures
    );
    assert_eq!(counted(&store, None, millis(FROM), millis(TO)).await, 1);
    assert_eq!(
        stored_deployments(&store).await,
        vec![(d.repo.to_string(), d.deployment_id.to_string())]
    );
}

/// Secrets Manager out of reach: a refresh is bounded well under the webhook's own timeout and the cached
/// secrets serve meanwhile; after a failure no call is made until the backoff has passed; and once the cache
/// is older than the staleness bound the answer fails closed, never quoting a secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_hanging_is_bounded_backed_off_and_fails_closed_when_stale() {
    let sdk = sdk().await;
    let secret_id = put_webhook_secret(
        &sdk,
        &unique_name("fault-secrets"),
        json!({ "github": SECRET }),
    )
    .await;
    let proxy = Proxy::start(upstream()).await;
    let via = through(&proxy).await;
    // Refreshed on every call (no TTL), each call bounded at 200 ms.
    // The first loads, through a loaded moto, may take as long as they need; the clones made after them
    // share their cache and give up a refresh at 200 ms, which only the cut below puts to the test.
    let patient = Duration::from_secs(60);
    let serving = SecretsManagerSecrets::new(&via, &secret_id, Layout::PerProvider)
        .with_ttl(Duration::ZERO)
        .with_fetch_timeout(patient);
    let strict = SecretsManagerSecrets::new(&via, &secret_id, Layout::PerProvider)
        .with_ttl(Duration::ZERO)
        .with_max_stale(Duration::ZERO)
        .with_fetch_timeout(patient);
    let want = Some(vec![SECRET.as_bytes().to_vec()]);
    assert_eq!(serving.secrets("github").await.expect("first load"), want);
    assert_eq!(strict.secrets("github").await.expect("first load"), want);
    let serving = serving.with_fetch_timeout(Duration::from_millis(200));
    let strict = strict.with_fetch_timeout(Duration::from_millis(200));

    // The cable is cut and the next request held: the refresh gives up at its bound, the cache serves.
    proxy.cut_at(|_| true);
    assert_eq!(serving.secrets("github").await.expect("cached"), want);
    assert!(proxy.is_cut());
    let held = proxy.held_requests() + proxy.held_connections();
    assert!(held > 0, "the refresh never reached the proxy");
    // Within the backoff, no further call is made at all.
    for _ in 0..5 {
        assert_eq!(serving.secrets("github").await.expect("cached"), want);
    }
    assert_eq!(
        proxy.held_requests() + proxy.held_connections(),
        held,
        "a call was made during the backoff"
    );

    // No staleness allowed: with Secrets Manager out of reach, nothing is accepted.
    let e = strict
        .secrets("github")
        .await
        .expect_err("stale secrets must not serve");
    assert!(!e.message.contains(SECRET), "{}", e.message);
}

/// A GitHub push as the webhook receives it: `commits` commits of `repo`'s default branch, commit `i` at
/// `first + i` minutes, each with a message of `message_bytes` bytes.
fn big_push(
    repo: &str,
    commits: usize,
    first: i64,
    message_bytes: usize,
) -> (String, Vec<(String, i64)>) {
    let listed: Vec<(String, i64)> = (0..commits)
        .map(|i| {
            (
                format!("{:040x}", 0xb16_0000_u64 + i as u64),
                first + i as i64 * 60_000,
            )
        })
        .collect();
    let body = json!({
        "ref": "refs/heads/main",
        "before": "1111111111111111111111111111111111111111",
        "after": listed.last().map(|c| c.0.clone()).unwrap_or_default(),
        "repository": {"full_name": repo, "default_branch": "main", "name": repo},
        "created": false,
        "deleted": false,
        "forced": false,
        "commits": listed.iter().map(|(sha, t)| json!({
            "id": sha,
            "message": "m".repeat(message_bytes),
            "timestamp": em_core::time::rfc3339::format(*t),
        })).collect::<Vec<_>>(),
    });
    (body.to_string(), listed)
}

/// A GitHub `deployment_status` of `sha` of `repo` to production, succeeded at `at`.
fn deployment_status(repo: &str, id: u64, sha: &str, at: i64) -> String {
    let at = em_core::time::rfc3339::format(at);
    json!({
        "action": "created",
        "deployment_status": {"id": id, "state": "success", "environment": "production",
                              "created_at": at, "updated_at": at},
        "deployment": {"id": id, "sha": sha, "ref": "main", "environment": "production",
                       "created_at": at, "updated_at": at},
        "repository": {"full_name": repo, "name": repo},
    })
    .to_string()
}

/// One push of 2,100 commits with 3 KB messages (a 6 MB body, put aside in S3): its 2,048 newest commits
/// are stored across items under DynamoDB's 400 KB, the rest counted unlisted, and each shipped commit's
/// lead time is its deployment's time less its own. A second such push in the same batch waits for the next
/// batch (the batch's byte budget), and the small deliveries beside them are never failed by them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_push_is_stored_in_parts_and_fails_none_of_its_neighbours() {
    let sdk = sdk().await;
    let names = fresh_names_with(&sdk, "huge", 3, 30).await;
    let config = Config::parse(
        r#"
production_environments = ["production"]

[[services]]
name = "huge"
repositories = ["big-org/huge"]

[[services]]
name = "other"
repositories = ["big-org/other"]

[[services]]
name = "small"
repositories = ["big-org/small"]
"#,
    )
    .expect("config");
    let secret_id = put_webhook_secret(
        &sdk,
        &unique_name("huge-webhook"),
        json!({ "github": SECRET }),
    )
    .await;
    let queue = SqsQueue::connect(&sdk, &names).await.expect("queue");
    let webhook = webhook_app(
        WebhookHandler::new(
            queue.clone(),
            SecretsManagerSecrets::new(&sdk, secret_id, Layout::PerProvider),
        ),
        None,
    );
    let first = millis("2025-04-01T00:00:00Z");
    let deployed = millis("2025-04-03T00:00:00Z");
    let (huge, commits) = big_push("big-org/huge", 2_100, first, 3_000);
    let (other, _) = big_push("big-org/other", 2_100, first, 3_000);
    assert!(huge.len() > 6_000_000, "a body of {} bytes", huge.len());
    let after = commits.last().expect("commits").0.clone();
    let mut deliveries = vec![
        ("push", "huge-push".to_string(), huge),
        ("push", "other-push".to_string(), other),
        (
            "deployment_status",
            "huge-deploy".to_string(),
            deployment_status("big-org/huge", 1, &after, deployed),
        ),
    ];
    for i in 0..3 {
        deliveries.push((
            "deployment_status",
            format!("small-{i}"),
            deployment_status(
                "big-org/small",
                10 + i,
                &format!("{:040x}", 0xabc + i),
                deployed,
            ),
        ));
    }
    for (event, id, body) in &deliveries {
        let req = webhook_request(
            "github",
            &[("x-github-delivery", id), ("x-github-event", event)],
            body,
            SECRET,
        );
        let resp = common::aws::invoke(&webhook, req).await;
        assert_eq!(resp.status(), 202, "{id}: {}", body_text(resp.body()));
    }

    let arn = queue_arn(&sdk, queue.queue_url()).await;
    let messages = receive_messages(
        &sdk,
        queue.queue_url(),
        deliveries.len(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(messages.len(), deliveries.len());
    let offloaded = |m: &aws_sdk_sqs::types::Message| {
        matches!(
            QueueMessage::from_json(m.body().unwrap_or_default()),
            Ok(QueueMessage::Offloaded { .. })
        )
    };
    assert_eq!(
        messages.iter().filter(|m| offloaded(m)).count(),
        2,
        "both pushes put aside"
    );

    let store = DynamoStore::new(&sdk, names.table.clone());
    let payloads = S3Payloads::new(&sdk, names.bucket.clone());
    // A budget of 1 MiB: the small deliveries and one push fit, the other push waits.
    let aggregator = Aggregator::new(store.clone(), Arc::new(config)).with_batch_bytes(1 << 20);
    let response = em_aggregator::lambda::handle(
        &aggregator,
        &payloads,
        sqs_event(&messages, &arn),
        now_millis(),
    )
    .await
    .expect("the batch is handled");
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed.len(), 1, "one push waits: {failed:?}");
    let waiting = messages
        .iter()
        .find(|m| m.message_id() == Some(failed[0]))
        .expect("a message of the batch");
    assert!(offloaded(waiting), "only a put-aside push waits");
    let done: Vec<String> = messages
        .iter()
        .filter(|m| m.message_id() != Some(failed[0]))
        .map(|m| m.receipt_handle().unwrap_or_default().to_string())
        .collect();
    delete_messages(&sdk, queue.queue_url(), &done).await;

    // The next batch takes the push that waited.
    aws_sdk_sqs::Client::new(&sdk)
        .change_message_visibility()
        .queue_url(queue.queue_url())
        .receipt_handle(waiting.receipt_handle().unwrap_or_default())
        .visibility_timeout(0)
        .send()
        .await
        .expect("visibility");
    let again = receive_messages(&sdk, queue.queue_url(), 1, Duration::from_secs(5)).await;
    assert_eq!(again.len(), 1);
    aggregate_all(
        &aggregator,
        &payloads,
        &again,
        queue.queue_url(),
        "the push that waited",
    )
    .await;

    // Both pushes are read back whole: 2,048 commits each, 52 unlisted.
    let facts = store
        .load_facts(vec!["big-org/huge".into(), "big-org/other".into()], vec![])
        .await
        .expect("facts");
    assert_eq!(facts.pushes.len(), 2);
    for p in &facts.pushes {
        assert_eq!(p.commits.len(), 2_048, "{}", p.repo);
        assert_eq!(p.unlisted, 52, "{}", p.repo);
        assert_eq!(p.commits[0].sha, commits[52].0);
        assert_eq!(p.commits[0].message.len(), 3_000);
    }

    // Every listed commit shipped by the deployment, with its own lead time.
    let rows = store
        .rows(Some(vec!["huge".into()]), first, deployed + 1)
        .await
        .expect("rows");
    let changes = &rows
        .iter()
        .find(|(s, _)| s == "huge")
        .expect("huge's rows")
        .1
        .changes;
    assert_eq!(changes.len(), 2_048);
    let lead: BTreeMap<&str, i64> = changes
        .iter()
        .map(|c| (c.sha.as_str(), c.lead_time()))
        .collect();
    for (sha, t) in &commits[52..] {
        assert_eq!(lead.get(sha.as_str()), Some(&(deployed - t)), "{sha}");
    }
    assert_eq!(
        changes.iter().map(|c| u64::from(c.unlisted)).sum::<u64>(),
        52
    );
    // The small deliveries counted too.
    assert_eq!(
        counted(&store, Some(vec!["small".into()]), first, deployed + 1).await,
        3
    );
}

// ---- requests per delivery ----

/// What a kind of delivery costs in AWS requests: the webhook's and the aggregator's, by operation and the
/// kind of item it reads or writes (the sort key's prefix: `c` a commit, `p` a push, ...), and in DynamoDB
/// request units, counted as on-demand bills them for items under 1 KB (writes) and 4 KB (reads): one per
/// item a request writes or reads.
#[derive(Debug, Default, Clone, PartialEq)]
struct Requests {
    by_operation: BTreeMap<String, usize>,
    write_units: usize,
    read_units: usize,
    other: usize,
}

impl Requests {
    fn of(requests: &[(String, Vec<u8>)]) -> Requests {
        let mut out = Requests::default();
        for (op, body) in requests {
            let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let prefix = |sk: Option<&str>| -> String {
                let sk = sk.unwrap_or("?");
                sk.split('#').next().unwrap_or(sk).to_string()
            };
            let label = match op.as_str() {
                "" => "S3".to_string(),
                "PutItem" => format!("PutItem {}", prefix(body["Item"]["sk"]["S"].as_str())),
                "GetItem" | "UpdateItem" | "DeleteItem" => {
                    format!("{op} {}", prefix(body["Key"]["sk"]["S"].as_str()))
                }
                "Query" => {
                    let values = body["ExpressionAttributeValues"]
                        .as_object()
                        .map(|m| {
                            m.values()
                                .filter_map(|v| v["S"].as_str())
                                .map(|v| prefix(Some(v)))
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default();
                    format!("Query {values}")
                }
                other => other.to_string(),
            };
            *out.by_operation.entry(label).or_default() += 1;
            let items_in = |tables: &Value, kind: &str| -> usize {
                tables
                    .as_object()
                    .map(|t| {
                        t.values()
                            .map(|v| match kind {
                                "write" => v.as_array().map_or(0, Vec::len),
                                _ => v["Keys"].as_array().map_or(0, Vec::len),
                            })
                            .sum()
                    })
                    .unwrap_or(0)
            };
            match op.as_str() {
                "PutItem" | "UpdateItem" | "DeleteItem" => out.write_units += 1,
                "BatchWriteItem" => out.write_units += items_in(&body["RequestItems"], "write"),
                "GetItem" | "Query" => out.read_units += 1,
                "BatchGetItem" => out.read_units += items_in(&body["RequestItems"], "read"),
                _ => out.other += 1,
            }
        }
        out
    }

    fn total(&self) -> usize {
        self.by_operation.values().sum()
    }
}

/// Bodies of one kind of delivery for service `shop` (repository `cost-org/shop`, PagerDuty service `Shop`),
/// `n` of them from `at`, continuing the repository's chain from `head`.
struct CostBodies {
    github_push: Value,
    github_pr: Value,
    pagerduty: Value,
    deployment: Value,
    head: String,
    counter: u64,
}

impl CostBodies {
    fn new() -> CostBodies {
        let read = |path: &str| -> Value {
            serde_json::from_slice(
                &std::fs::read(
                    common::workspace()
                        .join("shared/providers/tests/fixtures")
                        .join(path),
                )
                .expect("fixture"),
            )
            .expect("json")
        };
        CostBodies {
            github_push: read("github/push-branch.json"),
            github_pr: read("github/pull_request-opened.json"),
            pagerduty: read("pagerduty/incident.triggered.json"),
            deployment: read("github/deployment_status-success.json"),
            head: em_core::domain::NULL_SHA.to_string(),
            counter: 0,
        }
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn sha(&mut self) -> String {
        let n = self.next();
        hex::encode(Sha256::digest(format!("cost-{n}")))[..40].to_string()
    }

    /// (event header, provider, body) of one delivery of `kind` at `at`.
    fn delivery(&mut self, kind: &str, at: i64) -> (&'static str, &'static str, String) {
        let time = em_core::time::rfc3339::format(at);
        match kind {
            "push" => {
                let mut b = self.github_push.clone();
                let (one, two) = (self.sha(), self.sha());
                b["before"] = json!(self.head);
                b["after"] = json!(two);
                b["repository"]["full_name"] = json!("cost-org/shop");
                b["repository"]["default_branch"] = json!("main");
                b["ref"] = json!("refs/heads/main");
                b["commits"] = json!([
                    {"id": one, "message": "a change", "timestamp": em_core::time::rfc3339::format(at - 600_000)},
                    {"id": two, "message": "another", "timestamp": time},
                ]);
                b["head_commit"] = b["commits"][1].clone();
                self.head = two;
                ("push", "github", b.to_string())
            }
            "deployment" => {
                let mut b = self.deployment.clone();
                let id = 9_000_000 + self.next();
                b["deployment"]["id"] = json!(id);
                b["deployment"]["sha"] = json!(self.head);
                b["deployment"]["environment"] = json!("production");
                b["deployment_status"]["id"] = json!(id * 10);
                b["deployment_status"]["state"] = json!("success");
                b["deployment_status"]["environment"] = json!("production");
                b["deployment_status"]["created_at"] = json!(time);
                b["deployment_status"]["updated_at"] = json!(time);
                b["repository"]["full_name"] = json!("cost-org/shop");
                ("deployment_status", "github", b.to_string())
            }
            "pull_request" => {
                let mut b = self.github_pr.clone();
                let n = self.next();
                b["number"] = json!(n);
                b["pull_request"]["number"] = json!(n);
                b["pull_request"]["created_at"] = json!(time);
                b["repository"]["full_name"] = json!("cost-org/shop");
                ("pull_request", "github", b.to_string())
            }
            _ => {
                let mut b = self.pagerduty.clone();
                let n = self.next();
                b["event"]["id"] = json!(format!("cost-event-{n}"));
                b["event"]["occurred_at"] = json!(time);
                b["event"]["data"]["id"] = json!(format!("COST{n}"));
                b["event"]["data"]["service"]["summary"] = json!("Shop");
                ("incident.triggered", "pagerduty", b.to_string())
            }
        }
    }
}

/// Sends `n` deliveries of `kind` through the webhook function and then the aggregator, each talking to
/// AWS through a counting proxy, the aggregator taking them as one SQS batch; what each side asked for.
#[allow(clippy::too_many_arguments)]
async fn requests_of(
    sdk: &SdkConfig,
    names: &em_aws::AwsNames,
    config: &Arc<Config>,
    secret_id: &str,
    bodies: &mut CostBodies,
    kind: &str,
    n: usize,
    at: i64,
) -> (Requests, Requests) {
    let webhook_proxy = Proxy::start(upstream()).await;
    let webhook_sdk = through(&webhook_proxy).await;
    let queue = SqsQueue::connect(&webhook_sdk, names).await.expect("queue");
    let webhook = webhook_app(
        WebhookHandler::new(
            queue.clone(),
            SecretsManagerSecrets::new(sdk, secret_id.to_string(), Layout::PerProvider),
        ),
        None,
    );
    // The secret is read once per instance and cached: not a per-delivery request.
    let before = webhook_proxy.forwarded().len();
    let mut sent = 0;
    for i in 0..n {
        let (event, provider, body) = bodies.delivery(kind, at + i as i64 * 60_000);
        let id = format!("cost-{kind}-{}", bodies.next());
        let secret = if provider == "github" {
            SECRET
        } else {
            COST_PAGERDUTY_SECRET
        };
        let req = webhook_request(
            provider,
            &[("x-github-delivery", &id), ("x-github-event", event)],
            &body,
            secret,
        );
        let resp = common::aws::invoke(&webhook, req).await;
        assert_eq!(resp.status(), 202, "{kind}: {}", body_text(resp.body()));
        sent += 1;
    }
    let webhook_ops = webhook_proxy.forwarded_bodies()[before..].to_vec();

    let plain_queue = SqsQueue::connect(sdk, names).await.expect("queue");
    let messages =
        receive_messages(sdk, plain_queue.queue_url(), sent, Duration::from_secs(5)).await;
    assert_eq!(messages.len(), sent);
    let aggregator_proxy = Proxy::start(upstream()).await;
    let store = DynamoStore::new(&through(&aggregator_proxy).await, names.table.clone());
    let aggregator = Aggregator::new(store, config.clone());
    let payloads = S3Payloads::new(sdk, names.bucket.clone());
    aggregate_all(
        &aggregator,
        &payloads,
        &messages,
        plain_queue.queue_url(),
        kind,
    )
    .await;
    (
        Requests::of(&webhook_ops),
        Requests::of(&aggregator_proxy.forwarded_bodies()),
    )
}

const COST_PAGERDUTY_SECRET: &str = "aws-fault-pagerduty-secret";

/// The AWS requests of each kind of delivery, by operation, for a service with no history and for the same
/// service holding a year of it (a push a day, a deployment a day, an incident every ten days): the
/// aggregator's per-delivery requests must not grow with the history (the incremental engine's promise,
/// and the cost model's: docs/deploy.md). Prints the table the cost model is computed from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_delivery_do_not_grow_with_a_year_of_history() {
    const N: usize = 10;
    let sdk = sdk().await;
    let names = fresh_names_with(&sdk, "cost", 3, 30).await;
    let config = Arc::new(
        Config::parse(
            "production_environments = [\"production\"]\n[[services]]\nname = \"shop\"\nrepositories = [\"cost-org/shop\"]\naliases = [\"Shop\"]\n",
        )
        .expect("config"),
    );
    let secret_id = put_webhook_secret(
        &sdk,
        &unique_name("cost-webhook"),
        json!({ "github": SECRET, "pagerduty": COST_PAGERDUTY_SECRET }),
    )
    .await;
    let kinds = ["push", "deployment", "pull_request", "incident"];
    let mut bodies = CostBodies::new();
    let start = millis("2025-01-01T00:00:00Z");
    let mut empty = Vec::new();
    for (k, kind) in kinds.iter().enumerate() {
        let at = start + k as i64 * DAY_MS;
        empty.push(requests_of(&sdk, &names, &config, &secret_id, &mut bodies, kind, N, at).await);
    }

    // A year of the same service's history, stored directly (not counted).
    let reference = Aggregator::new(DynamoStore::new(&sdk, names.table.clone()), config.clone());
    let mut history: Vec<Vec<Fact>> = Vec::new();
    let github = em_providers::by_name("github").expect("github");
    let pagerduty = em_providers::by_name("pagerduty").expect("pagerduty");
    for day in 5..365 {
        let at = start + day * DAY_MS;
        for kind in ["push", "deployment"] {
            let (event, _, body) = bodies.delivery(kind, at + 3_600_000);
            history.push(github.parse(Some(event), body.as_bytes()).expect("parses"));
        }
        if day % 10 == 0 {
            let (_, _, body) = bodies.delivery("incident", at + 7_200_000);
            history.push(pagerduty.parse(None, body.as_bytes()).expect("parses"));
        }
    }
    let stored = history.len();
    for chunk in history.chunks(100) {
        let (results, _) = reference
            .process_facts(chunk.to_vec(), vec![Ok(()); chunk.len()])
            .await;
        assert!(results.iter().all(|r| r.is_ok()));
    }

    let mut year = Vec::new();
    for (k, kind) in kinds.iter().enumerate() {
        let at = start + (366 + k as i64) * DAY_MS;
        year.push(requests_of(&sdk, &names, &config, &secret_id, &mut bodies, kind, N, at).await);
    }

    // Queries: the API function's requests for one service's figures over 30 and 365 days.
    let mut queries = Vec::new();
    for days in [30, 365] {
        let proxy = Proxy::start(upstream()).await;
        let store = DynamoStore::new(&through(&proxy).await, names.table.clone());
        let to = start + 366 * DAY_MS;
        let query = format!(
            "service=shop&from={}&to={}",
            em_core::time::rfc3339::format(to - days * DAY_MS),
            em_core::time::rfc3339::format(to)
        );
        let answer = em_api::answer(&store, &config, em_api::Route::Dora, Some(&query), to)
            .await
            .expect("a DORA answer");
        assert!(answer["deployment_frequency"]["deployments"].as_u64() > Some(0));
        queries.push((days, Requests::of(&proxy.forwarded_bodies())));
    }
    for (days, r) in &queries {
        println!(
            "query of {days:>3} days  RRU {:>4}  {:?}",
            r.read_units, r.by_operation
        );
    }
    // A year's query reads at most one item per day it covers, and a few more (head, configuration).
    assert!(queries[1].1.read_units <= 365 + 10, "{:?}", queries[1].1);

    println!("requests per {N} deliveries of each kind (webhook; aggregator), no history / a year ({stored} deliveries) stored");
    for ((kind, (wh0, ag0)), (wh1, ag1)) in kinds.iter().zip(&empty).zip(&year) {
        for (who, r) in [
            ("webhook", wh0),
            ("aggregator, no history", ag0),
            ("aggregator, a year", ag1),
        ] {
            println!(
                "{kind:>12}  {who:<24} WRU {:>4} RRU {:>4} other {:>3}  {:?}",
                r.write_units, r.read_units, r.other, r.by_operation
            );
        }
        // The webhook never reads history; the aggregator's requests stay those of a small store.
        assert_eq!(wh0.total(), wh1.total(), "{kind}: {wh0:?} then {wh1:?}");
        assert!(
            ag1.total() <= ag0.total() + 2 * N,
            "{kind}: the aggregator's requests grew with the history: {ag0:?} then {ag1:?}"
        );
    }
}

const DAY_MS: i64 = 86_400_000;

/// A table that does not exist is a permanent error, classified once in the AWS adapter: the webhook answers
/// 500 (an operator has to look) rather than the 503 of a server out of reach, and the aggregator's
/// invocation fails at once as `StoreRefused` rather than reporting the message for a quiet retry until the
/// dead-letter queue. Neither is retried by the SDK: each operation went out once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_table_is_refused_at_once_and_not_retried() {
    let sdk = sdk().await;
    let proxy = Proxy::start(upstream()).await;
    let via = through(&proxy).await;
    let missing = unique_name("fault-missing");
    let names = em_aws::AwsNames {
        table: missing.clone(),
        deliveries_table: format!("{missing}-deliveries"),
        // A URL: connecting asks nothing of the server.
        queue: format!("{}/123456789012/{missing}", common::aws::endpoint()),
        dead_letter_queue: None,
        bucket: missing.clone(),
        retention_days: 30,
    };
    let secret_id = put_webhook_secret(&sdk, &missing, json!({ "github": SECRET })).await;
    let deploys = deployments();
    let d = &deploys[0];

    let webhook = webhook_app(
        WebhookHandler::new(
            SqsQueue::connect(&via, &names)
                .await
                .unwrap_or_else(|e| panic!("queue URLs need no request: {e}")),
            SecretsManagerSecrets::new(&via, secret_id, Layout::PerProvider),
        ),
        None,
    );
    let before = proxy.forwarded().len();
    let resp = common::aws::invoke(&webhook, deployment_request(d)).await;
    assert_eq!(resp.status(), 500, "{}", body_text(resp.body()));
    let text = body_text(resp.body());
    assert!(
        !text.contains(&missing) && !text.contains("127.0.0.1"),
        "{text}"
    );
    let ops = proxy.forwarded()[before..].to_vec();
    assert_eq!(
        ops.iter().filter(|o| o.as_str() == "PutItem").count(),
        1,
        "the marker's write is not retried: {ops:?}"
    );
    assert!(!ops.iter().any(|o| o == "SendMessage"), "{ops:?}");

    let aggregator = Aggregator::new(
        DynamoStore::new(&via, missing.clone()),
        Arc::new(Config::parse(CONFIG).expect("the test configuration")),
    );
    let envelope = Envelope {
        provider: "github".into(),
        delivery_id: d.delivery_id.clone(),
        event: Some("deployment_status".into()),
        received_at: now_millis(),
        body: bytes::Bytes::from(d.body.clone()),
    };
    let event: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_value(json!({
        "Records": [{ "messageId": "m-1", "body": envelope.to_json() }]
    }))
    .expect("an SQS event");
    let before = proxy.forwarded().len();
    let payloads = S3Payloads::new(&via, missing.clone());
    match em_aggregator::lambda::handle(&aggregator, &payloads, event, now_millis()).await {
        Ok(r) => panic!(
            "a missing table must fail the invocation, not report {:?} for a retry",
            r.batch_item_failures
        ),
        Err(e) => {
            let d = lambda_runtime::Diagnostic::from(e);
            assert_eq!(d.error_type, "StoreRefused", "{}", d.error_message);
        }
    }
    // The batch's write is tried once whole and once for its one message (to find a message at fault);
    // an SDK retry would send each three times.
    let ops = proxy.forwarded()[before..].to_vec();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for o in &ops {
        *counts.entry(o.as_str()).or_default() += 1;
    }
    assert!(
        !ops.is_empty() && counts.values().all(|&n| n <= 2),
        "an operation was retried: {ops:?}"
    );
}
