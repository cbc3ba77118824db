//! Which OS network stack a node runs (`OsFlavor`), how to recognise it from `/etc/os-release`
//! or a Node's `osImage`, and which host directories multinic's files live in on each flavor.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The network stack family multinic renders persistent configuration for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OsFlavor {
    /// Ubuntu (and Ubuntu derivatives): netplan YAML.
    Ubuntu,
    /// RHEL 9 family (and later majors): NetworkManager keyfiles + a systemd `.link` file.
    Rhel9,
    /// RHEL 8 family: NetworkManager keyfiles + a systemd `.link` file.
    Rhel8,
    /// RHEL 7 family: initscripts `ifcfg-`, `route-` and `rule-` files.
    Rhel7,
}

/// The OS could not be mapped to a flavor multinic supports.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unsupported OS: {0}")]
pub struct UnknownOs(pub String);

/// A flavor name that is not one of `ubuntu|rhel9|rhel8|rhel7`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an OS flavor; expected one of ubuntu, rhel9, rhel8, rhel7")]
pub struct UnknownFlavor(pub String);

/// Where the netplan renderer writes.
pub(crate) const NETPLAN_DIR: &str = "/etc/netplan";
/// Where the keyfile renderer writes.
pub(crate) const NM_KEYFILE_DIR: &str = "/etc/NetworkManager/system-connections";
/// Where `.link` files (interface renaming by udev) go.
pub(crate) const SYSTEMD_NETWORK_DIR: &str = "/etc/systemd/network";
/// Where the initscripts renderer writes.
pub(crate) const NETWORK_SCRIPTS_DIR: &str = "/etc/sysconfig/network-scripts";
/// Where the sysctl renderer writes.
pub(crate) const SYSCTL_DIR: &str = "/etc/sysctl.d";

impl OsFlavor {
    /// Every flavor, in a fixed order.
    pub const ALL: [OsFlavor; 4] = [Self::Ubuntu, Self::Rhel9, Self::Rhel8, Self::Rhel7];

