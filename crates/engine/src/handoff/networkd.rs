//! systemd-networkd over D-Bus. The netplan YAML stays the persistent source (netplan turns it
//! into networkd units at every boot); for the running system multinic writes the units
//! `netplan generate` would make from that YAML into `/run/systemd/network` itself, matched by
//! `MACAddress=` (netplan's `PermanentMACAddress=` does not match every NIC, e.g. veth), and
//! calls `Manager.Reload` (`ReconfigureLink` alone does not re-read files), then
//! `ReconfigureLink` for each NIC, so waiting for it to be configured waits for the new units.
//! A rollback puts the units back as they were at `begin`, reloads, and waits for the NICs
//! that had units to be configured with them again.

use super::bus::Bus;
use super::{HandoffError, HandoffNic, HandoffSettings, NETWORKD, poll};
use multinic_netconf::{DesiredNic, MARKER_PREFIX};
use std::fmt::Write as _;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zbus::zvariant::OwnedObjectPath;

const PATH: &str = "/org/freedesktop/network1";
const MANAGER: &str = "org.freedesktop.network1.Manager";
const LINK: &str = "org.freedesktop.network1.Link";
/// Runtime unit directory, below the host root.
pub(crate) const UNIT_DIR: &str = "run/systemd/network";

/// One networkd run: the units of the NICs concerned as they were at `begin`.
pub(super) struct NetworkdRun {
    bus: Bus,
    dir: PathBuf,
    settle: Duration,
    snapshot: Vec<(PathBuf, Option<Vec<u8>>)>,
    /// The NICs that had a `.network` unit at `begin`: a rollback waits until networkd has
    /// configured them with it again.
    had_units: Vec<String>,
}

impl NetworkdRun {
    /// Remembers the NICs' current units.
    pub async fn begin(
        bus: Bus,
        settings: &HandoffSettings,
        nics: &[HandoffNic],
    ) -> Result<Self, HandoffError> {
        let dir = settings.root.join(UNIT_DIR);
        let mut snapshot = Vec::new();
        let mut had_units = Vec::new();
        for nic in nics {
            let [network, link] = unit_paths(&dir, &nic.name);
            for path in [network, link] {
                let before = match fs::read(&path) {
                    Ok(bytes) => Some(bytes),
                    Err(e) if e.kind() == ErrorKind::NotFound => None,
                    Err(e) => return Err(io_error(&path, e)),
                };
                snapshot.push((path, before));
            }
            if snapshot[snapshot.len() - 2].1.is_some() {
                had_units.push(nic.name.clone());
            }
        }
        Ok(Self {
            bus,
            dir,
            settle: settings.settle_timeout,
            snapshot,
            had_units,
        })
    }

    /// Writes the units of written NICs, removes those of removed NICs, reloads networkd and
    /// waits until it reports every written NIC's link configured.
    pub async fn apply(&mut self, nics: &[HandoffNic]) -> Result<(), HandoffError> {
        for nic in nics {
            let [network, link] = unit_paths(&self.dir, &nic.name);
            match (&nic.desired, nic.removed) {
                (Some(desired), false) => {
                    write(&network, network_unit(desired))?;
                    write(&link, link_unit(desired))?;
                }
                _ => {
                    remove(&network)?;
                    remove(&link)?;
                }
            }
        }
        self.reload().await?;
        for nic in nics.iter().filter(|n| !n.removed && n.desired.is_some()) {
            let link = self.reconfigure(&nic.name).await?;
            self.wait_configured(&nic.name, &link).await?;
        }
        Ok(())
    }

    /// `Manager.ReconfigureLink`: `Reload` answers before networkd re-reads the link and
    /// starts configuring it, so right after it the link still reports the state of its
    /// previous configuration ("configured"), and a wait for "configured" would pass at once.
    /// `ReconfigureLink` moves the link to "initialized" before it answers, so the wait that
    /// follows sees the new configuration through. Returns the link's object path.
    async fn reconfigure(&self, name: &str) -> Result<OwnedObjectPath, HandoffError> {
        let (index, link): (i32, OwnedObjectPath) = self
            .bus
            .call(NETWORKD, PATH, MANAGER, "GetLinkByName", &(name,))
            .await?;
        self.bus
            .call::<_, ()>(NETWORKD, PATH, MANAGER, "ReconfigureLink", &(index,))
            .await?;
        Ok(link)
    }

    /// Restores the units to what they were at `begin`, reloads networkd and waits until it
    /// has configured every NIC that had units with them again, as `apply` waits: networkd
    /// may still be configuring a NIC with the units being rolled back, and it must be done
    /// with them before the run ends. A NIC that had no units is left to networkd, which
    /// stops managing it: the kernel revert before this may have renamed it back.
    pub async fn rollback(self) -> Result<(), HandoffError> {
        for (path, before) in &self.snapshot {
            match before {
                Some(bytes) => write(path, bytes)?,
                None => remove(path)?,
            }
        }
        self.reload().await?;
        for name in &self.had_units {
            let link = self.reconfigure(name).await?;
            self.wait_configured(name, &link).await?;
        }
        Ok(())
    }

    async fn reload(&self) -> Result<(), HandoffError> {
        self.bus.call(NETWORKD, PATH, MANAGER, "Reload", &()).await
    }

