//! The metrics API: `GET /v1/metrics/dora?service=S|team=T&from=..&to=..&group_by=..` and
//! `GET /v1/metrics/dora/series?interval=day|week|month&...`; the delivery metrics (deployment success
//! rate, build duration, pull request cycle time) at `GET /v1/metrics/delivery` and
//! `GET /v1/metrics/delivery/series`, and the incident metrics (every incident: time to acknowledge and to
//! resolve, incidents per deployment) at `GET /v1/metrics/incidents` and its `/series`, with the same
//! parameters.

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use em_core::config::{Config, ConfigurationStatus, FIGURES_CONFIG_KEY, REBUILD_KEY};
use em_core::error::ApiError;
use em_core::ports::{MetricsReader, SecretSource};
use em_core::time::Millis;
use em_metrics::delivery::DeliveryFigures;
use em_metrics::dora::{compute, DoraReport, Scope, Window};
use em_metrics::incidents::IncidentFigures;
use em_metrics::query::{groups, groups_of, series_of, Bucket, Group, GroupBy, Interval};
use serde::Serialize;

/// When `from` is not given, the window is the 30 days before `to`.
pub const DEFAULT_WINDOW_DAYS: i64 = 30;

/// The longest window one query reads: five years (a year costs one read per service and active day).
pub const MAX_WINDOW_DAYS: i64 = 1_830;

/// Instants a query may name: from 1970-01-01 to 2100-01-01 (UTC), the range facts are kept in.
pub const EARLIEST: Millis = 0;
pub const LATEST: Millis = 4_102_444_800_000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoraQuery {
    pub service: Option<String>,
    pub team: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// `service`, `repository` or `environment` (the window endpoint).
    pub group_by: Option<String>,
    /// `day`, `week` or `month` (the series endpoint).
    pub interval: Option<String>,
}

/// Which endpoint a query is for: each takes its own parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Window,
    Series,
}

