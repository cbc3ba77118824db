//! The planner: desired model + kernel state + multinic's files -> [`Plan`]. Pure; the same
//! link/table diff also drives verify (re-plan must be empty) and revert (target = snapshot).

use crate::claim::{find_orphans, park_or_conflict, resolve, skip};
use crate::config::EngineConfig;
use crate::guard::{overlap, protected_networks, protection};
use crate::plan::{Change, NicAction, NicPlan};
use crate::state::{Ipv6Conf, KernelState, LinkState, RouteEntry, RuleEntry};
use ipnet::IpNet;
use multinic_api::{InterfaceReason, MacAddress, parse_slot_name};
use multinic_netconf::{DesiredNic, DesiredNode, NicSysctls, OwnedFile};
use std::collections::{BTreeMap, BTreeSet};

/// How one link must end up.
#[derive(Clone, Debug)]
pub(crate) struct LinkTarget {
    pub name: String,
    pub mtu: Option<u32>,
    pub up: bool,
    pub sysctls: Option<NicSysctls>,
    /// IPv6 values to pin (set only where the link has IPv6 and they can be written).
    pub ipv6: Option<Ipv6Conf>,
    pub addresses: Vec<(IpNet, bool)>,
}

/// Changes for one link, grouped by when they must run.
#[derive(Clone, Debug, Default)]
pub(crate) struct LinkDiff {
    /// Stale addresses (before the link edit).
    pub removals: Vec<Change>,
    /// IPv6 values (by the current name), then down/rename/MTU/sysctls/up.
    pub edits: Vec<Change>,
    /// Missing addresses (after the link is up).
    pub additions: Vec<Change>,
    /// A final `LinkDown` for links that must end down.
    pub final_down: Option<Change>,
    /// The link goes down and up again, which drops its routes and IPv6 addresses.
    pub bounced: bool,
    /// The link loses and regains an address, which drops the routes using it.
    pub routes_dropped: bool,
}

/// Diff of one link against its target.
pub(crate) fn link_diff(link: &LinkState, state: &KernelState, target: &LinkTarget) -> LinkDiff {
    let index = link.index;
    let mut diff = LinkDiff::default();
    let rename = link.name != target.name;
    if let Some(values) = target
        .ipv6
        .filter(|v| link.ipv6.is_some() && link.ipv6 != Some(*v))
    {
        // First, under the link's current name (a rename keeps the values): before the link
        // comes up, so no router advertisement is taken in between, and out of the way of
        // the link edits, which then go to the kernel as one message.
        diff.edits.push(Change::Ipv6Conf {
            index,
            name: link.name.clone(),
            from: link.ipv6,
            to: values,
        });
    }
    if rename && link.up {
        diff.edits.push(Change::LinkDown { index });
        diff.bounced = true;
    }
    if rename {
        diff.edits.push(Change::Rename {
            index,
            from: link.name.clone(),
            to: target.name.clone(),
        });
    }
    if let Some(mtu) = target.mtu.filter(|m| *m != link.mtu) {
        diff.edits.push(Change::Mtu {
            index,
            from: link.mtu,
            to: mtu,
        });
    }
    if let Some(values) = target.sysctls.filter(|s| link.sysctls != Some(*s)) {
        diff.edits.push(Change::Sysctls {
            index,
            from: link.sysctls,
            to: values,
        });
    }
    if target.up && (!link.up || diff.bounced) {
        diff.edits.push(Change::LinkUp { index });
    }
    if !target.up && link.up && !diff.bounced {
        diff.final_down = Some(Change::LinkDown { index });
    }
    // Kernel-made (SLAAC, privacy) addresses are neither compared nor removed.
    let current: Vec<_> = state.static_addresses_of(index).collect();
    for addr in &current {
        if !target.addresses.iter().any(|(net, _)| *net == addr.address) {
            diff.removals.push(Change::RemoveAddress {
                index,
                address: addr.address,
            });
        }
    }
    for (net, noprefixroute) in &target.addresses {
        let existing = current.iter().find(|a| a.address == *net);
        // IPv4 keeps an address's flags on replace, so a flag change means remove + add;
        // the kernel then also drops routes using it as source, as after a bounce.
        // An address that failed duplicate address detection stays unusable until it is
        // removed and added again (which runs DAD again).
        // An address with `noprefixroute` where the spec wants the on-link route is fine
        // when a main-table route to its network through the link is there anyway:
        // NetworkManager adds every address that way and installs the route itself, and
        // re-adding the address would race it on every run.
        let flags_match = existing.is_some_and(|a| {
            a.noprefixroute == *noprefixroute
                || (a.noprefixroute && state.main_network_routes.contains(&(index, net.trunc())))
        });
        if let Some(a) = existing
            && ((!flags_match && matches!(net, IpNet::V4(_))) || a.dad_failed)
        {
            diff.removals.push(Change::RemoveAddress {
                index,
                address: *net,
            });
            diff.routes_dropped = true;
        }
        // IPv6 addresses do not survive a down/up (keep_addr_on_down=0).
        let present = existing.is_some_and(|a| {
            flags_match && !a.dad_failed && !(diff.bounced && matches!(net, IpNet::V6(_)))
        });
        if !present {
            diff.additions.push(Change::AddAddress {
                index,
                address: *net,
                noprefixroute: *noprefixroute,
            });
        }
    }
    diff
}

