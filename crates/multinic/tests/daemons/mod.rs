//! A host for the hand-off tests: the real NetworkManager or systemd-networkd from Debian in a
//! throwaway network namespace, with a private mount namespace (kept by a holder process and
//! entered with nsenter) and a private D-Bus system bus. `/sys` is bind-remounted read-only
//! there (both daemons then treat links as initialised without udev), and private folders of a
//! temp "host root" are bound over /run, /etc/NetworkManager, /var/lib/NetworkManager and
//! /etc/systemd/network; the agent writes into the same root with `--root`, as in its Pod.
//! Everything (daemons, bus, holder, namespace, folders) goes on Drop, also on panic.

#![allow(dead_code)] // each test file uses its own daemon

use crate::agent_support::frozen::Frozen;
use crate::agent_support::{BIN, Killed, Netns, TempDir, sh, wait_for};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod run;
pub use run::{AgentRun, spec};

/// How long a daemon may take to appear on the bus or settle (it takes ~0.2 s here).
pub const SETTLE: Duration = Duration::from_secs(15);
/// How long an address must stay put after a run, a restart or a reload: a daemon that fights
/// the agent changes it well within this.
pub const STAY: Duration = Duration::from_secs(3);

/// Which daemon the host runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Daemon {
    NetworkManager,
    Networkd,
    /// A system bus with neither daemon on it.
    Neither,
}

/// The system bus policy of Debian's `system.conf`, with its includes (which let NM and
/// networkd own their names) but no service directories: the stock config would bus-activate
/// NM's dispatcher and others.
const DBUS_CONF: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <user>messagebus</user>
  <auth>EXTERNAL</auth>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <includedir>/usr/share/dbus-1/system.d</includedir>
  <includedir>/etc/dbus-1/system.d</includedir>
</busconfig>
"#;

/// NetworkManager's config: keyfiles, no polkit (nobody to ask), nothing touching DNS or the
/// hostname, and NM's defaults otherwise, including automatic "Wired connection" DHCP
/// profiles for new NICs. The test veths' peers stay unmanaged.
const NM_CONF: &str = "[main]
plugins=keyfile
auth-polkit=false
dhcp=internal
dns=none
rc-manager=unmanaged
systemd-resolved=false
hostname-mode=none

[keyfile]
unmanaged-devices=interface-name:v*b

[logging]
level=DEBUG
";

/// The host: namespace, holder, bus and daemon.
pub struct Host {
    // Field order is drop order: daemon, bus and holder die before the namespace goes.
    daemon: Option<Killed>,
    bus: Option<Killed>,
    holder: Killed,
    pub ns: Netns,
    pub root: TempDir,
    pub kind: Daemon,
}

