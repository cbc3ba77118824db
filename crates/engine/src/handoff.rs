//! Host hand-off: after the persistent files changed, make the host's network manager agree
//! with them without a reboot and without disturbing other NICs. Behind a small trait so tests
//! (and nodes without a daemon) can check or skip it. Never runs `netplan apply`, which bounces
//! every interface.

use futures::future::BoxFuture;
use multinic_netconf::OsFlavor;
use std::sync::Mutex;
use tokio::process::Command;

/// One NIC whose persistent files changed in this run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoffNic {
    /// Interface name, `multinicN`.
    pub name: String,
    /// Its MAC, lowercase.
    pub mac: String,
    /// The NIC's files were removed (orphan, cleanup) rather than written.
    pub removed: bool,
}

/// The host's network manager failed to take over the new files.
#[derive(Debug, thiserror::Error)]
#[error("{command}: {detail}")]
pub struct HandoffError {
    /// The command line that failed.
    pub command: String,
    /// Exit status and stderr, or the spawn error.
    pub detail: String,
}

/// Tells the host's network manager about changed files.
pub trait HostHandoff: Send + Sync {
    /// A short name for logs, e.g. `networkmanager`.
    fn name(&self) -> &'static str;
    /// Called once per run, after files were written or removed, with the NICs concerned.
    fn reload<'a>(&'a self, nics: &'a [HandoffNic]) -> BoxFuture<'a, Result<(), HandoffError>>;
}

/// The hand-off for `flavor`, running its commands behind `prefix` (for example
/// `["nsenter", "-t", "1", "-m", "--"]` from a container; empty on the host itself).
pub fn handoff_for(flavor: OsFlavor, prefix: Vec<String>) -> Box<dyn HostHandoff> {
    match flavor {
        OsFlavor::Ubuntu => Box::new(NetworkdHandoff { prefix }),
        OsFlavor::Rhel9 | OsFlavor::Rhel8 | OsFlavor::Rhel7 => {
            Box::new(NetworkManagerHandoff { prefix })
        }
    }
}

/// Shared hand-offs (tests keep an `Arc` to inspect a [`RecordingHandoff`]).
impl<T: HostHandoff + ?Sized> HostHandoff for std::sync::Arc<T> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn reload<'a>(&'a self, nics: &'a [HandoffNic]) -> BoxFuture<'a, Result<(), HandoffError>> {
        (**self).reload(nics)
    }
}

/// Does nothing; for nodes where no network manager runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopHandoff;

impl HostHandoff for NoopHandoff {
    fn name(&self) -> &'static str {
        "noop"
    }
    fn reload<'a>(&'a self, _nics: &'a [HandoffNic]) -> BoxFuture<'a, Result<(), HandoffError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Records every call; optionally fails. For tests.
#[derive(Debug, Default)]
pub struct RecordingHandoff {
    calls: Mutex<Vec<Vec<HandoffNic>>>,
    fail: bool,
}

impl RecordingHandoff {
    /// A recorder whose `reload` fails when `fail` is true.
    pub fn new(fail: bool) -> Self {
        Self {
            calls: Mutex::new(Vec::new()),
            fail,
        }
    }

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<Vec<HandoffNic>> {
        self.calls.lock().expect("recorder lock").clone()
    }
}

impl HostHandoff for RecordingHandoff {
    fn name(&self) -> &'static str {
        "recording"
    }
    fn reload<'a>(&'a self, nics: &'a [HandoffNic]) -> BoxFuture<'a, Result<(), HandoffError>> {
        self.calls
            .lock()
            .expect("recorder lock")
            .push(nics.to_vec());
        let fail = self.fail;
        Box::pin(async move {
            if fail {
                Err(HandoffError {
                    command: "recording".into(),
                    detail: "told to fail".into(),
                })
            } else {
                Ok(())
            }
        })
    }
}

/// RHEL 7/8/9: `nmcli connection reload` re-reads keyfiles/ifcfg files, then
/// `nmcli connection up <name>` activates each written profile. Removed profiles disappear
/// with the reload; other connections are not touched.
#[derive(Clone, Debug, Default)]
pub struct NetworkManagerHandoff {
    /// Command prefix, e.g. an `nsenter` into the host.
    pub prefix: Vec<String>,
}

impl HostHandoff for NetworkManagerHandoff {
    fn name(&self) -> &'static str {
        "networkmanager"
    }
    fn reload<'a>(&'a self, nics: &'a [HandoffNic]) -> BoxFuture<'a, Result<(), HandoffError>> {
        Box::pin(async move {
            run(&self.prefix, &["nmcli", "connection", "reload"]).await?;
            for nic in nics.iter().filter(|n| !n.removed) {
                run(&self.prefix, &["nmcli", "connection", "up", &nic.name]).await?;
            }
            Ok(())
        })
    }
}

/// Ubuntu: `netplan generate` turns the YAML into networkd units, `networkctl reload` makes
/// networkd pick them up for the links they match. Not `netplan apply`.
#[derive(Clone, Debug, Default)]
pub struct NetworkdHandoff {
    /// Command prefix, e.g. an `nsenter` into the host.
    pub prefix: Vec<String>,
}

impl HostHandoff for NetworkdHandoff {
    fn name(&self) -> &'static str {
        "networkd"
    }
    fn reload<'a>(&'a self, _nics: &'a [HandoffNic]) -> BoxFuture<'a, Result<(), HandoffError>> {
        Box::pin(async move {
            run(&self.prefix, &["netplan", "generate"]).await?;
            run(&self.prefix, &["networkctl", "reload"]).await
        })
    }
}

async fn run(prefix: &[String], args: &[&str]) -> Result<(), HandoffError> {
    let argv: Vec<&str> = prefix
        .iter()
        .map(String::as_str)
        .chain(args.iter().copied())
        .collect();
    let command = argv.join(" ");
    let output = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .await
        .map_err(|e| HandoffError {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(HandoffError {
            command,
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command prefix that appends the command line it is given to `log` instead of
    /// running it.
    fn recorder(log: &std::path::Path) -> Vec<String> {
        vec![
            "sh".into(),
            "-c".into(),
            format!("echo \"$*\" >> {}", log.display()),
            "record".into(),
        ]
    }

    fn nic(name: &str, removed: bool) -> HandoffNic {
        HandoffNic {
            name: name.into(),
            mac: "fa:16:3e:00:00:01".into(),
            removed,
        }
    }

    #[tokio::test]
    async fn each_flavor_runs_its_own_commands_and_never_netplan_apply() {
        let dir = std::env::temp_dir().join(format!("mn-handoff-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let nics = [nic("multinic0", false), nic("multinic3", true)];
        for (flavor, expected) in [
            (
                OsFlavor::Rhel9,
                "nmcli connection reload\nnmcli connection up multinic0\n",
            ),
            (
                OsFlavor::Rhel7,
                "nmcli connection reload\nnmcli connection up multinic0\n",
            ),
            (OsFlavor::Ubuntu, "netplan generate\nnetworkctl reload\n"),
        ] {
            let log = dir.join(flavor.as_str());
            handoff_for(flavor, recorder(&log))
                .reload(&nics)
                .await
                .unwrap();
            let ran = std::fs::read_to_string(&log).unwrap();
            assert_eq!(ran, expected, "{flavor}");
            assert!(!ran.contains("netplan apply"));
        }
        let err = handoff_for(OsFlavor::Ubuntu, vec!["false".into()])
            .reload(&nics)
            .await
            .unwrap_err();
        assert!(err.command.starts_with("false netplan generate"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
