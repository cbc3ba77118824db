//! Turning one run into its report: per-NIC outcomes from the engine, entries that never got
//! that far (invalid spec, no free slot), ordering, the exit code, and the database write-back.

use crate::source::{CheckedSpec, RowOutcome};
use multinic_api::report::{AgentAction, AgentReport, REPORT_VERSION, ReportInterface};
use multinic_api::{InterfaceReason, ValidInterface};
use multinic_netconf::{DesiredNode, NetOptions, NoFreeSlot, slot_name};
use std::collections::HashMap;
use std::time::Instant;

/// One NIC's outcome in source order terms: `source_index` is `None` for NICs the engine
/// removed because they left the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicResult {
    /// Position in the source, when the NIC is in the spec.
    pub source_index: Option<usize>,
    /// The report entry.
    pub entry: ReportInterface,
}

/// The desired node built from a checked spec, plus what could not be placed in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// What the engine is asked to make true.
    pub node: DesiredNode,
    /// Entries already failed (invalid spec, no free slot), by source index.
    pub failed: Vec<NicResult>,
    /// Generation of the spec.
    pub generation: Option<i64>,
}

impl Desired {
    /// Builds the desired node; `current_slots` keeps a NIC without an explicit slot on the
    /// slot it already has.
    pub fn build(
        checked: CheckedSpec,
        options: &NetOptions,
        current_slots: &HashMap<multinic_api::MacAddress, u8>,
    ) -> Self {
        let sticky = |mac: &multinic_api::MacAddress| current_slots.get(mac).copied();
        let (mut node, unplaced) = DesiredNode::build(&checked.valid, options, &sticky);
        let mut failed: Vec<NicResult> = checked
            .invalid
            .into_iter()
            .map(|(index, entry)| NicResult {
                source_index: Some(index),
                entry,
            })
            .collect();
        failed.extend(
            unplaced
                .iter()
                .map(|NoFreeSlot { index }| no_slot(*index, &checked.valid)),
        );
        // A failed entry never takes down the NIC it names: the engine leaves it as it is.
        // One whose MAC cannot be read may name any NIC multinic configured, so then none
        // is removed in this run.
        let unreadable = failed.iter().any(|f| {
            f.entry
                .mac_address
                .parse::<multinic_api::MacAddress>()
                .is_err()
        });
        let mut held: Vec<String> = failed
            .iter()
            .filter_map(|f| f.entry.mac_address.parse::<multinic_api::MacAddress>().ok())
            .chain(current_slots.keys().copied().filter(|_| unreadable))
            .map(|mac| mac.to_string())
            .collect();
        held.sort();
        held.dedup();
        node.held = held;
        Self {
            node,
            failed,
            generation: checked.generation,
        }
    }

    /// Whether `result` is the engine's note on a held NIC, which the failed entry for it
    /// already reports.
    pub fn holds(&self, result: &NicResult) -> bool {
        result.source_index.is_none() && self.node.held.contains(&result.entry.mac_address)
    }
}

fn no_slot(index: usize, valid: &[ValidInterface]) -> NicResult {
    let mac = valid
        .iter()
        .find(|v| v.index == index)
        .map(|v| v.mac.to_string())
        .unwrap_or_default();
    NicResult {
        source_index: Some(index),
        entry: ReportInterface {
            id: None,
            name: None,
            mac_address: mac,
            reason: InterfaceReason::InvalidSpec,
            message: NoFreeSlot { index }.to_string(),
        },
    }
}

/// Entries for NICs that were about to be applied when the run stopped as a whole.
pub fn pending(node: &DesiredNode, message: &str) -> Vec<NicResult> {
    node.nics
        .iter()
        .map(|nic| NicResult {
            source_index: Some(nic.source_index),
            entry: ReportInterface {
                id: Some(nic.slot),
                name: Some(slot_name(nic.slot)),
                mac_address: nic.mac.clone(),
                reason: InterfaceReason::Pending,
                message: message.to_owned(),
            },
        })
        .collect()
}

/// Assembles the report: spec entries in source order, then removed NICs by name.
pub fn report(
    node_name: &str,
    action: AgentAction,
    generation: Option<i64>,
    mut results: Vec<NicResult>,
    error: Option<String>,
    started: Instant,
) -> AgentReport {
    results.sort_by(|a, b| {
        (a.source_index.is_none(), a.source_index, &a.entry.name).cmp(&(
            b.source_index.is_none(),
            b.source_index,
            &b.entry.name,
        ))
    });
    AgentReport {
        v: REPORT_VERSION,
        node: node_name.to_owned(),
        generation,
        action,
        error,
        interfaces: results.into_iter().map(|r| r.entry).collect(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Process exit code for a report: 0 all well, 2 some NIC failed, 1 nothing could be done.
pub fn exit_code(report: &AgentReport) -> u8 {
    if report.error.is_some() {
        1
    } else if report.succeeded() {
        0
    } else {
        2
    }
}

/// `netplan_success` per database row: true when the row's NIC ended well.
pub fn row_outcomes(row_ids: &[String], results: &[NicResult]) -> Vec<RowOutcome> {
    row_ids
        .iter()
        .enumerate()
        .map(|(index, id)| RowOutcome {
            id: id.clone(),
            success: results
                .iter()
                .find(|r| r.source_index == Some(index))
                .is_some_and(|r| r.entry.reason.is_success()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(index: Option<usize>, name: &str, reason: InterfaceReason) -> NicResult {
        NicResult {
            source_index: index,
            entry: ReportInterface {
                id: None,
                name: Some(name.into()),
                mac_address: String::new(),
                reason,
                message: String::new(),
            },
        }
    }

    #[test]
    fn orders_by_source_then_removed_and_sets_exit_codes() {
        let results = vec![
            result(None, "multinic7", InterfaceReason::Removed),
            result(Some(1), "multinic0", InterfaceReason::Configured),
            result(Some(0), "multinic3", InterfaceReason::MacNotFound),
        ];
        let r = report("n", AgentAction::Apply, None, results, None, Instant::now());
        let names: Vec<_> = r
            .interfaces
            .iter()
            .map(|i| i.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["multinic3", "multinic0", "multinic7"]);
        assert_eq!(exit_code(&r), 2);

        let ok = report(
            "n",
            AgentAction::Apply,
            None,
            vec![result(Some(0), "multinic0", InterfaceReason::Unchanged)],
            None,
            Instant::now(),
        );
        assert_eq!(exit_code(&ok), 0);
        let fatal = report(
            "n",
            AgentAction::Apply,
            None,
            vec![],
            Some("x".into()),
            Instant::now(),
        );
        assert_eq!(exit_code(&fatal), 1);
    }

    #[test]
    fn rows_follow_their_nics() {
        let results = vec![
            result(Some(0), "multinic0", InterfaceReason::Configured),
            result(Some(1), "", InterfaceReason::InvalidSpec),
        ];
        let rows = row_outcomes(&["17".into(), "18".into(), "19".into()], &results);
        let got: Vec<_> = rows.iter().map(|r| (r.id.as_str(), r.success)).collect();
        assert_eq!(got, [("17", true), ("18", false), ("19", false)]);
    }
}
