//! `em-agent.toml`: which repositories and incident services make up each service, and the metric settings.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde::Deserialize;

use crate::calendar::{self, Period, Tz};
use crate::time::Millis;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub repositories: Vec<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Builds of this service that are deployments; when empty, the top-level `deploy` rules apply.
    #[serde(default)]
    pub deploy: Vec<DeployRule>,
}

/// Which finished builds (CI workflows, jobs, pipelines) are deployments, and where they deploy.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeployRule {
    /// The build's name: `*` matches any run of characters, compared without letter case.
    pub pattern: String,
    /// The provider whose builds it reads (`circleci`, `github`, ...); every provider's when absent.
    #[serde(default)]
    pub provider: Option<String>,
    /// The environment its deployments go to.
    #[serde(default = "production")]
    pub environment: String,
}

fn production() -> String {
    "production".into()
}

/// The deploy rules without any in the configuration: builds whose name says `deploy` are production
/// deployments, for the CI providers that report no deployments of their own (CircleCI workflows and jobs,
/// Jenkins jobs). GitHub's and GitLab's workflows and pipelines are left out: their deployments come from
/// the deployment events, and a rule for them is a choice to make per service
/// (docs/providers/README.md#deployments-from-builds).
pub const DEFAULT_DEPLOY_PROVIDERS: &[&str] = &["circleci", "jenkins"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    production_environments: Option<Vec<String>>,
    #[serde(default)]
    incident_attribution_window: Option<String>,
    #[serde(default)]
    deploy: Option<Vec<DeployRule>>,
    #[serde(default)]
    services: Vec<ServiceConfig>,
    #[serde(default)]
    teams: Vec<TeamConfig>,
    #[serde(default)]
    links: Links,
    #[serde(default)]
    max_unmapped_services: Option<usize>,
    #[serde(default)]
    incidents: IncidentsConfig,
}

/// `[incidents]`: which alerts of a monitoring tool are incidents.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IncidentsConfig {
    /// Per provider, the severities that count (compared letter case aside); alerts that carry no severity
    /// always count. A provider not named here counts its defaults ([`DEFAULT_SEVERITIES`]).
    #[serde(default)]
    pub severities: std::collections::BTreeMap<String, Vec<String>>,
}

/// The severities that count for monitoring tools nobody configured: each tool's highest, so that warnings
/// do not inflate the change failure rate. An incident tool (PagerDuty) or a provider not listed counts
/// every severity.
pub const DEFAULT_SEVERITIES: &[(&str, &[&str])] = &[
    ("alertmanager", &["critical"]),
    ("datadog", &["error"]),
    ("grafana", &["critical"]),
    ("newrelic", &["critical"]),
];

/// Where a digest links a commit or an incident: URL templates. `{repo}`, `{sha}` and `{id}` are replaced.
/// Without `commit`, a commit of a repository deployed through GitHub, GitLab or Bitbucket links to that
/// host's cloud; without `incident`, incidents are named by id only (docs/digests.md).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Links {
    #[serde(default)]
    pub commit: Option<String>,
    #[serde(default)]
    pub incident: Option<String>,
}

impl Links {
    /// The page of commit `sha` of `repo`, which a deployment of `provider` shipped.
    pub fn commit_url(&self, provider: &str, repo: &str, sha: &str) -> Option<String> {
        let template = match (&self.commit, provider) {
            (Some(t), _) => t.as_str(),
            (None, "github") => "https://github.com/{repo}/commit/{sha}",
            (None, "gitlab") => "https://gitlab.com/{repo}/-/commit/{sha}",
            (None, "bitbucket") => "https://bitbucket.org/{repo}/commits/{sha}",
            (None, _) => return None,
        };
        Some(
            template
                .replace("{repo}", &url_value(repo, true))
                .replace("{sha}", &url_value(sha, false)),
        )
    }

    /// The page of incident `id`.
    pub fn incident_url(&self, id: &str) -> Option<String> {
        self.incident
            .as_ref()
            .map(|t| t.replace("{id}", &url_value(id, false)))
    }
}

