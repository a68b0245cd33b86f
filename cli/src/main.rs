//! `em-agent`: DORA metrics from webhook deliveries, in one local process.

mod aws;
mod digest;
mod error;
mod generate;
mod parse;
mod providers;
mod replay;
mod report;
mod send;
mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use em_api::DoraQuery;
use em_core::config::Config;
use em_core::secrets::EnvSecrets;
use em_core::time::now_millis;
use em_providers::secret_env_var;
use em_sqlite::{EmbeddedStore, Options};
use error::CliError;

const DEFAULT_CONFIG: &str = "em-agent.toml";

#[derive(Parser)]
#[command(
    name = "em-agent",
    version,
    about = "DORA metrics from webhook deliveries"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum ServeBackend {
    Embedded,
    Aws,
}

#[derive(Subcommand)]
enum Command {
    /// Run the webhook receiver, the aggregator and the metrics API in one process.
    Serve {
        #[arg(long, default_value = "127.0.0.1:3000", env = "EM_AGENT_ADDR")]
        addr: SocketAddr,
        #[arg(long, default_value = "./.em-agent", env = "EM_AGENT_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long, default_value = DEFAULT_CONFIG, env = "EM_AGENT_CONFIG")]
        config: PathBuf,
        /// Messages the aggregator takes at once.
        #[arg(long, default_value_t = 256)]
        batch_size: usize,
        /// Receives after which an unprocessed message is dead-lettered.
        #[arg(long, default_value_t = 5)]
        max_receives: u32,
        /// Seconds a received message stays hidden before it is retried.
        #[arg(long, default_value_t = 30)]
        visibility_timeout: u64,
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        /// How far a signed timestamp may be from the time of receipt (for providers that sign one),
        /// e.g. 2m or 90s; 5 minutes when not given.
        #[arg(long, env = "EM_AGENT_REPLAY_WINDOW", value_parser = humantime::parse_duration)]
        replay_window: Option<std::time::Duration>,
        /// How long a client may take to send a request's headers (from connecting, or from its previous
        /// request); slower connections are closed.
        #[arg(long, env = "EM_AGENT_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
        header_timeout: std::time::Duration,
        /// How long a client may take to send a request's body: 408 past it.
        #[arg(long, env = "EM_AGENT_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
        body_timeout: std::time::Duration,
        /// Connections served at once; more wait to be accepted.
        #[arg(long, env = "EM_AGENT_MAX_CONNECTIONS", default_value_t = 256)]
        max_connections: usize,
        /// Webhook bodies held in memory at once, in KiB: past it a delivery waits for room (at most twice
        /// the body timeout), then gets a 503 its provider retries.
        #[arg(long, env = "EM_AGENT_BODIES_IN_FLIGHT_KIB", default_value_t = 65_536)]
        bodies_in_flight_kib: usize,
        /// Where deliveries, facts and metric rows live: the SQLite file in --data-dir, or AWS (SQS,
        /// DynamoDB, S3; names below).
        #[arg(long, value_enum, default_value = "embedded", env = "EM_AGENT_BACKEND")]
        backend: ServeBackend,
        /// Serve /v1/* without a token on an address other than the loopback, to anyone who reaches it.
        /// Without it, such an address needs EM_AGENT_API_TOKEN.
        #[arg(long)]
        open_api: bool,
        #[command(flatten)]
        aws: aws::AwsArgs,
    },
    /// Sign payload files as the provider would and post them to a webhook endpoint.
    Send {
        #[arg(long)]
        provider: String,
        /// Raw payloads, or recorded deliveries ({"provider", "headers", "body"}).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The server's base URL, or a full webhook URL.
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
        /// The secret to sign with; defaults to EM_AGENT_<PROVIDER>_SECRET.
        #[arg(long)]
        secret: Option<String>,
        /// The event name, for providers that send it in a header (GitHub X-GitHub-Event, GitLab
        /// X-Gitlab-Event); guessed from the payload if absent.
        #[arg(long)]
        event: Option<String>,
    },
    /// List the providers this build knows: route, authentication, secret variables, events.
    Providers {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the facts one payload becomes, as JSON lines (docs/facts.md), without authentication.
    Parse {
        #[arg(long)]
        provider: String,
        /// A raw payload, or a recorded delivery ({"provider", "headers", "body"}).
        file: PathBuf,
        /// A JSON object of the headers the provider sent with it.
        #[arg(long)]
        headers: Option<PathBuf>,
        /// The event name, where the provider sends it in a header; otherwise read from --headers or
        /// guessed from the payload.
        #[arg(long)]
        event: Option<String>,
    },
    /// Regenerate what is derived from the provider registry (the SAM template, the sample events, the
    /// docs' provider table); with --check, fail if a committed file differs.
    #[command(hide = true)]
    Generate {
        #[arg(long)]
        check: bool,
        /// The repository's root.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
    /// Print the DORA metrics as a table.
    Report {
        #[arg(long, conflicts_with = "team")]
        service: Option<String>,
        #[arg(long)]
        team: Option<String>,
        /// RFC 3339 or YYYY-MM-DD; defaults to 30 days before --to.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339 or YYYY-MM-DD; defaults to now.
        #[arg(long)]
        to: Option<String>,
        /// Ask a running server (local or deployed) instead of reading the data directory.
        #[arg(long)]
        url: Option<String>,
        /// The API token `--url` sends as a bearer token (the deployed API always wants one; the local
        /// server when it has EM_AGENT_API_TOKEN set).
        #[arg(long, env = "EM_AGENT_API_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[arg(long, default_value = "./.em-agent", env = "EM_AGENT_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long, default_value = DEFAULT_CONFIG, env = "EM_AGENT_CONFIG")]
        config: PathBuf,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put dead-lettered messages back on the queue, to be processed again.
    #[command(long_about = replay::LONG_ABOUT)]
    Replay(replay::ReplayArgs),
    /// Render each team's digest of the period just ended, as every channel's message, into files.
    Digest {
        /// One team's digest (in --out itself); without it, every team's and the organisation's
        /// (in --out/<team> and --out/all).
        #[arg(long)]
        team: Option<String>,
        /// day or week.
        #[arg(long, default_value = "week")]
        period: String,
        /// The period's end, YYYY-MM-DD (local midnight in each team's time zone) or an RFC 3339
        /// instant: a weekly digest --at 2025-04-14 covers [2025-04-07, 2025-04-14). Defaults to the
        /// start of the current day or week (Monday) in each team's time zone.
        #[arg(long)]
        at: Option<String>,
        #[arg(long)]
        out: PathBuf,
        /// Also send each digest through its team's channels (`[[teams]]` in the configuration; the
        /// addresses in EM_AGENT_DIGEST_<TEAM>_<CHANNEL>, email from EM_AGENT_DIGEST_FROM; SES and SNS
        /// through the environment's AWS configuration), once per team, period and channel.
        #[arg(long)]
        send: bool,
        #[arg(long, default_value = "./.em-agent", env = "EM_AGENT_DATA_DIR")]
        data_dir: PathBuf,
        #[arg(long, default_value = DEFAULT_CONFIG, env = "EM_AGENT_CONFIG")]
        config: PathBuf,
        /// Where the figures are read (and each send claimed once): the SQLite file in --data-dir, or
        /// the DynamoDB table named by --table.
        #[arg(long, value_enum, default_value = "embedded", env = "EM_AGENT_BACKEND")]
        backend: ServeBackend,
        /// DynamoDB table of facts and metric rows (--backend aws).
        #[arg(long, env = "EM_AGENT_TABLE", default_value = "em-agent")]
        table: String,
    },
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // A log line that cannot be written (stderr on a full disk) is lost, not reported with `eprintln!`,
    // which would panic whichever request or task logged it.
    // Colours only for a person at a terminal: a log file or a collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .log_internal_errors(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// The default config file may be absent (every repository is then its own service); a named one may not.
fn load_config(path: &Path) -> Result<Config, CliError> {
    if !path.exists() && path == Path::new(DEFAULT_CONFIG) {
        tracing::info!(
            "no {DEFAULT_CONFIG}: every repository and incident service is its own service"
        );
        return Ok(Config::default());
    }
    Config::load(path).map_err(|e| CliError::Invalid(e.to_string()))
}

async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Serve {
            addr,
            data_dir,
            config,
            batch_size,
            max_receives,
            visibility_timeout,
            log_format,
            replay_window,
            header_timeout,
            body_timeout,
            max_connections,
            bodies_in_flight_kib,
            backend,
            open_api,
            aws,
        } => {
            if !addr.ip().is_loopback() && !open_api && server::api_tokens_from_env().is_none() {
                return Err(format!(
                    "refusing to serve the metrics API on {addr} without a token: anyone who reaches \
                     that address could read it. Set EM_AGENT_API_TOKEN, or pass --open-api to serve \
                     it open on purpose"
                )
                .into());
            }
            init_logging(log_format, "info");
            let config = load_config(&config)?;
            let opts = server::ServeOptions {
                addr,
                config,
                batch_size: batch_size.max(1),
                replay_window,
                limits: server::Limits {
                    header_timeout,
                    body_timeout,
                    max_connections: max_connections.max(1),
                    bodies_in_flight: bodies_in_flight_kib.max(1).saturating_mul(1024),
                    ..server::Limits::default()
                },
            };
            match backend {
                ServeBackend::Embedded => server::serve_embedded(
                    opts,
                    &data_dir,
                    Options {
                        visibility_timeout: std::time::Duration::from_secs(visibility_timeout),
                        max_receives,
                        retention: std::time::Duration::from_secs(
                            u64::from(aws.retention_days) * 86_400,
                        ),
                        ..Options::default()
                    },
                    EnvSecrets::from_env(em_providers::secret_vars()),
                )
                .await
                .map_err(|e| e.to_string())?,
                ServeBackend::Aws => aws::serve(
                    opts,
                    aws,
                    max_receives,
                    u32::try_from(visibility_timeout).unwrap_or(u32::MAX),
                )
                .await
                .map_err(|e| e.to_string())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Send {
            provider,
            files,
            url,
            secret,
            event,
        } => {
            let secret = secret
                .or_else(|| std::env::var(secret_env_var(&provider)).ok())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| send::SendError::NoSecret(secret_env_var(&provider)).to_string())?;
            let client = reqwest::Client::new();
            let mut failed = false;
            for file in files {
                let (prepared, p) =
                    send::prepare(&provider, &file, event.as_deref()).map_err(|e| e.to_string())?;
                let (status, body) = send::send(&client, &url, p, secret.as_bytes(), prepared)
                    .await
                    .map_err(|e| e.to_string())?;
                println!("{} {status} {body}", file.display());
                failed |= !(200..300).contains(&status);
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Providers { json } => {
            if json {
                let v = providers::to_json();
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", providers::table());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Parse {
            provider,
            file,
            headers,
            event,
        } => {
            for line in parse::run(&provider, &file, headers.as_deref(), event.as_deref())
                .map_err(|e| e.to_string())?
            {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate { check, root } => generate::run(&root, check),
        Command::Report {
            service,
            team,
            from,
            to,
            url,
            token,
            data_dir,
            config,
            json,
        } => {
            let query = DoraQuery {
                service,
                team,
                from,
                to,
                ..Default::default()
            };
            let value = match url {
                Some(url) => remote_report(&url, token.as_deref(), &query).await?,
                None => {
                    init_logging(LogFormat::Text, "warn");
                    let config = Arc::new(load_config(&config)?);
                    let store = EmbeddedStore::open(&data_dir, Options::default())
                        .map_err(|e| e.to_string())?;
                    // Read-only: a running server may hold rows linked from newer facts, and applying a
                    // configuration change is the server's work. The answer says which configuration
                    // its figures reflect.
                    let r = em_api::dora(&store, &config, query, now_millis())
                        .await
                        .map_err(|e| e.to_string())?;
                    if !r.configuration.current {
                        eprintln!(
                            "note: these figures reflect an earlier configuration; `em-agent serve` \
                             applies this one"
                        );
                    }
                    serde_json::to_value(&r).map_err(|e| e.to_string())?
                }
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                );
            } else {
                print!("{}", report::render(&value)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Digest {
            team,
            period,
            at,
            out,
            send,
            data_dir,
            config,
            backend,
            table,
        } => {
            init_logging(LogFormat::Text, "warn");
            let period = em_metrics::digest::Period::parse(&period)
                .ok_or_else(|| format!("--period {period:?}: expected day or week"))?;
            let now = now_millis();
            let at = digest::At::parse(at.as_deref(), now)?;
            let config = load_config(&config)?;
            let outbound = match send {
                true => Some(em_digest::Outbound::on_aws(
                    em_notify::send::Sender::new(em_notify::send::Policy::default())
                        .map_err(|e| e.to_string())?,
                    &em_aws::sdk_config().await,
                    std::env::var(em_digest::FROM_VAR)
                        .ok()
                        .filter(|f| !f.is_empty()),
                )),
                false => None,
            };
            let outbound = outbound.as_ref();
            match backend {
                ServeBackend::Embedded => {
                    let store = EmbeddedStore::open(&data_dir, Options::default())
                        .map_err(|e| e.to_string())?;
                    digest::render(&store, &config, team, period, at, &out, outbound, now).await?
                }
                ServeBackend::Aws => {
                    let sdk = em_aws::sdk_config().await;
                    let store = em_aws::DynamoStore::new(&sdk, table);
                    digest::render(&store, &config, team, period, at, &out, outbound, now).await?
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay(args) => {
            init_logging(LogFormat::Text, "warn");
            replay::run(args).await.map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn remote_report(
    url: &str,
    token: Option<&str>,
    q: &DoraQuery,
) -> Result<serde_json::Value, CliError> {
    let params: Vec<(&str, &String)> = [
        ("service", &q.service),
        ("team", &q.team),
        ("from", &q.from),
        ("to", &q.to),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    let query: String = form_urlencoded_pairs(&params);
    let mut request = reqwest::Client::new().get(format!(
        "{}/v1/metrics/dora?{query}",
        url.trim_end_matches('/')
    ));
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        request = request.bearer_auth(token);
    }
    let resp = request.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {}", body["error"].as_str().unwrap_or_default()).into());
    }
    Ok(body)
}

fn form_urlencoded_pairs(pairs: &[(&str, &String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The registered providers' names, for error messages.
pub fn known_providers() -> String {
    em_providers::all()
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::main]
async fn main() -> ExitCode {
    // The one TLS crypto provider of the process (the AWS SDK's), for reqwest's HTTPS too.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("em-agent: {e}");
            ExitCode::FAILURE
        }
    }
}
