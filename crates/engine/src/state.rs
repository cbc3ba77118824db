//! The kernel's current network state as multinic sees it, read with four dumps on the
//! engine's own netlink socket:
//! links (name, MAC, MTU, up, master, lower device, kind, IPv4 and IPv6 devconf), global
//! addresses with their DAD and lifetime flags, and the routes
//! and rules in the tables multinic owns, plus which links carry a default route.

use crate::error::EngineError;
use crate::netlink::BatchSocket;
use crate::sysctl;
use ipnet::IpNet;
use multinic_api::MacAddress;
use multinic_netconf::NicSysctls;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoKind, LinkAttribute, LinkExtentMask, LinkFlags, LinkHeader, LinkInfo, LinkMessage,
    LinkMessageBuffer,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::rule::{RuleAttribute, RuleMessage};
use rtnetlink::packet_core::{DecodeError, NlasIterator, Parseable, ParseableParametrized};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

/// Main routing table id.
const MAIN_TABLE: u32 = 254;

/// One network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkState {
    /// Kernel ifindex; stable across renames.
    pub index: u32,
    /// Current name.
    pub name: String,
    /// Hardware address, when the link has a 6-byte one.
    pub mac: Option<MacAddress>,
    /// MTU.
    pub mtu: u32,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// ifindex of the bond/bridge this link is enslaved to.
    pub master: Option<u32>,
    /// `IFLA_LINK`: the lower device of a VLAN/macvlan (a veth's peer).
    pub lower: Option<u32>,
    /// `IFLA_INFO_KIND` (veth, bond, bridge ...); none for plain hardware NICs.
    pub kind: Option<String>,
    /// `arp_ignore`/`arp_announce`/`rp_filter` of the link's IPv4 devconf.
    pub sysctls: Option<NicSysctls>,
    /// `accept_ra`/`autoconf` of the link's IPv6 devconf (none when IPv6 is off).
    pub ipv6: Option<Ipv6Conf>,
}

/// The IPv6 settings multinic pins on its NICs: no router advertisements, no SLAAC, so a
/// managed NIC holds exactly the address of the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv6Conf {
    /// `net.ipv6.conf.<nic>.accept_ra`.
    pub accept_ra: i32,
    /// `net.ipv6.conf.<nic>.autoconf`.
    pub autoconf: i32,
}

impl Ipv6Conf {
    /// What every managed NIC gets.
    pub const MANAGED: Self = Self {
        accept_ra: 0,
        autoconf: 0,
    };
}

/// One global-scope address on a link (link-local and host addresses are the kernel's).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AddressState {
    /// ifindex of the link holding it.
    pub index: u32,
    /// Address with prefix length.
    pub address: IpNet,
    /// Added with `noprefixroute`.
    pub noprefixroute: bool,
    /// Made by the kernel (IPv6 SLAAC or privacy address: a finite lifetime or
    /// `IFA_F_TEMPORARY`); never multinic's and never drift.
    pub dynamic: bool,
    /// Duplicate address detection is still running (`IFA_F_TENTATIVE`).
    pub tentative: bool,
    /// Duplicate address detection found another holder (`IFA_F_DADFAILED`).
    pub dad_failed: bool,
}

/// A route in one of multinic's tables.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteEntry {
    /// Route table.
    pub table: u32,
    /// Destination network.
    pub destination: IpNet,
    /// Output link.
    pub oif: Option<u32>,
    /// Metric (`RTA_PRIORITY`).
    pub metric: u32,
    /// Preferred source address.
    pub pref_source: Option<IpAddr>,
}

/// A policy rule pointing at one of multinic's tables.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleEntry {
    /// IPv6 rule (else IPv4).
    pub v6: bool,
    /// Rule priority.
    pub priority: u32,
    /// `from` selector.
    pub source: Option<IpNet>,
    /// Table it looks up.
    pub table: u32,
}

