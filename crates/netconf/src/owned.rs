//! The marker comment that opens every file multinic writes, and the parser that recognises
//! multinic's own files (and only those) so the agent can find and remove orphans.

use multinic_api::{MacAddress, parse_slot_name};

/// Start of the first line of every file multinic writes. Every format multinic renders
/// (netplan YAML, NetworkManager keyfile, ifcfg shell, systemd `.link`, `sysctl.d`) reads a
/// line starting with `#` as a comment.
pub const MARKER_PREFIX: &str = "# multinic-owned:";

/// Identity of a file multinic wrote, read back from its marker line.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnedFile {
    /// NIC name, `multinic0` .. `multinic9`.
    pub name: String,
    /// MAC the NIC was configured for, lowercase colon form.
    pub mac: String,
}

/// The marker line (with its newline) for a NIC's file.
pub(crate) fn marker_line(name: &str, mac: &str) -> String {
    format!(
        "{MARKER_PREFIX} nic={name} mac={mac} (written by multinic; edits are overwritten and \
         the file is removed with the NIC)\n"
    )
}

/// Reads the marker on the first line of `contents`. Returns `None` for anything multinic did
/// not write: no marker, a marker anywhere but the first line, or a marker whose NIC name or
/// MAC is malformed.
pub fn parse_owned(contents: &str) -> Option<OwnedFile> {
    let first = contents.lines().next()?;
    let rest = first.strip_prefix(MARKER_PREFIX)?;
    let mut name = None;
    let mut mac = None;
    for token in rest.split_whitespace() {
        if let Some(v) = token.strip_prefix("nic=") {
            name.get_or_insert(v);
        } else if let Some(v) = token.strip_prefix("mac=") {
            mac.get_or_insert(v);
        }
    }
    let name = name?;
    parse_slot_name(name).ok()?;
    let mac: MacAddress = mac?.parse().ok()?;
    Some(OwnedFile {
        name: name.to_string(),
        mac: mac.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trips() {
        let text = format!(
            "{}network:\n",
            marker_line("multinic3", "fa:16:3e:00:00:03")
        );
        assert_eq!(
            parse_owned(&text),
            Some(OwnedFile {
                name: "multinic3".into(),
                mac: "fa:16:3e:00:00:03".into()
            })
        );
    }

    #[test]
    fn mac_is_normalised_to_lowercase() {
        let text = "# multinic-owned: nic=multinic0 mac=FA:16:3E:AA:BB:CC\n";
        assert_eq!(parse_owned(text).unwrap().mac, "fa:16:3e:aa:bb:cc");
    }

    #[test]
    fn foreign_or_malformed_files_are_not_ours() {
        let foreign = [
            "",
            "network:\n  version: 2\n",
            // The marker must be the first line, not buried in someone else's file.
            "# cloud-init\n# multinic-owned: nic=multinic0 mac=fa:16:3e:00:00:01\n",
            " # multinic-owned: nic=multinic0 mac=fa:16:3e:00:00:01\n",
            "# multinic-owned: nic=eth0 mac=fa:16:3e:00:00:01\n",
            "# multinic-owned: nic=multinic10 mac=fa:16:3e:00:00:01\n",
            "# multinic-owned: nic=multinic1 mac=fa:16:3e:00:00\n",
            "# multinic-owned: nic=multinic1\n",
            "# multinic-owned: mac=fa:16:3e:00:00:01\n",
            "# multinic owned: nic=multinic1 mac=fa:16:3e:00:00:01\n",
        ];
        for text in foreign {
            assert_eq!(parse_owned(text), None, "{text:?}");
        }
    }
}
