//! Semantic validation of a spec: everything the OpenAPI schema cannot say, as one pure
//! function that reports every problem with its field path and hands back parsed values.

use crate::resource::{InterfaceSpec, MultiNicNodeConfigSpec};
use crate::{INTERFACE_NAME_PREFIX, MAX_SLOT};
use ipnet::IpNet;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Most interfaces one node can have (`multinic0` .. `multinic9`).
pub const MAX_INTERFACES: usize = MAX_SLOT as usize + 1;
/// Smallest MTU Linux accepts for IPv4.
pub const MIN_MTU: u32 = 68;
/// Smallest MTU IPv6 allows (RFC 8200).
pub const MIN_MTU_IPV6: u32 = 1280;
/// Largest MTU multinic will set.
pub const MAX_MTU: u32 = 9000;

/// One problem, located by its field path, e.g. `spec.interfaces[1].cidr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the offending field.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
    /// Index in `spec.interfaces` when the problem belongs to one interface.
    pub interface: Option<usize>,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a spec; never empty.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

/// A unicast Ethernet MAC address; displays in lowercase colon form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddress(pub [u8; 6]);

impl FromStr for MacAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut octets = [0u8; 6];
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(format!("{s:?} is not six colon-separated hex octets"));
        }
        for (slot, part) in octets.iter_mut().zip(&parts) {
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("{s:?} is not six colon-separated hex octets"));
            }
            *slot = u8::from_str_radix(part, 16).map_err(|e| e.to_string())?;
        }
        Ok(Self(octets))
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// An interface that passed validation, with its values parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidInterface {
    /// Position in `spec.interfaces`.
    pub index: usize,
    /// Slot asked for by `name` or `id` (they agree when both are set).
    pub requested_slot: Option<u8>,
    /// Neutron port id, if given.
    pub port_id: Option<String>,
    /// The NIC's MAC.
    pub mac: MacAddress,
    /// Host address with the network's prefix length, e.g. `11.11.11.132/24`.
    pub address: IpNet,
    /// The network in canonical form, e.g. `11.11.11.0/24`.
    pub network: IpNet,
    /// MTU to set, if any.
    pub mtu: Option<u32>,
}

/// A fully valid spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidSpec {
    /// `spec.nodeName`.
    pub node_name: String,
    /// `spec.instanceId`, lowercased.
    pub instance_id: Option<String>,
    /// Every interface, in spec order.
    pub interfaces: Vec<ValidInterface>,
}

/// The lenient view: what is wrong, and which interfaces are usable anyway.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecCheck {
    /// Every problem, in field order.
    pub errors: Vec<FieldError>,
    /// Interfaces without problems of their own, in spec order.
    pub interfaces: Vec<ValidInterface>,
}

impl SpecCheck {
    /// Problems that are not tied to one interface (node name, instance id, count).
    pub fn spec_errors(&self) -> impl Iterator<Item = &FieldError> {
        self.errors.iter().filter(|e| e.interface.is_none())
    }

    /// Problems of the interface at `index`.
    pub fn interface_errors(&self, index: usize) -> impl Iterator<Item = &FieldError> {
        self.errors
            .iter()
            .filter(move |e| e.interface == Some(index))
    }
}

/// Validates a spec strictly: every problem, or the parsed spec.
pub fn validate_spec(spec: &MultiNicNodeConfigSpec) -> Result<ValidSpec, ValidationErrors> {
    let check = check_spec(spec);
    if !check.errors.is_empty() {
        return Err(ValidationErrors(check.errors));
    }
    Ok(ValidSpec {
        node_name: spec.node_name.clone(),
        instance_id: spec.instance_id.as_ref().map(|s| s.to_ascii_lowercase()),
        interfaces: check.interfaces,
    })
}