/// A value put into a link template: percent-encoded, so that a payload's text stays one value of the
/// address (no `?`, `#`, `..` or `@` of its own); a repository's `/` is kept when `keep_slash`, being a
/// path of the address.
fn url_value(value: &str, keep_slash: bool) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const VALUE: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    const PATH: &AsciiSet = &VALUE.remove(b'/');
    let encoded = utf8_percent_encode(value, if keep_slash { PATH } else { VALUE }).to_string();
    // `.` and `..` alone would climb the address's path.
    encoded
        .split('/')
        .map(|part| match part {
            "." => "%2E",
            ".." => "%2E%2E",
            p => p,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Where a team's digests go (docs/digests.md). The channels' addresses (webhook URLs, email addresses, topic
/// ARNs) are secrets, kept out of this file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TeamConfig {
    /// A team of the services, or [`ORGANISATION`] for the digest of every service.
    pub name: String,
    #[serde(default)]
    pub channels: Vec<Channel>,
    /// The IANA time zone the team's days and weeks start in (UTC when absent).
    #[serde(default)]
    pub time_zone: Option<String>,
    /// The digests the schedule sends: weekly by default, daily too when asked.
    #[serde(default = "default_periods")]
    pub periods: Vec<Period>,
    /// The local hour a digest goes out on the first day of the next period.
    #[serde(default = "default_send_hour")]
    pub send_hour: u32,
    /// Real-time notices through the same channels: a production deployment, a rollback, an incident
    /// attributed to a deployment, as the aggregator links them.
    #[serde(default)]
    pub notices: bool,
}

fn default_periods() -> Vec<Period> {
    vec![Period::Week]
}

/// Monday 09:00 (local) for a weekly digest.
pub const DEFAULT_SEND_HOUR: u32 = 9;

fn default_send_hour() -> u32 {
    DEFAULT_SEND_HOUR
}

impl TeamConfig {
    /// The team's time zone; UTC when it names none (an unknown name fails the configuration's parse).
    pub fn tz(&self) -> Tz {
        self.time_zone
            .as_deref()
            .and_then(calendar::time_zone)
            .unwrap_or(calendar::UTC)
    }
}

/// The team name that stands for the whole organisation's digest.
pub const ORGANISATION: &str = "all";

/// A channel a digest can go to.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Slack,
    Teams,
    Email,
    Sns,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Slack, Channel::Teams, Channel::Email, Channel::Sns];

    pub fn parse(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Slack => "slack",
            Channel::Teams => "teams",
            Channel::Email => "email",
            Channel::Sns => "sns",
        }
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters; letter case is ignored.
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.to_lowercase(), name.to_lowercase());
    let parts: Vec<&str> = p.split('*').collect();
    let (first, rest) = match parts.split_first() {
        Some(x) => x,
        None => return n.is_empty(),
    };
    let Some(mut left) = n.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return left.is_empty();
    };
    for part in middle {
        match left.find(part) {
            Some(i) => left = &left[i + part.len()..],
            None => return false,
        }
    }
    left.len() >= last.len() && left.ends_with(last)
}

/// The parsed configuration with lookup indexes.
#[derive(Debug, Clone)]
pub struct Config {
    production_environments: Vec<String>,
    attribution_window: Millis,
    services: Vec<ServiceConfig>,
    /// The deploy rules of services without their own.
    deploy: Vec<DeployRule>,
    teams: Vec<TeamConfig>,
    /// Lower-cased repository full name -> service name (GitHub and GitLab treat paths case-insensitively).
    by_repo: HashMap<String, String>,
    by_alias: HashMap<String, String>,
    links: Links,
    max_unmapped_services: usize,
    incidents: IncidentsConfig,
}

/// Where the figures of services no `[[services]]` entry names are counted together once there are more than
/// `max_unmapped_services` of them (docs/metrics.md): a name no configured service may take.
pub const UNMAPPED: &str = "unmapped";
/// How many unmapped services (repositories and incident services no entry names) are shown on their own.
pub const DEFAULT_MAX_UNMAPPED_SERVICES: usize = 500;

impl Default for Config {
    fn default() -> Self {
        Config::from_services(None, None, None, Vec::new(), Vec::new())
            .unwrap_or_else(|_| unreachable!())
    }
}

