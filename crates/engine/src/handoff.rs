//! Host hand-off: make the daemon that owns the host's networking agree with multinic's files
//! without a reboot and without disturbing other NICs, over the system D-Bus (no host binary:
//! nothing runs `nmcli`, `networkctl` or `netplan`). One run goes `begin` (before anything
//! changes: NetworkManager checkpoint, snapshot of networkd units), `reload` (after the files
//! changed), then `commit` when verify and probe passed or `rollback` when the run is reverted.
//! Behind a small trait so tests (and nodes without a daemon) can record or skip it.

mod bus;
mod networkd;
mod nm;

use crate::plan::FileChange;
use bus::Bus;
use futures::future::BoxFuture;
use multinic_netconf::{DesiredNic, DesiredNode, OsFlavor};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// NetworkManager's bus name.
pub const NETWORK_MANAGER: &str = "org.freedesktop.NetworkManager";
/// systemd-networkd's bus name.
pub const NETWORKD: &str = "org.freedesktop.network1";
/// Where the system bus listens on a standard host (and where the chart mounts it).
pub const SYSTEM_BUS_ADDRESS: &str = "unix:path=/run/dbus/system_bus_socket";

/// One NIC whose persistent files change in this run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoffNic {
    /// Interface name, `multinicN`.
    pub name: String,
    /// Its MAC, lowercase.
    pub mac: String,
    /// The NIC's files are removed (orphan, cleanup) rather than written.
    pub removed: bool,
    /// Host paths (not joined with the root) of the NIC's files written or removed.
    pub files: Vec<PathBuf>,
    /// The NIC as it is configured, for a written NIC: networkd's units are rendered from it.
    pub desired: Option<DesiredNic>,
}

/// The host's network daemon refused or did not answer.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {detail}")]
pub struct HandoffError {
    /// What was being done, e.g. `NetworkManager.ActivateConnection /org/...`.
    pub op: String,
    /// The daemon's answer, or why there was none.
    pub detail: String,
}

impl HandoffError {
    pub(crate) fn new(op: impl Into<String>, detail: impl Display) -> Self {
        Self {
            op: op.into(),
            detail: detail.to_string(),
        }
    }
}

/// Tells the host's network daemon about changed files, inside a run it can undo.
pub trait HostHandoff: Send + Sync {
    /// A short name for logs, e.g. `dbus`.
    fn name(&self) -> &'static str;
    /// Called before the run changes anything, with the NICs whose files will change. Returns
    /// what the hand-off will do, for the report (empty: nothing worth saying).
    fn begin<'a>(&'a self, nics: &'a [HandoffNic]) -> BoxFuture<'a, Result<String, HandoffError>>;
    /// Whether, after `begin`, a daemon takes the NICs over at `reload` (and may rewrite
    /// what the kernel holds), so the run is verified after it.
    fn daemon_takes_over(&self) -> bool {
        false
    }
    /// Called once per run, after files were written or removed, with the NICs concerned.
    fn reload<'a>(&'a self, nics: &'a [HandoffNic]) -> BoxFuture<'a, Result<(), HandoffError>>;
    /// The run passed verify and probe: keep what the daemon now has.
    fn commit(&self) -> BoxFuture<'_, Result<(), HandoffError>>;
    /// The run is being reverted: put the daemon back as it was at `begin`. Called after the
    /// kernel was restored and before multinic's own files are.
    fn rollback(&self) -> BoxFuture<'_, Result<(), HandoffError>>;
}

/// Settings of the D-Bus hand-off, parsed once by the caller.
#[derive(Clone, Debug)]
pub struct HandoffSettings {
    /// D-Bus address of the host's system bus.
    pub bus_address: String,
    /// Host root the engine writes files under (networkd units go to `<root>/run/systemd/network`).
    pub root: PathBuf,
    /// Longest wait for one D-Bus call.
    pub call_timeout: Duration,
    /// NetworkManager rolls its checkpoint back on its own after this long, if the agent dies
    /// mid-run; must outlast a run.
    pub rollback_timeout: Duration,
    /// Longest wait for a daemon to report a NIC activated/configured.
    pub settle_timeout: Duration,
}

