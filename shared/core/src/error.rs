//! Typed errors: what a delivery can get wrong ([`AuthError`], [`BodyError`], [`ParseError`]) and what a
//! client can see ([`ApiError`]), mapped to HTTP status codes and JSON bodies in one place.

use serde_json::json;

use crate::ports::{PortError, PortErrorKind};

/// Why a delivery is not authentic. The text names the header at fault, never a secret.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("{0} is malformed")]
    Malformed(&'static str),
    #[error("{0} does not match")]
    Mismatch(&'static str),
    #[error("{0} is outside the replay window")]
    Stale(&'static str),
    #[error("{0} lists too many signatures")]
    TooManySignatures(&'static str),
    /// No usable secret is configured: nothing is accepted.
    #[error("no secret is configured")]
    NoSecret,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body is not a JSON object")]
    NotObject,
    /// Delivery ids are keys (a DynamoDB key holds at most 2 KB): every provider's are short and plain.
    #[error("the delivery id is not one a provider sends (at most 128 letters, digits, '-', '_', '.', ':')")]
    BadDeliveryId,
    /// A body that breaks a schema EM Agent defines (the generic provider's): the sender's mistake.
    #[error("the body does not follow the schema: {0}")]
    Schema(String),
}

/// A payload of a known event that lacks what the event must carry.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{provider} {event}: {message}")]
pub struct ParseError {
    pub provider: &'static str,
    pub event: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unknown provider {0:?}")]
    UnknownProvider(String),
    #[error("provider {provider:?} is not enabled: {hint}")]
    ProviderDisabled { provider: String, hint: String },
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    #[error("unauthorized: {0}")]
    Unauthorized(#[from] AuthError),
    #[error("body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the body did not arrive within {seconds} s")]
    BodyTimeout { seconds: u64 },
    #[error("{0}")]
    BadBody(#[from] BodyError),
    #[error("invalid query parameter {name:?}: {message}")]
    BadParameter { name: String, message: String },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("temporarily unavailable, retry later: {0}")]
    Unavailable(#[from] PortError),
}

impl ApiError {
    pub fn bad_parameter(name: &str, message: impl Into<String>) -> Self {
        ApiError::BadParameter {
            name: name.to_string(),
            message: message.into(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::UnknownProvider(_) | ApiError::ProviderDisabled { .. } => 404,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed => 405,
            ApiError::Unauthorized(_) | ApiError::Unauthenticated(_) => 401,
            ApiError::PayloadTooLarge { .. } => 413,
            ApiError::BodyTimeout { .. } => 408,
            ApiError::BadBody(_) | ApiError::BadParameter { .. } => 400,
            ApiError::Unavailable(e) => match e.kind {
                // Providers retry on 5xx: a delivery we could not store durably must be sent again.
                PortErrorKind::Transient | PortErrorKind::Conflict => 503,
                PortErrorKind::Invalid => 500,
            },
        }
    }

    /// What a client may read: the error itself for a 4xx; for a 5xx, only that it failed and a request id
    /// (the infrastructure's own message names tables, queues and accounts, and is logged under that id).
    pub fn body(&self) -> serde_json::Value {
        match self {
            ApiError::Unavailable(e) => {
                let request_id = uuid::Uuid::new_v4().simple().to_string();
                tracing::error!(%request_id, kind = ?e.kind, error = %e, "request failed");
                let error = match self.status() {
                    503 => "temporarily unavailable, retry later",
                    _ => "internal error",
                };
                json!({ "error": error, "request_id": request_id })
            }
            _ => json!({ "error": self.to_string() }),
        }
    }

    /// The answer to the client: the status, the JSON body, and the challenge of a 401.
    pub fn response(&self) -> http::Response<String> {
        let mut r = crate::http::json_response(self.status(), &self.body());
        if matches!(self, ApiError::Unauthenticated(_)) {
            r.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_errors_map_by_kind() {
        let e = ApiError::from(PortError::transient("timed out"));
        assert_eq!(e.status(), 503);
        assert_eq!(ApiError::from(PortError::conflict("raced")).status(), 503);
        assert_eq!(ApiError::from(PortError::invalid("bad row")).status(), 500);
        let r = ApiError::Unauthenticated("no token").response();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[http::header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(r.headers()[http::header::CONTENT_TYPE], "application/json");
        let body: serde_json::Value = serde_json::from_str(r.body()).unwrap();
        assert_eq!(body["error"], "unauthenticated: no token");
    }

    #[test]
    fn a_5xx_says_nothing_internal_and_gives_a_request_id() {
        let arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/em-agent-prod";
        for e in [PortError::invalid(arn), PortError::transient(arn)] {
            let r = ApiError::from(e).response();
            assert!(r.status().is_server_error());
            assert!(!r.body().contains("arn:") && !r.body().contains("123456789012"));
            let body: serde_json::Value = serde_json::from_str(r.body()).unwrap();
            assert_eq!(body["request_id"].as_str().map(str::len), Some(32));
        }
    }
}
