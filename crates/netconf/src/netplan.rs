//! netplan YAML (Ubuntu): one file per NIC, matched by MAC and renamed with `set-name`.
//!
//! netplan has no `noprefixroute` address option (only `lifetime` and `label`), so that knob
//! cannot be persisted here; the apply engine still honours it at runtime.

use crate::flavor::NETPLAN_DIR;
use crate::model::{DesiredNic, DesiredNode};
use crate::owned::marker_line;
use crate::render::RenderedFile;

/// `/etc/netplan/9N-multinicN.yaml`, mode 0600 (netplan warns about world-readable files).
pub(crate) fn render(nic: &DesiredNic, _node: &DesiredNode) -> RenderedFile {
    let mut out = marker_line(&nic.name, &nic.mac);
    let mut line = |indent: usize, text: &str| {
        out.push_str(&" ".repeat(indent));
        out.push_str(text);
        out.push('\n');
    };
    line(0, "network:");
    line(2, "version: 2");
    line(2, "ethernets:");
    line(4, &format!("{}:", nic.name));
    line(6, "match:");
    line(8, &format!("macaddress: \"{}\"", nic.mac));
    line(6, &format!("set-name: {}", nic.name));
    line(6, "dhcp4: false");
    line(6, "dhcp6: false");
    // Exactly the address in the spec: no SLAAC addresses or RA routes on top.
    line(6, "accept-ra: false");
    // A secondary NIC that is missing must not hold up boot in networkd-wait-online.
    line(6, "optional: true");
    line(6, "addresses:");
    line(8, &format!("- \"{}\"", nic.address));
    if let Some(mtu) = nic.mtu {
        line(6, &format!("mtu: {mtu}"));
    }
    if let Some(routing) = &nic.routing {
        line(6, "routes:");
        line(8, &format!("- to: \"{}\"", nic.network));
        line(10, "scope: link");
        // The source the agent gives the route (IPv4 only: IPv6 refuses a source that is
        // still in duplicate address detection), so the route after a reboot is the same.
        if nic.address.addr().is_ipv4() {
            line(10, &format!("from: \"{}\"", nic.address.addr()));
        }
        line(10, &format!("table: {}", routing.table));
        line(10, &format!("metric: {}", routing.metric));
        line(6, "routing-policy:");
        line(8, &format!("- from: \"{}\"", nic.address.addr()));
        line(10, &format!("table: {}", routing.table));
        line(10, &format!("priority: {}", routing.rule_priority));
    }
    RenderedFile::new(
        format!("{NETPLAN_DIR}/9{}-{}.yaml", nic.slot, nic.name),
        0o600,
        out,
    )
}
