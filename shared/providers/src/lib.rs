//! Webhook providers: how each one proves, names and shapes its deliveries. A provider is one file with one
//! [`Provider`] declaration, listed once in the `registry!` below; everything else (routes, secrets, `em-agent send`,
//! the SAM stack, the sample events, the docs table, the generic tests) is derived from that list.
//!
//! Pure: no I/O, no clock. The caller passes the time for replay windows.

pub mod auth;
pub mod extract;
mod git;

use em_core::domain::Fact;
use em_core::ports::body_digest;
use http::HeaderMap;

pub use auth::{Auth, Clock};
pub use em_core::error::{AuthError, BodyError, ParseError};

/// The registry: one line per provider, the name of its module, whose `PROVIDER` it lists.
macro_rules! registry {
    ($($module:ident),* $(,)?) => {
        $(pub mod $module;)*

        static PROVIDERS: &[&Provider] = &[$(&$module::PROVIDER),*];
    };
}

registry! {
    github,
    gitlab,
    pagerduty,
    heroku,
    generic,
    circleci,
    bitbucket,
    argocd,
    kubernetes,
    aws,
    jenkins,
    alertmanager,
    opsgenie,
    datadog,
    incident_io,
    grafana,
    newrelic,
    sonarqube,
}

/// Every provider this build knows, in registry order.
pub fn all() -> &'static [&'static Provider] {
    PROVIDERS
}

pub fn by_name(name: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().copied().find(|p| p.name == name)
}

/// Each provider's name and the variables its secrets are read from, current first: what
/// `em_core::secrets::EnvSecrets` reads.
pub fn secret_vars() -> impl Iterator<Item = (&'static str, [String; 2])> {
    PROVIDERS.iter().map(|p| (p.name, p.secret_vars()))
}

/// Where a delivery names itself; the first source present wins, and a delivery with none is named by the
/// SHA-256 of its body. (Not comparable: a derived id is a function, whose address says nothing.)
#[derive(Debug, Clone, Copy)]
pub enum IdSource {
    Header(&'static str),
    /// A string or integer field of the JSON body, by its path of keys.
    Body(&'static [&'static str]),
    /// Derived from the body by the provider, for one that sends no id (Jenkins): the same for every
    /// delivery of one event, so that a re-delivery counts once; `None` when the body is not its shape.
    Derived(fn(&[u8]) -> Option<String>),
}

/// How a delivery names its event, where it does so in a header (GitHub `X-GitHub-Event`). Events named in
/// the body are read by the provider's `parse`.
#[derive(Debug, Clone, Copy)]
pub struct EventHeader {
    pub header: &'static str,
    /// The header's value for a payload file, for `em-agent send` and `em-agent parse` when none is given.
    pub guess: fn(&serde_json::Value) -> Option<String>,
}

/// Parses a delivery into facts; events the product does not use give no facts, not an error.
pub type ParseFn = fn(event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError>;

/// Everything the product knows about one provider.
#[derive(Debug, Clone, Copy)]
pub struct Provider {
    /// The path segment of `POST /webhooks/{name}` and the `EM_AGENT_<NAME>_SECRET` suffix: lower-case
    /// letters, digits and dashes.
    pub name: &'static str,
    /// The provider's own spelling, for people and for the SAM stack's resource names (letters and digits).
    pub title: &'static str,
    pub auth: Auth,
    pub delivery_id: &'static [IdSource],
    pub event_header: Option<EventHeader>,
    /// The events that become facts, as the provider names them.
    pub events: &'static [&'static str],
    pub parse: ParseFn,
    /// The fixture whose payload is the provider's sample delivery (`events/webhook-<name>.json`).
    pub sample: &'static str,
    /// Parse at the door: for a schema EM Agent defines, a body that breaks it is refused with a 400 naming
    /// the mistake, instead of being accepted and dead-lettered. Providers' own payloads are not: their
    /// events the product does not read must still be accepted.
    pub validate: bool,
}

/// What the ingest path learns from a delivery without parsing it into facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The provider's delivery id, or `sha256:<hex>` of the body when it sends none.
    pub delivery_id: String,
    /// The provider's event name, where it is in a header.
    pub event: Option<String>,
}

impl Provider {
    pub fn route(&self) -> String {
        format!("/webhooks/{}", self.name)
    }

    /// The environment variable that holds the provider's secret for the local server; `<it>_PREVIOUS`
    /// holds the previous one during a rotation.
    pub fn secret_var(&self) -> String {
        secret_env_var(self.name)
    }

    /// The variables the provider's secrets are read from, current first.
    pub fn secret_vars(&self) -> [String; 2] {
        let v = self.secret_var();
        let previous = format!("{v}_PREVIOUS");
        [v, previous]
    }

