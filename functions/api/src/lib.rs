//! The metrics API: `GET /v1/metrics/dora?service=S|team=T&from=..&to=..`.

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use em_core::config::Config;
use em_core::error::ApiError;
use em_core::ports::{SecretSource, Store};
use em_core::time::Millis;
use em_metrics::dora::{compute, DoraReport, Scope, Window};

/// When `from` is not given, the window is the 30 days before `to`.
pub const DEFAULT_WINDOW_DAYS: i64 = 30;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoraQuery {
    pub service: Option<String>,
    pub team: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl DoraQuery {
    /// Parses a raw query string. Unknown or repeated parameters are errors, so a typo never silently widens
    /// the scope to every service.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let mut q = DoraQuery::default();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let slot = match k.as_ref() {
                "service" => &mut q.service,
                "team" => &mut q.team,
                "from" => &mut q.from,
                "to" => &mut q.to,
                other => {
                    return Err(ApiError::bad_parameter(
                        other,
                        "unknown parameter (expected service, team, from, to)",
                    ))
                }
            };
            if slot.is_some() {
                return Err(ApiError::bad_parameter(&k, "given more than once"));
            }
            if v.is_empty() {
                return Err(ApiError::bad_parameter(&k, "is empty"));
            }
            *slot = Some(v.into_owned());
        }
        Ok(q)
    }
}

/// RFC 3339, or a bare `YYYY-MM-DD` meaning 00:00 UTC of that day.
pub fn parse_instant(name: &str, raw: &str) -> Result<Millis, ApiError> {
    if let Ok(d) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(Utc.from_utc_datetime(&t).timestamp_millis());
        }
    }
    let parsed = DateTime::parse_from_rfc3339(raw).or_else(|e| {
        // An unencoded `+` in an offset arrives as a space: accept what the user meant.
        match raw.rfind(' ') {
            Some(i) if i > 10 => {
                DateTime::parse_from_rfc3339(&format!("{}+{}", &raw[..i], &raw[i + 1..]))
            }
            _ => Err(e),
        }
    });
    parsed.map(|t| t.timestamp_millis()).map_err(|_| {
        ApiError::bad_parameter(
            name,
            format!("{raw:?} is neither RFC 3339 (2025-03-01T00:00:00Z) nor a date (2025-03-01)"),
        )
    })
}

fn rfc3339(ms: Millis) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Resolves the window: `to` defaults to now, `from` to 30 days before `to`.
pub fn window(q: &DoraQuery, now: Millis) -> Result<Window, ApiError> {
    let to = match &q.to {
        Some(t) => parse_instant("to", t)?,
        None => now,
    };
    let from = match &q.from {
        Some(f) => parse_instant("from", f)?,
        None => to - DEFAULT_WINDOW_DAYS * 86_400_000,
    };
    if from >= to {
        return Err(ApiError::bad_parameter("to", "must be after from"));
    }
    Ok(Window {
        from,
        to,
        from_text: q.from.clone().unwrap_or_else(|| rfc3339(from)),
        to_text: q.to.clone().unwrap_or_else(|| rfc3339(to)),
    })
}