/// Route and rule changes that make the owned tables hold exactly `want_routes`/`want_rules`,
/// leaving the tables in `preserve` alone. Routes through a link in `bounced` are gone after
/// it bounces, so they are re-added and not removed.
pub(crate) fn table_diff(
    state: &KernelState,
    want_routes: &BTreeSet<RouteEntry>,
    want_rules: &BTreeSet<RuleEntry>,
    preserve: &BTreeSet<u32>,
    bounced: &BTreeSet<u32>,
) -> (Vec<Change>, Vec<Change>) {
    let gone = |r: &RouteEntry| r.oif.is_some_and(|i| bounced.contains(&i));
    let mut removals = Vec::new();
    let mut additions = Vec::new();
    for rule in &state.rules {
        if !want_rules.contains(rule) && !preserve.contains(&rule.table) {
            removals.push(Change::RemoveRule(rule.clone()));
        }
    }
    for route in &state.routes {
        if !want_routes.contains(route) && !preserve.contains(&route.table) && !gone(route) {
            removals.push(Change::RemoveRoute(route.clone()));
        }
    }
    for route in want_routes {
        if !state.routes.contains(route) || gone(route) {
            additions.push(Change::AddRoute(route.clone()));
        }
    }
    for rule in want_rules {
        if !state.rules.contains(rule) {
            additions.push(Change::AddRule(rule.clone()));
        }
    }
    (removals, additions)
}

/// The route and rule one desired NIC needs on link `index`.
fn policy_entries(nic: &DesiredNic, index: u32) -> Option<(RouteEntry, RuleEntry)> {
    let routing = nic.routing?;
    let ip = nic.address.addr();
    let v6 = ip.is_ipv6();
    let route = RouteEntry {
        table: routing.table,
        destination: nic.network.trunc(),
        oif: Some(index),
        metric: routing.metric,
        // IPv6 refuses a preferred source that is still tentative (DAD), so only IPv4 sets it.
        pref_source: (!v6).then_some(ip),
    };
    let rule = RuleEntry {
        v6,
        priority: routing.rule_priority,
        source: Some(IpNet::new(ip, nic.address.max_prefix_len()).expect("host prefix")),
        table: routing.table,
    };
    Some((route, rule))
}

/// A name no slot uses, for moving a link off a slot name another NIC needs.
pub(crate) fn park_name(index: u32) -> String {
    format!("mnpark{index}")
}

/// Takes a link down in a simulated state: its routes and IPv6 addresses go with it.
pub(crate) fn simulate_down(state: &mut KernelState, index: u32) {
    if let Some(link) = state.links.iter_mut().find(|l| l.index == index) {
        link.up = false;
    }
    state
        .addresses
        .retain(|a| a.index != index || matches!(a.address, IpNet::V4(_)));
    state.routes.retain(|r| r.oif != Some(index));
}

