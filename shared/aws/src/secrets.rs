//! Provider secrets from Secrets Manager: on AWS one secret per provider, readable only by that provider's
//! webhook function ([`Layout::Provider`]); for `serve --backend aws` one JSON object of every provider's
//! secret (`{"github": "...", "gitlab": "..."}`); for the API token a plain string. Cached for a TTL.
//!
//! Only the current version counts: a value replaced is revoked as soon as the caches have read the new one.
//! Accepting an old value beside a new one during a rotation is the operator's choice, said in the secret
//! itself as a JSON list (`["new", "old"]`), and ended by putting the new value alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;

use crate::sdk_error;
use em_core::ports::{PortError, SecretSource};

pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// How the secret's text is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// A JSON object of provider name → secret.
    PerProvider,
    /// The whole text is the secret of the one name given.
    Single(&'static str),
    /// The secret of one provider: its text, or a JSON list of several accepted at once (a rotation on the
    /// provider's side), or a JSON object read as in [`Layout::PerProvider`] for that provider alone (the
    /// shared secret of earlier stacks pasted as it was). Random secrets have no `[` or `{` to mistake.
    Provider(String),
}

type Secrets = HashMap<String, Vec<Vec<u8>>>;

struct Cached {
    at: Instant,
    secrets: Arc<Secrets>,
}

/// What the cache knows: the last secrets fetched, and after a failed refresh when to try again.
#[derive(Default)]
struct State {
    cached: Option<Cached>,
    failures: u32,
    retry_at: Option<Instant>,
    /// A refresh is under way: other callers keep using the cached secrets meanwhile.
    refreshing: bool,
}

/// One call to Secrets Manager may take this long, well under the webhook function's 10 s.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// Cached secrets are served this long past their TTL while Secrets Manager cannot be reached; after that a
/// revoked secret must not keep working, so requests fail (closed) until a refresh succeeds.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(3600);
/// The first pause after a failed refresh, doubling up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct SecretsManagerSecrets {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    layout: Layout,
    ttl: Duration,
    fetch_timeout: Duration,
    max_stale: Duration,
    /// Held only to read or update the state, never across a call to Secrets Manager.
    state: Arc<std::sync::Mutex<State>>,
}

impl SecretsManagerSecrets {
    pub fn new(sdk: &SdkConfig, secret_id: impl Into<String>, layout: Layout) -> Self {
        SecretsManagerSecrets {
            client: aws_sdk_secretsmanager::Client::new(sdk),
            secret_id: secret_id.into(),
            layout,
            ttl: DEFAULT_TTL,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            max_stale: DEFAULT_MAX_STALE,
            state: Arc::default(),
        }
    }

    pub fn with_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    pub fn with_max_stale(mut self, max_stale: Duration) -> Self {
        self.max_stale = max_stale;
        self
    }

    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, PortError> {
        self.state
            .lock()
            .map_err(|_| PortError::transient("secrets cache lock poisoned"))
    }