pub async fn dora<S: Store>(
    store: &S,
    config: &Config,
    q: DoraQuery,
    now: Millis,
) -> Result<DoraReport, ApiError> {
    let window = window(&q, now)?;
    let services = match (&q.service, &q.team) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_parameter(
                "team",
                "give service or team, not both",
            ))
        }
        (Some(s), None) => Some(vec![s.clone()]),
        (None, Some(t)) if !config.has_team(t) => {
            return Err(ApiError::bad_parameter(
                "team",
                format!("no service in the configuration has team {t:?}"),
            ))
        }
        (None, Some(t)) => Some(config.services_of_team(t)),
        (None, None) => None,
    };
    let rows = store.window_rows(services, window.from, window.to).await?;
    Ok(compute(
        Scope {
            service: q.service,
            team: q.team,
        },
        &window,
        rows,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_errors_name_the_parameter() {
        let e = DoraQuery::parse(Some("servce=x")).unwrap_err();
        assert!(e.to_string().contains("\"servce\""), "{e}");
        assert_eq!(e.status(), 400);
        let e = DoraQuery::parse(Some("team=a&team=b")).unwrap_err();
        assert!(e.to_string().contains("\"team\""));
        let q = DoraQuery::parse(Some("service=Shared%20Postgres&from=2025-04-02")).unwrap();
        assert_eq!(q.service.as_deref(), Some("Shared Postgres"));
        let e = window(
            &DoraQuery {
                from: Some("yesterday".into()),
                ..Default::default()
            },
            0,
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"from\""));
    }

    #[test]
    fn instants_accept_dates_offsets_and_a_decoded_plus() {
        let a = parse_instant("from", "2025-03-23T02:00:00+02:00").unwrap();
        let b = parse_instant("from", "2025-03-23T02:00:00 02:00").unwrap();
        let c = parse_instant("from", "2025-03-23").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn default_window_is_thirty_days_to_now() {
        let w = window(&DoraQuery::default(), 40 * 86_400_000).unwrap();
        assert_eq!(w.days(), 30.0);
        assert!(window(
            &DoraQuery {
                from: Some("2025-01-02".into()),
                to: Some("2025-01-01".into()),
                ..Default::default()
            },
            0
        )
        .is_err());
    }
}

/// Checks `Authorization: Bearer <token>` against the accepted tokens (the current one, and the previous
/// one during a rotation), in constant time.
pub async fn authenticate<T: SecretSource>(
    tokens: &T,
    headers: &http::HeaderMap,
) -> Result<(), ApiError> {
    use em_providers::{Auth, AuthError, Clock};
    const SEND_TOKEN: &str = "send the API token as Authorization: Bearer <token>";
    // A request without credentials is answered before the tokens are fetched.
    if !headers.contains_key(http::header::AUTHORIZATION) {
        return Err(ApiError::Unauthenticated(SEND_TOKEN));
    }
    // No token configured is a closed API, never an open one.
    let accepted = tokens.secrets(API_TOKEN).await?.unwrap_or_default();
    // The same bearer check as the providers': digests compared, so the token's length does not show.
    match Auth::Bearer.verify(headers, b"", &accepted, Clock::at(0)) {
        Ok(()) => Ok(()),
        Err(AuthError::Missing(_) | AuthError::Malformed(_)) => {
            Err(ApiError::Unauthenticated(SEND_TOKEN))
        }
        Err(_) => Err(ApiError::Unauthenticated("the API token is not valid")),
    }
}

/// The name the API token goes by in a [`SecretSource`].
pub const API_TOKEN: &str = "api";

/// The Lambda side: `GET /v1/metrics/dora` through API Gateway.
pub mod lambda {
    use super::*;
    use lambda_http::{Body, Request, Response};

    /// `tokens`: where the accepted API tokens are; `None` only where the network already restricts
    /// callers (an IAM-authorised route).
    pub async fn handle<S: Store, T: SecretSource>(
        store: &S,
        config: &Config,
        tokens: Option<&T>,
        req: Request,
        now: Millis,
    ) -> Response<Body> {
        let result = async {
            if let Some(t) = tokens {
                authenticate(t, req.headers()).await?;
            }
            let q = DoraQuery::parse(req.uri().query())?;
            dora(store, config, q, now).await
        }
        .await;
        let response = match result.and_then(|report| {
            serde_json::to_value(&report)
                .map_err(|e| ApiError::Unavailable(em_core::ports::PortError::invalid(e)))
        }) {
            Ok(report) => em_core::http::json_response(200, &report),
            Err(e) => {
                if e.status() >= 500 {
                    tracing::error!(error = %e, "query failed");
                }
                e.response()
            }
        };
        response.map(Body::from)
    }
}
