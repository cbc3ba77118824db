//! NetworkManager over D-Bus, the way nmstate does it: a checkpoint on the NICs' devices
//! before anything changes, `Settings.LoadConnections` for the profiles multinic wrote,
//! `ActivateConnection` on each NIC's device, then `CheckpointDestroy` (and removal of the
//! throwaway profiles NM made for those NICs, e.g. "Wired connection 2") when the run passed,
//! or `CheckpointRollback` when it is reverted. Removed NICs have their profile deactivated
//! and deleted.

use super::bus::{Bus, is_gone};
use super::{HandoffError, HandoffNic, HandoffSettings, NETWORK_MANAGER, poll};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue};

const NM_PATH: &str = "/org/freedesktop/NetworkManager";
const SETTINGS_PATH: &str = "/org/freedesktop/NetworkManager/Settings";
const SETTINGS: &str = "org.freedesktop.NetworkManager.Settings";
const CONNECTION: &str = "org.freedesktop.NetworkManager.Settings.Connection";
const DEVICE: &str = "org.freedesktop.NetworkManager.Device";
const WIRED: &str = "org.freedesktop.NetworkManager.Device.Wired";
const ACTIVE: &str = "org.freedesktop.NetworkManager.Connection.Active";

/// `NM_CHECKPOINT_CREATE_FLAG_DELETE_NEW_CONNECTIONS`: a rollback deletes profiles added after
/// the checkpoint (multinic's new ones).
const DELETE_NEW_CONNECTIONS: u32 = 0x02;
/// `NM_SETTINGS_CONNECTION_FLAG_NM_GENERATED`: a profile NetworkManager made on its own
/// (automatic "Wired connection N", or one describing an externally configured device).
const NM_GENERATED: u32 = 0x02;
/// `NM_DEVICE_STATE_UNMANAGED` and `..._DISCONNECTED`.
const UNMANAGED: u32 = 10;
const DISCONNECTED: u32 = 30;
/// `NM_ACTIVE_CONNECTION_STATE_ACTIVATED` and `..._DEACTIVATING`.
const ACTIVATED: u32 = 2;
const DEACTIVATING: u32 = 3;

/// A profile's settings as `Settings.Connection.GetSettings` returns them (`a{sa{sv}}`).
type Settings = HashMap<String, HashMap<String, OwnedValue>>;

/// One NetworkManager run.
pub(super) struct NmRun {
    bus: Bus,
    settle: Duration,
    checkpoint: Option<OwnedObjectPath>,
    /// NM-generated profiles bound to the NICs' devices when the run began.
    generated: HashSet<OwnedObjectPath>,
    /// Device paths of the NICs configured in this run, by MAC.
    configured: Vec<(String, OwnedObjectPath)>,
    /// Profiles multinic activated in this run.
    ours: HashSet<OwnedObjectPath>,
}

impl NmRun {
    /// Finds the NICs' devices, notes NM's own profiles on them, and takes a checkpoint of
    /// those devices that NM rolls back by itself after the rollback timeout.
    pub async fn begin(
        bus: Bus,
        settings: &HandoffSettings,
        nics: &[HandoffNic],
    ) -> Result<Self, HandoffError> {
        let mut run = Self {
            bus,
            settle: settings.settle_timeout,
            checkpoint: None,
            generated: HashSet::new(),
            configured: Vec::new(),
            ours: HashSet::new(),
        };
        let mut devices = Vec::new();
        let mut foreign = Vec::new();
        for nic in nics {
            let Some(device) = run.device_by_mac(&nic.mac).await? else {
                continue;
            };
            let state: u32 = run.get(device.as_str(), DEVICE, "State").await?;
            if state > UNMANAGED {
                run.generated.extend(run.generated_on(&device).await?);
                if !nic.removed && !run.active_is_ours(&device, nic).await? {
                    foreign.push(device.clone());
                }
                devices.push(device);
            }
        }
        if !devices.is_empty() {
            // The run may wait `settle` for each device's activation and as long again for
            // the kernel to match: NM must not roll back on its own while the agent still works.
            let longest_run = settings.settle_timeout * (2 * devices.len() as u32 + 1);
            let rollback = settings.rollback_timeout.max(longest_run);
            let timeout = u32::try_from(rollback.as_secs()).unwrap_or(u32::MAX);
            let path: OwnedObjectPath = run
                .nm(
                    "CheckpointCreate",
                    &(devices, timeout.max(1), DELETE_NEW_CONNECTIONS),
                )
                .await?;
            tracing::debug!(checkpoint = path.as_str(), "NetworkManager checkpoint");
            run.checkpoint = Some(path);
        }
        // A profile other than multinic's (NM's automatic DHCP one, typically) that is active
        // on a NIC multinic is about to configure flushes the addresses set over netlink the
        // moment it re-activates (the rename bounces the link); multinic's own profile with
        // the old address re-adds the old routing rule. Disconnect takes them down and blocks
        // autoconnect until multinic's profile is activated; the checkpoint restores them.
        for device in foreign {
            let () = run
                .bus
                .call(NETWORK_MANAGER, device.as_str(), DEVICE, "Disconnect", &())
                .await?;
            let what = format!("NetworkManager disconnecting {}", device.as_str());
            poll(&what, run.settle, || async {
                let state: u32 = run.get(device.as_str(), DEVICE, "State").await?;
                Ok((state <= DISCONNECTED).then_some(()))
            })
            .await?;
        }
        Ok(run)
    }