impl HandoffSettings {
    /// Defaults: 10 s per call, 60 s checkpoint rollback (as nmstate), 20 s to settle.
    pub fn new(bus_address: impl Into<String>, root: impl Into<PathBuf>) -> Self {
        Self {
            bus_address: bus_address.into(),
            root: root.into(),
            call_timeout: Duration::from_secs(10),
            rollback_timeout: Duration::from_secs(60),
            settle_timeout: Duration::from_secs(20),
        }
    }
}

/// The hand-off for `flavor`: finds the daemon on the system bus at each run.
pub fn handoff_for(flavor: OsFlavor, settings: HandoffSettings) -> Box<dyn HostHandoff> {
    Box::new(DbusHandoff {
        flavor,
        settings,
        session: Mutex::new(None),
    })
}

/// Shared hand-offs (tests keep an `Arc` to inspect a [`RecordingHandoff`]).
impl<T: HostHandoff + ?Sized> HostHandoff for std::sync::Arc<T> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn begin<'a>(&'a self, nics: &'a [HandoffNic]) -> BoxFuture<'a, Result<String, HandoffError>> {
        (**self).begin(nics)
    }
    fn daemon_takes_over(&self) -> bool {
        (**self).daemon_takes_over()
    }
    fn reload<'a>(&'a self, nics: &'a [HandoffNic]) -> BoxFuture<'a, Result<(), HandoffError>> {
        (**self).reload(nics)
    }
    fn commit(&self) -> BoxFuture<'_, Result<(), HandoffError>> {
        (**self).commit()
    }
    fn rollback(&self) -> BoxFuture<'_, Result<(), HandoffError>> {
        (**self).rollback()
    }
}

/// Does nothing (`--handoff none`): files and netlink only, by request.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopHandoff;

impl HostHandoff for NoopHandoff {
    fn name(&self) -> &'static str {
        "none"
    }
    fn begin<'a>(&'a self, _: &'a [HandoffNic]) -> BoxFuture<'a, Result<String, HandoffError>> {
        Box::pin(async { Ok(String::new()) })
    }
    fn reload<'a>(&'a self, _: &'a [HandoffNic]) -> BoxFuture<'a, Result<(), HandoffError>> {
        Box::pin(async { Ok(()) })
    }
    fn commit(&self) -> BoxFuture<'_, Result<(), HandoffError>> {
        Box::pin(async { Ok(()) })
    }
    fn rollback(&self) -> BoxFuture<'_, Result<(), HandoffError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Records every call; optionally fails `reload`. For tests.
#[derive(Debug, Default)]
pub struct RecordingHandoff {
    calls: Mutex<Vec<Vec<HandoffNic>>>,
    events: Mutex<Vec<&'static str>>,
    fail: bool,
}

impl RecordingHandoff {
    /// A recorder whose `reload` fails when `fail` is true.
    pub fn new(fail: bool) -> Self {
        Self {
            fail,
            ..Self::default()
        }
    }

    /// The NICs of every `reload` so far, oldest first.
    pub fn calls(&self) -> Vec<Vec<HandoffNic>> {
        self.calls.lock().expect("recorder lock").clone()
    }

    /// Every call by name (`begin`, `reload`, `commit`, `rollback`), oldest first.
    pub fn events(&self) -> Vec<&'static str> {
        self.events.lock().expect("recorder lock").clone()
    }

    fn record(&self, event: &'static str) {
        self.events.lock().expect("recorder lock").push(event);
    }
}

