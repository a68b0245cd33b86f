//! `em-agent parse`: the facts one payload becomes, as JSON lines in the documented fact format
//! (`docs/facts.md`), without authentication.

use std::path::Path;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::send;

#[derive(Debug, thiserror::Error)]
pub enum ParseCommandError {
    #[error(transparent)]
    Load(#[from] send::SendError),
    #[error("cannot read the headers file {0}: {1}")]
    HeadersFile(String, String),
    #[error("bad header {0:?}")]
    BadHeader(String),
    #[error("{0}")]
    Body(#[from] em_providers::BodyError),
    #[error("{0}")]
    Parse(#[from] em_providers::ParseError),
}

/// A headers file: a JSON object of header name to value, as the provider sends them.
fn read_headers(path: &Path) -> Result<Vec<(String, String)>, ParseCommandError> {
    let bad = |e: String| ParseCommandError::HeadersFile(path.display().to_string(), e);
    let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            other => Err(bad(format!("{k}: {other} is not a string"))),
        })
        .collect()
}

/// The facts of `file` (a raw payload or a recorded delivery) as JSON lines.
pub fn run(
    provider: &str,
    file: &Path,
    headers_file: Option<&Path>,
    event: Option<&str>,
) -> Result<Vec<String>, ParseCommandError> {
    let (prepared, p) = send::prepare(provider, file, event)?;
    let mut headers = HeaderMap::new();
    let extra = match headers_file {
        Some(f) => read_headers(f)?,
        None => Vec::new(),
    };
    // The headers file wins over what the file itself carries or what was guessed.
    for (k, v) in prepared.headers.into_iter().chain(extra) {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| ParseCommandError::BadHeader(k.clone()))?;
        let value =
            HeaderValue::from_str(&v).map_err(|_| ParseCommandError::BadHeader(k.clone()))?;
        headers.insert(name, value);
    }
    let inspection = p.inspect(&headers, &prepared.body)?;
    let event = event.map(str::to_string).or(inspection.event);
    let facts = p.parse(event.as_deref(), &prepared.body)?;
    Ok(facts
        .iter()
        .map(|f| serde_json::to_string(f).unwrap_or_default())
        .collect())
}
