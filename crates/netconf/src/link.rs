//! systemd `.link` files: udev renames the NIC with a given MAC to `multinicN` at boot, which
//! NetworkManager cannot do itself (its keyfile only matches by name and MAC).

use crate::flavor::SYSTEMD_NETWORK_DIR;
use crate::model::DesiredNic;
use crate::owned::marker_line;
use crate::render::RenderedFile;

/// `/etc/systemd/network/1N-multinicN.link`: sorts before the distribution's `99-default.link`,
/// and the first matching `.link` file wins.
pub(crate) fn render(nic: &DesiredNic) -> RenderedFile {
    let mut out = marker_line(&nic.name, &nic.mac);
    out.push_str("[Match]\n");
    out.push_str(&format!("MACAddress={}\n", nic.mac));
    out.push_str("\n[Link]\n");
    // No NamePolicy= in this file, so Name= is what udev uses.
    out.push_str(&format!("Name={}\n", nic.name));
    RenderedFile::new(
        format!("{SYSTEMD_NETWORK_DIR}/1{}-{}.link", nic.slot, nic.name),
        0o644,
        out,
    )
}