    /// Whether the profile active on `device` (if any) is the NIC's own multinic profile with
    /// the address the run keeps. Any other active profile re-applies what it configured (NM
    /// re-adds its routing rules when they are removed) while the engine changes the kernel.
    async fn active_is_ours(
        &self,
        device: &OwnedObjectPath,
        nic: &HandoffNic,
    ) -> Result<bool, HandoffError> {
        let active: OwnedObjectPath = self
            .get(device.as_str(), DEVICE, "ActiveConnection")
            .await?;
        if active.as_str() == "/" {
            return Ok(true);
        }
        let connection: OwnedObjectPath =
            match self.get(active.as_str(), ACTIVE, "Connection").await {
                Ok(c) => c,
                Err(e) if is_gone(&e) => return Ok(true),
                Err(e) => return Err(e),
            };
        let file: String = self
            .get(connection.as_str(), CONNECTION, "Filename")
            .await
            .unwrap_or_default();
        if !profile_files(nic).any(|p| p == Path::new(&file)) {
            return Ok(false);
        }
        let Some(desired) = &nic.desired else {
            return Ok(true);
        };
        let family = if desired.address.addr().is_ipv6() {
            "ipv6"
        } else {
            "ipv4"
        };
        let settings = self.settings(&connection).await?;
        let addresses = settings
            .get(family)
            .and_then(|s| s.get("address-data"))
            .and_then(|v| Vec::<HashMap<String, OwnedValue>>::try_from(v.clone()).ok())
            .unwrap_or_default();
        let configured: Vec<String> = addresses
            .iter()
            .filter_map(|a| {
                let address = String::try_from(a.get("address")?.clone()).ok()?;
                let prefix = u32::try_from(a.get("prefix")?.clone()).ok()?;
                Some(format!("{address}/{prefix}"))
            })
            .collect();
        Ok(configured == [desired.address.to_string()])
    }

    /// Deactivates and deletes the profiles of removed NICs, loads the written ones and
    /// activates each on its NIC's device, waiting until NM reports it activated.
    pub async fn apply(&mut self, nics: &[HandoffNic]) -> Result<(), HandoffError> {
        let removed: Vec<&Path> = nics
            .iter()
            .filter(|n| n.removed)
            .flat_map(profile_files)
            .collect();
        if !removed.is_empty() {
            for (connection, _) in self.connections_from(&removed).await? {
                self.delete_profile(&connection).await?;
            }
        }
        let written: Vec<&HandoffNic> = nics.iter().filter(|n| !n.removed).collect();
        let paths: Vec<String> = written
            .iter()
            .flat_map(|n| profile_files(n))
            .map(|p| p.display().to_string())
            .collect();
        if paths.is_empty() {
            return Ok(());
        }
        let (_, failures): (bool, Vec<String>) = self
            .bus
            .call(
                NETWORK_MANAGER,
                SETTINGS_PATH,
                SETTINGS,
                "LoadConnections",
                &(&paths,),
            )
            .await?;
        if !failures.is_empty() {
            return Err(HandoffError::new(
                "NetworkManager.Settings.LoadConnections",
                format!("NetworkManager could not load {}", failures.join(", ")),
            ));
        }
        let loaded = self
            .connections_from(&paths.iter().map(Path::new).collect::<Vec<_>>())
            .await?;
        for nic in written {
            self.activate(nic, &loaded).await?;
        }
        Ok(())
    }

