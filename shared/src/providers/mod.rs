//! Webhook providers: how each one signs, names and shapes its deliveries. One file per provider.

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::domain::Fact;

pub mod github;
pub mod gitlab;
pub mod pagerduty;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("{0} header is malformed")]
    Malformed(&'static str),
    #[error("{0} does not match")]
    Mismatch(&'static str),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body is not a JSON object")]
    NotObject,
}

/// A payload of a known event that lacks what the event must carry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{provider} {event}: {message}")]
pub struct ParseError {
    pub provider: &'static str,
    pub event: String,
    pub message: String,
}

/// What the ingest path learns from a delivery without parsing it into facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The provider's delivery id, or `sha256:<hex>` of the body when it sends none.
    pub delivery_id: String,
    /// The provider's event name, where it is only in a header (GitHub).
    pub event: Option<String>,
}

pub trait Provider: Send + Sync + 'static {
    /// The path segment of `POST /webhooks/{provider}` and the `EM_AGENT_<NAME>_SECRET` suffix.
    fn name(&self) -> &'static str;

    /// Checks the delivery's signature or token over the raw body against any of `secrets` (several during a
    /// rotation), in constant time.
    fn authenticate(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        secrets: &[Vec<u8>],
    ) -> Result<(), AuthError>;

    /// Checks that the body is JSON and names the delivery.
    fn inspect(&self, headers: &HeaderMap, body: &[u8]) -> Result<Inspection, BodyError>;

    /// Parses the delivery into facts. Events the product does not use give no facts, not an error.
    fn parse(&self, event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError>;

    /// The headers that authenticate `body` as the provider itself would send them.
    fn sign(&self, secret: &[u8], body: &[u8]) -> Vec<(&'static str, String)>;
}

static GITHUB: github::GitHub = github::GitHub;
static GITLAB: gitlab::GitLab = gitlab::GitLab;
static PAGERDUTY: pagerduty::PagerDuty = pagerduty::PagerDuty;

/// Every provider this build knows, by name.
pub fn all() -> [&'static dyn Provider; 3] {
    [&GITHUB, &GITLAB, &PAGERDUTY]
}

pub fn by_name(name: &str) -> Option<&'static dyn Provider> {
    all().into_iter().find(|p| p.name() == name)
}

/// The environment variable that holds a provider's secret for the local server.
pub fn secret_env_var(provider: &str) -> String {
    format!("EM_AGENT_{}_SECRET", provider.to_uppercase())
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(crate) fn body_digest(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// Validates JSON without building it: the ingest path only needs to know it parses.
pub(crate) fn check_json_object(body: &[u8]) -> Result<(), BodyError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map_err(|e| BodyError::NotJson(e.to_string()))?;
    match first {
        Some(b'{') => Ok(()),
        _ => Err(BodyError::NotObject),
    }
}

pub(crate) fn hmac_sha256(secret: &[u8], body: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Constant-time check of a hex HMAC-SHA256 against every secret. Every secret is tried, so the time does not
/// tell which one matched.
pub(crate) fn hmac_matches_any(secrets: &[Vec<u8>], body: &[u8], signature_hex: &str) -> bool {
    use subtle::ConstantTimeEq;
    // Exactly what the providers send: 64 lowercase hex digits, nothing around them.
    let well_formed = signature_hex.len() == 64
        && signature_hex
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !well_formed {
        return false;
    }
    let Ok(given) = hex::decode(signature_hex) else {
        return false;
    };
    let mut ok = subtle::Choice::from(0u8);
    for s in secrets {
        ok |= hmac_sha256(s, body).ct_eq(given.as_slice());
    }
    ok.into()
}

/// Constant-time equality of a shared token; hashing first hides the length of the expected value.
pub(crate) fn token_matches_any(secrets: &[Vec<u8>], given: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let g = Sha256::digest(given);
    let mut ok = subtle::Choice::from(0u8);
    for s in secrets {
        ok |= Sha256::digest(s).ct_eq(&g);
    }
    ok.into()
}

pub(crate) fn parse_error(
    provider: &'static str,
    event: &str,
    e: impl std::fmt::Display,
) -> ParseError {
    ParseError {
        provider,
        event: event.to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_checks_every_secret() {
        let body = b"Hello, World!";
        let sig = hex::encode(hmac_sha256(b"It's a Secret to Everybody", body));
        assert_eq!(
            sig,
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let secrets = vec![b"old".to_vec(), b"It's a Secret to Everybody".to_vec()];
        assert!(hmac_matches_any(&secrets, body, &sig));
        assert!(!hmac_matches_any(&secrets[..1], body, &sig));
        assert!(!hmac_matches_any(&secrets, body, "zz"));
        assert!(!hmac_matches_any(&secrets, body, &sig[..62]));
        assert!(!hmac_matches_any(&secrets, body, &sig.to_uppercase()));
        assert!(!hmac_matches_any(&[], body, &sig));
    }

    #[test]
    fn tokens_compare_whole() {
        let secrets = vec![b"token".to_vec()];
        assert!(token_matches_any(&secrets, b"token"));
        assert!(!token_matches_any(&secrets, b"toke"));
        assert!(!token_matches_any(&secrets, b"token "));
        assert!(!token_matches_any(&[], b""));
    }

    #[test]
    fn json_check_rejects_non_objects() {
        assert!(check_json_object(br#" {"a": 1} "#).is_ok());
        assert_eq!(check_json_object(b"[1]"), Err(BodyError::NotObject));
        assert!(matches!(
            check_json_object(b"{\"a\": "),
            Err(BodyError::NotJson(_))
        ));
    }
}
