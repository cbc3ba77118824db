//! initscripts files (RHEL 7): `ifcfg-multinicN` (udev's `rename_device` renames the NIC with
//! `HWADDR` to `DEVICE` at boot), plus `route-`/`rule-` (`route6-`/`rule6-` for IPv6) files
//! holding `ip route add` / `ip rule add` arguments for policy routing, as documented in
//! initscripts' `sysconfig.txt`. Neither format knows `noprefixroute`.

use crate::flavor::NETWORK_SCRIPTS_DIR;
use crate::model::{DesiredNic, DesiredNode};
use crate::owned::marker_line;
use crate::render::{RenderedFile, is_ipv6};

/// The ifcfg file, and the route and rule files when policy routing is on.
pub(crate) fn render(nic: &DesiredNic, _node: &DesiredNode) -> Vec<RenderedFile> {
    let name = &nic.name;
    let v6 = is_ipv6(nic);
    let mut ifcfg = marker_line(name, &nic.mac);
    let mut kv = |key: &str, value: &str| ifcfg.push_str(&format!("{key}={value}\n"));
    kv("DEVICE", name);
    kv("NAME", name);
    kv("HWADDR", &nic.mac);
    kv("TYPE", "Ethernet");
    kv("ONBOOT", "yes");
    kv("BOOTPROTO", "none");
    kv("DEFROUTE", "no");
    kv("PEERDNS", "no");
    if v6 {
        kv("IPV6INIT", "yes");
        kv("IPV6_AUTOCONF", "no");
        kv("IPV6_DEFROUTE", "no");
        kv("IPV6ADDR", &nic.address.to_string());
    } else {
        kv("IPV6INIT", "no");
        kv("IPADDR", &nic.address.addr().to_string());
        kv("PREFIX", &nic.address.prefix_len().to_string());
    }
    if let Some(mtu) = nic.mtu {
        kv("MTU", &mtu.to_string());
    }
    let mut files = vec![RenderedFile::new(
        format!("{NETWORK_SCRIPTS_DIR}/ifcfg-{name}"),
        0o644,
        ifcfg,
    )];
    if let Some(routing) = &nic.routing {
        let suffix = if v6 { "6" } else { "" };
        let route = format!(
            "{}{} dev {name}{} table {} metric {}\n",
            marker_line(name, &nic.mac),
            nic.network,
            route_source(nic),
            routing.table,
            routing.metric
        );
        let rule = format!(
            "{}from {} table {} priority {}\n",
            marker_line(name, &nic.mac),
            nic.address.addr(),
            routing.table,
            routing.rule_priority
        );
        files.push(RenderedFile::new(
            format!("{NETWORK_SCRIPTS_DIR}/route{suffix}-{name}"),
            0o644,
            route,
        ));
        files.push(RenderedFile::new(
            format!("{NETWORK_SCRIPTS_DIR}/rule{suffix}-{name}"),
            0o644,
            rule,
        ));
    }
    files
}

/// ` src ADDR` for an IPv4 route, as the agent sets it (IPv6 refuses a source address that is
/// still in duplicate address detection, so the agent sets none there).
fn route_source(nic: &DesiredNic) -> String {
    match nic.address.addr() {
        std::net::IpAddr::V4(ip) => format!(" src {ip}"),
        std::net::IpAddr::V6(_) => String::new(),
    }
}