    /// Polls the `AdministrativeState` of link `name` (object path `link`) until networkd says
    /// `configured`.
    async fn wait_configured(&self, name: &str, link: &str) -> Result<(), HandoffError> {
        let what = format!("systemd-networkd configuring {name}");
        let last = std::sync::Mutex::new(String::new());
        let result = poll(&what, self.settle, || async {
            let state: String = self
                .bus
                .get(NETWORKD, link, LINK, "AdministrativeState")
                .await?;
            match state.as_str() {
                "configured" => Ok(Some(())),
                "failed" | "linger" => Err(HandoffError::new(&what, format!("link {state}"))),
                _ => {
                    *last.lock().expect("state lock") = state;
                    Ok(None)
                }
            }
        })
        .await;
        let last = last.into_inner().expect("state lock");
        result.map_err(|e| HandoffError::new(e.op, format!("{} (last state {last:?})", e.detail)))
    }
}

/// `10-netplan-<name>.network` and `.link`: netplan's own names for the NIC's units, so a
/// later `netplan generate` on the host replaces them rather than adding a second set.
fn unit_paths(dir: &Path, name: &str) -> [PathBuf; 2] {
    [
        dir.join(format!("10-netplan-{name}.network")),
        dir.join(format!("10-netplan-{name}.link")),
    ]
}

fn header(nic: &DesiredNic) -> String {
    format!(
        "{MARKER_PREFIX} nic={} mac={} (runtime unit for the netplan YAML; removed with the \
         NIC)\n",
        nic.name, nic.mac
    )
}

/// The `.network` unit netplan generates for multinic's YAML of `nic`, matched by MAC.
pub(crate) fn network_unit(nic: &DesiredNic) -> String {
    let mut out = header(nic);
    let _ = writeln!(out, "[Match]\nMACAddress={}\nName={}\n", nic.mac, nic.name);
    out.push_str("[Link]\nRequiredForOnline=no\n");
    if let Some(mtu) = nic.mtu {
        let _ = writeln!(out, "MTUBytes={mtu}");
    }
    let _ = writeln!(
        out,
        "\n[Network]\nLinkLocalAddressing=ipv6\nAddress={}\nIPv6AcceptRA=no",
        nic.address
    );
    if let Some(routing) = &nic.routing {
        // PreferredSource= is what netplan makes of a route's `from:`; the engine's IPv4
        // route carries the NIC's address as its source, and networkd would replace it
        // without. IPv6 routes get none (a source still in DAD is refused).
        let source = match nic.address.addr() {
            std::net::IpAddr::V4(ip) => format!("\nPreferredSource={ip}"),
            std::net::IpAddr::V6(_) => String::new(),
        };
        let _ = writeln!(
            out,
            "\n[Route]\nDestination={}\nScope=link{source}\nMetric={}\nTable={}",
            nic.network, routing.metric, routing.table
        );
        let _ = writeln!(
            out,
            "\n[RoutingPolicyRule]\nFrom={}\nTable={}\nPriority={}",
            nic.address.addr(),
            routing.table,
            routing.rule_priority
        );
    }
    out
}

/// The `.link` unit (udev names the NIC on its next add event).
fn link_unit(nic: &DesiredNic) -> String {
    let mut out = header(nic);
    let _ = writeln!(
        out,
        "[Match]\nMACAddress={}\n\n[Link]\nName={}\nWakeOnLan=off",
        nic.mac, nic.name
    );
    if let Some(mtu) = nic.mtu {
        let _ = writeln!(out, "MTUBytes={mtu}");
    }
    out
}

/// Replaces `path` atomically (temp file, rename), mode 0644 as netplan writes them.
fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), HandoffError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    // A dot file: networkd ignores it while it sits there.
    let temp = dir.join(format!(".{name}.multinic-tmp"));
    fs::write(&temp, contents)
        .and_then(|()| fs::set_permissions(&temp, fs::Permissions::from_mode(0o644)))
        .and_then(|()| fs::rename(&temp, path))
        .map_err(|e| {
            let _ = fs::remove_file(&temp);
            io_error(path, e)
        })
}

fn remove(path: &Path) -> Result<(), HandoffError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io_error(path, e)),
        _ => Ok(()),
    }
}

fn io_error(path: &Path, e: std::io::Error) -> HandoffError {
    HandoffError::new(format!("networkd unit {}", path.display()), e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use multinic_netconf::PolicyRouting;

    #[test]
    fn units_match_by_mac_and_carry_netplans_settings() {
        let nic = DesiredNic {
            slot: 0,
            name: "multinic0".into(),
            mac: "fa:16:3e:00:00:01".into(),
            address: "10.10.0.5/24".parse().unwrap(),
            network: "10.10.0.0/24".parse().unwrap(),
            mtu: Some(1450),
            routing: Some(PolicyRouting {
                table: 1000,
                metric: 100,
                rule_priority: 1000,
            }),
            source_index: 0,
        };
        let network = network_unit(&nic);
        let body: Vec<&str> = network.lines().skip(1).collect();
        assert_eq!(
            body.join("\n"),
            "[Match]\nMACAddress=fa:16:3e:00:00:01\nName=multinic0\n\n[Link]\n\
             RequiredForOnline=no\nMTUBytes=1450\n\n[Network]\nLinkLocalAddressing=ipv6\n\
             Address=10.10.0.5/24\nIPv6AcceptRA=no\n\n[Route]\nDestination=10.10.0.0/24\n\
             Scope=link\nPreferredSource=10.10.0.5\nMetric=100\nTable=1000\n\n[RoutingPolicyRule]\nFrom=10.10.0.5\n\
             Table=1000\nPriority=1000"
        );
        assert!(network.starts_with(MARKER_PREFIX));
        assert!(!network.contains("PermanentMACAddress"));
        let link = link_unit(&nic);
        assert!(link.contains("[Match]\nMACAddress=fa:16:3e:00:00:01\n\n[Link]\nName=multinic0\n"));
    }
}