/// The runtime part of the plan: parking renames, per-NIC changes, stale table entries.
pub(crate) fn plan_runtime(
    desired: &DesiredNode,
    state: &KernelState,
    owned: &[OwnedFile],
    journal: &[OwnedFile],
    config: &EngineConfig,
) -> (Vec<Change>, Vec<NicPlan>, Vec<Change>) {
    let mut by_mac: BTreeMap<MacAddress, Vec<&LinkState>> = BTreeMap::new();
    for link in &state.links {
        if let Some(mac) = link.mac {
            by_mac.entry(mac).or_default().push(link);
        }
    }
    let desired_macs: BTreeSet<MacAddress> = desired.nics.iter().map(|n| n.mac_address()).collect();
    let owned_macs: BTreeSet<MacAddress> =
        owned.iter().filter_map(|o| o.mac.parse().ok()).collect();

    let protected_nets = protected_networks(state, &config.guard);
    let mut nics: Vec<NicPlan> = Vec::new();
    for nic in &desired.nics {
        let mac = nic.mac_address();
        let mut plan = NicPlan {
            slot: nic.slot,
            name: nic.name.clone(),
            mac: mac.to_string(),
            source_index: Some(nic.source_index),
            index: None,
            action: NicAction::Configure,
            changes: Vec::new(),
        };
        match resolve(
            by_mac.get(&mac).map(Vec::as_slice).unwrap_or(&[]),
            &nic.name,
        ) {
            Err(action) => plan.action = action,
            Ok(link) => {
                plan.index = Some(link.index);
                if let Some(why) = protection(link, state, &config.guard) {
                    plan.action = skip(InterfaceReason::PrimaryInterfaceProtected, why);
                } else if let Some(why) = overlap(&nic.network, &protected_nets) {
                    plan.action = skip(InterfaceReason::NetworkOverlap, why);
                }
            }
        }
        nics.push(plan);
    }
    nics.extend(find_orphans(
        state,
        &desired_macs,
        &owned_macs,
        journal,
        &desired.held,
        config,
    ));
    let (sim, parking) = park_or_conflict(&mut nics, state);

    // Per-link diffs, then the tables.
    let mut diffs: Vec<Option<LinkDiff>> = Vec::with_capacity(nics.len());
    let mut want_routes = BTreeSet::new();
    let mut want_rules = BTreeSet::new();
    let mut preserve = BTreeSet::new();
    let mut bounced = BTreeSet::new();
    let mut table_owner: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, plan) in nics.iter().enumerate() {
        let desired_nic = plan
            .source_index
            .and_then(|_| desired.nics.iter().find(|n| n.name == plan.name));
        let table = desired_nic
            .and_then(|n| n.routing.map(|r| r.table))
            .unwrap_or(config.route_table_base + u32::from(plan.slot));
        let link = plan.index.and_then(|idx| sim.link(idx));
        let diff = match (&plan.action, link) {
            (NicAction::Configure, Some(link)) => {
                let nic = desired_nic.expect("configured NICs come from the model");
                if let Some((route, rule)) = policy_entries(nic, link.index) {
                    want_routes.insert(route);
                    want_rules.insert(rule);
                }
                Some(link_diff(link, &sim, &desired_target(nic, desired, config)))
            }
            (NicAction::Remove, Some(link)) => Some(link_diff(link, &sim, &strip_target(link))),
            _ => {
                preserve.insert(table);
                None
            }
        };
        if let Some(d) = &diff
            && (d.bounced || d.routes_dropped)
        {
            bounced.insert(plan.index.expect("diffed NICs have a link"));
        }
        table_owner.entry(table).or_insert(i);
        diffs.push(diff);
    }
    let (table_removals, table_additions) =
        table_diff(&sim, &want_routes, &want_rules, &preserve, &bounced);
    let mut nic_removals: Vec<Vec<Change>> = vec![Vec::new(); nics.len()];
    let mut nic_additions: Vec<Vec<Change>> = vec![Vec::new(); nics.len()];
    let mut stale = Vec::new();
    let owner_of = |c: &Change| {
        let table = match c {
            Change::AddRoute(r) | Change::RemoveRoute(r) => r.table,
            Change::AddRule(r) | Change::RemoveRule(r) => r.table,
            _ => return None,
        };
        table_owner
            .get(&table)
            .copied()
            .filter(|i| diffs[*i].is_some())
    };
    for c in table_removals {
        match owner_of(&c) {
            Some(i) => nic_removals[i].push(c),
            None => stale.push(c),
        }
    }
    for c in table_additions {
        match owner_of(&c) {
            Some(i) => nic_additions[i].push(c),
            None => stale.push(c),
        }
    }
    for (i, plan) in nics.iter_mut().enumerate() {
        let Some(diff) = diffs[i].take() else {
            continue;
        };
        let mut changes = std::mem::take(&mut nic_removals[i]);
        changes.extend(diff.removals);
        changes.extend(diff.edits);
        changes.extend(diff.additions);
        changes.append(&mut nic_additions[i]);
        changes.extend(diff.final_down);
        plan.changes = changes;
    }
    // A journaled link the killed run never got to carries nothing to strip: not an orphan.
    nics.retain(|n| {
        !(n.action == NicAction::Remove
            && n.changes.is_empty()
            && parse_slot_name(&n.name).is_err())
    });
    (parking, nics, stale)
}

fn desired_target(nic: &DesiredNic, node: &DesiredNode, config: &EngineConfig) -> LinkTarget {
    LinkTarget {
        name: nic.name.clone(),
        mtu: nic.mtu,
        up: true,
        sysctls: node.sysctls,
        ipv6: config.ipv6_runtime.then_some(Ipv6Conf::MANAGED),
        addresses: vec![(nic.address, node.noprefixroute)],
    }
}

fn strip_target(link: &LinkState) -> LinkTarget {
    LinkTarget {
        name: link.name.clone(),
        mtu: None,
        up: false,
        sysctls: None,
        ipv6: None,
        addresses: Vec::new(),
    }
}

/// Sticky slots: MAC -> N for every link named `multinicN`.
pub(crate) fn current_slots(state: &KernelState) -> BTreeMap<MacAddress, u8> {
    state
        .links
        .iter()
        .filter_map(|l| Some((l.mac?, parse_slot_name(&l.name).ok()?)))
        .collect()
}
