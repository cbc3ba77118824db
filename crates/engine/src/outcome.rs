//! What a run did: one outcome per NIC with a reason code, the plan it followed, and how many
//! netlink and file writes it made (zero on an idempotent re-apply).

use crate::plan::{NicAction, Plan};
use crate::verify::Failure;
use multinic_api::InterfaceReason;
use multinic_api::report::ReportInterface;

/// Writes made by one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteCounts {
    /// Netlink requests that change kernel state (dumps are not counted).
    pub netlink: u64,
    /// Files written or removed under the root.
    pub files: u64,
}

impl WriteCounts {
    /// Netlink plus file writes.
    pub fn total(&self) -> u64 {
        self.netlink + self.files
    }
}

/// Outcome of one NIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicOutcome {
    /// `multinicN`.
    pub name: String,
    /// N.
    pub slot: u8,
    /// The NIC's MAC, lowercase.
    pub mac: String,
    /// Position in the source, for NICs of the desired model (none for orphans).
    pub source_index: Option<usize>,
    /// Machine-readable result.
    pub reason: InterfaceReason,
    /// Human-readable detail.
    pub message: String,
}

impl NicOutcome {
    /// The report entry for this NIC.
    pub fn to_report(&self) -> ReportInterface {
        ReportInterface {
            id: Some(self.slot),
            name: Some(self.name.clone()),
            mac_address: self.mac.clone(),
            reason: self.reason,
            message: self.message.clone(),
        }
    }
}

/// Everything one apply or cleanup did.
#[derive(Clone, Debug)]
pub struct ApplyOutcome {
    /// Per NIC: desired NICs in slot order, then orphans.
    pub nics: Vec<NicOutcome>,
    /// The plan the run followed (computed against the state before the run).
    pub plan: Plan,
    /// Writes of the run, including revert writes.
    pub writes: WriteCounts,
    /// The run failed somewhere and was reverted to the snapshot.
    pub rolled_back: bool,
    /// Why the run was reverted, if it was.
    pub failure: Option<String>,
}

impl ApplyOutcome {
    /// True when every NIC is Configured, Unchanged or Removed.
    pub fn succeeded(&self) -> bool {
        self.nics.iter().all(|n| n.reason.is_success())
    }

    /// The outcome of the NIC with this name, if any.
    pub fn nic(&self, name: &str) -> Option<&NicOutcome> {
        self.nics.iter().find(|n| n.name == name)
    }
}

/// Per-NIC outcomes from the plan and the run's failure, if any.
pub(crate) fn outcomes(plan: &Plan, failure: Option<&Failure>) -> Vec<NicOutcome> {
    plan.nics
        .iter()
        .map(|nic| {
            let files = plan
                .files
                .iter()
                .filter(|f| {
                    f.owner()
                        .is_some_and(|o| o.name == nic.name && o.mac == nic.mac)
                })
                .count();
            let has_work = !nic.changes.is_empty() || files > 0;
            let (reason, message) = match (&nic.action, failure) {
                (NicAction::Skip { reason, message }, _) => (*reason, message.clone()),
                (_, Some(f)) if f.nic.as_deref() == Some(nic.name.as_str()) => {
                    (f.reason, f.message.clone())
                }
                (_, Some(f)) if has_work && f.reason == InterfaceReason::ProbeFailed => (
                    InterfaceReason::ProbeFailed,
                    format!("reverted: {}", f.message),
                ),
                (_, Some(f)) if has_work => (
                    InterfaceReason::RolledBack,
                    format!(
                        "reverted because {}: {}",
                        f.nic.as_deref().unwrap_or("the run failed"),
                        f.message
                    ),
                ),
                (NicAction::Configure, _) if has_work => (
                    InterfaceReason::Configured,
                    format!("{} kernel changes, {files} files", nic.changes.len()),
                ),
                (NicAction::Configure, _) => (InterfaceReason::Unchanged, String::new()),
                (_, _) => (
                    InterfaceReason::Removed,
                    format!("{} kernel changes, {files} files", nic.changes.len()),
                ),
            };
            NicOutcome {
                name: nic.name.clone(),
                slot: nic.slot,
                mac: nic.mac.clone(),
                source_index: nic.source_index,
                reason,
                message,
            }
        })
        .collect()
}
