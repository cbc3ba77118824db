//! The per-NIC ARP/rp_filter settings over netlink instead of `/proc/sys` writes: read from the
//! IPv4 devconf the kernel includes in every link dump (`IFLA_AF_SPEC` / `AF_INET` /
//! `IFLA_INET_CONF`), written with `RTM_SETLINK` carrying the same attribute as nested
//! `IPV4_DEVCONF_*` entries, so the agent needs only CAP_NET_ADMIN.

use multinic_netconf::NicSysctls;
use netlink_packet_route::link::{AfSpecInet, AfSpecUnspec, LinkAttribute};
use rtnetlink::packet_core::{DefaultNla, Emitable, NLA_F_NESTED};

/// `IFLA_INET_CONF`.
const IFLA_INET_CONF: u16 = 1;
/// `IPV4_DEVCONF_RP_FILTER` (1-based index in the devconf array).
const DEVCONF_RP_FILTER: u16 = 8;
/// `IPV4_DEVCONF_ARP_ANNOUNCE`.
const DEVCONF_ARP_ANNOUNCE: u16 = 18;
/// `IPV4_DEVCONF_ARP_IGNORE`.
const DEVCONF_ARP_IGNORE: u16 = 19;

/// The three values from a link's `IFLA_AF_SPEC`, if it has an IPv4 devconf.
pub(crate) fn from_af_spec(spec: &[AfSpecUnspec]) -> Option<NicSysctls> {
    spec.iter().find_map(|family| match family {
        AfSpecUnspec::Inet(inet) => inet.iter().find_map(|attr| match attr {
            AfSpecInet::DevConf(conf) => Some(NicSysctls {
                arp_ignore: clamp(conf.arp_ignore),
                arp_announce: clamp(conf.arp_announce),
                rp_filter: clamp(conf.rp_filter),
            }),
            _ => None,
        }),
        _ => None,
    })
}

fn clamp(value: i32) -> u8 {
    u8::try_from(value).unwrap_or(u8::MAX)
}

/// The `IFLA_AF_SPEC` attribute that sets the three values.
///
/// Built by hand rather than with `AfSpecInet::DevConfRequest`, which leaves out every entry
/// whose value is 0 and so cannot restore a default of 0 on revert.
pub(crate) fn set_attribute(values: &NicSysctls) -> LinkAttribute {
    let entries = [
        (DEVCONF_RP_FILTER, values.rp_filter),
        (DEVCONF_ARP_ANNOUNCE, values.arp_announce),
        (DEVCONF_ARP_IGNORE, values.arp_ignore),
    ];
    let mut nested = Vec::new();
    for (kind, value) in entries {
        let nla = DefaultNla::new(kind, u32::from(value).to_ne_bytes().to_vec());
        let mut buf = vec![0u8; nla.buffer_len()];
        nla.emit(&mut buf);
        nested.extend_from_slice(&buf);
    }
    let conf = DefaultNla::new(IFLA_INET_CONF | NLA_F_NESTED, nested);
    LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![AfSpecInet::Other(conf)])])
}