/// Validates a spec leniently, so one bad interface does not stop the others.
pub fn check_spec(spec: &MultiNicNodeConfigSpec) -> SpecCheck {
    let mut errors = Vec::new();
    let mut push = |path: String, message: String, interface: Option<usize>| {
        errors.push(FieldError {
            path,
            message,
            interface,
        })
    };
    if let Err(m) = check_node_name(&spec.node_name) {
        push("spec.nodeName".into(), m, None);
    }
    if let Some(id) = &spec.instance_id
        && let Err(m) = check_uuid(id)
    {
        push("spec.instanceId".into(), m, None);
    }
    if spec.interfaces.len() > MAX_INTERFACES {
        push(
            "spec.interfaces".into(),
            format!(
                "at most {MAX_INTERFACES} interfaces are allowed, got {}",
                spec.interfaces.len()
            ),
            None,
        );
    }

    let mut parsed = Vec::new();
    for (index, iface) in spec.interfaces.iter().enumerate() {
        match check_interface(index, iface) {
            Ok(valid) => parsed.push(valid),
            Err(mut errs) => errors.append(&mut errs),
        }
    }

    // Uniqueness: the later of two clashing entries is the one reported and dropped.
    let mut seen_mac = HashMap::new();
    let mut seen_addr = HashMap::new();
    let mut seen_slot = HashMap::new();
    let mut interfaces = Vec::new();
    for valid in parsed {
        let i = valid.index;
        let clash = |path: &str, first: usize| FieldError {
            path: format!("spec.interfaces[{i}].{path}"),
            message: format!("duplicates spec.interfaces[{first}].{path}"),
            interface: Some(i),
        };
        let mut dup = Vec::new();
        if let Some(&first) = seen_mac.get(&valid.mac) {
            dup.push(clash("macAddress", first));
        }
        if let Some(&first) = seen_addr.get(&valid.address.addr()) {
            dup.push(clash("address", first));
        }
        if let Some(slot) = valid.requested_slot
            && let Some(&first) = seen_slot.get(&slot)
        {
            let field = if spec.interfaces[i].name.is_some() {
                "name"
            } else {
                "id"
            };
            dup.push(FieldError {
                message: format!("slot {slot} is already taken by spec.interfaces[{first}]"),
                ..clash(field, first)
            });
        }
        if dup.is_empty() {
            seen_mac.insert(valid.mac, i);
            seen_addr.insert(valid.address.addr(), i);
            if let Some(slot) = valid.requested_slot {
                seen_slot.insert(slot, i);
            }
            interfaces.push(valid);
        } else {
            errors.extend(dup);
        }
    }
    errors.sort_by_key(|e| (e.interface.map_or(0, |i| i + 1), e.path.clone()));
    SpecCheck { errors, interfaces }
}

fn check_interface(index: usize, iface: &InterfaceSpec) -> Result<ValidInterface, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut fail = |field: &str, message: String| {
        errors.push(FieldError {
            path: format!("spec.interfaces[{index}].{field}"),
            message,
            interface: Some(index),
        })
    };

    if let Some(id) = iface.id
        && id > MAX_SLOT
    {
        fail("id", format!("must be 0..{MAX_SLOT}, got {id}"));
    }
    let name_slot = match &iface.name {
        None => None,
        Some(name) => match parse_slot_name(name) {
            Ok(slot) => Some(slot),
            Err(m) => {
                fail("name", m);
                None
            }
        },
    };
    if let (Some(id), Some(slot)) = (iface.id, name_slot)
        && id != slot
    {
        fail(
            "name",
            format!("{INTERFACE_NAME_PREFIX}{slot} disagrees with id {id}"),
        );
    }
    if let Some(port) = &iface.port_id
        && (port.len() > 64
            || !port
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
    {
        fail(
            "portId",
            "must be at most 64 characters of [0-9A-Za-z._-]".into(),
        );
    }
    let mac = match check_mac(&iface.mac_address) {
        Ok(mac) => Some(mac),
        Err(m) => {
            fail("macAddress", m);
            None
        }
    };
    let address = match no_controls(&iface.address).and_then(|a| {
        IpAddr::from_str(a).map_err(|_| format!("{a:?} is not an IPv4 or IPv6 address"))
    }) {
        Ok(a) => Some(a),
        Err(m) => {
            fail("address", m);
            None
        }
    };
    let network = match no_controls(&iface.cidr).and_then(parse_network) {
        Ok(n) => Some(n),
        Err(m) => {
            fail("cidr", m);
            None
        }
    };
    if let Some(Err(m)) = network.map(check_tenant_network) {
        fail("cidr", m);
    }
    if let (Some(addr), Some(net)) = (address, network)
        && let Err(m) = check_address_in(addr, net)
    {
        fail("address", m);
    }
    if let Some(mtu) = iface.mtu {
        let min = if matches!(address, Some(IpAddr::V6(_))) {
            MIN_MTU_IPV6
        } else {
            MIN_MTU
        };
        if !(min..=MAX_MTU).contains(&mtu) {
            let family = if min == MIN_MTU_IPV6 { " for IPv6" } else { "" };
            fail(
                "mtu",
                format!("must be {min}..{MAX_MTU}{family}, got {mtu}"),
            );
        }
    }
    match (errors.is_empty(), mac, address, network) {
        (true, Some(mac), Some(addr), Some(net)) => Ok(ValidInterface {
            index,
            requested_slot: name_slot.or(iface.id),
            port_id: iface.port_id.clone(),
            mac,
            address: IpNet::new(addr, net.prefix_len()).expect("prefix came from a valid net"),
            network: net,
            mtu: iface.mtu,
        }),
        _ => Err(errors),
    }
}

/// Parses `multinicN` into its slot number.
pub fn parse_slot_name(name: &str) -> Result<u8, String> {
    no_controls(name)?;
    name.strip_prefix(INTERFACE_NAME_PREFIX)
        .filter(|n| n.len() == 1)
        .and_then(|n| n.parse::<u8>().ok())
        .ok_or_else(|| {
            format!(
                "{name:?} must be {INTERFACE_NAME_PREFIX}0 .. {INTERFACE_NAME_PREFIX}{MAX_SLOT}"
            )
        })
}

