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
    /// Node the agent runs on, from the downward API (`spec.nodeName`) in a Job.
    pub const JOB_NODE_NAME: &str = "MULTINIC_NODE_NAME";
    /// Addresses of the node itself (comma-separated); a NIC holding one is never touched.
    pub const PROTECTED_ADDRESSES: &str = "MULTINIC_PROTECTED_ADDRESSES";
}

/// Marker appended to a message that was shortened to fit the report.
const TRIM_MARKER: &str = "…";

/// Serializes a report as compact JSON of at most [`MAX_REPORT_BYTES`] bytes.
///
/// When the full report is too long, every message (the run's `error` and each interface's
/// `message`) is cut to a common length, the longest that fits, and marked with `…`; the
/// structure (every interface, its name, MAC and reason) is always kept whole. Only a report
/// whose structure alone exceeds the limit (which ten NICs and a valid node name cannot reach)
/// comes back longer, with every message emptied.
pub fn encode_report(report: &AgentReport) -> String {
    let full = to_json(report);
    if full.len() <= MAX_REPORT_BYTES {
        return full;
    }
    let longest = report
        .interfaces
        .iter()
        .map(|i| i.message.chars().count())
        .chain(report.error.iter().map(|e| e.chars().count()))
        .max()
        .unwrap_or(0);
    // The encoded size grows with the cap, so the longest fitting cap is found by bisection.
    let (mut fits, mut too_long) = (0usize, longest);
    while too_long - fits > 1 {
        let mid = fits + (too_long - fits) / 2;
        if to_json(&with_messages_capped(report, mid)).len() <= MAX_REPORT_BYTES {
            fits = mid;
        } else {
            too_long = mid;
        }
    }
    to_json(&with_messages_capped(report, fits))
}

/// Parses a report written by [`encode_report`] (surrounding whitespace allowed).
pub fn decode_report(text: &str) -> Result<AgentReport, serde_json::Error> {
    serde_json::from_str(text.trim())
}

fn to_json(report: &AgentReport) -> String {
    serde_json::to_string(report).expect("a report always serializes")
}

fn with_messages_capped(report: &AgentReport, max_chars: usize) -> AgentReport {
    let mut capped = report.clone();
    if let Some(error) = &mut capped.error {
        cap_message(error, max_chars);
    }
    for iface in &mut capped.interfaces {
        cap_message(&mut iface.message, max_chars);
    }
    capped
}

/// Keeps the first `max_chars` characters (the field path and the start of the cause are the
/// useful part) and marks the cut; a cap of zero empties the message.
fn cap_message(message: &mut String, max_chars: usize) {
    if message.chars().count() <= max_chars {
        return;
    }
    let keep = max_chars.saturating_sub(1);
    let cut = message
        .char_indices()
        .nth(keep)
        .map_or(message.len(), |(at, _)| at);
    message.truncate(cut);
    if max_chars > 0 {
        message.push_str(TRIM_MARKER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic(slot: u8, reason: InterfaceReason, message: String) -> ReportInterface {
        ReportInterface {
            id: Some(slot),
            name: Some(format!("multinic{slot}")),
            mac_address: format!("fa:16:3e:00:00:{slot:02x}"),
            reason,
            message,
        }
    }

    fn report(interfaces: Vec<ReportInterface>, error: Option<String>) -> AgentReport {
        AgentReport {
            v: REPORT_VERSION,
            node: "worker-01.example.internal".into(),
            generation: Some(7),
            action: AgentAction::Apply,
            error,
            interfaces,
            duration_ms: 1234,
        }
    }

    #[test]
    fn small_report_is_written_untouched() {
        let r = report(
            vec![nic(0, InterfaceReason::Configured, "set mtu 1450".into())],
            None,
        );
        let text = encode_report(&r);
        assert_eq!(decode_report(&text).unwrap(), r);
        assert!(!text.contains('\n'), "compact JSON: {text}");
    }

    #[test]
    fn ten_nics_with_huge_messages_fit_and_keep_every_nic() {
        // Quotes and control characters expand when escaped; multi-byte characters must be
        // cut on a character boundary.
        let long = "spec.interfaces[3].cidr: \"bad\"\n\tß€ ".repeat(400);
        let nics: Vec<_> = (0..10)
            .map(|s| nic(s, InterfaceReason::PrimaryInterfaceProtected, long.clone()))
            .collect();
        let r = report(nics, Some(long.clone()));
        let text = encode_report(&r);
        assert!(text.len() <= MAX_REPORT_BYTES, "{} bytes", text.len());
        let back = decode_report(&text).unwrap();
        assert_eq!(back.interfaces.len(), 10);
        for (got, want) in back.interfaces.iter().zip(&r.interfaces) {
            assert_eq!(got.id, want.id);
            assert_eq!(got.name, want.name);
            assert_eq!(got.mac_address, want.mac_address);
            assert_eq!(got.reason, want.reason);
            assert!(got.message.starts_with("spec.interfaces[3].cidr"));
            assert!(got.message.ends_with(TRIM_MARKER));
        }
        // Bisection finds the longest cap: one character more would not fit.
        let cap = back.interfaces[0].message.chars().count();
        assert!(to_json(&with_messages_capped(&r, cap + 1)).len() > MAX_REPORT_BYTES);
    }

    #[test]
    fn only_too_long_messages_are_cut() {
        let mut nics: Vec<_> = (0..10)
            .map(|s| nic(s, InterfaceReason::ApplyFailed, "x".repeat(2000)))
            .collect();
        nics[0].message = "short".into();
        let back = decode_report(&encode_report(&report(nics, None))).unwrap();
        assert_eq!(back.interfaces[0].message, "short");
        assert!(back.interfaces[1].message.len() < 2000);
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(decode_report("not json").is_err());
    }
}
