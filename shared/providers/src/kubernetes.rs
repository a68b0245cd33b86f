//! Kubernetes rollouts: a rollout that completed (or failed) is reported, by the documented script after
//! `kubectl rollout status` or by an event exporter's webhook layout (`docs/providers/kubernetes.md`), as a
//! deployment report in the generic provider's schema, version 1, with a bearer token
//! (`Authorization: Bearer <secret>`): neither can sign a request.

use em_core::domain::Fact;

use crate::auth::Auth;
use crate::{generic, IdSource, ParseError, Provider};

const NAME: &str = "kubernetes";

pub const PROVIDER: Provider = Provider {
    name: NAME,
    title: "Kubernetes",
    auth: Auth::Bearer,
    delivery_id: &[IdSource::Body(&["id"])],
    event_header: None,
    events: &["deployment"],
    parse,
    sample: "rollout-complete",
    validate: true,
};

fn parse(_event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
    generic::parse_as(NAME, body)
}
