//! The ports the handlers are generic over. Each has an embedded adapter (`em-sqlite`, and [`EnvSecrets`]
//! here) and an AWS adapter (`em-aws`: SQS, DynamoDB, S3, Secrets Manager).
//!
//! [`EnvSecrets`]: crate::secrets::EnvSecrets

use std::future::Future;

use bytes::Bytes;

use crate::domain::{
    Build, Deployment, Fact, IncidentEvent, PullRequestEvent, Push, QualityReport, WorkItem,
};
use crate::rows::{DeploymentRow, IncidentRow, Linked, Observations};
use crate::time::Millis;

/// What kind of failure a port met, which decides what the caller does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortErrorKind {
    /// The infrastructure could not be reached or answered late: retry later (a client gets a 503).
    Transient,
    /// A concurrent writer won (a conditional write failed): start over from fresh state.
    Conflict,
    /// What the port was given or found is wrong (a malformed secret, an unreadable stored row, a
    /// reference to a body nobody stored), or the infrastructure refuses it for good (a missing table,
    /// access denied, a request it calls invalid): retrying does not help, an operator has to look.
    Invalid,
}

/// A failure of the infrastructure behind a port: its kind (decided once, by the adapter's `classify`), what
/// was being done, and the error it came from.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct PortError {
    pub kind: PortErrorKind,
    pub message: String,
    #[source]
    pub source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl PortError {
    pub fn transient(e: impl std::fmt::Display) -> Self {
        Self::of(PortErrorKind::Transient, e)
    }

    pub fn conflict(e: impl std::fmt::Display) -> Self {
        Self::of(PortErrorKind::Conflict, e)
    }

    pub fn invalid(e: impl std::fmt::Display) -> Self {
        Self::of(PortErrorKind::Invalid, e)
    }

    pub fn of(kind: PortErrorKind, e: impl std::fmt::Display) -> Self {
        PortError {
            kind,
            message: e.to_string(),
            source: None,
        }
    }

    /// Keeps the error this one came from, for whoever walks the chain.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(std::sync::Arc::new(source));
        self
    }

    /// Whether an operator has to act: retrying the same request will fail the same way.
    pub fn is_permanent(&self) -> bool {
        self.kind == PortErrorKind::Invalid
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            PortErrorKind::Transient | PortErrorKind::Conflict
        )
    }
}

/// A body's SHA-256 as `sha256:<hex>`: the delivery id of a provider that sends none, and the key under which
/// a body is recognised when it comes again.
pub fn body_digest(body: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(body)))
}

/// An authenticated delivery on its way from the webhook to the aggregator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub provider: String,
    pub delivery_id: String,
    /// The provider's event name when it travels in a header (GitHub).
    pub event: Option<String>,
    pub received_at: Millis,
    pub body: Bytes,
}

/// The queue message format: JSON, with the body as the text it is (the webhook has checked it is JSON, so
/// it is UTF-8), or, for a body too large for one queue message, `body_ref`: where the body was put aside.
#[derive(serde::Serialize, serde::Deserialize)]
struct WireEnvelope<'a> {
    provider: std::borrow::Cow<'a, str>,
    delivery_id: std::borrow::Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<std::borrow::Cow<'a, str>>,
    received_at: Millis,
    #[serde(default)]
    body: std::borrow::Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_ref: Option<std::borrow::Cow<'a, str>>,
}

/// A queue message as read: the envelope itself, or an envelope whose body must be fetched from
/// [`Payloads`] under `body_ref`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueMessage {
    Inline(Envelope),
    Offloaded {
        envelope: Envelope,
        body_ref: String,
    },
}

impl QueueMessage {
    pub fn from_json(text: &str) -> Result<QueueMessage, serde_json::Error> {
        let w: WireEnvelope = serde_json::from_str(text)?;
        let envelope = Envelope {
            provider: w.provider.into_owned(),
            delivery_id: w.delivery_id.into_owned(),
            event: w.event.map(|e| e.into_owned()),
            received_at: w.received_at,
            body: Bytes::from(w.body.into_owned()),
        };
        Ok(match w.body_ref {
            Some(r) => QueueMessage::Offloaded {
                envelope,
                body_ref: r.into_owned(),
            },
            None => QueueMessage::Inline(envelope),
        })
    }

