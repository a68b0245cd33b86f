//! Provider secrets from one Secrets Manager secret: a JSON object with each provider's secret
//! (`{"github": "...", "gitlab": "..."}`), or, for the API token, a plain string. Cached for a TTL; during a
//! rotation (while the current version is younger than the grace period) the previous version's secret is
//! accepted beside the new one, so deliveries signed before the provider was updated still pass.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_config::SdkConfig;
use tokio::sync::Mutex;

use crate::sdk_error;
use em_core::ports::{PortError, SecretSource};

pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// How the secret's text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A JSON object of provider name → secret.
    PerProvider,
    /// The whole text is the secret of the one name given.
    Single(&'static str),
}

type Secrets = HashMap<String, Vec<Vec<u8>>>;

struct Cached {
    at: Instant,
    secrets: Arc<Secrets>,
}

#[derive(Clone)]
pub struct SecretsManagerSecrets {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    layout: Layout,
    ttl: Duration,
    grace: Duration,
    cache: Arc<Mutex<Option<Cached>>>,
}

impl SecretsManagerSecrets {
    pub fn new(sdk: &SdkConfig, secret_id: impl Into<String>, layout: Layout) -> Self {
        SecretsManagerSecrets {
            client: aws_sdk_secretsmanager::Client::new(sdk),
            secret_id: secret_id.into(),
            layout,
            ttl: DEFAULT_TTL,
            grace: DEFAULT_GRACE,
            cache: Arc::new(Mutex::new(None)),
        }
    }

    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    async fn load(&self) -> Result<Arc<Secrets>, PortError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            if c.at.elapsed() < self.ttl {
                return Ok(c.secrets.clone());
            }
        }
        match self.fetch().await {
            Ok(secrets) => {
                let secrets = Arc::new(secrets);
                *cache = Some(Cached {
                    at: Instant::now(),
                    secrets: secrets.clone(),
                });
                Ok(secrets)
            }
            // Secrets Manager unreachable: the last known secrets are still the right ones to check against
            // (a rotation is seen at the next successful refresh). With none known, fail closed.
            Err(e) => match cache.as_ref() {
                Some(c) => {
                    tracing::warn!(error = %e, "secrets refresh failed, using the cached ones");
                    Ok(c.secrets.clone())
                }
                None => Err(e),
            },
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
        let mut secrets = self.parse(current.secret_string().unwrap_or_default())?;
        let created = current
            .created_date()
            .and_then(|d| SystemTime::try_from(*d).ok());
        let rotating = created
            .and_then(|c| SystemTime::now().duration_since(c).ok())
            .is_some_and(|age| age < self.grace);
        if rotating {
            let previous = self
                .client
                .get_secret_value()
                .secret_id(&self.secret_id)
                .version_stage("AWSPREVIOUS")
                .send()
                .await;
            match previous {
                Ok(p) => {
                    // A broken previous version must not block the current one.
                    match self.parse(p.secret_string().unwrap_or_default()) {
                        Ok(old) => {
                            for (name, values) in old {
                                let slot = secrets.entry(name).or_default();
                                for v in values {
                                    if !slot.contains(&v) {
                                        slot.push(v);
                                    }
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "previous secret version ignored"),
                    }
                }
                // No previous version: the secret was never rotated.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_not_found_exception()) => {}
                Err(e) => return Err(sdk_error("secretsmanager get previous", e)),
            }
        }
        Ok(secrets)
    }

    fn parse(&self, text: &str) -> Result<Secrets, PortError> {
        let mut out = Secrets::new();
        match self.layout {
            Layout::Single(name) => {
                let t = text.trim();
                if !t.is_empty() {
                    out.insert(name.to_string(), vec![t.as_bytes().to_vec()]);
                }
            }
            Layout::PerProvider => {
                let map: HashMap<String, serde_json::Value> =
                    serde_json::from_str(text).map_err(|e| {
                        PortError::invalid(format!(
                            "secret {} is not a JSON object of provider secrets: {e}",
                            self.secret_id
                        ))
                    })?;
                for (name, value) in map {
                    // A list lets one version hold two secrets, for providers that sign with both.
                    let values: Vec<Vec<u8>> = match value {
                        serde_json::Value::String(s) => vec![s.into_bytes()],
                        serde_json::Value::Array(a) => a
                            .into_iter()
                            .filter_map(|v| v.as_str().map(|s| s.as_bytes().to_vec()))
                            .collect(),
                        _ => Vec::new(),
                    };
                    let values: Vec<Vec<u8>> =
                        values.into_iter().filter(|v| !v.is_empty()).collect();
                    if !values.is_empty() {
                        out.insert(name.to_ascii_lowercase(), values);
                    }
                }
            }
        }
        Ok(out)
    }
}

impl SecretSource for SecretsManagerSecrets {
    async fn secrets(&self, provider: &str) -> Result<Option<Vec<Vec<u8>>>, PortError> {
        Ok(self.load().await?.get(provider).cloned())
    }

    fn enable_hint(&self, provider: &str) -> String {
        format!(
            "add its secret as \"{provider}\" to the JSON of secret {}",
            self.secret_id
        )
    }
}