    /// The flavor's name as accepted by `FromStr` and `--os`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ubuntu => "ubuntu",
            Self::Rhel9 => "rhel9",
            Self::Rhel8 => "rhel8",
            Self::Rhel7 => "rhel7",
        }
    }

    /// Host directories the renderers write into on this flavor, i.e. exactly what the agent
    /// must be able to write (and what a Job must mount). Interface renaming needs no extra
    /// directory on Ubuntu (netplan's generator writes its own `.link` under `/run` at boot)
    /// nor on RHEL 7 (udev's `rename_device` reads `HWADDR`/`DEVICE` from the ifcfg file).
    pub fn host_paths(self) -> &'static [&'static str] {
        match self {
            Self::Ubuntu => &[NETPLAN_DIR, SYSCTL_DIR],
            Self::Rhel9 | Self::Rhel8 => &[NM_KEYFILE_DIR, SYSTEMD_NETWORK_DIR, SYSCTL_DIR],
            Self::Rhel7 => &[NETWORK_SCRIPTS_DIR, SYSCTL_DIR],
        }
    }

    /// Reads `/etc/os-release` text: `ID`/`ID_LIKE` pick the family, the major of
    /// `VERSION_ID` picks the RHEL generation. Anything else is refused, never guessed.
    pub fn from_os_release(text: &str) -> Result<OsFlavor, UnknownOs> {
        let mut id = String::new();
        let mut id_like = String::new();
        let mut version_id = String::new();
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once('=') else {
                continue;
            };
            let value = unquote(value.trim()).to_ascii_lowercase();
            match key.trim() {
                "ID" => id = value,
                "ID_LIKE" => id_like = value,
                "VERSION_ID" if version_id.is_empty() => version_id = value,
                // Derivatives that number their own releases (RHEL CoreOS: VERSION_ID="414.92")
                // say which RHEL they are built on here; it wins over VERSION_ID.
                "RHEL_VERSION" => version_id = value,
                _ => {}
            }
        }
        let family: Vec<&str> = std::iter::once(id.as_str())
            .chain(id_like.split_whitespace())
            .collect();
        let unknown = || {
            UnknownOs(format!(
                "os-release ID={id:?} ID_LIKE={id_like:?} VERSION_ID={version_id:?} is neither \
                 Ubuntu nor a RHEL 7+ family distribution"
            ))
        };
        if family.contains(&"ubuntu") {
            return Ok(Self::Ubuntu);
        }
        const RHEL_IDS: [&str; 5] = ["rhel", "centos", "rocky", "almalinux", "ol"];
        let rhel_like = RHEL_IDS.contains(&id.as_str())
            || id_like
                .split_whitespace()
                .any(|l| matches!(l, "rhel" | "centos" | "fedora"));
        if !rhel_like {
            return Err(unknown());
        }
        leading_major(&version_id)
            .and_then(Self::from_rhel_major)
            .ok_or_else(unknown)
    }

    /// Maps a Kubernetes `Node.status.nodeInfo.osImage` such as `Ubuntu 22.04.4 LTS` or
    /// `Rocky Linux 9.3 (Blue Onyx)` to a flavor; `None` for anything not recognised.
    pub fn from_os_image(os_image: &str) -> Option<OsFlavor> {
        let image = os_image.trim().to_ascii_lowercase();
        if image.starts_with("ubuntu ") || image == "ubuntu" {
            return Some(Self::Ubuntu);
        }
        const RHEL_NAMES: [&str; 6] = [
            "red hat enterprise linux",
            "rocky linux",
            "almalinux",
            "centos linux",
            "centos stream",
            "oracle linux",
        ];
        let rest = RHEL_NAMES
            .iter()
            .find_map(|name| image.strip_prefix(name))
            .filter(|rest| rest.starts_with(' '))?;
        // The version follows the name, after an optional edition word: "Red Hat Enterprise
        // Linux Server 7.9 (Maipo)". Anything else there ("... CoreOS 414.92") is not a RHEL
        // release number, so it is refused rather than guessed.
        let mut tokens = rest
            .split_whitespace()
            .skip_while(|t| matches!(*t, "server" | "workstation"));
        tokens
            .next()
            .filter(|t| t.starts_with(|c: char| c.is_ascii_digit()))
            .and_then(leading_major)
            .and_then(Self::from_rhel_major)
    }

    fn from_rhel_major(major: u32) -> Option<OsFlavor> {
        match major {
            7 => Some(Self::Rhel7),
            8 => Some(Self::Rhel8),
            9.. => Some(Self::Rhel9),
            _ => None,
        }
    }
}

/// Directories where multinic's own files may live on `flavor`; the agent scans them with
/// [`crate::parse_owned`] to find files of NICs that left the spec.
pub fn owned_dirs(flavor: OsFlavor) -> &'static [&'static str] {
    flavor.host_paths()
}

fn unquote(value: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner;
        }
    }
    value
}