    async fn activate(
        &mut self,
        nic: &HandoffNic,
        loaded: &[(OwnedObjectPath, String)],
    ) -> Result<(), HandoffError> {
        let Some((connection, _)) = loaded
            .iter()
            .find(|(_, file)| profile_files(nic).any(|p| Path::new(file) == p))
        else {
            return Err(HandoffError::new(
                format!("NetworkManager profile of {}", nic.name),
                "not found after LoadConnections",
            ));
        };
        let what = format!("NetworkManager device of {} ({})", nic.name, nic.mac);
        let device = poll(&what, self.settle, || async {
            self.device_by_mac(&nic.mac).await
        })
        .await?;
        let state: u32 = self.get(device.as_str(), DEVICE, "State").await?;
        if state <= UNMANAGED {
            // The host told NM to leave this NIC alone; the kernel and the files have it.
            tracing::warn!(nic = nic.name, "NetworkManager does not manage the device");
            return Ok(());
        }
        let root = ObjectPath::from_static_str_unchecked("/");
        let active: OwnedObjectPath = self
            .nm("ActivateConnection", &(connection, &device, root))
            .await?;
        let what = format!(
            "NetworkManager activating {} on {}",
            nic.name,
            device.as_str()
        );
        poll(&what, self.settle, || async {
            match self.get::<u32>(active.as_str(), ACTIVE, "State").await {
                Ok(ACTIVATED) => Ok(Some(())),
                Ok(s) if s >= DEACTIVATING => Err(HandoffError::new(&what, "NM deactivated it")),
                Ok(_) => Ok(None),
                Err(e) if is_gone(&e) => Err(HandoffError::new(&what, "NM dropped it")),
                Err(e) => Err(e),
            }
        })
        .await?;
        self.ours.insert(connection.clone());
        self.configured.push((nic.mac.clone(), device));
        Ok(())
    }

    /// Keeps the new state: deletes NM's own profiles for the NICs multinic now configures,
    /// then destroys the checkpoint.
    pub async fn commit(self) -> Result<(), HandoffError> {
        let mut generated = self.generated.clone();
        for (_, device) in &self.configured {
            generated.extend(self.generated_on(device).await?);
        }
        for connection in generated.difference(&self.ours) {
            if !self.active_elsewhere(connection).await? {
                tracing::info!(profile = connection.as_str(), "deleting NM's own profile");
                self.delete_profile(connection).await?;
            }
        }
        if let Some(checkpoint) = &self.checkpoint {
            let () = self.nm("CheckpointDestroy", &(checkpoint,)).await?;
        }
        Ok(())
    }