    /// The envelope with its body, fetching an offloaded body from `payloads`.
    pub async fn resolve<P: Payloads>(self, payloads: &P) -> Result<Envelope, PortError> {
        match self {
            QueueMessage::Inline(e) => Ok(e),
            QueueMessage::Offloaded {
                mut envelope,
                body_ref,
            } => {
                envelope.body = payloads.get(body_ref).await?;
                Ok(envelope)
            }
        }
    }
}

impl Envelope {
    /// The body's [`body_digest`]: a replay of the same bytes under a fresh delivery id (a provider's
    /// delivery id is not always signed) is the same delivery.
    pub fn body_digest(&self) -> String {
        body_digest(&self.body)
    }

    pub fn to_json(&self) -> String {
        self.wire(None)
    }

    /// The message for a body put aside under `body_ref`: everything but the body.
    pub fn to_json_offloaded(&self, body_ref: &str) -> String {
        self.wire(Some(body_ref))
    }

    fn wire(&self, body_ref: Option<&str>) -> String {
        let w = WireEnvelope {
            provider: self.provider.as_str().into(),
            delivery_id: self.delivery_id.as_str().into(),
            event: self.event.as_deref().map(Into::into),
            received_at: self.received_at,
            body: match body_ref {
                Some(_) => "".into(),
                None => String::from_utf8_lossy(&self.body),
            },
            body_ref: body_ref.map(Into::into),
        };
        serde_json::to_string(&w).unwrap_or_default()
    }