/// Everything the planner needs to know about the node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelState {
    /// Every link, by ifindex order.
    pub links: Vec<LinkState>,
    /// Global addresses of every link.
    pub addresses: Vec<AddressState>,
    /// Routes in the owned tables.
    pub routes: Vec<RouteEntry>,
    /// Rules looking up the owned tables.
    pub rules: Vec<RuleEntry>,
    /// ifindexes of links that carry a default route of the main table.
    pub default_route_links: BTreeSet<u32>,
    /// (ifindex, network) of the main table's routes to a network through one link (IPv6
    /// link-local ones left out: every link has them): the
    /// on-link route an address makes, whether the kernel or a daemon (NetworkManager adds
    /// addresses with `noprefixroute` and the route itself) installed it.
    pub main_network_routes: BTreeSet<(u32, IpNet)>,
}

impl KernelState {
    /// The link with this ifindex.
    pub fn link(&self, index: u32) -> Option<&LinkState> {
        self.links.iter().find(|l| l.index == index)
    }

    /// The link with this name.
    pub fn link_named(&self, name: &str) -> Option<&LinkState> {
        self.links.iter().find(|l| l.name == name)
    }

    /// Global addresses on the link with this ifindex.
    pub fn addresses_of(&self, index: u32) -> impl Iterator<Item = &AddressState> {
        self.addresses.iter().filter(move |a| a.index == index)
    }

    /// Addresses on the link that someone configured (not made by the kernel): the ones a
    /// plan compares and a revert restores.
    pub fn static_addresses_of(&self, index: u32) -> impl Iterator<Item = &AddressState> {
        self.addresses_of(index).filter(|a| !a.dynamic)
    }

    /// Reads the whole state: links, addresses, and routes/rules of `tables`, each message
    /// decoded as it arrives and only what is kept held.
    pub(crate) fn read(
        socket: &Mutex<BatchSocket>,
        tables: &BTreeSet<u32>,
    ) -> Result<Self, EngineError> {
        let mut socket = socket.lock().map_err(|e| EngineError::NetlinkSocket {
            op: "lock the netlink socket",
            source: std::io::Error::other(e.to_string()),
        })?;
        let links = read_links(&mut socket)?;
        let addresses = read_addresses(&mut socket)?;
        let mut routes = Vec::new();
        let mut default_route_links = BTreeSet::new();
        let mut main_network_routes = BTreeSet::new();
        // Every route of every family in one dump (`AF_UNSPEC`: the kernel walks the IPv4
        // and IPv6 tables, and the multicast ones, which `parse_route` skips).
        let all_routes = RouteNetlinkMessage::GetRoute(RouteMessage::default());
        dump(&mut socket, "dump routes", all_routes, |payload| {
            let msg = RouteMessage::parse(payload)?;
            let Some(route) = parse_route(&msg) else {
                return Ok(());
            };
            if route.table == MAIN_TABLE && route.destination.prefix_len() == 0 {
                default_route_links.extend(route_oifs(&msg));
            } else if route.table == MAIN_TABLE
                && !is_link_local(&route.destination)
                && let Some(oif) = route.oif
            {
                main_network_routes.insert((oif, route.destination));
            }
            if tables.contains(&route.table) {
                routes.push(route);
            }
            Ok(())
        })?;
        // Every policy rule of every family in one dump (`AF_UNSPEC`), as for routes.
        let mut rules = Vec::new();
        let all_rules = RouteNetlinkMessage::GetRule(RuleMessage::default());
        dump(&mut socket, "dump rules", all_rules, |payload| {
            if let Some(rule) = parse_rule(&RuleMessage::parse(payload)?)
                && tables.contains(&rule.table)
            {
                rules.push(rule);
            }
            Ok(())
        })?;
        routes.sort();
        rules.sort();
        Ok(Self {
            links,
            addresses,
            routes,
            rules,
            default_route_links,
            main_network_routes,
        })
    }
}

/// The `IFLA_*` attributes (linux/if_link.h) a [`LinkState`] is made of: address, name,
/// MTU, link, master, link info, AF spec. Only these are decoded.
const LINK_ATTRIBUTES_READ: [u16; 7] = [1, 3, 4, 5, 10, 18, 26];