    /// Rolls the checkpoint back: NM restores the devices' profiles and activations and
    /// deletes the profiles added since.
    pub async fn rollback(self) -> Result<(), HandoffError> {
        let Some(checkpoint) = &self.checkpoint else {
            return Ok(());
        };
        let results: HashMap<String, u32> = self.nm("CheckpointRollback", &(checkpoint,)).await?;
        let failed: Vec<String> = results
            .iter()
            .filter(|(_, result)| **result != 0)
            .map(|(device, result)| format!("{device} (result {result})"))
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(HandoffError::new(
                "NetworkManager.CheckpointRollback",
                format!("devices not restored: {}", failed.join(", ")),
            ))
        }
    }

    async fn nm<B, R>(&self, method: &str, body: &B) -> Result<R, HandoffError>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
        R: serde::de::DeserializeOwned + zbus::zvariant::Type,
    {
        self.bus
            .call(NETWORK_MANAGER, NM_PATH, NETWORK_MANAGER, method, body)
            .await
    }

    async fn get<T>(&self, path: &str, interface: &str, name: &str) -> Result<T, HandoffError>
    where
        T: TryFrom<OwnedValue>,
        T::Error: std::fmt::Display,
    {
        self.bus.get(NETWORK_MANAGER, path, interface, name).await
    }

    /// The device whose hardware address is `mac`, if NM knows one.
    async fn device_by_mac(&self, mac: &str) -> Result<Option<OwnedObjectPath>, HandoffError> {
        let devices: Vec<OwnedObjectPath> = self.nm("GetDevices", &()).await?;
        for device in devices {
            // Device.HwAddress since NM 1.24; Device.Wired's before that (RHEL 7).
            let address = match self
                .get::<String>(device.as_str(), DEVICE, "HwAddress")
                .await
            {
                Ok(a) => a,
                Err(_) => match self
                    .get::<String>(device.as_str(), WIRED, "HwAddress")
                    .await
                {
                    Ok(a) => a,
                    Err(_) => continue,
                },
            };
            if address.eq_ignore_ascii_case(mac) {
                return Ok(Some(device));
            }
        }
        Ok(None)
    }

    /// NM-generated profiles active on `device` or usable by it and bound to its name.
    async fn generated_on(
        &self,
        device: &OwnedObjectPath,
    ) -> Result<Vec<OwnedObjectPath>, HandoffError> {
        let iface: String = self.get(device.as_str(), DEVICE, "Interface").await?;
        let mut candidates: Vec<OwnedObjectPath> = self
            .get(device.as_str(), DEVICE, "AvailableConnections")
            .await?;
        let active: OwnedObjectPath = self
            .get(device.as_str(), DEVICE, "ActiveConnection")
            .await?;
        if active.as_str() != "/"
            && let Ok(connection) = self.get(active.as_str(), ACTIVE, "Connection").await
        {
            candidates.push(connection);
        }
        let mut out = Vec::new();
        for connection in candidates {
            let flags: u32 = self.get(connection.as_str(), CONNECTION, "Flags").await?;
            if flags & NM_GENERATED == 0 {
                continue;
            }
            let bound = self.interface_name(&connection).await?;
            if bound.as_deref().is_none_or(|b| b == iface) {
                out.push(connection);
            }
        }
        Ok(out)
    }

    /// A profile's settings, section -> key -> value.
    async fn settings(&self, connection: &OwnedObjectPath) -> Result<Settings, HandoffError> {
        self.bus
            .call(
                NETWORK_MANAGER,
                connection.as_str(),
                CONNECTION,
                "GetSettings",
                &(),
            )
            .await
    }

    /// `connection.interface-name` of a profile.
    async fn interface_name(
        &self,
        connection: &OwnedObjectPath,
    ) -> Result<Option<String>, HandoffError> {
        let settings = self.settings(connection).await?;
        Ok(settings
            .get("connection")
            .and_then(|c| c.get("interface-name"))
            .and_then(|v| String::try_from(v.clone()).ok()))
    }

    /// Whether `connection` is active on any device (another NIC still uses it).
    async fn active_elsewhere(&self, connection: &OwnedObjectPath) -> Result<bool, HandoffError> {
        Ok(self.active_of(connection).await?.is_some())
    }

    /// The active connection object of `connection`, if it is active.
    async fn active_of(
        &self,
        connection: &OwnedObjectPath,
    ) -> Result<Option<OwnedObjectPath>, HandoffError> {
        let actives: Vec<OwnedObjectPath> = self
            .get(NM_PATH, NETWORK_MANAGER, "ActiveConnections")
            .await?;
        for active in actives {
            match self
                .get::<OwnedObjectPath>(active.as_str(), ACTIVE, "Connection")
                .await
            {
                Ok(c) if &c == connection => return Ok(Some(active)),
                Ok(_) => {}
                Err(e) if is_gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Deactivates `connection` where it is active, then deletes it (and its file).
    async fn delete_profile(&self, connection: &OwnedObjectPath) -> Result<(), HandoffError> {
        if let Some(active) = self.active_of(connection).await? {
            match self.nm::<_, ()>("DeactivateConnection", &(&active,)).await {
                Err(e) if !is_gone(&e) && !e.detail.contains("NotActive") => return Err(e),
                _ => {}
            }
        }
        let deleted: Result<(), HandoffError> = self
            .bus
            .call(
                NETWORK_MANAGER,
                connection.as_str(),
                CONNECTION,
                "Delete",
                &(),
            )
            .await;
        match deleted {
            Err(e) if !is_gone(&e) => Err(e),
            _ => Ok(()),
        }
    }

    /// Profiles (path, file name) whose file is one of `files`.
    async fn connections_from(
        &self,
        files: &[&Path],
    ) -> Result<Vec<(OwnedObjectPath, String)>, HandoffError> {
        let all: Vec<OwnedObjectPath> = self
            .bus
            .call(
                NETWORK_MANAGER,
                SETTINGS_PATH,
                SETTINGS,
                "ListConnections",
                &(),
            )
            .await?;
        let mut out = Vec::new();
        for connection in all {
            let file: String = match self.get(connection.as_str(), CONNECTION, "Filename").await {
                Ok(f) => f,
                Err(e) if is_gone(&e) => continue,
                Err(e) => return Err(e),
            };
            if files.iter().any(|f| Path::new(&file) == *f) {
                out.push((connection, file));
            }
        }
        Ok(out)
    }
}

/// The NIC's files NetworkManager reads as profiles: keyfiles, and `ifcfg-` files (RHEL 7's
/// ifcfg-rh plugin; its `route-`/`rule-` files belong to the `ifcfg-` profile).
fn profile_files(nic: &HandoffNic) -> impl Iterator<Item = &Path> {
    nic.files.iter().map(|p| p.as_path()).filter(|p| {
        p.extension().is_some_and(|e| e == "nmconnection")
            || p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ifcfg-"))
    })
}