    /// An inline message's envelope; an offloaded message is an error here (use [`QueueMessage::from_json`]).
    pub fn from_json(text: &str) -> Result<Envelope, serde_json::Error> {
        match QueueMessage::from_json(text)? {
            QueueMessage::Inline(e) => Ok(e),
            QueueMessage::Offloaded { .. } => Err(<serde_json::Error as serde::de::Error>::custom(
                "the message's body is offloaded: resolve it with QueueMessage::resolve",
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    Accepted,
    /// The same provider delivery id was accepted before: nothing was enqueued.
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Handle for [`Queue::ack`].
    pub receipt: String,
    pub receive_count: u32,
    pub envelope: Envelope,
}

/// A durable queue with at-least-once delivery and de-duplication of provider delivery ids.
pub trait Queue: Send + Sync + 'static {
    /// Returns only once the delivery is durable.
    fn enqueue(
        &self,
        envelope: Envelope,
    ) -> impl Future<Output = Result<EnqueueOutcome, PortError>> + Send;

    /// Up to `max` visible messages, hidden from other receivers until acknowledged or timed out. Messages
    /// received too often without acknowledgement move to the dead-letter queue instead.
    fn receive(&self, max: usize) -> impl Future<Output = Result<Vec<Received>, PortError>> + Send;

    fn ack(&self, receipts: Vec<String>) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Moves a message that can never succeed to the dead-letter queue now, keeping it for a replay.
    fn dead_letter(
        &self,
        receipt: String,
        reason: String,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// Messages that could not be processed, kept for a replay.
pub trait DeadLetters: Send + Sync + 'static {
    /// How many messages are dead-lettered (approximate where the queue only knows that).
    fn dead_letter_count(&self) -> impl Future<Output = Result<u64, PortError>> + Send;

    /// Moves up to `max` dead-lettered messages back to the queue, to be processed again; returns how many
    /// moved (0 when none is left).
    fn redrive(&self, max: usize) -> impl Future<Output = Result<usize, PortError>> + Send;
}

/// Where bodies too large for a queue message are put aside until the aggregator has read them.
pub trait Payloads: Send + Sync + 'static {
    fn put(&self, key: String, body: Bytes) -> impl Future<Output = Result<(), PortError>> + Send;

    fn get(&self, key: String) -> impl Future<Output = Result<Bytes, PortError>> + Send;
}

/// For stores that never offload: any reference is an error.
pub struct NoPayloads;

impl Payloads for NoPayloads {
    async fn put(&self, key: String, _body: Bytes) -> Result<(), PortError> {
        Err(PortError::invalid(format!(
            "no payload store to put {key} in"
        )))
    }

    async fn get(&self, key: String) -> Result<Bytes, PortError> {
        Err(PortError::invalid(format!(
            "no payload store to get {key} from"
        )))
    }
}

/// Where the webhook finds each provider's secrets.
pub trait SecretSource: Send + Sync + 'static {
    /// The provider's accepted secrets (current first, then any previous one during a rotation), or `None` when
    /// the provider is not enabled.
    fn secrets(
        &self,
        provider: &str,
    ) -> impl Future<Output = Result<Option<Vec<Vec<u8>>>, PortError>> + Send;

    /// How an operator enables a provider that has no secret here, for the error that says it is off.
    fn enable_hint(&self, provider: &str) -> String {
        format!("configure a secret for {provider} to enable it")
    }
}

/// A send in progress on an outbound port.
pub type Sending<'a> = std::pin::Pin<Box<dyn Future<Output = Result<(), PortError>> + Send + 'a>>;

/// Email out: a whole MIME message from a verified sender (SES on AWS). Object-safe, so that the
/// channels, declared in one registry, share one.
pub trait Mail: Send + Sync {
    fn send_raw<'a>(&'a self, from: &'a str, to: &'a [String], raw: Vec<u8>) -> Sending<'a>;
}

/// Plain-text messages to a topic (SNS on AWS).
pub trait Topics: Send + Sync {
    fn publish<'a>(&'a self, topic: &'a str, subject: &'a str, message: &'a str) -> Sending<'a>;
}

/// What runs after a batch's facts are stored and its services re-linked: real-time notices
/// (docs/digests.md). Best effort: it reports nothing back, and a batch never fails because of it.
pub trait AfterLinking: Send + Sync {
    fn linked<'a>(
        &'a self,
        services: &'a std::collections::BTreeSet<String>,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// Sends that must happen once (a digest per team, period and channel), however often a schedule fires or a
/// function is retried. A claim is a lease: a sender that dies without settling frees its key when the
/// lease lapses.
pub trait Outbox: Send + Sync + 'static {
    /// Claims `key` for `owner` until `until`: true when `owner` may send now, because nobody claimed the
    /// key or an earlier claim lapsed unsettled. A sent key is never claimed again.
    fn claim(
        &self,
        key: String,
        owner: String,
        now: Millis,
        until: Millis,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Settles `owner`'s claim of `key`: `sent` makes it final; otherwise the key is free for a retry. A
    /// claim `owner` no longer holds is left as it is.
    fn settle(
        &self,
        key: String,
        owner: String,
        sent: bool,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// Everything stored about the repositories and incident services of one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredFacts {
    pub pushes: Vec<Push>,
    /// Successful deployments, one per provider deployment id (the earliest report stands).
    pub deployments: Vec<Deployment>,
    pub incident_events: Vec<IncidentEvent>,
    /// Pull request events, builds and work items of the repositories (no link uses them).
    pub pull_requests: Vec<PullRequestEvent>,
    pub builds: Vec<Build>,
    pub work_items: Vec<WorkItem>,
    pub quality_reports: Vec<QualityReport>,
}

/// Where fact sources come from: used to find every service after a configuration change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FactSources {
    pub repositories: Vec<String>,
    pub incident_services: Vec<String>,
}

/// A commit of a repository's default branch as the change walk reads it: the parent is the one the first
/// push (ordered by `before`, `after`) that lists it gives, so it does not depend on arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRow {
    pub sha: String,
    pub parent: String,
    pub time: Millis,
    pub message: String,
    /// Commits between `parent` and this one that its push did not list (the oldest listed commit of a
    /// push that listed only some).
    pub unlisted: u32,
}

/// What linking reads: the facts and the link state (the rows linked so far) of one service. Each query is
/// bounded by what a delivery changes (a commit, a sha, the rows after a cut), never by the service's history.
///
/// A store that keeps no link state answers the row queries with nothing ([`Links::keeps_rows`] is false)
/// and is re-linked whole.
pub trait Links: Send + Sync {
    /// Whether the row queries below answer from stored rows (incremental re-linking is possible).
    fn keeps_rows(&self) -> bool;