impl Host {
    /// Starts the holder, the bus and `kind`'s daemon.
    pub fn start(kind: Daemon) -> Self {
        let ns = Netns::new();
        let root = TempDir::new("daemons");
        let r = root.path();
        for dir in [
            "run/dbus",
            "run/lock",
            "run/systemd/network",
            "etc/NetworkManager/system-connections",
            "etc/NetworkManager/conf.d",
            "etc/NetworkManager/dispatcher.d",
            "var/lib/NetworkManager",
            "etc/systemd/network",
            "empty",
        ] {
            fs::create_dir_all(r.join(dir)).expect("host root folders");
        }
        // networkd drops privileges to systemd-network and must traverse these.
        for dir in ["", "run", "run/systemd", "run/systemd/network"] {
            fs::set_permissions(r.join(dir), fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::write(r.join("dbus.conf"), DBUS_CONF).unwrap();
        fs::write(r.join("etc/NetworkManager/NetworkManager.conf"), NM_CONF).unwrap();
        // The holder: a private mount (and UTS) namespace inside the netns, kept alive by a
        // sleeping process. `ip netns exec` and `unshare` exec without forking, so the child's
        // pid is the holder itself.
        let holder = Command::new("ip")
            .args(["netns", "exec", &ns.name, "unshare", "-m", "-u"])
            .args(["--propagation", "private", "sleep", "infinity"])
            .stdin(Stdio::null())
            .spawn()
            .expect("starting the holder");
        let mut host = Self {
            daemon: None,
            bus: None,
            holder: Killed(holder),
            ns,
            root,
            kind,
        };
        // `ip` and `unshare` set up the namespaces before they exec `sleep`: only once the
        // holder is `sleep` may anything enter it (earlier, nsenter would enter ip's own mount
        // namespace, whose /run is the host's).
        let pid = host.holder.0.id();
        let ready = wait_for(SETTLE, || {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        });
        assert!(ready.is_some(), "the namespace holder did not start");
        let ns_of = |pid: &str| fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
        assert_ne!(
            ns_of(&pid.to_string()),
            ns_of("self"),
            "the holder must have a mount namespace of its own"
        );
        let r = host.root.path().to_path_buf();
        let bind = |from: &str, to: &str| {
            host.enter("mount", &["--bind", r.join(from).to_str().unwrap(), to]);
        };
        bind("run", "/run");
        bind("etc/NetworkManager", "/etc/NetworkManager");
        bind("var/lib/NetworkManager", "/var/lib/NetworkManager");
        bind("etc/systemd/network", "/etc/systemd/network");
        // Debian's conf.d turns on the ifupdown plugin; leave it out.
        bind("empty", "/usr/lib/NetworkManager/conf.d");
        host.enter("mount", &["-o", "remount,bind,ro", "/sys"]);
        host.enter("hostname", &["multinic-daemon-test"]);
        let bus = host
            .spawn_inside(
                "dbus-daemon",
                &[
                    &format!("--config-file={}", r.join("dbus.conf").display()),
                    "--nofork",
                    "--nopidfile",
                ],
                "dbus.log",
            )
            .expect("starting dbus-daemon");
        host.bus = Some(bus);
        let socket = host.socket();
        assert!(
            wait_for(SETTLE, || socket.exists()).is_some(),
            "the private system bus did not come up: {}",
            host.log("dbus.log")
        );
        host.start_daemon();
        host
    }

    /// The bus address, as the agent outside the mount namespace sees it.
    pub fn bus_address(&self) -> String {
        format!("unix:path={}", self.socket().display())
    }

    fn socket(&self) -> PathBuf {
        self.root.path().join("run/dbus/system_bus_socket")
    }

    /// Starts (or restarts after [`Host::stop_daemon`]) the daemon and waits for its bus name.
    pub fn start_daemon(&mut self) {
        let (program, args, log, probe): (&str, &[&str], &str, [&str; 4]) = match self.kind {
            Daemon::Neither => return,
            Daemon::NetworkManager => (
                "NetworkManager",
                &["--debug"],
                "nm.log",
                [
                    "org.freedesktop.NetworkManager",
                    "/org/freedesktop/NetworkManager",
                    "org.freedesktop.NetworkManager",
                    "Version",
                ],
            ),
            Daemon::Networkd => (
                "/lib/systemd/systemd-networkd",
                &[],
                "networkd.log",
                [
                    "org.freedesktop.network1",
                    "/org/freedesktop/network1",
                    "org.freedesktop.network1.Manager",
                    "OperationalState",
                ],
            ),
        };
        let daemon = self
            .spawn_inside(program, args, log)
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        self.daemon = Some(daemon);
        let mut get = vec!["get-property"];
        get.extend(probe);
        assert!(
            wait_for(SETTLE, || self.busctl(&get).is_some()).is_some(),
            "{program} did not appear on the bus: {}",
            self.log(log)
        );
    }

    /// Stops the daemon (SIGTERM, as systemd would) and waits for it to exit.
    pub fn stop_daemon(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let pid = daemon.0.id().to_string();
            sh("kill", &["-TERM", &pid]);
            let _ = daemon.0.wait();
        }
    }

    /// Holds the daemon stopped (it stays on the bus but answers nothing) until the guard
    /// drops, or at most `limit`.
    pub fn freeze_daemon(&self, limit: Duration) -> Frozen {
        let daemon = self.daemon.as_ref().expect("a daemon runs");
        Frozen::new(daemon.0.id().to_string(), limit)
    }

    /// Runs `program` inside the holder's namespaces and waits for it.
    pub fn enter(&self, program: &str, args: &[&str]) -> String {
        let pid = self.holder.0.id().to_string();
        let mut all = vec!["-t", pid.as_str(), "-n", "-m", "-u", "--", program];
        all.extend_from_slice(args);
        sh("nsenter", &all)
    }

    fn spawn_inside(&self, program: &str, args: &[&str], log: &str) -> std::io::Result<Killed> {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.path().join(log))?;
        let pid = self.holder.0.id().to_string();
        Command::new("nsenter")
            .args(["-t", &pid, "-n", "-m", "-u", "--", program])
            .args(args)
            .env("SYSTEMD_LOG_LEVEL", "debug")
            .env("SYSTEMD_LOG_TARGET", "console")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map(Killed)
    }