pub const DEFAULT_PRODUCTION_ENVIRONMENTS: &[&str] = &["production", "prod"];
pub const DEFAULT_ATTRIBUTION_WINDOW: Millis = 24 * 3600 * 1000;

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text)
    }

    /// The TOML text in `EM_AGENT_CONFIG_TOML` (how a Lambda function gets it), else the file named by
    /// `EM_AGENT_CONFIG`, else the default (every repository its own service).
    pub fn from_env() -> Result<Config, ConfigError> {
        if let Ok(text) = std::env::var("EM_AGENT_CONFIG_TOML") {
            if !text.trim().is_empty() {
                return Config::parse(&text);
            }
        }
        match std::env::var("EM_AGENT_CONFIG") {
            Ok(path) => Config::load(path.as_ref()),
            Err(_) => Ok(Config::default()),
        }
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let window = match raw.incident_attribution_window {
            None => None,
            Some(w) => Some(
                humantime::parse_duration(&w)
                    .map_err(|e| {
                        ConfigError::Invalid(format!("incident_attribution_window {w:?}: {e}"))
                    })?
                    .as_millis() as Millis,
            ),
        };
        let mut config = Config::from_services(
            raw.production_environments,
            window,
            raw.deploy,
            raw.services,
            raw.teams,
        )?;
        config.links = raw.links;
        config.incidents = raw.incidents;
        config.max_unmapped_services = raw
            .max_unmapped_services
            .unwrap_or(DEFAULT_MAX_UNMAPPED_SERVICES);
        Ok(config)
    }

    /// Whether `service` is one of the configuration's `[[services]]`.
    pub fn is_configured(&self, service: &str) -> bool {
        self.services.iter().any(|s| s.name == service)
    }

    /// How many unmapped services are shown on their own; the others count together as [`UNMAPPED`].
    pub fn max_unmapped_services(&self) -> usize {
        self.max_unmapped_services
    }

    /// Where digests link commits and incidents.
    pub fn links(&self) -> &Links {
        &self.links
    }

    fn from_services(
        production_environments: Option<Vec<String>>,
        window: Option<Millis>,
        deploy: Option<Vec<DeployRule>>,
        services: Vec<ServiceConfig>,
        teams: Vec<TeamConfig>,
    ) -> Result<Config, ConfigError> {
        let deploy = deploy.unwrap_or_else(|| {
            DEFAULT_DEPLOY_PROVIDERS
                .iter()
                .map(|p| DeployRule {
                    pattern: "*deploy*".into(),
                    provider: Some((*p).into()),
                    environment: production(),
                })
                .collect()
        });
        for rule in deploy.iter().chain(services.iter().flat_map(|s| &s.deploy)) {
            if rule.pattern.trim().is_empty() || rule.environment.trim().is_empty() {
                return Err(ConfigError::Invalid(
                    "a deploy rule has an empty pattern or environment".into(),
                ));
            }
        }
        let production_environments = production_environments
            .unwrap_or_else(|| {
                DEFAULT_PRODUCTION_ENVIRONMENTS
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            })
            .into_iter()
            .map(|e| e.to_lowercase())
            .collect();
        let mut by_repo = HashMap::new();
        let mut by_alias = HashMap::new();
        let mut names = BTreeSet::new();
        for s in &services {
            if s.name.is_empty() {
                return Err(ConfigError::Invalid("a service has an empty name".into()));
            }
            if s.name == UNMAPPED {
                return Err(ConfigError::Invalid(format!(
                    "a service may not be named {UNMAPPED:?}: that name counts the services no entry names"
                )));
            }
            if !names.insert(s.name.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "service {:?} is defined twice",
                    s.name
                )));
            }
            for r in &s.repositories {
                if let Some(prev) = by_repo.insert(r.to_lowercase(), s.name.clone()) {
                    return Err(ConfigError::Invalid(format!(
                        "repository {r:?} belongs to both {prev:?} and {:?}",
                        s.name
                    )));
                }
            }
            for a in &s.aliases {
                if let Some(prev) = by_alias.insert(a.clone(), s.name.clone()) {
                    return Err(ConfigError::Invalid(format!(
                        "alias {a:?} belongs to both {prev:?} and {:?}",
                        s.name
                    )));
                }
            }
        }
        let mut team_names = BTreeSet::new();
        for t in &teams {
            let known =
                t.name == ORGANISATION || services.iter().any(|s| s.team.as_ref() == Some(&t.name));
            if !known {
                return Err(ConfigError::Invalid(format!(
                    "team {:?} has channels but no service (name a services' team, or {ORGANISATION:?})",
                    t.name
                )));
            }
            if let Some(z) = &t.time_zone {
                if calendar::time_zone(z).is_none() {
                    return Err(ConfigError::Invalid(format!(
                        "team {:?}: time_zone {z:?} is not an IANA time zone (such as \"Europe/Berlin\")",
                        t.name
                    )));
                }
            }
            if t.send_hour > 23 {
                return Err(ConfigError::Invalid(format!(
                    "team {:?}: send_hour {} is not an hour of the day (0 to 23)",
                    t.name, t.send_hour
                )));
            }
            if !team_names.insert(t.name.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "team {:?} is defined twice",
                    t.name
                )));
            }
        }
        Ok(Config {
            production_environments,
            attribution_window: window.unwrap_or(DEFAULT_ATTRIBUTION_WINDOW),
            services,
            deploy,
            teams,
            by_repo,
            by_alias,
            links: Links::default(),
            max_unmapped_services: DEFAULT_MAX_UNMAPPED_SERVICES,
            incidents: IncidentsConfig::default(),
        })
    }

    /// The environment a finished build named `name` of `provider` deploys `repo`'s service to, when a
    /// deploy rule makes it a deployment: the service's own rules, else the top-level ones; the first
    /// that matches.
    pub fn deploy_environment(&self, provider: &str, repo: &str, name: &str) -> Option<&str> {
        let service = self.service_for_repo(repo);
        let rules = self
            .services
            .iter()
            .find(|s| s.name == service && !s.deploy.is_empty())
            .map_or(self.deploy.as_slice(), |s| s.deploy.as_slice());
        rules
            .iter()
            .find(|r| r.provider.as_deref().is_none_or(|p| p == provider) && glob(&r.pattern, name))
            .map(|r| r.environment.as_str())
    }

    /// The service a repository's events belong to; an unmapped repository is its own service.
    pub fn service_for_repo(&self, repo: &str) -> String {
        self.by_repo
            .get(&repo.to_lowercase())
            .cloned()
            // Repository names compare case-insensitively: `Acme/Shop` and `acme/shop` are one service.
            .unwrap_or_else(|| repo.to_lowercase())
    }

    /// The service an incident belongs to, by the provider's service name; unmapped, that name itself.
    pub fn service_for_alias(&self, name: &str) -> String {
        self.by_alias
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }

    /// Repositories whose events belong to `service` (the service's own name when it is unmapped).
    pub fn repositories_of(&self, service: &str) -> Vec<String> {
        match self.services.iter().find(|s| s.name == service) {
            Some(s) => s.repositories.clone(),
            None => vec![service.to_string()],
        }
    }

    /// Incident service names that belong to `service`: its aliases, and its own name unless that is
    /// another service's alias — an incident tool naming the service as `em-agent.toml` does is heard, as
    /// [`Config::service_for_alias`] says.
    pub fn aliases_of(&self, service: &str) -> Vec<String> {
        match self.services.iter().find(|s| s.name == service) {
            Some(s) => {
                let mut names = s.aliases.clone();
                if !self.by_alias.contains_key(&s.name) && !names.contains(&s.name) {
                    names.push(s.name.clone());
                }
                names
            }
            None => vec![service.to_string()],
        }
    }

    pub fn services_of_team(&self, team: &str) -> Vec<String> {
        self.services
            .iter()
            .filter(|s| s.team.as_deref() == Some(team))
            .map(|s| s.name.clone())
            .collect()
    }

    pub fn has_team(&self, team: &str) -> bool {
        self.services
            .iter()
            .any(|s| s.team.as_deref() == Some(team))
    }

    pub fn services(&self) -> &[ServiceConfig] {
        &self.services
    }

    /// The channels `team`'s digests go to ([`ORGANISATION`] for the organisation's); none when unlisted.
    /// The teams (and the organisation) that have digest channels, as configured.
    pub fn teams(&self) -> &[TeamConfig] {
        &self.teams
    }

    /// A team's digest settings, when `[[teams]]` names it.
    pub fn team(&self, name: &str) -> Option<&TeamConfig> {
        self.teams.iter().find(|t| t.name == name)
    }

    pub fn channels_of(&self, team: &str) -> &[Channel] {
        self.teams
            .iter()
            .find(|t| t.name == team)
            .map_or(&[], |t| t.channels.as_slice())
    }

    /// Production when the provider says so, or when the environment's name is listed.
    pub fn is_production(&self, environment: &str, provider_says: Option<bool>) -> bool {
        provider_says == Some(true)
            || self
                .production_environments
                .iter()
                .any(|e| e.eq_ignore_ascii_case(environment))
    }

    pub fn attribution_window(&self) -> Millis {
        self.attribution_window
    }

    /// Whether an alert event of `provider` at `severity` makes its incident count (docs/metrics.md, *Which
    /// alerts are incidents*): the severities configured for the provider, else its defaults, else every
    /// one. `None` for an event without a severity: it has no say (a recovery often carries none).
    pub fn counts_incident(&self, provider: &str, severity: &str) -> Option<bool> {
        if severity.is_empty() {
            return None;
        }
        let matches = |s: &str| s.eq_ignore_ascii_case(severity);
        Some(match self.incidents.severities.get(provider) {
            Some(list) => list.iter().any(|s| matches(s)),
            None => match DEFAULT_SEVERITIES.iter().find(|(p, _)| *p == provider) {
                Some((_, list)) => list.iter().any(|s| matches(s)),
                None => true,
            },
        })
    }

    /// A stable digest of everything that changes derived figures: when it changes, they are recomputed.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(format!(
            "{:?}|{}|",
            self.production_environments, self.attribution_window
        ));
        // Deploy rules apply as builds arrive, to no stored fact, so they are not part of it: a
        // configuration written before them keeps its fingerprint.
        for s in &self.services {
            let ServiceConfig {
                name,
                team,
                repositories,
                aliases,
                deploy: _,
            } = s;
            h.update(format!(
                "ServiceConfig {{ name: {name:?}, team: {team:?}, repositories: {repositories:?}, aliases: {aliases:?} }}|"
            ));
        }
        // Only when set, so that a configuration written before it keeps its fingerprint.
        if !self.incidents.severities.is_empty() {
            h.update(format!("severities {:?}|", self.incidents.severities));
        }
        // The linking rules' own version: rows linked under older rules are re-linked once.
        h.update(format!("rules {LINK_RULES}|"));
        hex::encode(h.finalize())
    }
}

