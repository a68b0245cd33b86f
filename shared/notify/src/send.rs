//! Outbound webhook calls (Slack, Microsoft Teams) done right: a timeout per attempt, retries with
//! exponential backoff and full jitter (honouring `Retry-After`), and a circuit breaker per destination, so
//! a destination that keeps failing is skipped at once instead of slowing every digest. A destination is
//! named in logs by a digest of its URL: the URL is a secret (it carries the webhook's token).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use em_core::config::Channel;
use em_core::emf;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts per message, the first included.
    pub attempts: u32,
    /// The first retry waits up to this long; each further one up to twice the one before.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// One attempt's time limit, connection included.
    pub timeout: Duration,
    /// Consecutive failed messages that open a destination's circuit.
    pub breaker_failures: u32,
    /// How long an open circuit refuses messages before one is let through to try.
    pub breaker_open: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            timeout: Duration::from_secs(10),
            breaker_failures: 3,
            breaker_open: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// The destination refused the message (a 4xx other than 408 and 429): retrying would not help.
    #[error("{channel} destination {destination} refused the message with {status}")]
    Refused {
        channel: &'static str,
        destination: String,
        status: u16,
    },
    #[error("{channel} destination {destination} failed {attempts} attempts: {last}")]
    Exhausted {
        channel: &'static str,
        destination: String,
        attempts: u32,
        last: String,
    },
    #[error("{channel} destination {destination} is failing: skipped until its circuit closes")]
    CircuitOpen {
        channel: &'static str,
        destination: String,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// A destination's circuit: closed while it answers, open for a while after it kept failing.
#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

/// What a successful send took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub attempts: u32,
}

pub struct Sender {
    client: reqwest::Client,
    policy: Policy,
    breakers: Mutex<HashMap<String, Breaker>>,
}

/// How logs name a destination: the first 12 hex digits of its URL's SHA-256.
pub fn destination_id(url: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(url.as_bytes()))
        .chars()
        .take(12)
        .collect()
}

/// The wait before retry `n` (1 for the first retry): full jitter over the doubling bound, or what the
/// destination asked for in `Retry-After`, capped.
fn delay(policy: &Policy, n: u32, asked: Option<Duration>) -> Duration {
    if let Some(a) = asked {
        return a.min(policy.max_delay);
    }
    let bound = policy
        .base_delay
        .saturating_mul(1 << n.saturating_sub(1).min(16))
        .min(policy.max_delay);
    Duration::from_nanos(fastrand::u64(
        0..=bound.as_nanos().min(u64::MAX as u128) as u64,
    ))
}

enum Attempt {
    Done,
    Refused(u16),
    Retry {
        reason: String,
        after: Option<Duration>,
    },
}