impl DoraQuery {
    /// Parses a raw query string of the window endpoint.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        Self::parse_for(Endpoint::Window, raw)
    }

    /// Parses a raw query string. Unknown or repeated parameters are errors, so a typo never silently widens
    /// the scope to every service.
    pub fn parse_for(endpoint: Endpoint, raw: Option<&str>) -> Result<Self, ApiError> {
        let mut q = DoraQuery::default();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let slot = match (k.as_ref(), endpoint) {
                ("service", _) => &mut q.service,
                ("team", _) => &mut q.team,
                ("from", _) => &mut q.from,
                ("to", _) => &mut q.to,
                ("group_by", Endpoint::Window) => &mut q.group_by,
                ("interval", Endpoint::Series) => &mut q.interval,
                (other, Endpoint::Window) => {
                    return Err(ApiError::bad_parameter(
                        other,
                        "unknown parameter (expected service, team, from, to, group_by)",
                    ))
                }
                (other, Endpoint::Series) => {
                    return Err(ApiError::bad_parameter(
                        other,
                        "unknown parameter (expected interval, service, team, from, to)",
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
    for (name, t) in [("from", from), ("to", to)] {
        if !(EARLIEST..=LATEST).contains(&t) {
            return Err(ApiError::bad_parameter(
                name,
                "must be between 1970-01-01 and 2100-01-01",
            ));
        }
    }
    if from >= to {
        return Err(ApiError::bad_parameter("to", "must be after from"));
    }
    if to - from > MAX_WINDOW_DAYS * 86_400_000 {
        return Err(ApiError::bad_parameter(
            "from",
            format!("the window is longer than {MAX_WINDOW_DAYS} days: ask for a shorter one"),
        ));
    }
    Ok(Window {
        from,
        to,
        from_text: q.from.clone().unwrap_or_else(|| rfc3339(from)),
        to_text: q.to.clone().unwrap_or_else(|| rfc3339(to)),
    })
}

/// Most buckets one series answers (three years of days).
pub const MAX_BUCKETS: usize = 1_100;

/// The services a query's scope names (`None`: every service).
fn services_in_scope(config: &Config, q: &DoraQuery) -> Result<Option<Vec<String>>, ApiError> {
    match (&q.service, &q.team) {
        (Some(_), Some(_)) => Err(ApiError::bad_parameter(
            "team",
            "give service or team, not both",
        )),
        (Some(s), None) => Ok(Some(vec![s.clone()])),
        (None, Some(t)) if !config.has_team(t) => Err(ApiError::bad_parameter(
            "team",
            format!("no service in the configuration has team {t:?}"),
        )),
        (None, Some(t)) => Ok(Some(config.services_of_team(t))),
        (None, None) => Ok(None),
    }
}

async fn configuration<R: MetricsReader>(
    reader: &R,
    config: &Config,
) -> Result<ConfigurationStatus, ApiError> {
    let reflected = reader.read_meta(FIGURES_CONFIG_KEY.into()).await?;
    let rebuild = match reflected.as_deref() == Some(config.fingerprint().as_str()) {
        true => None,
        false => reader.read_meta(REBUILD_KEY.into()).await?,
    };
    Ok(config.status(reflected.as_deref(), rebuild.as_deref()))
}

/// A breakdown by service lists every configured service and at most `max_unmapped_services` others; the
/// rest are one group, `unmapped`.
fn cap_unmapped_services(
    obs: &mut em_core::rows::Observations,
    config: &Config,
    group_by: Option<GroupBy>,
) {
    if group_by == Some(GroupBy::Service) {
        em_metrics::query::cap_unmapped(
            obs,
            |s| config.is_configured(s),
            config.max_unmapped_services(),
        );
    }
}

/// The answer of `GET /v1/services`: the configured services, and the names facts came from that no service
/// maps (each counted as a service of its own, up to `max_unmapped_services`), so that a user can map them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServicesAnswer {
    pub services: Vec<ConfiguredService>,
    pub unmapped: Unmapped,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfiguredService {
    pub name: String,
    pub team: Option<String>,
    pub repositories: Vec<String>,
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unmapped {
    /// How many names no service maps.
    pub count: usize,
    /// Shown on their own beyond this many they count together as `unmapped`.
    pub shown_on_their_own: usize,
    /// The repositories no service maps, in name order (at most `limit`).
    pub repositories: Vec<String>,
    /// The incident services no service maps, in name order (at most `limit`).
    pub incident_services: Vec<String>,
    /// Whether a list was cut at `limit`.
    pub truncated: bool,
}

/// The most names `/v1/services` lists of each kind.
pub const UNMAPPED_LIST_LIMIT: usize = 1000;

pub async fn services<R: MetricsReader>(
    reader: &R,
    config: &Config,
) -> Result<ServicesAnswer, ApiError> {
    let sources = reader.sources().await?;
    let unmapped = |names: Vec<String>, service_of: &dyn Fn(&str) -> String| -> Vec<String> {
        let mut out: Vec<String> = names
            .into_iter()
            .filter(|n| !config.is_configured(&service_of(n)))
            .collect();
        out.sort();
        out.dedup();
        out
    };
    let repositories = unmapped(sources.repositories, &|r| config.service_for_repo(r));
    let incident_services = unmapped(sources.incident_services, &|n| config.service_for_alias(n));
    let count = repositories.len() + incident_services.len();
    let truncated = repositories.len().max(incident_services.len()) > UNMAPPED_LIST_LIMIT;
    let cut = |mut v: Vec<String>| {
        v.truncate(UNMAPPED_LIST_LIMIT);
        v
    };
    Ok(ServicesAnswer {
        services: config
            .services()
            .iter()
            .map(|s| ConfiguredService {
                name: s.name.clone(),
                team: s.team.clone(),
                repositories: s.repositories.clone(),
                aliases: s.aliases.clone(),
            })
            .collect(),
        unmapped: Unmapped {
            count,
            shown_on_their_own: config.max_unmapped_services(),
            repositories: cut(repositories),
            incident_services: cut(incident_services),
            truncated,
        },
    })
}

fn group_by(q: &DoraQuery) -> Result<Option<GroupBy>, ApiError> {
    match &q.group_by {
        None => Ok(None),
        Some(g) => Ok(Some(GroupBy::parse(g).ok_or_else(|| {
            ApiError::bad_parameter("group_by", "expected service, repository or environment")
        })?)),
    }
}

/// A series query's interval and window, refused when it has too many buckets.
fn series_window(q: &DoraQuery, now: Millis) -> Result<(Interval, Window), ApiError> {
    let interval = match &q.interval {
        None => {
            return Err(ApiError::bad_parameter(
                "interval",
                "is required: day, week or month",
            ))
        }
        Some(i) => Interval::parse(i)
            .ok_or_else(|| ApiError::bad_parameter("interval", "expected day, week or month"))?,
    };
    let window = window(q, now)?;
    if interval.count(window.from, window.to) > MAX_BUCKETS {
        return Err(ApiError::bad_parameter(
            "interval",
            format!("the window has more than {MAX_BUCKETS} buckets of it: take a longer interval or a shorter window"),
        ));
    }
    Ok((interval, window))
}

/// The answer of `GET /v1/metrics/dora`: the window's figures, each group's with `group_by`, and which
/// configuration they reflect.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowAnswer {
    #[serde(flatten)]
    pub report: DoraReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by: Option<GroupBy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<Group>>,
    pub configuration: ConfigurationStatus,
}

impl std::ops::Deref for WindowAnswer {
    type Target = DoraReport;
    fn deref(&self) -> &DoraReport {
        &self.report
    }
}

pub async fn dora<R: MetricsReader>(
    reader: &R,
    config: &Config,
    q: DoraQuery,
    now: Millis,
) -> Result<WindowAnswer, ApiError> {
    let window = window(&q, now)?;
    let group_by = group_by(&q)?;
    let services = services_in_scope(config, &q)?;
    let mut obs = reader
        .observations(services, window.from, window.to)
        .await?;
    cap_unmapped_services(&mut obs, config, group_by);
    let groups = group_by.map(|by| groups(&obs, window.days(), by));
    let report = compute(
        Scope {
            service: q.service,
            team: q.team,
        },
        &window,
        &obs,
    );
    Ok(WindowAnswer {
        report,
        group_by,
        groups,
        configuration: configuration(reader, config).await?,
    })
}

/// The answer of `GET /v1/metrics/dora/series`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesAnswer {
    pub scope: Scope,
    pub from: String,
    pub to: String,
    pub interval: Interval,
    pub buckets: Vec<Bucket>,
    pub configuration: ConfigurationStatus,
}

pub async fn series<R: MetricsReader>(
    reader: &R,
    config: &Config,
    q: DoraQuery,
    now: Millis,
) -> Result<SeriesAnswer, ApiError> {
    let (interval, window) = series_window(&q, now)?;
    let services = services_in_scope(config, &q)?;
    let obs = reader
        .observations(services, window.from, window.to)
        .await?;
    Ok(SeriesAnswer {
        scope: Scope {
            service: q.service,
            team: q.team,
        },
        from: window.from_text.clone(),
        to: window.to_text.clone(),
        interval,
        buckets: em_metrics::query::series(&obs, window.from, window.to, interval),
        configuration: configuration(reader, config).await?,
    })
}

/// The answer of a figures endpoint over a window (`GET /v1/metrics/delivery`, `/v1/metrics/incidents`): the
/// window's figures, each group's with `group_by`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FiguresAnswer<F> {
    pub scope: Scope,
    pub from: String,
    pub to: String,
    #[serde(flatten)]
    pub figures: F,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by: Option<GroupBy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<Group<F>>>,
    pub configuration: ConfigurationStatus,
}

/// The answer of a figures endpoint's series (`…/series`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FiguresSeries<F> {
    pub scope: Scope,
    pub from: String,
    pub to: String,
    pub interval: Interval,
    pub buckets: Vec<Bucket<F>>,
    pub configuration: ConfigurationStatus,
}

pub type DeliveryAnswer = FiguresAnswer<DeliveryFigures>;
pub type DeliverySeriesAnswer = FiguresSeries<DeliveryFigures>;
pub type IncidentsAnswer = FiguresAnswer<IncidentFigures>;
pub type IncidentsSeriesAnswer = FiguresSeries<IncidentFigures>;

/// Which observations a figures endpoint reads.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The linked rows' days.
    Days,
    /// The days with the delivery facts read for the query ([`em_metrics::delivery`]).
    WithDelivery,
}