/// A duration such as `5m` or `90s` from the environment variable `var`; `None` when it is unset or empty.
pub fn duration_from_env(var: &str) -> Result<Option<std::time::Duration>, ConfigError> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => humantime::parse_duration(v.trim())
            .map(Some)
            .map_err(|e| ConfigError::Invalid(format!("{var}={v:?}: {e}"))),
        _ => Ok(None),
    }
}

/// The version of the linking rules (docs/metrics.md): raised when a rule changes what rows say, so that
/// stored rows are re-linked once under the new rules. 2: one outage reported by several tools counts once.
pub const LINK_RULES: u32 = 2;

/// The meta key of the configuration fingerprint the stored rows reflect, once every service was
/// re-linked under it.
pub const FIGURES_CONFIG_KEY: &str = "figures_config";
/// The meta key of the re-link a configuration change queued.
pub const REBUILD_KEY: &str = "rebuild";

/// The re-link a configuration change queued: its target fingerprint and the services still to do.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Rebuild {
    pub target: String,
    pub pending: Vec<String>,
}

/// Which configuration the figures reflect: the one in force, or (while a change is applied in steps)
/// the previous one for the services still pending.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigurationStatus {
    /// The fingerprint of the configuration in force.
    pub fingerprint: String,
    /// Whether every figure reflects it.
    pub current: bool,
    /// Services not yet re-linked under it; `null` when the change has not been picked up yet.
    pub services_pending: Option<usize>,
}