impl Sender {
    /// reqwest's TLS takes the process's rustls crypto provider: install one first (the binaries do at
    /// start-up).
    pub fn new(policy: Policy) -> Result<Self, SendError> {
        let client = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout)
            // A webhook that redirects is misconfigured; following it could leak the message.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SendError::Client(e.to_string()))?;
        Ok(Sender {
            client,
            policy,
            breakers: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `destination`'s circuit lets a message through now.
    fn admitted(&self, destination: &str) -> bool {
        let Ok(mut b) = self.breakers.lock() else {
            return true;
        };
        let b = b.entry(destination.to_string()).or_default();
        match b.open_until {
            Some(until) if Instant::now() < until => false,
            // Half open: let this one try; a failure opens the circuit again at once.
            Some(_) => {
                b.open_until = None;
                b.failures = self.policy.breaker_failures.saturating_sub(1);
                true
            }
            None => true,
        }
    }

    fn record(&self, destination: &str, ok: bool) {
        let Ok(mut b) = self.breakers.lock() else {
            return;
        };
        let b = b.entry(destination.to_string()).or_default();
        if ok {
            *b = Breaker::default();
        } else {
            b.failures += 1;
            if b.failures >= self.policy.breaker_failures {
                b.open_until = Some(Instant::now() + self.policy.breaker_open);
            }
        }
    }

    async fn attempt(&self, url: &str, body: &Value) -> Attempt {
        match self.client.post(url).json(body).send().await {
            Ok(r) if r.status().is_success() => Attempt::Done,
            Ok(r) => {
                let status = r.status().as_u16();
                if status == 408 || status == 429 || status >= 500 {
                    let after = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    Attempt::Retry {
                        reason: format!("status {status}"),
                        after,
                    }
                } else {
                    Attempt::Refused(status)
                }
            }
            // reqwest's error names the URL; only its kind is kept.
            Err(e) => Attempt::Retry {
                reason: if e.is_timeout() {
                    "timed out".into()
                } else if e.is_connect() {
                    "could not connect".into()
                } else {
                    "request failed".into()
                },
                after: None,
            },
        }
    }

    /// Posts `body` as JSON to `url`, retrying what may pass on a retry. A failure is logged (by the
    /// destination's digest, never its URL) and counted as an EMF metric.
    pub async fn post_json(
        &self,
        channel: Channel,
        url: &str,
        body: &Value,
    ) -> Result<Delivered, SendError> {
        let destination = destination_id(url);
        let result = self.post_json_inner(channel, url, &destination, body).await;
        let outcome = match &result {
            Ok(_) => "sent",
            Err(SendError::CircuitOpen { .. }) => "skipped",
            Err(_) => "failed",
        };
        if let Err(e) = &result {
            tracing::warn!(channel = channel.as_str(), destination, error = %e, "notification not sent");
        }
        emf::emit(emf::line(
            em_core::time::now_millis(),
            &[("Channel", channel.as_str()), ("Outcome", outcome)],
            &[("Notifications", 1.0, emf::Unit::Count)],
        ));
        result
    }

    async fn post_json_inner(
        &self,
        channel: Channel,
        url: &str,
        destination: &str,
        body: &Value,
    ) -> Result<Delivered, SendError> {
        if !self.admitted(destination) {
            return Err(SendError::CircuitOpen {
                channel: channel.as_str(),
                destination: destination.to_string(),
            });
        }
        let mut last = String::new();
        for n in 1..=self.policy.attempts.max(1) {
            match self.attempt(url, body).await {
                Attempt::Done => {
                    self.record(destination, true);
                    return Ok(Delivered { attempts: n });
                }
                Attempt::Refused(status) => {
                    self.record(destination, false);
                    return Err(SendError::Refused {
                        channel: channel.as_str(),
                        destination: destination.to_string(),
                        status,
                    });
                }
                Attempt::Retry { reason, after } => {
                    last = reason;
                    if n < self.policy.attempts {
                        tokio::time::sleep(delay(&self.policy, n, after)).await;
                    }
                }
            }
        }
        self.record(destination, false);
        Err(SendError::Exhausted {
            channel: channel.as_str(),
            destination: destination.to_string(),
            attempts: self.policy.attempts.max(1),
            last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_their_bound_and_honour_retry_after() {
        let p = Policy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1_000),
            ..Policy::default()
        };
        let mut longest_first = Duration::ZERO;
        for _ in 0..200 {
            let first = delay(&p, 1, None);
            longest_first = longest_first.max(first);
            assert!(first <= Duration::from_millis(100));
            assert!(delay(&p, 3, None) <= Duration::from_millis(400));
            assert!(delay(&p, 10, None) <= Duration::from_millis(1_000));
        }
        assert!(longest_first > Duration::ZERO, "jittered, not always zero");
        assert_eq!(
            delay(&p, 1, Some(Duration::from_secs(60))),
            Duration::from_millis(1_000),
            "capped"
        );
        assert_eq!(
            delay(&p, 1, Some(Duration::from_millis(200))),
            Duration::from_millis(200)
        );
    }

    #[test]
    fn destinations_are_named_without_their_url() {
        let id = destination_id("https://hooks.slack.com/services/T000/B000/secret-token");
        assert_eq!(id.len(), 12);
        assert!(!id.contains("secret"));
        assert_ne!(
            id,
            destination_id("https://hooks.slack.com/services/T000/B000/other")
        );
    }
}
