//! The agent's report: what one agent run did to each NIC, written as compact JSON to the
//! termination log so the controller can read it from the Pod status without the agent ever
//! holding API credentials. Also the names of the environment the controller hands a Job.

use crate::conditions::InterfaceReason;
use serde::{Deserialize, Serialize};

/// Kubernetes truncates termination messages beyond this many bytes.
pub const MAX_REPORT_BYTES: usize = 4096;

/// Version of the report format.
pub const REPORT_VERSION: u8 = 1;

/// What the agent was asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentAction {
    /// Make the node match the desired NICs.
    Apply,
    /// Remove everything multinic configured on the node.
    Cleanup,
}

/// The whole report of one agent run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentReport {
    /// Report format version ([`REPORT_VERSION`]).
    pub v: u8,
    /// Node the agent ran on.
    pub node: String,
    /// Resource generation the run applied, when it came from a MultiNicNodeConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// apply or cleanup.
    pub action: AgentAction,
    /// Error that stopped the run as a whole (bad input, no netlink access ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Per-NIC outcome.
    #[serde(default)]
    pub interfaces: Vec<ReportInterface>,
    /// Wall time of the run in milliseconds.
    #[serde(default)]
    pub duration_ms: u64,
}

/// Outcome of one NIC in a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportInterface {
    /// Slot number, when one was assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u8>,
    /// Interface name on the node, when one was assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// MAC address the entry is about.
    pub mac_address: String,
    /// Machine-readable outcome.
    pub reason: InterfaceReason,
    /// Human-readable detail (trimmed to keep the report under the limit).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl AgentReport {
    /// True when every NIC ended Configured, Unchanged or Removed and the run had no error.
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.interfaces.iter().all(|i| i.reason.is_success())
    }
}

/// Environment variables through which the controller configures an agent Job. The agent's
/// command line reads the same names (clap `env`), so a Job needs no arguments beyond
/// `multinic agent`.
pub mod env {
    /// Node the agent runs on.
    pub const NODE_NAME: &str = "NODE_NAME";
    /// `job` or `service`.
    pub const RUN_MODE: &str = "RUN_MODE";
    /// `apply` or `cleanup`.
    pub const AGENT_ACTION: &str = "AGENT_ACTION";
    /// `spec`, `kube`, `file` or `db`.
    pub const DATA_SOURCE: &str = "DATA_SOURCE";
    /// The node's MultiNicNodeConfig spec as JSON, for `DATA_SOURCE=spec`.
    pub const NODE_SPEC: &str = "MULTINIC_NODE_SPEC";
    /// The generation the inline spec belongs to.
    pub const GENERATION: &str = "MULTINIC_GENERATION";
    /// Directory every host file path is prefixed with.
    pub const ROOT: &str = "MULTINIC_ROOT";
    /// Where the report is written.
    pub const REPORT: &str = "MULTINIC_REPORT";
    /// OS flavor override (ubuntu, rhel9, rhel8, rhel7).
    pub const OS: &str = "MULTINIC_OS";
}
