//! The rendering entry point: one node model + one OS flavor -> the exact files (path, mode,
//! contents) that OS's own network stack reads at boot. Pure and deterministic.

use crate::flavor::OsFlavor;
use crate::model::{DesiredNic, DesiredNode};
use crate::{ifcfg, keyfile, link, netplan, sysctl};
use ipnet::IpNet;
use std::path::PathBuf;

/// One file to write on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedFile {
    /// Absolute host path, e.g. `/etc/netplan/91-multinic1.yaml`.
    pub path: PathBuf,
    /// Permission bits, e.g. `0o600`.
    pub mode: u32,
    /// Full contents; the first line is multinic's marker (see [`crate::parse_owned`]).
    pub contents: String,
}

impl RenderedFile {
    pub(crate) fn new(path: String, mode: u32, contents: String) -> Self {
        Self {
            path: PathBuf::from(path),
            mode,
            contents,
        }
    }
}

/// Renders every persistent file `node` needs on `flavor`, sorted by path. Same input, same
/// bytes. A file multinic owns (see [`crate::parse_owned`]) whose path is not in this list is
/// stale and should be removed.
pub fn render(flavor: OsFlavor, node: &DesiredNode) -> Vec<RenderedFile> {
    let mut files = Vec::new();
    for nic in &node.nics {
        match flavor {
            OsFlavor::Ubuntu => files.push(netplan::render(nic, node)),
            OsFlavor::Rhel9 | OsFlavor::Rhel8 => {
                files.push(keyfile::render(nic, node));
                files.push(link::render(nic));
            }
            OsFlavor::Rhel7 => files.extend(ifcfg::render(nic, node)),
        }
        if let Some(sysctls) = &node.sysctls {
            files.push(sysctl::render(nic, sysctls));
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// Whether the NIC's address is IPv6.
pub(crate) fn is_ipv6(nic: &DesiredNic) -> bool {
    matches!(nic.address, IpNet::V6(_))
}