    /// A whole log file of the host.
    pub fn log_all(&self, name: &str) -> String {
        fs::read_to_string(self.root.path().join(name)).unwrap_or_default()
    }

    /// A log file of the host, for assertion messages.
    pub fn log(&self, name: &str) -> String {
        let text = self.log_all(name);
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// `busctl ARGS` on the private bus; `None` when it fails.
    pub fn busctl(&self, args: &[&str]) -> Option<String> {
        self.tool("busctl", args)
    }

    /// `nmcli ARGS` on the private bus; `None` when it fails.
    pub fn nmcli(&self, args: &[&str]) -> Option<String> {
        self.tool("nmcli", args)
    }

    fn tool(&self, program: &str, args: &[&str]) -> Option<String> {
        let out = Command::new(program)
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", self.bus_address())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// A veth NIC (peer up, so it has carrier once up), as if the cloud had attached it.
    pub fn attach_nic(&self, tag: &str, mac: &str) {
        self.ns.add_nic(tag, mac);
    }

    /// NM's view of a device: (state code, connection name).
    pub fn nm_device(&self, dev: &str) -> Option<(u32, String)> {
        let out = self.nmcli(&[
            "-g",
            "GENERAL.STATE,GENERAL.CONNECTION",
            "device",
            "show",
            dev,
        ])?;
        let mut lines = out.lines();
        let state = lines.next()?.split_whitespace().next()?.parse().ok()?;
        Some((state, lines.next().unwrap_or("").to_owned()))
    }

    /// Every NM profile as (name, file name).
    pub fn nm_profiles(&self) -> Vec<(String, String)> {
        let out = self
            .nmcli(&["-t", "-f", "NAME,FILENAME", "connection", "show"])
            .unwrap_or_default();
        out.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(n, f)| (n.to_owned(), f.to_owned()))
            .collect()
    }

    /// networkd's `AdministrativeState` of a link.
    pub fn networkd_state(&self, dev: &str) -> Option<String> {
        let link = self.busctl(&[
            "call",
            "org.freedesktop.network1",
            "/org/freedesktop/network1",
            "org.freedesktop.network1.Manager",
            "GetLinkByName",
            "s",
            dev,
        ])?;
        let path = link.split_whitespace().nth(2)?.trim_matches('"').to_owned();
        let state = self.busctl(&[
            "get-property",
            "org.freedesktop.network1",
            &path,
            "org.freedesktop.network1.Link",
            "AdministrativeState",
        ])?;
        Some(
            state
                .split_whitespace()
                .nth(1)?
                .trim_matches('"')
                .to_owned(),
        )
    }

    /// `Manager.Reload` of networkd.
    pub fn networkd_reload(&self) {
        self.busctl(&[
            "call",
            "org.freedesktop.network1",
            "/org/freedesktop/network1",
            "org.freedesktop.network1.Manager",
            "Reload",
        ])
        .expect("networkd Reload");
    }

    /// NetworkManager's checkpoints right now.
    pub fn nm_checkpoints(&self) -> String {
        self.busctl(&[
            "get-property",
            "org.freedesktop.NetworkManager",
            "/org/freedesktop/NetworkManager",
            "org.freedesktop.NetworkManager",
            "Checkpoints",
        ])
        .unwrap_or_default()
    }

    /// Runs `multinic agent` in the namespace as its Pod would: host files under the root,
    /// the system bus at the mounted socket, an empty PATH (the image has no tools).
    pub fn agent(&self, os: &str, spec: &str, extra: &[&str]) -> AgentRun {
        let report = self.root.path().join("report.json");
        let _ = fs::remove_file(&report);
        let out: Output = self
            .agent_command(os, spec, extra)
            .output()
            .expect("running multinic agent");
        let run = AgentRun {
            code: out.status.code().unwrap_or(-1),
            report: fs::read_to_string(&report).unwrap_or_default(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        println!("agent {extra:?} -> {}: {}", run.code, run.report);
        run
    }

    /// The command [`Host::agent`] runs, for a test that starts the agent itself.
    pub fn agent_command(&self, os: &str, spec: &str, extra: &[&str]) -> Command {
        let report = self.root.path().join("report.json");
        // An absolute `ip`: with PATH emptied, Command would not find it.
        let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("iproute2's ip");
        let mut command = Command::new(ip);
        command
            .args(["netns", "exec", &self.ns.name, BIN])
            .arg("agent")
            .args(["--root", self.root.path().to_str().unwrap()])
            .args(["--report", report.to_str().unwrap()])
            .args(["--os", os, "--node-name", "worker-01", "--source", "spec"])
            .args(extra)
            .env_clear()
            .env("PATH", "")
            .env("MULTINIC_NODE_SPEC", spec)
            .env("DBUS_SYSTEM_BUS_ADDRESS", self.bus_address())
            .env("MULTINIC_LOG", "info,multinic_engine=debug");
        command
    }

    /// [`Host::agent`] that must succeed (exit 0), else fails with the agent's and the
    /// daemon's logs.
    pub fn apply(&self, os: &str, spec: &str, extra: &[&str]) -> AgentRun {
        let run = self.agent(os, spec, extra);
        assert_eq!(run.code, 0, "{}\n{}", run.stderr, self.daemon_log());
        run
    }

    /// The end of the daemon's log.
    pub fn daemon_log(&self) -> String {
        match self.kind {
            Daemon::NetworkManager => self.log("nm.log"),
            Daemon::Networkd => self.log("networkd.log"),
            Daemon::Neither => self.log("dbus.log"),
        }
    }

    /// A host file's contents and permission bits.
    pub fn file(&self, path: &str) -> Option<(String, u32)> {
        let full = self.root.path().join(path.trim_start_matches('/'));
        let text = fs::read_to_string(&full).ok()?;
        let mode = fs::metadata(&full).ok()?.permissions().mode() & 0o7777;
        Some((text, mode))
    }

    /// Asserts that `dev` holds exactly `addresses` (IPv4) for [`STAY`], checked every 50 ms:
    /// the daemon does not take them away a moment later. `when` names the moment in the
    /// failure message.
    pub fn assert_addresses_stay(&self, dev: &str, addresses: &[&str], when: &str) {
        let changed = wait_for(STAY, || self.ns.addresses(dev) != addresses);
        assert!(
            changed.is_none(),
            "{when}: {dev} holds {:?}, not {addresses:?} for {STAY:?}",
            self.ns.addresses(dev)
        );
    }
}
