//! The primary-NIC guard: which links multinic must not touch (default route, a protected
//! address such as the node's InternalIP, enslaved to a bond or bridge, the lower device of a
//! protected VLAN/macvlan link) unless allowed, and which networks a managed NIC must not
//! take because a protected link already uses them.

use crate::config::GuardConfig;
use crate::state::{KernelState, LinkState};
use ipnet::IpNet;

/// Kinds of links stacked on a lower device (`IFLA_LINK`) whose traffic leaves through it.
const STACKED: [&str; 5] = ["vlan", "macvlan", "macvtap", "ipvlan", "ipvtap"];

/// How many stacked layers are followed (VLAN on macvlan on ...); real hosts use one or two.
const MAX_DEPTH: usize = 4;

/// Why `link` is protected, or `None` when the engine may touch it.
pub(crate) fn protection(
    link: &LinkState,
    state: &KernelState,
    guard: &GuardConfig,
) -> Option<String> {
    if guard.allow_primary {
        return None;
    }
    protected(link, state, guard, MAX_DEPTH)
}

fn protected(
    link: &LinkState,
    state: &KernelState,
    guard: &GuardConfig,
    depth: usize,
) -> Option<String> {
    if state.default_route_links.contains(&link.index) {
        return Some(format!("{} carries the default route", link.name));
    }
    if let Some(addr) = state
        .addresses_of(link.index)
        .find(|a| guard.protected_addresses.contains(&a.address.addr()))
    {
        return Some(format!(
            "{} holds protected address {}",
            link.name,
            addr.address.addr()
        ));
    }
    if let Some(master) = link.master {
        let master_name = state
            .link(master)
            .map(|m| m.name.clone())
            .unwrap_or_else(|| format!("link {master}"));
        return Some(format!("{} is enslaved to {master_name}", link.name));
    }
    if depth == 0 {
        return None;
    }
    // Taking a lower device down or renaming it cuts every link stacked on it.
    state
        .links
        .iter()
        .filter(|upper| upper.index != link.index && upper.lower == Some(link.index))
        .filter(|upper| upper.kind.as_deref().is_some_and(|k| STACKED.contains(&k)))
        .find_map(|upper| {
            protected(upper, state, guard, depth - 1)
                .map(|why| format!("{} is the lower device of {why}", link.name))
        })
}

/// The networks of every protected link's addresses, each with the reason its link is
/// protected. A managed NIC on an overlapping network would take the node's own traffic.
pub(crate) fn protected_networks(state: &KernelState, guard: &GuardConfig) -> Vec<(IpNet, String)> {
    if guard.allow_primary {
        return Vec::new();
    }
    state
        .links
        .iter()
        .filter_map(|link| protection(link, state, guard).map(|why| (link, why)))
        .flat_map(|(link, why)| {
            state
                .addresses_of(link.index)
                .map(move |a| (a.address.trunc(), why.clone()))
        })
        .collect()
}

/// The first protected network `network` overlaps, as a message.
pub(crate) fn overlap(network: &IpNet, protected: &[(IpNet, String)]) -> Option<String> {
    protected
        .iter()
        .find(|(net, _)| net.contains(&network.network()) || network.contains(&net.network()))
        .map(|(net, why)| {
            format!("{network} overlaps {net}, a network of a protected link ({why})")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::AddressState;

    fn link(index: u32, name: &str, kind: Option<&str>, lower: Option<u32>) -> LinkState {
        LinkState {
            index,
            name: name.into(),
            mac: None,
            mtu: 1500,
            up: true,
            master: None,
            lower,
            kind: kind.map(str::to_owned),
            sysctls: None,
            ipv6: None,
        }
    }

    fn addr(index: u32, net: &str) -> AddressState {
        AddressState {
            index,
            address: net.parse().unwrap(),
            noprefixroute: false,
            dynamic: false,
            tentative: false,
            dad_failed: false,
        }
    }

    /// eth0 <- vlan eth0.5 <- macvlan mv0 (holds the node address); eth1 unrelated.
    fn stacked() -> KernelState {
        KernelState {
            links: vec![
                link(2, "eth0", None, None),
                link(3, "eth0.5", Some("vlan"), Some(2)),
                link(4, "mv0", Some("macvlan"), Some(3)),
                link(5, "eth1", None, None),
                link(6, "veth0", Some("veth"), Some(2)),
            ],
            addresses: vec![addr(4, "10.0.0.5/24"), addr(6, "10.9.0.1/24")],
            ..KernelState::default()
        }
    }

    #[test]
    fn lower_devices_of_a_protected_stack_are_protected() {
        let state = stacked();
        let guard = GuardConfig {
            allow_primary: false,
            protected_addresses: vec!["10.0.0.5".parse().unwrap()],
        };
        let why = protection(&state.links[0], &state, &guard).expect("eth0 is protected");
        assert_eq!(
            why,
            "eth0 is the lower device of eth0.5 is the lower device of mv0 holds protected address 10.0.0.5"
        );
        assert!(protection(&state.links[1], &state, &guard).is_some());
        assert!(protection(&state.links[3], &state, &guard).is_none());
        // A veth's IFLA_LINK is its peer, not a lower device: it protects nothing.
        let mut alone = state.clone();
        alone.addresses = vec![addr(6, "10.0.0.5/24")];
        assert!(protection(&alone.links[0], &alone, &guard).is_none());
        let allowed = GuardConfig {
            allow_primary: true,
            ..guard
        };
        assert!(protection(&state.links[0], &state, &allowed).is_none());
    }

    #[test]
    fn networks_of_protected_links_refuse_overlapping_networks() {
        let mut state = stacked();
        state.default_route_links.insert(5);
        state.addresses.push(addr(5, "192.168.10.7/16"));
        let guard = GuardConfig::default();
        let nets = protected_networks(&state, &guard);
        assert_eq!(nets.len(), 1, "{nets:?}");
        let inside: IpNet = "192.168.77.0/24".parse().unwrap();
        let message = overlap(&inside, &nets).expect("overlaps");
        assert!(message.contains("192.168.0.0/16"), "{message}");
        assert!(
            message.contains("eth1 carries the default route"),
            "{message}"
        );
        let wider: IpNet = "192.0.0.0/8".parse().unwrap();
        assert!(overlap(&wider, &nets).is_some());
        let apart: IpNet = "192.169.0.0/24".parse().unwrap();
        assert!(overlap(&apart, &nets).is_none());
    }
}