    /// The secrets: cached within the TTL; otherwise refreshed, by one caller at a time (the others keep
    /// the cached ones meanwhile), each call bounded by the fetch timeout. After a failed refresh the cached
    /// secrets serve, without another call until the backoff has passed, for at most `max_stale` past the
    /// TTL; with none left to serve, the answer is an error (fail closed).
    async fn load(&self) -> Result<Arc<Secrets>, PortError> {
        let now = Instant::now();
        let stale_ok = |c: &Cached| now.duration_since(c.at) < self.ttl + self.max_stale;
        {
            let mut state = self.lock()?;
            if let Some(c) = state.cached.as_ref() {
                let fresh = now.duration_since(c.at) < self.ttl;
                let waiting = state.retry_at.is_some_and(|t| now < t);
                if fresh || ((state.refreshing || waiting) && stale_ok(c)) {
                    return Ok(c.secrets.clone());
                }
            }
            if state.cached.is_none() && state.retry_at.is_some_and(|t| now < t) {
                return Err(PortError::transient(
                    "secrets unavailable: Secrets Manager failed recently",
                ));
            }
            state.refreshing = true;
        }
        let fetched = match tokio::time::timeout(self.fetch_timeout, self.fetch()).await {
            Ok(r) => r,
            Err(_) => Err(PortError::transient("secretsmanager get timed out")),
        };
        let mut state = self.lock()?;
        state.refreshing = false;
        match fetched {
            Ok(secrets) => {
                let secrets = Arc::new(secrets);
                state.cached = Some(Cached {
                    at: Instant::now(),
                    secrets: secrets.clone(),
                });
                state.failures = 0;
                state.retry_at = None;
                Ok(secrets)
            }
            Err(e) => {
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1 << state.failures.min(6))
                    .min(MAX_BACKOFF);
                state.failures += 1;
                state.retry_at = Some(Instant::now() + backoff);
                match state.cached.as_ref().filter(|c| stale_ok(c)) {
                    // Unreachable: the last known secrets are still the right ones to check against (a
                    // rotation is seen at the next successful refresh), within the staleness bound.
                    Some(c) => {
                        tracing::warn!(error = %e, ?backoff, "secrets refresh failed, using the cached ones");
                        Ok(c.secrets.clone())
                    }
                    None => Err(e),
                }
            }
        }
    }

    async fn fetch(&self) -> Result<Secrets, PortError> {
        let current = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| sdk_error("secretsmanager get", e))?;
        self.parse(current.secret_string().unwrap_or_default())
    }

    fn parse(&self, text: &str) -> Result<Secrets, PortError> {
        let mut out = Secrets::new();
        let t = text.trim();
        match &self.layout {
            Layout::Single(name) if t.starts_with('[') => {
                let values = secret_values(self.json(t, "a JSON list of secrets")?);
                if !values.is_empty() {
                    out.insert(name.to_string(), values);
                }
            }
            Layout::Single(name) => {
                if !t.is_empty() {
                    out.insert(name.to_string(), vec![t.as_bytes().to_vec()]);
                }
            }
            Layout::Provider(name) if t.starts_with('[') => {
                let values = secret_values(self.json(t, "a JSON list of secrets")?);
                if !values.is_empty() {
                    out.insert(name.clone(), values);
                }
            }
            Layout::Provider(name) if !t.starts_with('{') => {
                if !t.is_empty() {
                    out.insert(name.clone(), vec![t.as_bytes().to_vec()]);
                }
            }
            Layout::Provider(_) | Layout::PerProvider => {
                let map: HashMap<String, serde_json::Value> =
                    self.json(t, "a JSON object of provider secrets")?;
                for (key, value) in map {
                    let key = key.to_ascii_lowercase();
                    if matches!(&self.layout, Layout::Provider(name) if *name != key) {
                        continue;
                    }
                    let values = secret_values(value);
                    if !values.is_empty() {
                        out.insert(key, values);
                    }
                }
            }
        }
        Ok(out)
    }

    fn json<T: serde::de::DeserializeOwned>(&self, text: &str, what: &str) -> Result<T, PortError> {
        serde_json::from_str(text).map_err(|e| {
            // Never serde's message: for a scalar it quotes the value, which is the secret.
            PortError::invalid(format!(
                "secret {} is not {what} ({:?} error at line {}, column {})",
                self.secret_id,
                e.classify(),
                e.line(),
                e.column()
            ))
        })
    }
}

/// A provider's secrets: a string, or a list of them (one version holding two, for a rotation on the
/// provider's side); empty ones and other values count for nothing.
fn secret_values(value: serde_json::Value) -> Vec<Vec<u8>> {
    let values = match value {
        serde_json::Value::String(s) => vec![s],
        serde_json::Value::Array(a) => a
            .into_iter()
            .filter_map(|v| match v {
                serde_json::Value::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    values
        .into_iter()
        .filter(|v| !v.is_empty())
        .map(String::into_bytes)
        .collect()
}

impl SecretSource for SecretsManagerSecrets {
    async fn secrets(&self, provider: &str) -> Result<Option<Vec<Vec<u8>>>, PortError> {
        Ok(self.load().await?.get(provider).cloned())
    }

    /// Answered to anyone who posts: it names no secret (an ARN names the account and the stack).
    fn enable_hint(&self, provider: &str) -> String {
        match self.layout {
            Layout::PerProvider => {
                format!("add a secret for \"{provider}\" to the webhook secrets in Secrets Manager")
            }
            _ => format!("set the webhook secret of \"{provider}\" in Secrets Manager"),
        }
    }
}
