//! A throwaway Oracle MySQL server (Debian sid's mysql-server-core, whose only built-in password
//! plugin and default is `caching_sha2_password`) inside a test namespace, on its 127.0.0.1.
//! Bookworm has no MySQL and sid's needs a newer glibc, so `scripts/mysql-sid.sh` unpacks it with
//! its own libraries into a root directory that `MULTINIC_MYSQL_ROOT` names; mysqld and the mysql
//! client run `chroot`ed into it. The server's files (datadir, socket, certificates) live in a
//! scratch dir under that root's `/tmp`, removed on Drop after the server is killed.

use super::{
    Killed, Netns, SMALL_LOOPBACK_SERVER, TempDir, free_port, server_log, stdout_or_stderr,
    wait_for,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The sid root from `MULTINIC_MYSQL_ROOT`; panics (the test fails, it never skips) when the
/// variable is unset or names no unpacked MySQL.
pub fn sid_root() -> PathBuf {
    let hint = "run scripts/mysql-sid.sh and export MULTINIC_MYSQL_ROOT=<the dir it prints last>";
    let root = std::env::var_os("MULTINIC_MYSQL_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("MULTINIC_MYSQL_ROOT is not set: {hint}"));
    assert!(
        root.join("usr/sbin/mysqld").is_file() && root.join("usr/bin/mysql").is_file(),
        "MULTINIC_MYSQL_ROOT={} has no usr/sbin/mysqld and usr/bin/mysql: {hint}",
        root.display()
    );
    root
}

/// A scratch dir inside the sid root, so that the chrooted server can read what the test
/// writes there (its certificates) and the test can read what the server writes.
pub fn scratch(root: &Path, tag: &str) -> TempDir {
    TempDir::new_in(&root.join("tmp"), tag)
}

/// `path` (below `root`) as the chrooted programs see it.
pub fn in_root(root: &Path, path: &Path) -> String {
    let inside = path
        .strip_prefix(root)
        .unwrap_or_else(|_| panic!("{} is not below {}", path.display(), root.display()));
    format!("/{}", inside.display())
}

/// A running mysqld; killed on Drop (the namespace's Drop kills it too).
pub struct MySql {
    pub port: u16,
    root: PathBuf,
    server: Killed,
    dir: TempDir,
}

impl MySql {
    /// Initialises a fresh datadir (`--initialize-insecure`: root@localhost without a password,
    /// reachable over the socket only) and starts the server with `options` added.
    pub fn start(ns: &Netns, root: &Path, options: &[String]) -> Self {
        let dir = scratch(root, "mysql");
        let inside = |p: &str| in_root(root, &dir.path().join(p));
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let common = [
            "--no-defaults".to_owned(),
            "--user=root".to_owned(),
            format!("--datadir={}", inside("data")),
            format!("--tmpdir={}", inside("tmp")),
        ];
        let init = Command::new("chroot")
            .arg(root)
            .arg("/usr/sbin/mysqld")
            .args(&common)
            .arg("--initialize-insecure")
            .output();
        if let Err(e) = stdout_or_stderr(init) {
            panic!("mysqld --initialize-insecure failed: {e}");
        }
        let port = free_port();
        let server = ns
            .command("chroot")
            .arg(root)
            .arg("/usr/sbin/mysqld")
            .args(&common)
            .arg(format!("--socket={}", inside("mysqld.sock")))
            .arg(format!("--pid-file={}", inside("mysqld.pid")))
            .arg(format!("--port={port}"))
            .args(SMALL_LOOPBACK_SERVER)
            // No X Protocol listener: the agent speaks the classic protocol only.
            .arg("--mysqlx=OFF")
            .args(options)
            .stdout(Stdio::null())
            .stderr(server_log(dir.path()))
            .spawn()
            .expect("running chroot mysqld");
        let db = Self {
            port,
            root: root.to_owned(),
            server: Killed(server),
            dir,
        };
        let up = wait_for(Duration::from_secs(60), || db.try_sql("SELECT 1").is_ok());
        assert!(up.is_some(), "mysqld did not come up: {}", db.log());
        db
    }

    /// The server's error log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The chrooted mysql client, `--no-defaults --batch --skip-column-names` and `args`.
    fn client(&self, ns: Option<&Netns>, args: &[&str]) -> Result<String, String> {
        let mut cmd = match ns {
            Some(ns) => ns.command("chroot"),
            None => Command::new("chroot"),
        };
        cmd.arg(&self.root)
            .args([
                "/usr/bin/mysql",
                "--no-defaults",
                "--batch",
                "--skip-column-names",
            ])
            .args(args);
        stdout_or_stderr(cmd.output())
    }

    /// Runs SQL as root over the socket.
    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        let socket = format!(
            "--socket={}",
            in_root(&self.root, &self.dir.0.join("mysqld.sock"))
        );
        self.client(None, &[&socket, "-uroot", "-e", sql])
    }

    /// Runs SQL as root over the socket; panics on failure.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|e| panic!("SQL failed: {e}\n{sql}"))
    }

    /// Logs in as `user` over TCP to the namespace's 127.0.0.1 with the client options `args`
    /// (e.g. `--ssl-mode=DISABLED`) and runs `SELECT CURRENT_USER()`.
    pub fn login(
        &self,
        ns: &Netns,
        user: &str,
        password: &str,
        args: &[&str],
    ) -> Result<String, String> {
        let port = format!("--port={}", self.port);
        let (user, password) = (format!("--user={user}"), format!("--password={password}"));
        let mut all = vec!["--host=127.0.0.1", &port, &user, &password];
        all.extend_from_slice(args);
        all.extend(["-e", "SELECT CURRENT_USER()"]);
        self.client(Some(ns), &all)
    }
}