async fn observations_for<R: MetricsReader>(
    reader: &R,
    config: &Config,
    source: Source,
    services: Option<Vec<String>>,
    from: Millis,
    to: Millis,
) -> Result<em_core::rows::Observations, ApiError> {
    Ok(match source {
        Source::Days => reader.observations(services, from, to).await?,
        Source::WithDelivery => {
            em_metrics::delivery::with_day_observations(reader, config, services, from, to).await?
        }
    })
}

/// A figures endpoint: `summary` of the window's observations, and of each group's.
async fn figures_answer<R: MetricsReader, F>(
    reader: &R,
    config: &Config,
    q: DoraQuery,
    now: Millis,
    source: Source,
    summary: fn(&em_core::rows::Observations, f64) -> F,
) -> Result<FiguresAnswer<F>, ApiError> {
    let window = window(&q, now)?;
    let group_by = group_by(&q)?;
    let services = services_in_scope(config, &q)?;
    let mut obs =
        observations_for(reader, config, source, services, window.from, window.to).await?;
    cap_unmapped_services(&mut obs, config, group_by);
    Ok(FiguresAnswer {
        figures: summary(&obs, window.days()),
        groups: group_by.map(|by| groups_of(&obs, window.days(), by, summary)),
        group_by,
        scope: Scope {
            service: q.service,
            team: q.team,
        },
        from: window.from_text,
        to: window.to_text,
        configuration: configuration(reader, config).await?,
    })
}

