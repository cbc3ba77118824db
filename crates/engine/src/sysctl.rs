//! The per-NIC ARP/rp_filter settings over netlink instead of `/proc/sys` writes: read from the
//! IPv4 devconf the kernel includes in every link dump (`IFLA_AF_SPEC` / `AF_INET` /
//! `IFLA_INET_CONF`), written with `RTM_SETLINK` carrying the same attribute as nested
//! `IPV4_DEVCONF_*` entries, so the agent needs only CAP_NET_ADMIN. The IPv6 `accept_ra`/
//! `autoconf` values are read the same way (`AF_INET6` devconf) but can only be written
//! through `/proc/sys`.

use crate::state::Ipv6Conf;
use multinic_netconf::NicSysctls;
use netlink_packet_route::link::{AfSpecInet, AfSpecInet6, AfSpecUnspec, LinkAttribute};
use rtnetlink::packet_core::{DefaultNla, Emitable, NLA_F_NESTED};
use std::path::Path;

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

/// `accept_ra`/`autoconf` from a link's `IFLA_AF_SPEC`, if it has an IPv6 devconf.
pub(crate) fn ipv6_from_af_spec(spec: &[AfSpecUnspec]) -> Option<Ipv6Conf> {
    spec.iter().find_map(|family| match family {
        AfSpecUnspec::Inet6(inet6) => inet6.iter().find_map(|attr| match attr {
            AfSpecInet6::DevConf(conf) => Some(Ipv6Conf {
                accept_ra: conf.accept_ra,
                autoconf: conf.autoconf,
            }),
            _ => None,
        }),
        _ => None,
    })
}

/// Writes the IPv6 settings of link `name` under `proc_sys` (`/proc/sys`). The kernel takes
/// IPv6 devconf only through sysctl (`RTM_SETLINK` accepts just the token and address
/// generation mode), so unlike the IPv4 values this needs a writable `/proc/sys`.
pub(crate) fn write_ipv6(proc_sys: &Path, name: &str, conf: &Ipv6Conf) -> std::io::Result<()> {
    let dir = proc_sys.join("net/ipv6/conf").join(name);
    std::fs::write(dir.join("accept_ra"), conf.accept_ra.to_string())?;
    std::fs::write(dir.join("autoconf"), conf.autoconf.to_string())
}

/// Whether `proc_sys` takes IPv6 devconf writes here (IPv6 on, `/proc/sys` not mounted
/// read-only as in an unprivileged container).
pub(crate) fn ipv6_writable(proc_sys: &Path) -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open(proc_sys.join("net/ipv6/conf/default/accept_ra"))
        .is_ok()
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
