//! NetworkManager keyfiles (RHEL 8/9): one connection profile per NIC, bound to the NIC's
//! name and MAC, with the key names of nm-settings-keyfile(5) (`address1=`, `route1=` +
//! `route1_options=`, `routing-rule1=`).

use crate::flavor::NM_KEYFILE_DIR;
use crate::model::{DesiredNic, DesiredNode};
use crate::owned::marker_line;
use crate::render::{RenderedFile, is_ipv6};

/// `/etc/NetworkManager/system-connections/multinicN.nmconnection`, mode 0600 (NetworkManager
/// ignores keyfiles that anyone but root can read).
pub(crate) fn render(nic: &DesiredNic, node: &DesiredNode) -> RenderedFile {
    let mut out = marker_line(&nic.name, &nic.mac);
    out.push_str("[connection]\n");
    out.push_str(&format!("id={}\n", nic.name));
    let uuid = stable_uuid(&format!("multinic/{}/{}", nic.name, nic.mac));
    out.push_str(&format!("uuid={uuid}\n"));
    out.push_str("type=ethernet\n");
    out.push_str(&format!("interface-name={}\n", nic.name));
    out.push_str("autoconnect=true\n");
    out.push_str("\n[ethernet]\n");
    out.push_str(&format!("mac-address={}\n", nic.mac));
    if let Some(mtu) = nic.mtu {
        out.push_str(&format!("mtu={mtu}\n"));
    }
    let (used, unused) = if is_ipv6(nic) {
        ("ipv6", "ipv4")
    } else {
        ("ipv4", "ipv6")
    };
    // Sections in a fixed order (ipv4 before ipv6) keep the output stable.
    let used_section = ip_section(used, nic, node);
    let unused_section = format!("\n[{unused}]\nmethod=disabled\n");
    if used == "ipv4" {
        out.push_str(&used_section);
        out.push_str(&unused_section);
    } else {
        out.push_str(&unused_section);
        out.push_str(&used_section);
    }
    RenderedFile::new(
        format!("{NM_KEYFILE_DIR}/{}.nmconnection", nic.name),
        0o600,
        out,
    )
}

/// The `[ipv4]`/`[ipv6]` section carrying the NIC's address and policy routing.
fn ip_section(family: &str, nic: &DesiredNic, node: &DesiredNode) -> String {
    let mut out = format!("\n[{family}]\nmethod=manual\naddress1={}\n", nic.address);
    // The NIC has no gateway; never let it take the default route.
    out.push_str("never-default=true\n");
    if let Some(routing) = &nic.routing {
        if node.noprefixroute {
            // route-table sends every route of the profile, including the prefix route
            // NetworkManager adds for address1, to the NIC's table instead of main: that prefix
            // route (with this metric) is the table's network route.
            out.push_str(&format!("route-metric={}\n", routing.metric));
            out.push_str(&format!("route-table={}\n", routing.table));
        } else {
            out.push_str(&format!("route1={},,{}\n", nic.network, routing.metric));
            // src= as the agent sets it: IPv4 only (IPv6 refuses a tentative source).
            let source = match nic.address.addr() {
                std::net::IpAddr::V4(ip) => format!("src={ip},"),
                std::net::IpAddr::V6(_) => String::new(),
            };
            out.push_str(&format!("route1_options={source}table={}\n", routing.table));
        }
        out.push_str(&format!(
            "routing-rule1=priority {} from {} table {}\n",
            routing.rule_priority,
            nic.address.addr(),
            routing.table
        ));
    }
    out
}

/// A name-based UUID (RFC 9562 version 8, "custom") from two FNV-1a 64 hashes of `seed`: the
/// same NIC name and MAC always give the same connection UUID, with no hashing crate needed.
fn stable_uuid(seed: &str) -> String {
    let fnv = |basis: u64| {
        seed.bytes().fold(basis, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let hi = fnv(0xcbf2_9ce4_8422_2325);
    let lo = fnv(0x6c62_272e_07bb_0142);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122/9562 variant
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::stable_uuid;

    #[test]
    fn uuid_is_stable_versioned_and_seed_dependent() {
        let a = stable_uuid("multinic/multinic0/fa:16:3e:00:00:01");
        assert_eq!(a, stable_uuid("multinic/multinic0/fa:16:3e:00:00:01"));
        assert_ne!(a, stable_uuid("multinic/multinic0/fa:16:3e:00:00:02"));
        assert_ne!(a, stable_uuid("multinic/multinic1/fa:16:3e:00:00:01"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }
}