    /// Checks the delivery against any of `secrets` (several during a rotation), in constant time.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        secrets: &[Vec<u8>],
        clock: Clock,
    ) -> Result<(), AuthError> {
        self.auth.verify(headers, body, secrets, clock)
    }

    /// Checks that the body is a JSON object and names the delivery.
    pub fn inspect(&self, headers: &HeaderMap, body: &[u8]) -> Result<Inspection, BodyError> {
        check_json_object(body)?;
        let delivery_id = self
            .delivery_id
            .iter()
            .find_map(|source| match source {
                IdSource::Header(h) => header(headers, h)
                    .filter(|v| !v.is_empty())
                    .map(str::to_string),
                IdSource::Body(path) => extract::field_at(body, path).filter(|v| !v.is_empty()),
                IdSource::Derived(derive) => derive(body).filter(|v| !v.is_empty()),
            })
            .unwrap_or_else(|| body_digest(body));
        if !plain_id(&delivery_id) {
            return Err(BodyError::BadDeliveryId);
        }
        let event = self
            .event_header
            .and_then(|e| header(headers, e.header))
            .map(str::to_string);
        if self.validate {
            (self.parse)(event.as_deref(), body).map_err(|e| BodyError::Schema(e.message))?;
        }
        Ok(Inspection { delivery_id, event })
    }

    /// The delivery's facts, each cut to the documented bounds (`em_core::bounds`): whatever a provider
    /// sends, no stored field can outgrow what the stores write and read back.
    pub fn parse(&self, event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
        Ok((self.parse)(event, body)?
            .into_iter()
            .map(Fact::bounded)
            .collect())
    }

    /// The headers that authenticate `body`, as the provider would send them at `now`.
    pub fn sign(
        &self,
        secret: &[u8],
        body: &[u8],
        now: em_core::time::Millis,
    ) -> Vec<(String, String)> {
        self.auth.sign(secret, body, now)
    }

    /// The headers the provider sends beside its authentication: the event (given, or guessed from the
    /// payload) and the delivery id in every header that may carry it.
    pub fn delivery_headers(
        &self,
        payload: &serde_json::Value,
        event: Option<&str>,
        delivery_id: &str,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(e) = self.event_header {
            if let Some(name) = event.map(str::to_string).or_else(|| (e.guess)(payload)) {
                out.push((e.header.to_string(), name));
            }
        }
        for source in self.delivery_id {
            if let IdSource::Header(h) = source {
                out.push((h.to_string(), delivery_id.to_string()));
            }
        }
        out
    }
}

/// The environment variable that holds a provider's secret for the local server.
pub fn secret_env_var(provider: &str) -> String {
    format!(
        "EM_AGENT_{}_SECRET",
        provider.to_ascii_uppercase().replace('-', "_")
    )
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether a delivery id is of the shapes providers send (UUIDs, ULIDs, numbers, `sha256:<hex>`), short
/// enough to be a key anywhere.
fn plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Validates JSON without building it: the ingest path only needs to know it parses. The whole body is
/// checked to be UTF-8 first: serde skips the bytes of strings it ignores, so invalid UTF-8 inside one would
/// pass, and the aggregator could not read the body as the text JSON must be.
fn check_json_object(body: &[u8]) -> Result<(), BodyError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let text = std::str::from_utf8(body)
        .map_err(|e| BodyError::NotJson(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| BodyError::NotJson(e.to_string()))?;
    match first {
        Some(b'{') => Ok(()),
        _ => Err(BodyError::NotObject),
    }
}

/// A parse error of `provider`'s `event`.
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
    fn delivery_ids_are_short_and_plain() {
        assert!(plain_id("6f0c4a1e-5b9a-11ee-8c99-0242ac120002"));
        assert!(plain_id(&body_digest(b"{}")));
        assert!(plain_id("01DFPNA3MUANR8D1DNVW5EKEIF"));
        assert!(!plain_id(&"a".repeat(129)));
        assert!(!plain_id("a/b"));
        assert!(!plain_id("id with spaces"));
        assert!(!plain_id(""));
    }

    #[test]
    fn json_check_rejects_invalid_utf8_even_inside_an_ignored_string() {
        assert!(matches!(
            check_json_object(b"{\"a\":\"\xff\xfe\"}"),
            Err(BodyError::NotJson(_))
        ));
        assert!(check_json_object("{\"a\":\"\u{e9}\"}".as_bytes()).is_ok());
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

    #[test]
    fn secret_variables_follow_the_name() {
        assert_eq!(secret_env_var("github"), "EM_AGENT_GITHUB_SECRET");
        assert_eq!(secret_env_var("aws-ecs"), "EM_AGENT_AWS_ECS_SECRET");
    }
}