/// Sends the dump request `message` and hands each answer's payload to `each`; a payload
/// that does not decode fails the dump, with the decoder's error. (rtnetlink's codec logged
/// and skipped such a message: a default route skipped unseen would hide the node's own NIC
/// from the checks that keep multinic off it.)
fn dump(
    socket: &mut BatchSocket,
    op: &'static str,
    message: RouteNetlinkMessage,
    mut each: impl FnMut(&[u8]) -> Result<(), DecodeError>,
) -> Result<(), EngineError> {
    socket
        .dump(message, |payload| {
            each(payload)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
        })
        .map_err(|source| EngineError::NetlinkSocket { op, source })
}

/// Every link: each message is decoded only as far as [`LINK_ATTRIBUTES_READ`] (a full
/// decode holds every attribute of every link, some 50 each, before the first is looked at).
fn read_links(socket: &mut BatchSocket) -> Result<Vec<LinkState>, EngineError> {
    // Without the packet counters (`RTEXT_FILTER_SKIP_STATS`, as `ip link` asks): every link
    // message then carries only what the planner reads, and the kernel fills less.
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    let mut links = Vec::new();
    dump(
        socket,
        "dump links",
        RouteNetlinkMessage::GetLink(message),
        |payload| {
            links.push(link_state(payload)?);
            Ok(())
        },
    )?;
    links.sort_by_key(|l| l.index);
    Ok(links)
}

/// One link from the payload of an `RTM_NEWLINK` message.
fn link_state(payload: &[u8]) -> Result<LinkState, DecodeError> {
    let header = LinkHeader::parse(payload)?;
    let mut link = LinkState {
        index: header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        up: header.flags.contains(LinkFlags::Up),
        master: None,
        lower: None,
        kind: None,
        sysctls: None,
        ipv6: None,
    };
    let attributes = payload
        .get(size_of::<LinkMessageBuffer>()..)
        .unwrap_or_default();
    for nla in NlasIterator::new(attributes) {
        let nla = nla?;
        if !LINK_ATTRIBUTES_READ.contains(&nla.kind()) {
            continue;
        }
        match LinkAttribute::parse_with_param(&nla, header.interface_family)? {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Address(a) => {
                link.mac = <[u8; 6]>::try_from(a.as_slice()).ok().map(MacAddress)
            }
            LinkAttribute::Mtu(m) => link.mtu = m,
            LinkAttribute::Controller(m) => link.master = Some(m),
            LinkAttribute::Link(l) => link.lower = Some(l),
            LinkAttribute::LinkInfo(infos) => {
                link.kind = infos.iter().find_map(|i| match i {
                    LinkInfo::Kind(k) => Some(kind_name(k)),
                    _ => None,
                })
            }
            LinkAttribute::AfSpecUnspec(spec) => {
                link.sysctls = sysctl::from_af_spec(&spec);
                link.ipv6 = sysctl::ipv6_from_af_spec(&spec);
            }
            _ => {}
        }
    }
    Ok(link)
}

fn kind_name(kind: &InfoKind) -> String {
    match kind {
        InfoKind::Other(s) => s.clone(),
        k => format!("{k}").to_ascii_lowercase(),
    }
}

/// Every global address of every family (`AF_UNSPEC`).
fn read_addresses(socket: &mut BatchSocket) -> Result<Vec<AddressState>, EngineError> {
    let mut out = Vec::new();
    let all = RouteNetlinkMessage::GetAddress(AddressMessage::default());
    dump(socket, "dump addresses", all, |payload| {
        let msg = AddressMessage::parse(payload)?;
        if msg.header.scope != AddressScope::Universe {
            return Ok(());
        }
        let mut local = None;
        let mut address = None;
        let mut flags = AddressFlags::empty();
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Address(ip) => address = Some(*ip),
                AddressAttribute::Flags(f) => flags = *f,
                _ => {}
            }
        }
        // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
        // point-to-point links and equal to it otherwise (IPv6 sends only IFA_ADDRESS).
        let Some(ip) = local.or(address) else {
            return Ok(());
        };
        if let Ok(net) = IpNet::new(ip, msg.header.prefix_len) {
            // IPv6 addresses the kernel made from router advertisements expire (no
            // IFA_F_PERMANENT) or are privacy addresses (IFA_F_TEMPORARY, the same bit as
            // IFA_F_SECONDARY); everything multinic or an administrator adds is permanent.
            let dynamic = net.addr().is_ipv6()
                && (!flags.contains(AddressFlags::Permanent)
                    || flags.contains(AddressFlags::Secondary));
            out.push(AddressState {
                index: msg.header.index,
                address: net,
                noprefixroute: flags.contains(AddressFlags::Noprefixroute),
                dynamic,
                tentative: flags.contains(AddressFlags::Tentative),
                dad_failed: flags.contains(AddressFlags::Dadfailed),
            });
        }
        Ok(())
    })?;
    out.sort();
    Ok(out)
}