impl HostHandoff for RecordingHandoff {
    fn name(&self) -> &'static str {
        "recording"
    }
    fn begin<'a>(&'a self, _: &'a [HandoffNic]) -> BoxFuture<'a, Result<String, HandoffError>> {
        self.record("begin");
        Box::pin(async { Ok(String::new()) })
    }
    fn reload<'a>(&'a self, nics: &'a [HandoffNic]) -> BoxFuture<'a, Result<(), HandoffError>> {
        self.record("reload");
        self.calls
            .lock()
            .expect("recorder lock")
            .push(nics.to_vec());
        let fail = self.fail;
        Box::pin(async move {
            if fail {
                Err(HandoffError::new("recording", "told to fail"))
            } else {
                Ok(())
            }
        })
    }
    fn commit(&self) -> BoxFuture<'_, Result<(), HandoffError>> {
        self.record("commit");
        Box::pin(async { Ok(()) })
    }
    fn rollback(&self) -> BoxFuture<'_, Result<(), HandoffError>> {
        self.record("rollback");
        Box::pin(async { Ok(()) })
    }
}

/// `--handoff auto`: NetworkManager (RHEL flavors) or systemd-networkd (Ubuntu) when it owns
/// its name on the system bus, else netlink and files only.
struct DbusHandoff {
    flavor: OsFlavor,
    settings: HandoffSettings,
    /// The run between `begin` and `commit`/`rollback`.
    session: Mutex<Option<Session>>,
}

enum Session {
    NetworkManager(nm::NmRun),
    Networkd(networkd::NetworkdRun),
    /// No daemon to tell: the kernel and the files are all there is.
    FilesOnly,
}

impl DbusHandoff {
    async fn start(&self, nics: &[HandoffNic]) -> Result<(Session, String), HandoffError> {
        let only = |why: String| Ok((Session::FilesOnly, format!("netlink and files only: {why}")));
        // A node without a bus socket (the chart mounts none, or no D-Bus daemon runs): say so
        // without a connect attempt, which costs the client a thread of its own.
        if let Some(socket) = unix_socket_path(&self.settings.bus_address)
            && !socket.exists()
        {
            return only(format!("no system bus (no socket at {})", socket.display()));
        }
        let bus = match Bus::connect(&self.settings.bus_address, self.settings.call_timeout).await {
            Ok(bus) => bus,
            Err(e) => return only(format!("no system bus ({e})")),
        };
        let nm = bus.has_owner(NETWORK_MANAGER).await?;
        let networkd = bus.has_owner(NETWORKD).await?;
        match (self.flavor, nm, networkd) {
            (OsFlavor::Ubuntu, _, true) => {
                let run = networkd::NetworkdRun::begin(bus, &self.settings, nics).await?;
                Ok((Session::Networkd(run), "handed to systemd-networkd".into()))
            }
            (OsFlavor::Rhel9 | OsFlavor::Rhel8 | OsFlavor::Rhel7, true, _) => {
                let run = nm::NmRun::begin(bus, &self.settings, nics).await?;
                Ok((
                    Session::NetworkManager(run),
                    "handed to NetworkManager".into(),
                ))
            }
            (_, false, false) => {
                only("neither NetworkManager nor systemd-networkd is on the system bus".into())
            }
            (flavor, _, _) => only(format!(
                "the {} on the system bus does not read {flavor} files",
                if nm {
                    "NetworkManager"
                } else {
                    "systemd-networkd"
                }
            )),
        }
    }

    fn take(&self) -> Option<Session> {
        self.session.lock().expect("hand-off session lock").take()
    }
}

/// The socket of a `unix:path=...` D-Bus address (the form the system bus address takes);
/// `None` for any other form, which the client then connects to as it is.
fn unix_socket_path(address: &str) -> Option<&Path> {
    let rest = address.strip_prefix("unix:")?;
    // Several addresses to try, or an escaped path: leave those to the client.
    if rest.contains([';', '%']) {
        return None;
    }
    rest.split(',')
        .find_map(|pair| pair.strip_prefix("path="))
        .map(Path::new)
}