impl Config {
    /// What the stored meta records (`FIGURES_CONFIG_KEY`, `REBUILD_KEY`) say about the figures.
    pub fn status(&self, reflected: Option<&str>, rebuild: Option<&str>) -> ConfigurationStatus {
        let fingerprint = self.fingerprint();
        let current = reflected == Some(fingerprint.as_str());
        let pending = if current {
            Some(0)
        } else {
            rebuild
                .and_then(|r| serde_json::from_str::<Rebuild>(r).ok())
                .filter(|r| r.target == fingerprint)
                .map(|r| r.pending.len())
        };
        ConfigurationStatus {
            fingerprint,
            current,
            services_pending: pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_templates_percent_encode_what_payloads_put_in_them() {
        let links = Links {
            commit: None,
            incident: Some("https://pager.example/incidents/{id}".into()),
        };
        assert_eq!(
            links.commit_url("github", "acme/web", "abc123").as_deref(),
            Some("https://github.com/acme/web/commit/abc123")
        );
        assert_eq!(
            links
                .commit_url("github", "acme/../../evil?x=1#y", "a b")
                .as_deref(),
            Some("https://github.com/acme/%2E%2E/%2E%2E/evil%3Fx%3D1%23y/commit/a%20b")
        );
        assert_eq!(
            links.incident_url("P1@evil.example/x").as_deref(),
            Some("https://pager.example/incidents/P1%40evil.example%2Fx")
        );
        assert_eq!(
            links.incident_url("a\u{202E}b").as_deref(),
            Some("https://pager.example/incidents/a%E2%80%AEb")
        );
    }

    const SAMPLE: &str = r#"
production_environments = ["production", "prod"]
incident_attribution_window = "24h"

[[services]]
name = "checkout"
team = "payments"
repositories = ["acme-shop/checkout-api"]
aliases = ["Checkout API"]
"#;

    #[test]
    fn maps_repositories_and_aliases() {
        let c = Config::parse(SAMPLE).unwrap();
        assert_eq!(c.service_for_repo("acme-shop/checkout-api"), "checkout");
        assert_eq!(c.service_for_repo("Acme-Shop/Checkout-API"), "checkout");
        assert_eq!(c.service_for_repo("acme-shop/other"), "acme-shop/other");
        // Unmapped, one service whatever the letter case, named in lower case.
        assert_eq!(c.service_for_repo("Acme-Shop/Other"), "acme-shop/other");
        assert_eq!(c.service_for_alias("Checkout API"), "checkout");
        assert_eq!(c.service_for_alias("Shared Postgres"), "Shared Postgres");
        // A service's own name is heard as an incident service name, as service_for_alias maps it.
        assert_eq!(c.service_for_alias("checkout"), "checkout");
        assert_eq!(c.aliases_of("checkout"), vec!["Checkout API", "checkout"]);
        // ... unless it is another service's alias, whose incidents they are.
        let other = Config::parse(
            "[[services]]\nname = \"a\"\naliases = [\"b\"]\n[[services]]\nname = \"b\"\n",
        )
        .unwrap();
        assert_eq!(other.aliases_of("b"), Vec::<String>::new());
        assert_eq!(other.aliases_of("a"), vec!["b", "a"]);
        assert_eq!(c.attribution_window(), 24 * 3600 * 1000);
        assert_eq!(c.services_of_team("payments"), vec!["checkout"]);
        assert!(c.is_production("PROD", None));
        assert!(c.is_production("live", Some(true)));
        assert!(!c.is_production("staging", Some(false)));
    }

    #[test]
    fn rejects_a_repository_in_two_services() {
        let bad = format!(
            "{SAMPLE}\n[[services]]\nname = \"x\"\nrepositories = [\"acme-shop/checkout-api\"]\n"
        );
        assert!(matches!(Config::parse(&bad), Err(ConfigError::Invalid(_))));
        assert!(Config::parse("incident_attribution_window = \"soon\"").is_err());
    }

    #[test]
    fn globs_match_runs_of_characters_without_case() {
        for (pattern, name, want) in [
            ("*deploy*", "build-test-deploy", true),
            ("*deploy*", "Deploy to Prod", true),
            ("*deploy*", "test", false),
            ("deploy-*", "deploy-prod", true),
            ("deploy-*", "pre-deploy-prod", false),
            ("*-prod", "deploy-prod", true),
            ("*-prod", "deploy-production", false),
            ("release", "Release", true),
            ("release", "release-2", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("*", "", true),
        ] {
            assert_eq!(glob(pattern, name), want, "{pattern} ~ {name}");
        }
    }

    #[test]
    fn deploy_rules_are_the_services_own_else_the_defaults() {
        let c = Config::parse(SAMPLE).unwrap();
        // The defaults: CircleCI and Jenkins builds that say deploy are production deployments; GitHub's
        // are not.
        assert_eq!(
            c.deploy_environment("circleci", "acme-shop/checkout-api", "build-test-deploy"),
            Some("production")
        );
        assert_eq!(
            c.deploy_environment("jenkins", "acme-shop/checkout-api", "checkout-Deploy-prod"),
            Some("production")
        );
        assert_eq!(
            c.deploy_environment("jenkins", "acme-shop/checkout-api", "checkout-tests"),
            None
        );
        assert_eq!(
            c.deploy_environment("circleci", "acme-shop/checkout-api", "test"),
            None
        );
        assert_eq!(
            c.deploy_environment("github", "acme-shop/checkout-api", "Deploy"),
            None
        );
        let own = format!(
            "deploy = [{{ pattern = \"ship*\" }}]\n{SAMPLE}\n\
             [[services.deploy]]\npattern = \"deploy-staging\"\nenvironment = \"staging\"\n\
             [[services.deploy]]\npattern = \"deploy*\"\nprovider = \"github\"\n"
        );
        let c = Config::parse(&own).unwrap();
        assert_eq!(
            c.deploy_environment("circleci", "acme-shop/checkout-api", "deploy-staging"),
            Some("staging")
        );
        assert_eq!(
            c.deploy_environment("github", "acme-shop/checkout-api", "Deploy prod"),
            Some("production")
        );
        assert_eq!(
            c.deploy_environment("circleci", "acme-shop/checkout-api", "deploy-prod"),
            None,
            "a provider-bound rule reads only that provider's builds"
        );
        // Another repository has no rules of its own: the top-level ones, which replace the defaults.
        assert_eq!(
            c.deploy_environment("circleci", "acme/other", "ship-it"),
            Some("production")
        );
        assert_eq!(
            c.deploy_environment("circleci", "acme/other", "deploy"),
            None
        );
        // Deploy rules are not in the fingerprint: they apply to builds as they arrive.
        assert_eq!(
            Config::parse(SAMPLE).unwrap().fingerprint(),
            c.fingerprint(),
            "only the rules differ"
        );
        assert!(Config::parse("deploy = [{ pattern = \"\" }]").is_err());
    }

    #[test]
    fn teams_name_their_digest_channels() {
        let text = r#"
[[services]]
name = "shop"
team = "web"
repositories = ["acme/shop"]

[[teams]]
name = "web"
channels = ["slack", "email"]

[[teams]]
name = "all"
channels = ["sns"]
"#;
        let c = Config::parse(text).unwrap();
        assert_eq!(c.channels_of("web"), [Channel::Slack, Channel::Email]);
        assert_eq!(c.channels_of(ORGANISATION), [Channel::Sns]);
        assert!(c.channels_of("other").is_empty());
        // Channels change no figure.
        let without = text.split("[[teams]]").next().unwrap();
        assert_eq!(
            Config::parse(without).unwrap().fingerprint(),
            c.fingerprint()
        );
        assert!(Config::parse(
            &text.replace("name = \"web\"\nchannels", "name = \"nobody\"\nchannels")
        )
        .is_err());
        assert!(Config::parse(&text.replace("\"sns\"", "\"pager\"")).is_err());
        assert!(Config::parse(&format!("{text}\n[[teams]]\nname = \"web\"\n")).is_err());
        // Weekly at 09:00 UTC unless told otherwise.
        let web = c.team("web").unwrap();
        assert_eq!(
            (web.periods.as_slice(), web.send_hour, web.tz()),
            ([Period::Week].as_slice(), 9, crate::calendar::UTC)
        );
        let zoned = text.replace(
            "channels = [\"slack\", \"email\"]",
            "channels = [\"slack\"]\ntime_zone = \"Europe/Berlin\"\nperiods = [\"day\", \"week\"]\nsend_hour = 8",
        );
        let web = Config::parse(&zoned).unwrap().team("web").cloned().unwrap();
        assert_eq!(web.tz().name(), "Europe/Berlin");
        assert_eq!(web.periods, [Period::Day, Period::Week]);
        assert_eq!(web.send_hour, 8);
        assert!(Config::parse(&zoned.replace("Europe/Berlin", "Europe/Atlantis")).is_err());
        assert!(Config::parse(&zoned.replace("send_hour = 8", "send_hour = 24")).is_err());
        assert!(Config::parse(&zoned.replace("\"day\", ", "\"month\", ")).is_err());
    }
}
