//! Shared fixtures of the agent end-to-end tests: a throwaway network namespace with veth
//! NICs, the built `multinic` binary run inside it, and a throwaway MariaDB server; a test PKI
//! ([`pki`]), a throwaway Oracle MySQL server ([`mysql`]) and a process held stopped
//! ([`frozen`]). Everything is removed on Drop, also when a test fails.

#![allow(dead_code)] // each test file uses a different part

pub mod frozen;
pub mod mysql;
pub mod pki;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_multinic");

/// Takes the node's host lock under `root`, as another agent running there would, until the
/// returned file is dropped.
pub fn hold_host_lock(root: &Path) -> std::fs::File {
    let lock = root.join("run/multinic/agent.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let held = std::fs::File::create(&lock).unwrap();
    held.lock().unwrap();
    held
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Runs a command and panics with its output when it fails.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A unique scratch directory removed on Drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        Self::new_in(&std::env::temp_dir(), tag)
    }

    /// As [`TempDir::new`], below `parent` (e.g. a chroot's `/tmp`).
    pub fn new_in(parent: &Path, tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!("mnag-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A network namespace with loopback up; deleted on Drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("mnag-{}-{n}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS <args>`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    /// A veth pair inside the namespace; `mac` goes on the end the agent will configure, the
    /// peer stays up so the configured end has carrier.
    pub fn add_nic(&self, tag: &str, mac: &str) {
        let (end, peer) = (format!("v{tag}a"), format!("v{tag}b"));
        self.ip(&[
            "link", "add", &end, "address", mac, "type", "veth", "peer", "name", &peer,
        ]);
        self.ip(&["link", "set", &peer, "up"]);
    }

    /// `ip -j addr show dev NAME` as (address/prefix) strings; empty when the NIC is absent.
    pub fn addresses(&self, dev: &str) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-j", "addr", "show", "dev", dev])
            .output()
            .expect("running ip");
        if !out.status.success() {
            return Vec::new();
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.as_array()
            .into_iter()
            .flatten()
            .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["family"] == "inet")
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
            .collect()
    }

    /// The MTU of a NIC.
    pub fn mtu(&self, dev: &str) -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&self.ip(&["-j", "link", "show", "dev", dev])).unwrap();
        v[0]["mtu"].as_u64().expect("mtu")
    }

    /// Whether a NIC of this name exists.
    pub fn has_link(&self, dev: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.name, "link", "show", "dev", dev])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// An HTTP GET to 127.0.0.1 of the namespace (bash's /dev/tcp; no curl needed).
    pub fn http_get(&self, port: u16, path: &str) -> Option<String> {
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET {path} HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n' >&3 && timeout 5 cat <&3"
        );
        let out = self.command("bash").args(["-c", &script]).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill anything still running inside before removing the namespace.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// One agent run: exit code, parsed report and the output streams.
pub struct AgentRun {
    pub code: i32,
    pub report_text: String,
    pub stdout: String,
    pub stderr: String,
}

impl AgentRun {
    /// Asserts the database refused the run's login (exit 1, a database error containing
    /// `denial`) and that the password `wrong` shows in no output.
    pub fn assert_login_refused(&self, denial: &str, wrong: &str) {
        assert_eq!(self.code, 1, "{}", self.stderr);
        let error = self.report()["error"].as_str().unwrap().to_owned();
        assert!(error.contains("database"), "{error}");
        assert!(error.contains(denial), "{error}");
        for output in [&self.stderr, &self.stdout, &self.report_text] {
            assert!(!output.contains(wrong), "password leaked: {output}");
        }
    }

    pub fn report(&self) -> serde_json::Value {
        serde_json::from_str(&self.report_text).unwrap_or_else(|e| {
            panic!(
                "report is not JSON ({e}): {:?}\n{}",
                self.report_text, self.stderr
            )
        })
    }

    /// (name, reason) of every interface in the report.
    pub fn reasons(&self) -> Vec<(String, String)> {
        self.report()["interfaces"]
            .as_array()
            .expect("interfaces")
            .iter()
            .map(|i| {
                (
                    i["name"].as_str().unwrap_or("").to_owned(),
                    i["reason"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }
}

/// Runs `multinic agent` inside the namespace with a fresh report file.
pub fn run_agent(ns: &Netns, root: &Path, args: &[&str], env: &[(&str, &str)]) -> AgentRun {
    let report = root.join("report.json");
    let _ = std::fs::remove_file(&report);
    let mut cmd = ns.command(BIN);
    cmd.arg("agent")
        .args(["--root", root.to_str().unwrap()])
        .args(["--report", report.to_str().unwrap()])
        .args(["--handoff", "none"])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MULTINIC_LOG", "info,multinic_agent=debug");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out: Output = cmd.output().expect("running multinic agent");
    AgentRun {
        code: out.status.code().unwrap_or(-1),
        report_text: std::fs::read_to_string(&report).unwrap_or_default(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Stdout of a finished command, or its stderr (or why it did not run) when it failed.
pub fn stdout_or_stderr(out: std::io::Result<Output>) -> Result<String, String> {
    let out = out.map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Server options both database fixtures use: loopback only, no DNS, small and no binlog.
pub const SMALL_LOOPBACK_SERVER: [&str; 4] = [
    "--bind-address=127.0.0.1",
    "--skip-name-resolve",
    "--innodb-buffer-pool-size=16M",
    "--skip-log-bin",
];

/// A database server's stderr, to `server.log` in its scratch dir.
pub fn server_log(dir: &Path) -> Stdio {
    Stdio::from(std::fs::File::create(dir.join("server.log")).expect("creating server.log"))
}

/// A free TCP port on loopback (of the host; namespaces have their own, equally free).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port")
}

/// Polls `check` every 50 ms until it returns true or `limit` passes; returns the time taken.
pub fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A child process killed (and reaped) on Drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The earlier agent's two tables, created in a new database `db` (rows are the test's own).
pub fn legacy_tables(db: &str) -> String {
    format!(
        "CREATE DATABASE {db}; USE {db};
         CREATE TABLE multi_subnet (subnet_id VARCHAR(64) PRIMARY KEY, cidr VARCHAR(64));
         CREATE TABLE multi_interface (
           id INT PRIMARY KEY, port_id VARCHAR(64), subnet_id VARCHAR(64), macaddress VARCHAR(32),
           attached_node_name VARCHAR(255), address VARCHAR(64), mtu INT,
           netplan_success TINYINT(1), modified_at DATETIME NULL);"
    )
}

/// A throwaway MariaDB server inside a namespace, listening on the namespace's 127.0.0.1.
/// Fails (never skips) when MariaDB is not installed.
pub struct MariaDb {
    pub port: u16,
    pub socket: PathBuf,
    server: Killed,
    _dir: TempDir,
}

impl MariaDb {
    pub fn start(ns: &Netns) -> Self {
        Self::start_with(ns, &[])
    }

    /// As [`MariaDb::start`], with extra server options (e.g. `--ssl-cert=...`).
    pub fn start_with(ns: &Netns, options: &[String]) -> Self {
        let dir = TempDir::new("mariadb");
        let data = dir.path().join("data");
        let socket = dir.path().join("mysqld.sock");
        // A private tmpdir: concurrent servers must not share (or clean up) temp tables.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let install = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=root",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .output()
            .expect("mariadb-install-db is missing: apt-get install mariadb-server");
        assert!(
            install.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&install.stderr)
        );
        let port = free_port();
        let server = ns
            .command("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg("--user=root")
            .args(SMALL_LOOPBACK_SERVER)
            .args(options)
            .stdout(Stdio::null())
            .stderr(server_log(dir.path()))
            .spawn()
            .expect("mariadbd is missing: apt-get install mariadb-server");
        let db = Self {
            port,
            socket,
            server: Killed(server),
            _dir: dir,
        };
        let up = wait_for(Duration::from_secs(30), || db.try_sql("SELECT 1").is_ok());
        assert!(up.is_some(), "mariadbd did not come up: {}", db.log());
        db
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("server.log")).unwrap_or_default()
    }

    fn try_sql(&self, sql: &str) -> Result<String, String> {
        stdout_or_stderr(
            Command::new("mariadb")
                .arg("--no-defaults")
                .arg(format!("--socket={}", self.socket.display()))
                .args(["-uroot", "--batch", "--skip-column-names", "-e", sql])
                .output(),
        )
    }

    /// Runs SQL as root over the socket; panics on failure.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|e| panic!("SQL failed: {e}\n{sql}"))
    }
}