impl HostHandoff for DbusHandoff {
    fn name(&self) -> &'static str {
        "dbus"
    }
    fn begin<'a>(&'a self, nics: &'a [HandoffNic]) -> BoxFuture<'a, Result<String, HandoffError>> {
        Box::pin(async move {
            // A session left by a run that returned early is stale; its checkpoint (if any)
            // times out on NetworkManager's side.
            let (session, note) = self.start(nics).await?;
            tracing::info!(note, "host hand-off");
            *self.session.lock().expect("hand-off session lock") = Some(session);
            Ok(note)
        })
    }
    fn daemon_takes_over(&self) -> bool {
        matches!(
            *self.session.lock().expect("hand-off session lock"),
            Some(Session::NetworkManager(_) | Session::Networkd(_))
        )
    }
    fn reload<'a>(&'a self, nics: &'a [HandoffNic]) -> BoxFuture<'a, Result<(), HandoffError>> {
        Box::pin(async move {
            let mut session = self.take();
            let result = match &mut session {
                Some(Session::NetworkManager(run)) => run.apply(nics).await,
                Some(Session::Networkd(run)) => run.apply(nics).await,
                Some(Session::FilesOnly) | None => Ok(()),
            };
            *self.session.lock().expect("hand-off session lock") = session;
            result
        })
    }
    fn commit(&self) -> BoxFuture<'_, Result<(), HandoffError>> {
        Box::pin(async move {
            match self.take() {
                Some(Session::NetworkManager(run)) => run.commit().await,
                Some(Session::Networkd(_) | Session::FilesOnly) | None => Ok(()),
            }
        })
    }
    fn rollback(&self) -> BoxFuture<'_, Result<(), HandoffError>> {
        Box::pin(async move {
            match self.take() {
                Some(Session::NetworkManager(run)) => run.rollback().await,
                Some(Session::Networkd(run)) => run.rollback().await,
                Some(Session::FilesOnly) | None => Ok(()),
            }
        })
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or fails naming `what` after `limit`.
pub(crate) async fn poll<T, F, Fut>(
    what: &str,
    limit: Duration,
    mut check: F,
) -> Result<T, HandoffError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, HandoffError>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(HandoffError::new(what, format!("not within {limit:?}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// NICs whose files change, once each, with their paths and (when written) their model.
pub(crate) fn handoff_nics(changes: &[FileChange], desired: &DesiredNode) -> Vec<HandoffNic> {
    let mut out: Vec<HandoffNic> = Vec::new();
    for change in changes {
        let Some(owner) = change.owner() else {
            continue;
        };
        let removed = matches!(change, FileChange::Remove { .. });
        if let Some(nic) = out
            .iter_mut()
            .find(|n| n.name == owner.name && n.mac == owner.mac)
        {
            nic.removed &= removed;
            nic.files.push(change.path().clone());
            continue;
        }
        out.push(HandoffNic {
            name: owner.name.clone(),
            mac: owner.mac.clone(),
            removed,
            files: vec![change.path().clone()],
            desired: None,
        });
    }
    for nic in out.iter_mut().filter(|n| !n.removed) {
        nic.desired = desired
            .nics
            .iter()
            .find(|d| d.name == nic.name && d.mac_address().to_string() == nic.mac)
            .cloned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::unix_socket_path;
    use std::path::Path;

    #[test]
    fn the_socket_of_a_unix_path_address_and_no_other() {
        let socket = |a| unix_socket_path(a);
        assert_eq!(
            socket("unix:path=/run/dbus/system_bus_socket"),
            Some(Path::new("/run/dbus/system_bus_socket"))
        );
        assert_eq!(
            socket("unix:guid=0123,path=/host/run/dbus/s"),
            Some(Path::new("/host/run/dbus/s"))
        );
        assert_eq!(socket("unix:abstract=/tmp/dbus-x"), None);
        assert_eq!(socket("tcp:host=127.0.0.1,port=1234"), None);
        assert_eq!(socket("unix:path=/a;unix:path=/b"), None);
        assert_eq!(socket("unix:path=/run/dbus%20x"), None);
    }
}
