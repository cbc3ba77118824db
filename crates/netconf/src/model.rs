//! The desired network state of one node: NIC slots, addresses, MTU and the options that shape
//! routing and sysctls. Built from validated interfaces; everything downstream (renderers, the
//! apply engine, the report) reads this one model.

use ipnet::IpNet;
use multinic_api::{INTERFACE_NAME_PREFIX, MAX_SLOT, MacAddress, ValidInterface};
use serde::{Deserialize, Serialize};

/// Knobs of the node-side configuration. Defaults follow the earlier agent (policy routing
/// and the multi-homing sysctls on).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NetOptions {
    /// Give every NIC its own route table and a `from <address>` rule, so replies leave
    /// through the NIC the request came in on.
    pub policy_routing: bool,
    /// Route table of slot N is `route_table_base + N`.
    pub route_table_base: u32,
    /// Metric of routes multinic adds for slot N is `route_metric_base + N`.
    pub route_metric_base: u32,
    /// Priority of the `from <address>` rule of slot N is `rule_priority_base + N`.
    pub rule_priority_base: u32,
    /// Add addresses with `noprefixroute`, so the main table gets no on-link route for them.
    pub noprefixroute: bool,
    /// Per-NIC sysctls for multi-homed hosts; `None` leaves the kernel's values alone.
    pub sysctls: Option<NicSysctls>,
}

impl Default for NetOptions {
    fn default() -> Self {
        Self {
            policy_routing: true,
            route_table_base: 1000,
            route_metric_base: 100,
            rule_priority_base: 1000,
            noprefixroute: false,
            sysctls: Some(NicSysctls::default()),
        }
    }
}

/// The IPv4 per-interface sysctls multi-homed hosts need (`net.ipv4.conf.<nic>.*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NicSysctls {
    /// `arp_ignore`: 1 answers ARP only for addresses on the asking NIC.
    pub arp_ignore: u8,
    /// `arp_announce`: 2 always uses the best local source address in ARP requests.
    pub arp_announce: u8,
    /// `rp_filter`: 2 (loose) so asymmetric multi-NIC paths are not dropped.
    pub rp_filter: u8,
}

impl Default for NicSysctls {
    fn default() -> Self {
        Self {
            arp_ignore: 1,
            arp_announce: 2,
            rp_filter: 2,
        }
    }
}

/// Policy routing of one NIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRouting {
    /// Route table holding the NIC's network route.
    pub table: u32,
    /// Metric of that route.
    pub metric: u32,
    /// Priority of the `from <address> lookup <table>` rule.
    pub rule_priority: u32,
}

/// One NIC as it must be on the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredNic {
    /// Slot 0..9.
    pub slot: u8,
    /// `multinic<slot>`.
    pub name: String,
    /// Identity of the NIC on the node.
    pub mac: String,
    /// Host address with prefix length, e.g. `11.11.11.132/24`.
    pub address: IpNet,
    /// The network, e.g. `11.11.11.0/24`.
    pub network: IpNet,
    /// MTU to set, if the spec gave one.
    pub mtu: Option<u32>,
    /// Policy routing for this NIC, when enabled.
    pub routing: Option<PolicyRouting>,
    /// Position of the interface in the source (spec index or database row order).
    pub source_index: usize,
}

impl DesiredNic {
    /// The MAC, parsed.
    pub fn mac_address(&self) -> MacAddress {
        self.mac
            .parse()
            .expect("DesiredNic.mac is always a valid MAC")
    }
}

/// Everything multinic wants on one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredNode {
    /// NICs, ordered by slot.
    pub nics: Vec<DesiredNic>,
    /// Sysctls applied to every NIC, if any.
    pub sysctls: Option<NicSysctls>,
    /// Whether addresses are added with `noprefixroute`.
    pub noprefixroute: bool,
    /// MACs (lowercase colon form) of NICs whose source entry failed validation: they are
    /// left exactly as they are configured, never removed as orphans, so one bad row cannot
    /// take a working NIC down.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<String>,
}

/// A slot could not be given to an interface.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("spec.interfaces[{index}]: no free slot left (all of multinic0..multinic{max} taken)", max = MAX_SLOT)]
pub struct NoFreeSlot {
    /// Position of the interface that got no slot.
    pub index: usize,
}

/// Name of the NIC in `slot`.
pub fn slot_name(slot: u8) -> String {
    format!("{INTERFACE_NAME_PREFIX}{slot}")
}

impl DesiredNode {
    /// Builds the model: explicit slots first (name, else id), then the lowest free slot for
    /// the rest in source order. `sticky` maps a MAC to the slot it already has on the node, so
    /// a NIC without an explicit slot keeps its name across runs.
    pub fn build(
        interfaces: &[ValidInterface],
        options: &NetOptions,
        sticky: &dyn Fn(&MacAddress) -> Option<u8>,
    ) -> (Self, Vec<NoFreeSlot>) {
        let mut taken = [false; MAX_SLOT as usize + 1];
        for iface in interfaces {
            if let Some(slot) = iface.requested_slot {
                taken[usize::from(slot)] = true;
            }
        }
        let mut nics = Vec::new();
        let mut unplaced = Vec::new();
        for iface in interfaces {
            let slot = iface.requested_slot.or_else(|| {
                let preferred = sticky(&iface.mac).filter(|s| !taken[usize::from(*s)]);
                let slot = preferred.or_else(|| (0..=MAX_SLOT).find(|s| !taken[usize::from(*s)]));
                if let Some(s) = slot {
                    taken[usize::from(s)] = true;
                }
                slot
            });
            let Some(slot) = slot else {
                unplaced.push(NoFreeSlot { index: iface.index });
                continue;
            };
            // Bases come from the operator's flags; saturate rather than wrap or panic on an
            // absurd base (the flags' own ranges keep real values far from u32::MAX).
            let offset = |base: u32| base.saturating_add(u32::from(slot));
            let routing = options.policy_routing.then(|| PolicyRouting {
                table: offset(options.route_table_base),
                metric: offset(options.route_metric_base),
                rule_priority: offset(options.rule_priority_base),
            });
            nics.push(DesiredNic {
                slot,
                name: slot_name(slot),
                mac: iface.mac.to_string(),
                address: iface.address,
                network: iface.network,
                mtu: iface.mtu,
                routing,
                source_index: iface.index,
            });
        }
        nics.sort_by_key(|n| n.slot);
        let node = Self {
            nics,
            sysctls: options.sysctls,
            noprefixroute: options.noprefixroute,
            held: Vec::new(),
        };
        (node, unplaced)
    }
}
