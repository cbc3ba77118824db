//! Which link each NIC of a plan gets: the link holding a desired MAC, the links multinic
//! configured that left the spec (orphans, including those an unfinished run was touching),
//! and the parking renames that free a slot name another NIC needs.

use crate::config::EngineConfig;
use crate::diff::{park_name, simulate_down};
use crate::guard::protection;
use crate::plan::{Change, NicAction, NicPlan};
use crate::state::{KernelState, LinkState};
use multinic_api::{InterfaceReason, MacAddress, parse_slot_name};
use multinic_netconf::OwnedFile;
use std::collections::BTreeSet;

/// Orphans: links named multinicN that multinic configured (its file names the MAC, or a rule
/// in the slot's table comes from one of the link's addresses) whose MAC left the desired set.
///
/// A link an unfinished (killed) run was touching, named in the `journal`, is multinic's
/// whatever its name (it may still be parked or carry its kernel name): its slot comes from
/// the journal.
pub(crate) fn find_orphans(
    state: &KernelState,
    desired_macs: &BTreeSet<MacAddress>,
    owned_macs: &BTreeSet<MacAddress>,
    journal: &[OwnedFile],
    held: &[String],
    config: &EngineConfig,
) -> Vec<NicPlan> {
    let mut nics = Vec::new();
    for link in &state.links {
        let Some(mac) = link.mac else {
            continue;
        };
        if desired_macs.contains(&mac) {
            continue;
        }
        let journaled = journal
            .iter()
            .find(|j| j.mac.parse::<MacAddress>().ok() == Some(mac));
        let slot = match (parse_slot_name(&link.name), journaled) {
            (Ok(slot), _) => slot,
            (Err(_), Some(entry)) => match parse_slot_name(&entry.name) {
                Ok(slot) => slot,
                Err(_) => continue,
            },
            (Err(_), None) => continue,
        };
        let table = config.route_table_base + u32::from(slot);
        let rule_evidence = state.rules.iter().any(|r| {
            r.table == table
                && r.source.is_some_and(|s| {
                    state
                        .addresses_of(link.index)
                        .any(|a| a.address.addr() == s.addr())
                })
        });
        if !owned_macs.contains(&mac) && !rule_evidence && journaled.is_none() {
            continue;
        }
        // Skipped NICs keep their addresses, tables and files.
        let action = match protection(link, state, &config.guard) {
            _ if held.contains(&mac.to_string()) => skip(
                InterfaceReason::InvalidSpec,
                "left as configured: its source entry is invalid".into(),
            ),
            Some(why) => skip(InterfaceReason::PrimaryInterfaceProtected, why),
            None => NicAction::Remove,
        };
        nics.push(NicPlan {
            slot,
            name: link.name.clone(),
            mac: mac.to_string(),
            source_index: None,
            index: Some(link.index),
            action,
            changes: Vec::new(),
        });
    }

    nics
}

/// A desired NIC's name may be held by another link. A link multinic may move (one it
/// configures or strips in this run) is parked under a neutral name first, so names can be
/// swapped in any order; any other holder makes the NIC a NameConflict. Returns the state as
/// it will be after parking, and the parking changes.
pub(crate) fn park_or_conflict(
    nics: &mut [NicPlan],
    state: &KernelState,
) -> (KernelState, Vec<Change>) {
    let mut sim = state.clone();
    let mut parking = Vec::new();
    let movable: BTreeSet<u32> = nics
        .iter()
        .filter(|n| matches!(n.action, NicAction::Configure | NicAction::Remove))
        .filter_map(|n| n.index)
        .collect();
    for nic in nics.iter_mut() {
        let (NicAction::Configure, Some(index)) = (&nic.action, nic.index) else {
            continue;
        };
        let Some(holder) = sim
            .link_named(&nic.name)
            .filter(|h| h.index != index)
            .cloned()
        else {
            continue;
        };
        if movable.contains(&holder.index) {
            if holder.up {
                parking.push(Change::LinkDown {
                    index: holder.index,
                });
                simulate_down(&mut sim, holder.index);
            }
            let to = park_name(holder.index);
            parking.push(Change::Rename {
                index: holder.index,
                from: holder.name.clone(),
                to: to.clone(),
            });
            if let Some(l) = sim.links.iter_mut().find(|l| l.index == holder.index) {
                l.name = to;
            }
        } else {
            let owner = holder
                .mac
                .map(|m| m.to_string())
                .unwrap_or_else(|| "no MAC".into());
            nic.action = skip(
                InterfaceReason::NameConflict,
                format!(
                    "{} is held by link {} ({owner}), which multinic does not own",
                    nic.name, holder.index
                ),
            );
        }
    }

    (sim, parking)
}

pub(crate) fn skip(reason: InterfaceReason, message: String) -> NicAction {
    NicAction::Skip { reason, message }
}

/// Picks the link for a MAC: the only one, else the one already named right, else the only
/// one that is not a virtual upper device (bond, bridge, vlan ... share their port's MAC).
pub(crate) fn resolve<'a>(
    candidates: &[&'a LinkState],
    target: &str,
) -> Result<&'a LinkState, NicAction> {
    match candidates {
        [] => Err(skip(
            InterfaceReason::MacNotFound,
            "no link has this MAC".into(),
        )),
        [one] => Ok(one),
        many => {
            if let Some(named) = many.iter().find(|l| l.name == target) {
                return Ok(named);
            }
            const UPPER: [&str; 8] = [
                "bond", "bridge", "team", "vlan", "macvlan", "macvtap", "ipvlan", "vrf",
            ];
            let lower: Vec<_> = many
                .iter()
                .filter(|l| !l.kind.as_deref().is_some_and(|k| UPPER.contains(&k)))
                .collect();
            match lower.as_slice() {
                [one] => Ok(one),
                _ => Err(skip(
                    InterfaceReason::ApplyFailed,
                    format!(
                        "{} links carry this MAC: {}",
                        many.len(),
                        many.iter()
                            .map(|l| l.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
            }
        }
    }
}