/// `"9.3"` -> 9, `"7"` -> 7, `"rolling"` -> None.
fn leading_major(version: &str) -> Option<u32> {
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

impl fmt::Display for OsFlavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OsFlavor {
    type Err = UnknownFlavor;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownFlavor(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_fromstr_display_and_serde() {
        for flavor in OsFlavor::ALL {
            assert_eq!(flavor.to_string().parse::<OsFlavor>(), Ok(flavor));
            let json = serde_json::to_string(&flavor).unwrap();
            assert_eq!(json, format!("\"{flavor}\""));
        }
        assert!("RHEL9".parse::<OsFlavor>().is_err());
        assert!("debian".parse::<OsFlavor>().is_err());
    }

    #[test]
    fn os_release_maps_families_and_majors() {
        let cases = [
            ("ID=ubuntu\nVERSION_ID=\"22.04\"\n", Some(OsFlavor::Ubuntu)),
            (
                "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\nVERSION_ID=\"21.3\"",
                Some(OsFlavor::Ubuntu),
            ),
            (
                "ID=\"rhel\"\nID_LIKE=\"fedora\"\nVERSION_ID=\"9.3\"",
                Some(OsFlavor::Rhel9),
            ),
            (
                "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"8.9\"",
                Some(OsFlavor::Rhel8),
            ),
            (
                "ID=\"centos\"\nID_LIKE=\"rhel fedora\"\nVERSION_ID=\"7\"",
                Some(OsFlavor::Rhel7),
            ),
            (
                "ID=\"almalinux\"\nVERSION_ID=\"10.0\"",
                Some(OsFlavor::Rhel9),
            ),
            ("ID=\"ol\"\nVERSION_ID='8.7'", Some(OsFlavor::Rhel8)),
            ("ID=debian\nVERSION_ID=\"12\"", None),
            (
                "ID=\"amzn\"\nID_LIKE=\"centos rhel fedora\"\nVERSION_ID=\"2\"",
                None,
            ),
            ("ID=centos\nVERSION_ID=6.10", None),
            (
                "ID=\"rhcos\"\nID_LIKE=\"rhel fedora\"\nVERSION_ID=\"414.92\"\nRHEL_VERSION=\"9.2\"",
                Some(OsFlavor::Rhel9),
            ),
            (
                "RHEL_VERSION=\"8.6\"\nID=\"rhcos\"\nID_LIKE=\"rhel fedora\"\nVERSION_ID=\"410.86\"",
                Some(OsFlavor::Rhel8),
            ),
            ("ID=rhel\n", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(OsFlavor::from_os_release(text).ok(), want, "{text:?}");
        }
    }

    #[test]
    fn os_image_maps_known_strings_and_refuses_the_rest() {
        let cases = [
            ("Ubuntu 22.04.4 LTS", Some(OsFlavor::Ubuntu)),
            ("Ubuntu 20.04.6 LTS", Some(OsFlavor::Ubuntu)),
            ("Rocky Linux 9.3 (Blue Onyx)", Some(OsFlavor::Rhel9)),
            (
                "Red Hat Enterprise Linux 8.9 (Ootpa)",
                Some(OsFlavor::Rhel8),
            ),
            (
                "Red Hat Enterprise Linux Server 7.9 (Maipo)",
                Some(OsFlavor::Rhel7),
            ),
            ("CentOS Linux 7 (Core)", Some(OsFlavor::Rhel7)),
            ("CentOS Stream 9", Some(OsFlavor::Rhel9)),
            ("AlmaLinux 9.2", Some(OsFlavor::Rhel9)),
            ("AlmaLinux 9.2 (Turquoise Kodkod)", Some(OsFlavor::Rhel9)),
            ("Oracle Linux Server 8.7", Some(OsFlavor::Rhel8)),
            ("Debian GNU/Linux 12 (bookworm)", None),
            ("Fedora Linux 40 (Server Edition)", None),
            ("Container-Optimized OS from Google", None),
            ("CentOS Linux 6.10 (Final)", None),
            ("Rocky Linux", None),
            (
                "Red Hat Enterprise Linux CoreOS 414.92.202402201450-0 (Plow)",
                None,
            ),
            ("Oracle Linux Server release 8", None),
            ("Ubuntucore 22", None),
            ("", None),
        ];
        for (image, want) in cases {
            assert_eq!(OsFlavor::from_os_image(image), want, "{image:?}");
        }
    }

    #[test]
    fn host_paths_are_absolute_and_owned_dirs_within_them() {
        for flavor in OsFlavor::ALL {
            assert!(flavor.host_paths().iter().all(|p| p.starts_with("/etc/")));
            assert!(flavor.host_paths().contains(&SYSCTL_DIR));
        }
        assert!(OsFlavor::Ubuntu.host_paths().contains(&NETPLAN_DIR));
        assert!(OsFlavor::Rhel9.host_paths().contains(&NM_KEYFILE_DIR));
        assert!(OsFlavor::Rhel8.host_paths().contains(&SYSTEMD_NETWORK_DIR));
        assert!(OsFlavor::Rhel7.host_paths().contains(&NETWORK_SCRIPTS_DIR));
    }
}
