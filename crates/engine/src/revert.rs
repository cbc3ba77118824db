//! Revert: the changes that take the touched links and the owned tables from the current state
//! back to the snapshot taken before the run, and the file snapshot that restores the disk.

use crate::diff::{LinkTarget, link_diff, park_name, simulate_down, table_diff};
use crate::files::DiskFile;
use crate::plan::Change;
use crate::state::KernelState;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// What the disk held at each path a run is about to write or remove.
#[derive(Clone, Debug, Default)]
pub(crate) struct FileSnapshot {
    /// Path -> previous file (`None`: it did not exist).
    pub entries: Vec<(PathBuf, Option<DiskFile>)>,
}

/// Changes that restore `touched` links and the owned tables to `snapshot`.
pub(crate) fn revert_changes(
    snapshot: &KernelState,
    current: &KernelState,
    touched: &BTreeSet<u32>,
) -> Vec<Change> {
    let mut sim = current.clone();
    let mut changes = Vec::new();
    // Phase 1: move every renamed link to a neutral name, so names can be swapped back in
    // any order.
    for &index in touched {
        let (Some(now), Some(before)) = (sim.link(index).cloned(), snapshot.link(index)) else {
            continue;
        };
        if now.name == before.name {
            continue;
        }
        if now.up {
            changes.push(Change::LinkDown { index });
            simulate_down(&mut sim, index);
        }
        let to = park_name(index);
        changes.push(Change::Rename {
            index,
            from: now.name.clone(),
            to: to.clone(),
        });
        if let Some(l) = sim.links.iter_mut().find(|l| l.index == index) {
            l.name = to;
        }
    }
    let mut removals = Vec::new();
    let mut edits = Vec::new();
    let mut additions = Vec::new();
    let mut downs = Vec::new();
    let mut bounced = BTreeSet::new();
    for &index in touched {
        let (Some(now), Some(before)) = (sim.link(index), snapshot.link(index)) else {
            continue;
        };
        let target = LinkTarget {
            name: before.name.clone(),
            mtu: Some(before.mtu),
            up: before.up,
            sysctls: before.sysctls,
            ipv6: before.ipv6,
            addresses: snapshot
                .static_addresses_of(index)
                .map(|a| (a.address, a.noprefixroute))
                .collect(),
        };
        let diff = link_diff(now, &sim, &target);
        if diff.bounced || diff.routes_dropped {
            bounced.insert(index);
        }
        removals.extend(diff.removals);
        edits.extend(diff.edits);
        additions.extend(diff.additions);
        downs.extend(diff.final_down);
    }
    let want_routes = snapshot.routes.iter().cloned().collect();
    let want_rules = snapshot.rules.iter().cloned().collect();
    let (table_removals, table_additions) =
        table_diff(&sim, &want_routes, &want_rules, &BTreeSet::new(), &bounced);
    changes.extend(table_removals);
    changes.extend(removals);
    changes.extend(edits);
    changes.extend(additions);
    changes.extend(table_additions);
    changes.extend(downs);
    changes
}