/// A figures endpoint's series: `summary` of each bucket's observations.
async fn figures_series<R: MetricsReader, F>(
    reader: &R,
    config: &Config,
    q: DoraQuery,
    now: Millis,
    source: Source,
    summary: fn(&em_core::rows::Observations, f64) -> F,
) -> Result<FiguresSeries<F>, ApiError> {
    let (interval, window) = series_window(&q, now)?;
    let services = services_in_scope(config, &q)?;
    let obs = observations_for(reader, config, source, services, window.from, window.to).await?;
    Ok(FiguresSeries {
        buckets: series_of(&obs, window.from, window.to, interval, summary),
        scope: Scope {
            service: q.service,
            team: q.team,
        },
        from: window.from_text.clone(),
        to: window.to_text.clone(),
        interval,
        configuration: configuration(reader, config).await?,
    })
}

pub async fn delivery<R: MetricsReader>(
    reader: &R,
    config: &Config,
    q: DoraQuery,
    now: Millis,
) -> Result<DeliveryAnswer, ApiError> {
    let summary = em_metrics::delivery::figures;
    figures_answer(reader, config, q, now, Source::WithDelivery, summary).await
}

pub async fn delivery_series<R: MetricsReader>(
    reader: &R,
    config: &Config,
    q: DoraQuery,
    now: Millis,
) -> Result<DeliverySeriesAnswer, ApiError> {
    let summary = em_metrics::delivery::figures;
    figures_series(reader, config, q, now, Source::WithDelivery, summary).await
}

pub async fn incidents<R: MetricsReader>(
    reader: &R,
    config: &Config,
    q: DoraQuery,
    now: Millis,
) -> Result<IncidentsAnswer, ApiError> {
    let summary = em_metrics::incidents::figures;
    figures_answer(reader, config, q, now, Source::Days, summary).await
}

