//! ArgoCD notifications: ArgoCD's webhook service cannot sign, so it sends a bearer token
//! (`Authorization: Bearer <secret>`), and the template EM Agent ships
//! (`docs/providers/argocd-notifications.yaml`) renders each sync that finished as a deployment report in
//! the generic provider's schema, version 1: read, and refused at the door when broken, exactly as those.

use em_core::domain::Fact;

use crate::auth::Auth;
use crate::{generic, IdSource, ParseError, Provider};

const NAME: &str = "argocd";

pub const PROVIDER: Provider = Provider {
    name: NAME,
    title: "ArgoCD",
    auth: Auth::Bearer,
    delivery_id: &[IdSource::Body(&["id"])],
    event_header: None,
    events: &["deployment"],
    parse,
    sample: "sync-succeeded",
    validate: true,
};

fn parse(_event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
    generic::parse_as(NAME, body)
}