    fn commit(
        &self,
        repo: &str,
        sha: &str,
    ) -> impl Future<Output = Result<Option<CommitRow>, PortError>> + Send;

    /// The known commits among `shas`, in any order (one lookup where the store can).
    fn commits(
        &self,
        repo: &str,
        shas: &[String],
    ) -> impl Future<Output = Result<Vec<CommitRow>, PortError>> + Send {
        async move {
            let mut out = Vec::new();
            for sha in shas {
                if let Some(c) = self.commit(repo, sha).await? {
                    out.push(c);
                }
            }
            Ok(out)
        }
    }

    /// The one known commit whose sha starts with `prefix`; `None` when none or several do.
    fn resolve_prefix(
        &self,
        repo: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Option<String>, PortError>> + Send;

    /// Successful deployments of `repos` at or after `from` (all of them when `None`).
    fn deployments_since(
        &self,
        repos: &[String],
        from: Option<Millis>,
    ) -> impl Future<Output = Result<Vec<Deployment>, PortError>> + Send;

    /// Incidents of `aliases` with a trigger at or after `from` (all when `None`).
    fn incident_ids_since(
        &self,
        aliases: &[String],
        from: Option<Millis>,
    ) -> impl Future<Output = Result<Vec<String>, PortError>> + Send;

    /// Every state change of the incidents `ids` of `aliases`.
    fn incident_events(
        &self,
        aliases: &[String],
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<IncidentEvent>, PortError>> + Send;

    /// The latest `n` deployment rows strictly before `(time, key)`, latest first; of `repo` only, when given
    /// (repositories compare case-insensitively).
    fn deployment_rows_before(
        &self,
        service: &str,
        repo: Option<&str>,
        time: Millis,
        key: &str,
        n: usize,
    ) -> impl Future<Output = Result<Vec<DeploymentRow>, PortError>> + Send;

    /// Whether a deployment row of `repo` strictly before `(time, key)` deployed `sha` (or a prefix of it,
    /// or a sha it is a prefix of).
    fn deployed_before(
        &self,
        service: &str,
        repo: &str,
        sha: &str,
        time: Millis,
        key: &str,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// When the deployment that shipped `sha` went out, if one did.
    fn shipped_at(
        &self,
        service: &str,
        sha: &str,
    ) -> impl Future<Output = Result<Option<Millis>, PortError>> + Send;

    /// The earliest deployment row whose frontier is one of `shas` (or a prefix of one).
    fn waiting_on(
        &self,
        service: &str,
        shas: &[String],
    ) -> impl Future<Output = Result<Option<DeploymentRow>, PortError>> + Send;

    /// The stored rows of the incidents `ids`.
    fn incident_rows(
        &self,
        service: &str,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<IncidentRow>, PortError>> + Send;

    /// Attributed incidents opened before `at` and not resolved by then.
    fn incidents_open_at(
        &self,
        service: &str,
        at: Millis,
    ) -> impl Future<Output = Result<Vec<IncidentRow>, PortError>> + Send;
}

/// Where re-linking starts: everything, or the rows at or after an instant (deployments by time, changes by
/// their deployment's time, incidents by opening).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    All,
    From(Millis),
}

impl Cut {
    pub fn min(self, other: Cut) -> Cut {
        match (self, other) {
            (Cut::From(a), Cut::From(b)) => Cut::From(a.min(b)),
            _ => Cut::All,
        }
    }

    pub fn from(self) -> Option<Millis> {
        match self {
            Cut::All => None,
            Cut::From(t) => Some(t),
        }
    }
}

/// What a service's rows are: their version (read before linking, so that [`Store::replace_rows`] can refuse
/// to overwrite rows a concurrent writer changed meanwhile) and, when some of them cannot be trusted as link
/// state (a writer died half-way, or the store was written by an older version), where re-linking must
/// start at the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RowsState {
    pub version: u64,
    pub unsettled: Option<Cut>,
}

/// One service's re-linked rows from `cut`, linked from rows at version `expected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowsReplacement {
    pub service: String,
    pub cut: Cut,
    pub rows: Linked,
    pub expected: u64,
}

/// What the aggregator writes: facts, and each service's linked rows with the day observations they make.
pub trait Store: Clone + Send + Sync + 'static {
    type Links<'a>: Links
    where
        Self: 'a;

