//! Test harness: every test runs its body inside a fresh network namespace. The outer `#[test]`
//! creates `mnt-<pid>-<n>` (deleted by a Drop guard, also on failure) and re-executes this test
//! binary inside it with `ip netns exec`, running only the ignored inner test; no unsafe
//! `setns` needed. NICs are veth pairs with `fa:16:3e` MACs; addresses exist only inside the
//! namespace and no traffic leaves it.

#![allow(dead_code)]

use ipnet::IpNet;
use multinic_api::{MacAddress, ValidInterface};
use multinic_engine::{Engine, EngineConfig, RecordingHandoff};
use multinic_netconf::{DesiredNode, NetOptions, OsFlavor};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Env var telling the inner test which namespace it must be in.
const NETNS_ENV: &str = "MULTINIC_ENGINE_TEST_NETNS";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("mnt-{}-{n}", std::process::id());
        sh(&["ip", "netns", "add", &name]);
        Self { name }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `sh`-free command and panics with its stderr when it fails; returns stdout.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Outer half: runs the ignored test `inner` of this binary inside a fresh namespace.
pub fn run_inside(inner: &str) {
    let ns = Netns::new();
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(exe)
        .args([
            inner,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(NETNS_ENV, &ns.name)
        .output()
        .expect("spawn ip netns exec");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(out.status.success(), "{inner} failed inside {}", ns.name);
    assert!(
        stdout.contains("1 passed"),
        "{inner} did not run inside {}",
        ns.name
    );
}

/// Inner half: refuses to run anywhere but in the namespace the outer half made, so
/// `cargo test -- --ignored` can never touch the host's NICs.
pub fn require_inside() {
    let ns = std::env::var(NETNS_ENV).expect("inner tests run only through their outer test");
    let here = sh(&["ip", "netns", "identify"]);
    assert_eq!(here.trim(), ns, "not inside the test namespace");
    sh(&["ip", "link", "set", "lo", "up"]);
}

/// Declares an outer test `name` and its inner body, which runs inside a fresh namespace.
#[macro_export]
macro_rules! netns_test {
    ($name:ident, $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn in_netns() {
                $crate::common::run_inside(concat!(stringify!($name), "::inside"));
            }

            #[tokio::test]
            #[ignore = "runs only inside its namespace, through in_netns"]
            async fn inside() {
                $crate::common::require_inside();
                $body
            }
        }
    };
}

/// MAC of test NIC `k`.
pub fn mac(k: u8) -> String {
    format!("fa:16:3e:00:00:{k:02x}")
}

/// Creates veth `eth<k>` with MAC `mac(k)`; its peer `peer<k>` is up. Both stay down/up as
/// a fresh cloud NIC would (`eth<k>` down).
pub fn add_nics(ks: impl IntoIterator<Item = u8>) {
    let mut batch = String::new();
    for k in ks {
        batch.push_str(&format!(
            "link add eth{k} address {} type veth peer name peer{k} address 02:00:00:00:01:{k:02x}\nlink set peer{k} up\n",
            mac(k)
        ));
    }
    ip_batch(&batch);
}

/// Runs `ip -batch -` with these lines.
pub fn ip_batch(lines: &str) {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("ip -batch");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "ip -batch failed:\n{lines}"
    );
}

/// Interface `k` of a spec: slot k, 198.18.k.10/24 (or 2001:db8:k::10/64), MTU as given.
pub fn iface(k: u8, mtu: Option<u32>) -> ValidInterface {
    iface_at(k, &format!("198.18.{k}.10/24"), mtu)
}

/// Interface `k` with this address.
pub fn iface_at(k: u8, address: &str, mtu: Option<u32>) -> ValidInterface {
    let address: IpNet = address.parse().unwrap();
    ValidInterface {
        index: usize::from(k),
        requested_slot: Some(k),
        port_id: None,
        mac: mac(k).parse::<MacAddress>().unwrap(),
        address,
        network: address.trunc(),
        mtu,
    }
}

/// The model for these interfaces with default options.
pub fn model(ifaces: &[ValidInterface]) -> DesiredNode {
    let (node, unplaced) = DesiredNode::build(ifaces, &NetOptions::default(), &|_| None);
    assert!(unplaced.is_empty());
    node
}

/// A temp root for files, removed on drop.
pub struct Root(pub PathBuf);

impl Root {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "mnt-root-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Every file under the root with its contents and mode, sorted.
    pub fn files(&self) -> Vec<(PathBuf, String, u32)> {
        use std::os::unix::fs::PermissionsExt;
        let mut out = Vec::new();
        let mut stack = vec![self.0.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
                    let text = std::fs::read_to_string(&path).unwrap();
                    out.push((
                        path.strip_prefix(&self.0).unwrap().to_path_buf(),
                        text,
                        mode,
                    ));
                }
            }
        }
        out.sort();
        out
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An engine on `root` (Ubuntu files) with a recording hand-off.
pub fn engine(root: &Root) -> (Engine, Arc<RecordingHandoff>) {
    engine_with(EngineConfig::new(root.path(), OsFlavor::Ubuntu))
}

/// An engine with this config and a recording hand-off.
pub fn engine_with(config: EngineConfig) -> (Engine, Arc<RecordingHandoff>) {
    let handoff = Arc::new(RecordingHandoff::new(false));
    let engine = Engine::connect(config, Box::new(handoff.clone())).expect("netlink");
    (engine, handoff)
}

/// `ip -o` output for a link's global addresses, one CIDR per line.
pub fn addrs(dev: &str) -> Vec<String> {
    sh(&["ip", "-o", "addr", "show", "dev", dev, "scope", "global"])
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect()
}

/// `ip rule` output for a family.
pub fn rules(v6: bool) -> String {
    sh(&["ip", if v6 { "-6" } else { "-4" }, "rule"])
}

/// `ip route show table <t>` (both families; a table that does not exist is empty).
pub fn table(t: u32) -> String {
    let t = t.to_string();
    let mut out = String::new();
    for family in ["-4", "-6"] {
        let o = Command::new("ip")
            .args([family, "route", "show", "table", &t])
            .output()
            .expect("ip route");
        out.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    out
}

/// A sysctl of a link, read from /proc (an independent check of the netlink devconf path).
pub fn conf(dev: &str, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{dev}/{key}"))
        .unwrap()
        .trim()
        .to_string()
}

/// Whether `ip link` says the link is administratively up.
pub fn is_up(dev: &str) -> bool {
    let out = sh(&["ip", "-o", "link", "show", "dev", dev]);
    out.split('<')
        .nth(1)
        .is_some_and(|f| f.split('>').next().unwrap().split(',').any(|x| x == "UP"))
}