fn route_ip(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

fn parse_route(msg: &RouteMessage) -> Option<RouteEntry> {
    let unspecified = match msg.header.address_family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let mut table = u32::from(msg.header.table);
    let mut destination = unspecified;
    let mut oif = None;
    let mut metric = 0;
    let mut pref_source = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => destination = route_ip(a)?,
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = *p,
            RouteAttribute::PrefSource(a) => pref_source = route_ip(a),
            _ => {}
        }
    }
    Some(RouteEntry {
        table,
        destination: IpNet::new(destination, msg.header.destination_prefix_length).ok()?,
        oif,
        metric,
        pref_source,
    })
}

/// Output links of a route, including every nexthop of a multipath route.
fn route_oifs(msg: &RouteMessage) -> Vec<u32> {
    let mut out = Vec::new();
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Oif(i) => out.push(*i),
            RouteAttribute::MultiPath(hops) => out.extend(hops.iter().map(|h| h.interface_index)),
            _ => {}
        }
    }
    out
}

/// An IPv4 or IPv6 rule; `None` for the other families an `AF_UNSPEC` dump brings (the
/// multicast routing rules).
fn parse_rule(msg: &RuleMessage) -> Option<RuleEntry> {
    let v6 = match msg.header.family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return None,
    };
    let mut entry = RuleEntry {
        v6,
        priority: 0,
        source: None,
        table: u32::from(msg.header.table),
    };
    for attr in &msg.attributes {
        match attr {
            RuleAttribute::Table(t) => entry.table = *t,
            RuleAttribute::Priority(p) => entry.priority = *p,
            RuleAttribute::Source(ip) => entry.source = IpNet::new(*ip, msg.header.src_len).ok(),
            _ => {}
        }
    }
    Some(entry)
}

/// `fe80::/10`: the link-local network every IPv6 link routes.
fn is_link_local(net: &IpNet) -> bool {
    matches!(net, IpNet::V6(v6) if (v6.addr().segments()[0] & 0xffc0) == 0xfe80)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dump on the engine's own socket finds every link of this namespace (as `/sys`
    /// lists them) with its index, MTU and MAC; it only reads.
    #[test]
    fn the_link_dump_reads_every_link_as_sys_lists_it() {
        let mut socket = BatchSocket::open().expect("route netlink socket");
        let links = read_links(&mut socket).expect("link dump");
        let sys = std::fs::read_dir("/sys/class/net").expect("/sys/class/net");
        let mut names = Vec::new();
        for entry in sys {
            let name = entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("name");
            let read = |what: &str| {
                std::fs::read_to_string(format!("/sys/class/net/{name}/{what}"))
                    .expect(what)
                    .trim()
                    .to_owned()
            };
            let link = links
                .iter()
                .find(|l| l.name == name)
                .unwrap_or_else(|| panic!("{name} is not in the dump: {links:?}"));
            assert_eq!(link.index.to_string(), read("ifindex"), "{name}");
            assert_eq!(link.mtu.to_string(), read("mtu"), "{name}");
            if let Some(mac) = link.mac {
                assert_eq!(mac.to_string(), read("address"), "{name}");
            }
            names.push(name);
        }
        assert_eq!(links.len(), names.len(), "{links:?}");
        assert!(links.windows(2).all(|w| w[0].index < w[1].index));
    }
}