    /// Stores facts idempotently: storing the same fact twice changes nothing.
    fn put_facts(&self, facts: Vec<Fact>) -> impl Future<Output = Result<(), PortError>> + Send;

    fn load_facts(
        &self,
        repositories: Vec<String>,
        incident_services: Vec<String>,
    ) -> impl Future<Output = Result<StoredFacts, PortError>> + Send;

    fn fact_sources(&self) -> impl Future<Output = Result<FactSources, PortError>> + Send;

    /// Whether the store keeps link state, so a re-link can start at a cut; otherwise every re-link is
    /// whole, from facts [`Store::links`] loads.
    fn incremental(&self) -> bool {
        true
    }

    /// What linking reads for one service.
    fn links(
        &self,
        repositories: Vec<String>,
        incident_services: Vec<String>,
    ) -> impl Future<Output = Result<Self::Links<'_>, PortError>> + Send;

    /// The state of a service's rows, read before linking (see [`RowsState`]). A [`PortErrorKind::Conflict`]
    /// when another writer is writing them right now: try again shortly.
    fn rows_state(
        &self,
        service: String,
    ) -> impl Future<Output = Result<RowsState, PortError>> + Send;

    /// The version alone of [`Store::rows_state`].
    fn rows_version(&self, service: String) -> impl Future<Output = Result<u64, PortError>> + Send {
        async move { Ok(self.rows_state(service).await?.version) }
    }

    /// Readies the facts of `repositories` and `incident_services` for a whole re-link (a store that
    /// indexes facts for linking re-indexes those written before it did).
    fn prepare_whole(
        &self,
        repositories: Vec<String>,
        incident_services: Vec<String>,
    ) -> impl Future<Output = Result<(), PortError>> + Send {
        let _ = (repositories, incident_services);
        async { Ok(()) }
    }

