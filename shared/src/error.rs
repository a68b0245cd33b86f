//! The errors a client can see, and the one place that maps them to HTTP status codes and JSON bodies.

use serde_json::json;

use crate::ports::PortError;
use crate::providers::{AuthError, BodyError};

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
    #[error("{0}")]
    BadBody(#[from] BodyError),
    #[error("invalid query parameter {name:?}: {message}")]
    BadParameter { name: String, message: String },
    #[error("not found: {0}")]
    NotFound(String),
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
            ApiError::Unauthorized(_) | ApiError::Unauthenticated(_) => 401,
            ApiError::PayloadTooLarge { .. } => 413,
            ApiError::BadBody(_) | ApiError::BadParameter { .. } => 400,
            // Providers retry on 5xx: a delivery we could not store durably must be sent again.
            ApiError::Unavailable(_) => 503,
        }
    }

    pub fn body(&self) -> serde_json::Value {
        json!({ "error": self.to_string() })
    }
}
