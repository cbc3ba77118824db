//! The primary-NIC guard: which links multinic must not touch (default route, a protected
//! address such as the node's InternalIP, enslaved to a bond or bridge) unless allowed.

use crate::config::GuardConfig;
use crate::state::{KernelState, LinkState};

/// Why `link` is protected, or `None` when the engine may touch it.
pub(crate) fn protection(
    link: &LinkState,
    state: &KernelState,
    guard: &GuardConfig,
) -> Option<String> {
    if guard.allow_primary {
        return None;
    }
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
    None
}
