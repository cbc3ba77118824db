//! Revert: the changes that take the touched links and the owned tables from the current state
//! back to the snapshot taken before the run, and the file snapshot that restores the disk.

use crate::apply::Writer;
use crate::diff::{LinkTarget, link_diff, park_name, simulate_down, table_diff};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::files::{self, DiskFile, FileOp};
use crate::plan::{Change, Plan};
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

impl Engine {
    /// Restores the kernel and the files to the snapshot.
    pub(crate) async fn revert(
        &self,
        writer: &Writer<'_>,
        tables: &BTreeSet<u32>,
        snapshot: &KernelState,
        plan: &Plan,
        file_snapshot: Option<&FileSnapshot>,
        handoff_begun: bool,
    ) -> Result<(), EngineError> {
        let touched: BTreeSet<u32> = plan
            .parking
            .iter()
            .chain(plan.stale.iter())
            .chain(plan.nics.iter().flat_map(|n| n.changes.iter()))
            .filter_map(Change::link_index)
            .collect();
        let current = KernelState::read(&self.socket, tables)?;
        let changes = revert_changes(snapshot, &current, &touched);
        tracing::info!(changes = changes.len(), "reverting kernel state");
        let kernel = writer.execute(&changes).map_err(|(_, e)| e);
        // Hand-off rollback after the kernel is back and before multinic's files are: the
        // daemon rewrites the profiles it restores, and the snapshot's files (with their
        // marker) must be what stays on disk.
        let handoff = match handoff_begun {
            true => self.handoff.rollback().await.map_err(EngineError::from),
            false => Ok(()),
        };
        let ops: Vec<FileOp> = file_snapshot
            .iter()
            .flat_map(|snapshot| snapshot.entries.iter())
            .map(|(path, before)| match before {
                Some(file) => FileOp::Write {
                    path: path.clone(),
                    mode: file.mode,
                    contents: file.contents.clone(),
                },
                None => FileOp::Remove { path: path.clone() },
            })
            .collect();
        let files = match ops.is_empty() {
            true => Ok(()),
            false => {
                let counters = writer.counters();
                files::stage(&self.config.root, &ops)
                    .and_then(|staged| staged.commit(|| counters.count_file()))
                    .map_err(|(_, e)| e)
            }
        };
        // The kernel's error first: the caller keeps the run journal only for it.
        kernel.and(handoff).and(files)
    }
}
