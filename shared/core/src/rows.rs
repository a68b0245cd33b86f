//! The metric rows a store keeps per service: what linking derives from the facts, and what a window
//! query reads back. The stores and the metrics share these shapes; the metrics compute them.

use crate::time::Millis;

#[derive(Debug, Clone, PartialEq)]
pub struct DerivedDeployment {
    pub key: String,
    pub time: Millis,
    /// The deployed sha, resolved to the full sha where a short one (GitLab) matches a known commit.
    pub sha: String,
    /// Had an incident attributed to it, or was rolled back.
    pub failed: bool,
    pub rework: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DerivedChange {
    pub deployment_key: String,
    pub deployment_time: Millis,
    pub sha: String,
    pub commit_time: Millis,
}

impl DerivedChange {
    pub fn lead_time(&self) -> Millis {
        self.deployment_time - self.commit_time
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DerivedIncident {
    pub id: String,
    pub opened: Millis,
    pub resolved: Option<Millis>,
    pub attributed_to: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Derived {
    pub deployments: Vec<DerivedDeployment>,
    pub changes: Vec<DerivedChange>,
    pub incidents: Vec<DerivedIncident>,
}

/// The linked rows of the services in scope, already restricted to the window by the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowRows {
    /// Deployments with time in the window: (failed, rework).
    pub deployments: Vec<(bool, bool)>,
    /// Lead times (ms) of the changes shipped by those deployments, zero and negative ones included.
    pub lead_times: Vec<Millis>,
    /// Attributed incidents opened in the window: their resolution time minus opening time, `None` while open.
    pub recoveries: Vec<Option<Millis>>,
}