pub async fn incidents_series<R: MetricsReader>(
    reader: &R,
    config: &Config,
    q: DoraQuery,
    now: Millis,
) -> Result<IncidentsSeriesAnswer, ApiError> {
    let summary = em_metrics::incidents::figures;
    figures_series(reader, config, q, now, Source::Days, summary).await
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3_000))]

        /// Whatever a client puts in the query string, the parser and the window answer, and a refusal
        /// is a 4xx, never a 5xx or a panic.
        #[test]
        fn any_query_string_is_answered_or_refused_with_a_4xx(
            raw in "([a-z_]{0,10}=[^&]{0,30}&?){0,6}",
            junk in ".{0,60}",
            series in proptest::prelude::any::<bool>(),
        ) {
            for q in [raw.as_str(), junk.as_str()] {
                let endpoint = if series { Endpoint::Series } else { Endpoint::Window };
                match DoraQuery::parse_for(endpoint, Some(q)) {
                    Ok(query) => {
                        if let Err(e) = window(&query, 1_764_547_200_000) {
                            proptest::prop_assert!(e.status() < 500, "{q}: {e}");
                        }
                    }
                    Err(e) => proptest::prop_assert!(e.status() < 500, "{q}: {e}"),
                }
            }
        }
    }

    #[test]
    fn windows_are_bounded_in_time_and_length() {
        let q = |from: &str, to: &str| DoraQuery {
            from: Some(from.into()),
            to: Some(to.into()),
            ..DoraQuery::default()
        };
        let now = 1_764_547_200_000;
        for (from, to, name) in [
            ("2025-01-01", "10000-01-01T00:00:00Z", "\"to\""),
            ("1969-12-31", "2025-01-01", "\"from\""),
            ("2025-01-01", "2100-01-02", "\"to\""),
            ("2015-01-01", "2025-01-01", "\"from\""),
        ] {
            let e = window(&q(from, to), now).expect_err(from);
            assert_eq!(e.status(), 400, "{from}..{to}");
            assert!(e.to_string().contains(name), "{from}..{to}: {e}");
        }
        assert!(window(&q("2021-01-01", "2025-12-31"), now).is_ok());
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

/// A metrics endpoint: the same ones behind the local server and the Lambda function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Services,
    Dora,
    DoraSeries,
    Delivery,
    DeliverySeries,
    Incidents,
    IncidentsSeries,
}

/// The metrics API's routes, each `GET`: what both front doors serve, and all that they serve of it.
pub const ROUTES: &[(&str, Route)] = &[
    ("/v1/services", Route::Services),
    ("/v1/metrics/dora", Route::Dora),
    ("/v1/metrics/dora/series", Route::DoraSeries),
    ("/v1/metrics/delivery", Route::Delivery),
    ("/v1/metrics/delivery/series", Route::DeliverySeries),
    ("/v1/metrics/incidents", Route::Incidents),
    ("/v1/metrics/incidents/series", Route::IncidentsSeries),
];

/// The answer of `route` to the raw query string `raw`, as JSON: the one dispatch of both front doors.
pub async fn answer<R: MetricsReader>(
    reader: &R,
    config: &Config,
    route: Route,
    raw: Option<&str>,
    now: Millis,
) -> Result<serde_json::Value, ApiError> {
    let value = match route {
        Route::Services => {
            if raw.is_some_and(|q| !q.is_empty()) {
                return Err(ApiError::bad_parameter(
                    "query",
                    "/v1/services takes no parameters",
                ));
            }
            serde_json::to_value(services(reader, config).await?)
        }
        Route::Dora => {
            serde_json::to_value(dora(reader, config, DoraQuery::parse(raw)?, now).await?)
        }
        Route::DoraSeries => {
            let q = DoraQuery::parse_for(Endpoint::Series, raw)?;
            serde_json::to_value(series(reader, config, q, now).await?)
        }
        Route::Delivery => {
            serde_json::to_value(delivery(reader, config, DoraQuery::parse(raw)?, now).await?)
        }
        Route::DeliverySeries => {
            let q = DoraQuery::parse_for(Endpoint::Series, raw)?;
            serde_json::to_value(delivery_series(reader, config, q, now).await?)
        }
        Route::Incidents => {
            serde_json::to_value(incidents(reader, config, DoraQuery::parse(raw)?, now).await?)
        }
        Route::IncidentsSeries => {
            let q = DoraQuery::parse_for(Endpoint::Series, raw)?;
            serde_json::to_value(incidents_series(reader, config, q, now).await?)
        }
    };
    value.map_err(|e| ApiError::Unavailable(em_core::ports::PortError::invalid(e)))
}

/// The name the API token goes by in a [`SecretSource`].
pub const API_TOKEN: &str = "api";

pub mod router;
pub use router::{app, protect, router, routes, Api};