    /// Replaces a service's rows at or after `cut` with `rows` (writing only those that changed) and its day
    /// observations accordingly, if the rows' version is still `expected`; `false` when it is not.
    fn replace_rows(
        &self,
        service: String,
        cut: Cut,
        rows: Linked,
        expected: u64,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// [`Store::replace_rows`] for several services at once (one transaction where the store has them);
    /// one answer per service, in order, so one service's failure is its own.
    fn replace_rows_batch(
        &self,
        batch: Vec<RowsReplacement>,
    ) -> impl Future<Output = Vec<Result<bool, PortError>>> + Send {
        async move {
            let mut out = Vec::with_capacity(batch.len());
            for r in batch {
                out.push(
                    self.replace_rows(r.service, r.cut, r.rows, r.expected)
                        .await,
                );
            }
            out
        }
    }

    /// Drops every service's rows but those of `keep` (after a configuration change).
    fn retain_rows(&self, keep: Vec<String>) -> impl Future<Output = Result<(), PortError>> + Send;

    fn get_meta(
        &self,
        key: String,
    ) -> impl Future<Output = Result<Option<String>, PortError>> + Send;

    fn set_meta(
        &self,
        key: String,
        value: String,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// A pull request merged in a window, with the instants of its stages (each the earliest reported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedPullRequest {
    pub provider: String,
    pub repo: String,
    pub number: u64,
    pub merged: Millis,
    /// The merge's commit, a full sha where the store knows the commit a provider's prefix starts.
    pub sha: Option<String>,
    /// The earliest commit time of the push that brought the merge's commit to the target branch.
    pub first_commit: Option<Millis>,
    pub opened: Option<Millis>,
    /// The earliest review or approval.
    pub first_review: Option<Millis>,
    pub approved: Option<Millis>,
}

/// What the delivery metrics read beside the day observations: the builds finished, the failed deployment
/// attempts made and the pull requests merged in a window, by repository. None of them depends on linking,
/// so they are read from the facts by the instant that places them, and mapped to services by the
/// configuration of the query (a configuration change applies at once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFacts {
    pub builds: Vec<Build>,
    /// Failed deployment attempts of any environment (the query keeps production's).
    pub failed_attempts: Vec<Deployment>,
    pub pull_requests: Vec<MergedPullRequest>,
}

/// What the API reads: observations, never the link state behind them.
pub trait MetricsReader: Send + Sync + 'static {
    /// The repositories and incident services facts have come from: what `/v1/services` lists.
    fn sources(&self) -> impl Future<Output = Result<FactSources, PortError>> + Send;

    /// The observations of `services` (every service when `None`) in `[from, to)`.
    fn observations(
        &self,
        services: Option<Vec<String>>,
        from: Millis,
        to: Millis,
    ) -> impl Future<Output = Result<Observations, PortError>> + Send;

    /// The delivery facts of `repos` (every repository when `None`; names compare case-insensitively)
    /// placed in `[from, to)`: builds by finish, failed attempts by their time, pull requests by merge.
    fn delivery(
        &self,
        repos: Option<Vec<String>>,
        from: Millis,
        to: Millis,
    ) -> impl Future<Output = Result<DeliveryFacts, PortError>> + Send;

    /// When each of `shas` (full) went to production with `service`, for those that did.
    fn shipped(
        &self,
        service: String,
        shas: Vec<String>,
    ) -> impl Future<Output = Result<Vec<(String, Millis)>, PortError>> + Send;

    fn read_meta(
        &self,
        key: String,
    ) -> impl Future<Output = Result<Option<String>, PortError>> + Send;

    /// The linked rows of `services` (every service when `None`) in `[from, to)`, by service: deployments
    /// by time, changes by their deployment's time, incidents by opening. What a digest names (its slowest
    /// changes, longest recoveries, rollbacks); the figures come from [`MetricsReader::observations`].
    fn rows(
        &self,
        services: Option<Vec<String>>,
        from: Millis,
        to: Millis,
    ) -> impl Future<Output = Result<Vec<(String, Linked)>, PortError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_survive_the_wire() {
        let e = Envelope {
            provider: "github".into(),
            delivery_id: "d-1".into(),
            event: Some("push".into()),
            received_at: 1_700_000_000_123,
            body: Bytes::from_static(br#"{"a":"\u00e9 \n"}"#),
        };
        assert_eq!(Envelope::from_json(&e.to_json()).unwrap(), e);
        assert!(Envelope::from_json("{}").is_err());
    }

    #[test]
    fn offloaded_messages_carry_a_reference_not_the_body() {
        let e = Envelope {
            provider: "github".into(),
            delivery_id: "d-2".into(),
            event: None,
            received_at: 1,
            body: Bytes::from_static(b"{}"),
        };
        let text = e.to_json_offloaded("github/d-2");
        assert!(!text.contains("{}\""));
        assert!(Envelope::from_json(&text).is_err());
        match QueueMessage::from_json(&text).unwrap() {
            QueueMessage::Offloaded { envelope, body_ref } => {
                assert_eq!(body_ref, "github/d-2");
                assert!(envelope.body.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
}
