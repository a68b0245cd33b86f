//! `em-agent send`: sign a payload file as the provider would and post it.

use std::path::Path;

use em_core::time::now_millis;
use em_providers::Provider;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("unknown provider {0:?} (known: {known})", known = crate::known_providers())]
    UnknownProvider(String),
    #[error("no secret: pass --secret or set {0}")]
    NoSecret(String),
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0} is a delivery of {1}, not of {2}")]
    WrongProvider(String, String, String),
    #[error("bad header {0:?}")]
    BadHeader(String),
    #[error("cannot post to {url}: {source} (is em-agent serve running there?)")]
    Http { url: String, source: reqwest::Error },
}

/// A file to send: a raw payload, or a recorded delivery `{"provider", "headers", "body"}`.
pub struct Prepared {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

fn fresh_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn prepare(
    provider: &str,
    file: &Path,
    event: Option<&str>,
) -> Result<(Prepared, &'static Provider), SendError> {
    let p = em_providers::by_name(provider)
        .ok_or_else(|| SendError::UnknownProvider(provider.to_string()))?;
    let raw = std::fs::read(file).map_err(|e| SendError::Read(file.display().to_string(), e))?;
    let recorded = serde_json::from_slice::<serde_json::Value>(&raw)
        .ok()
        .filter(|v| v.get("headers").is_some() && v.get("body").is_some_and(|b| b.is_string()));
    let prepared = match recorded {
        Some(v) => {
            if let Some(other) = v.get("provider").and_then(|p| p.as_str()) {
                if other != provider {
                    return Err(SendError::WrongProvider(
                        file.display().to_string(),
                        other.into(),
                        provider.into(),
                    ));
                }
            }
            let headers = v["headers"]
                .as_object()
                .map(|h| {
                    h.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            Prepared {
                headers,
                body: v["body"].as_str().unwrap_or_default().as_bytes().to_vec(),
            }
        }
        None => {
            let payload: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
            Prepared {
                headers: p.delivery_headers(&payload, event, &fresh_id()),
                body: raw,
            }
        }
    };
    Ok((prepared, p))
}

pub fn endpoint(url: &str, provider: &str) -> String {
    if url.contains("/webhooks/") {
        url.to_string()
    } else {
        format!("{}/webhooks/{provider}", url.trim_end_matches('/'))
    }
}

pub async fn send(
    client: &reqwest::Client,
    url: &str,
    p: &Provider,
    secret: &[u8],
    prepared: Prepared,
) -> Result<(u16, String), SendError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let signed = p.sign(secret, &prepared.body, now_millis());
    for (k, v) in prepared.headers.into_iter().chain(signed) {
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|_| SendError::BadHeader(k.clone()))?;
        let value = HeaderValue::from_str(&v).map_err(|_| SendError::BadHeader(k.clone()))?;
        headers.insert(name, value);
    }
    let url = endpoint(url, p.name);
    let http = |source| SendError::Http {
        url: url.clone(),
        source,
    };
    let resp = client
        .post(&url)
        .headers(headers)
        .body(prepared.body)
        .send()
        .await
        .map_err(http)?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.map_err(http)?))
}
