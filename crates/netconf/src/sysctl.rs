//! `sysctl.d` files persisting the per-NIC ARP / rp_filter settings of multi-homed hosts.
//!
//! The NIC does not exist yet when `systemd-sysctl` runs early at boot; systemd's udev rule
//! (`99-systemd.rules`) runs `systemd-sysctl --prefix=/net/ipv4/conf/<name>` when the device
//! appears under its final name, which applies these keys.

use crate::flavor::SYSCTL_DIR;
use crate::model::{DesiredNic, NicSysctls};
use crate::owned::marker_line;
use crate::render::RenderedFile;

/// `/etc/sysctl.d/90-multinicN.conf`: after the distribution's defaults (`50-*`), so these win.
pub(crate) fn render(nic: &DesiredNic, sysctls: &NicSysctls) -> RenderedFile {
    let mut out = marker_line(&nic.name, &nic.mac);
    let name = &nic.name;
    for (key, value) in [
        ("arp_ignore", sysctls.arp_ignore),
        ("arp_announce", sysctls.arp_announce),
        ("rp_filter", sysctls.rp_filter),
    ] {
        out.push_str(&format!("net.ipv4.conf.{name}.{key} = {value}\n"));
    }
    RenderedFile::new(format!("{SYSCTL_DIR}/90-{name}.conf"), 0o644, out)
}