fn no_controls(s: &str) -> Result<&str, String> {
    if s.chars().any(char::is_control) {
        Err("must not contain control characters (newline, tab, ...)".into())
    } else {
        Ok(s)
    }
}

fn check_mac(s: &str) -> Result<MacAddress, String> {
    let mac: MacAddress = no_controls(s)?.parse()?;
    if mac.0 == [0; 6] {
        Err("the all-zero MAC is not a NIC's address".into())
    } else if mac.0 == [0xff; 6] {
        Err("the broadcast MAC is not a NIC's address".into())
    } else if mac.0[0] & 1 == 1 {
        Err(format!(
            "{mac} is a multicast MAC (lowest bit of the first octet set)"
        ))
    } else {
        Ok(mac)
    }
}

fn parse_network(s: &str) -> Result<IpNet, String> {
    let net = IpNet::from_str(s)
        .map_err(|_| format!("{s:?} is not a network like 11.11.11.0/24 or fd00::/64"))?;
    if net.prefix_len() == 0 {
        return Err(format!(
            "{s:?} has prefix length 0, which would claim every destination"
        ));
    }
    Ok(net.trunc())
}

/// Shortest IPv4 prefix a tenant network may have.
pub const MIN_PREFIX_V4: u8 = 8;
/// Shortest IPv6 prefix a tenant network may have.
pub const MIN_PREFIX_V6: u8 = 16;

/// Ranges no tenant network may touch: routing any of them through a secondary NIC would
/// take the node's own traffic (the metadata address 169.254.169.254, loopback) or is no
/// unicast network at all.
const RESERVED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "\"this network\" (0.0.0.0/8)"),
    ("127.0.0.0/8", "loopback"),
    (
        "169.254.0.0/16",
        "link-local (it holds the metadata address 169.254.169.254)",
    ),
    ("224.0.0.0/4", "multicast"),
    (
        "240.0.0.0/4",
        "reserved (240.0.0.0/4, with the broadcast address)",
    ),
    ("::/128", "the unspecified address"),
    ("::1/128", "loopback"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
];

/// Refuses networks that cannot be a tenant network: too short a prefix, or overlapping a
/// reserved range (see [`RESERVED`]).
fn check_tenant_network(net: IpNet) -> Result<(), String> {
    let min = match net {
        IpNet::V4(_) => MIN_PREFIX_V4,
        IpNet::V6(_) => MIN_PREFIX_V6,
    };
    if net.prefix_len() < min {
        return Err(format!(
            "{net} is shorter than /{min}; a tenant network that wide would claim the node's own routes"
        ));
    }
    for (range, what) in RESERVED {
        let reserved: IpNet = range.parse().expect("reserved ranges are valid networks");
        if reserved.contains(&net) || net.contains(&reserved) {
            return Err(format!(
                "{net} overlaps {reserved}, which is {what}; it cannot be a tenant network"
            ));
        }
    }
    Ok(())
}

fn check_address_in(addr: IpAddr, net: IpNet) -> Result<(), String> {
    let family_matches = matches!(
        (addr, net),
        (IpAddr::V4(_), IpNet::V4(_)) | (IpAddr::V6(_), IpNet::V6(_))
    );
    if !family_matches {
        return Err(format!(
            "{addr} and cidr {net} are of different IP families"
        ));
    }
    if addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() {
        return Err(format!("{addr} is not a unicast host address"));
    }
    if let IpAddr::V6(v6) = addr
        && v6.is_unicast_link_local()
    {
        return Err(format!(
            "{addr} is link-local; the kernel assigns those itself"
        ));
    }
    if !net.contains(&addr) {
        return Err(format!("{addr} is not inside cidr {net}"));
    }
    let host_bits = net.max_prefix_len() - net.prefix_len();
    if host_bits >= 2 && addr == net.network() {
        let what = match net {
            IpNet::V4(_) => "network address",
            IpNet::V6(_) => "subnet-router anycast address",
        };
        return Err(format!("{addr} is the {what} of {net}"));
    }
    if host_bits >= 2 && matches!(net, IpNet::V4(_)) && addr == net.broadcast() {
        return Err(format!("{addr} is the broadcast address of {net}"));
    }
    Ok(())
}

fn check_node_name(name: &str) -> Result<(), String> {
    no_controls(name)?;
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "{name:?} is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)"
        ));
    }
    Ok(())
}

fn check_uuid(id: &str) -> Result<(), String> {
    no_controls(id)?;
    let groups: Vec<&str> = id.split('-').collect();
    let shape_ok = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()));
    if shape_ok {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not a UUID like 84183610-f911-4d8f-9ec2-f35bfeac671f"
        ))
    }
}
