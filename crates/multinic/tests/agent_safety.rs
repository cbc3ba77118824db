//! `multinic agent` on a node it must not hurt, end to end in a fresh network namespace: one
//! agent at a time (host lock), the right node and machine only, the API server probe on by
//! default (reverting when it is refused or times out), `interfaces: []` removes everything,
//! SIGTERM reverts and reports, and SIGKILL at any write of a run leaves nothing the next run
//! cannot clean up.

mod agent_support;

use agent_support::{Killed, Netns, TempDir, hold_host_lock, run_agent, wait_for};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const MACS: [&str; 3] = [
    "fa:16:3e:00:02:01",
    "fa:16:3e:00:02:02",
    "fa:16:3e:00:02:03",
];

fn node() -> Netns {
    let ns = Netns::new();
    for (i, mac) in MACS.iter().enumerate() {
        ns.add_nic(&i.to_string(), mac);
    }
    ns
}

fn nic(i: usize, address: &str, cidr: &str) -> String {
    format!(
        r#"{{"id":{i},"macAddress":"{}","address":"{address}","cidr":"{cidr}"}}"#,
        MACS[i]
    )
}

fn spec(nics: &[String]) -> String {
    format!(
        r#"{{"nodeName":"worker-01","instanceId":"8a3f5e2c-1b4d-4e6f-9a8b-7c6d5e4f3a2b","interfaces":[{}]}}"#,
        nics.join(",")
    )
}

fn env(spec: &str) -> Vec<(&'static str, String)> {
    vec![
        ("NODE_NAME", "worker-01".into()),
        ("MULTINIC_NODE_SPEC", spec.to_owned()),
        ("MULTINIC_OS", "ubuntu".into()),
    ]
}

fn run(ns: &Netns, root: &Path, args: &[&str], env: &[(&str, String)]) -> agent_support::AgentRun {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_agent(ns, root, args, &env)
}

/// Global IPv4 addresses of every NIC in the namespace but loopback.
fn all_addresses(ns: &Netns) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&ns.ip(&["-j", "-4", "addr"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|l| l["ifname"] != "lo")
        .flat_map(|l| {
            let name = l["ifname"].as_str().unwrap_or("").to_owned();
            l["addr_info"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |a| format!("{name} {}", a["local"].as_str().unwrap_or("")))
        })
        .collect()
}

/// Rules and routes of multinic's tables (1000..=1009), both families.
fn tables(ns: &Netns) -> String {
    let mut out = String::new();
    for family in ["-4", "-6"] {
        for line in ns.ip(&[family, "rule"]).lines() {
            if line.contains("lookup 100") {
                out.push_str(line);
                out.push('\n');
            }
        }
        for t in 1000..=1009 {
            // A table that never existed is an error to `ip`: empty.
            let shown = Command::new("ip")
                .args([
                    "-n",
                    &ns.name,
                    family,
                    "route",
                    "show",
                    "table",
                    &t.to_string(),
                ])
                .output()
                .expect("running ip");
            out.push_str(&String::from_utf8_lossy(&shown.stdout));
        }
    }
    out
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_second_agent_waits_for_the_host_lock_then_fails_clearly() {
    let ns = node();
    let root = TempDir::new("safety-lock");
    let held = hold_host_lock(root.path());
    let spec = spec(&[nic(0, "192.0.2.10", "192.0.2.0/24")]);
    let blocked = run(&ns, root.path(), &["--lock-timeout", "300ms"], &env(&spec));
    assert_eq!(blocked.code, 1, "{}", blocked.stderr);
    let error = blocked.report()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("host lock") && error.contains("another multinic agent"),
        "{error}"
    );
    assert!(
        all_addresses(&ns).is_empty(),
        "nothing applied while locked"
    );
    // The holder finishes: the next agent goes ahead.
    drop(held);
    let ok = run(&ns, root.path(), &["--lock-timeout", "300ms"], &env(&spec));
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(ns.addresses("multinic0"), ["192.0.2.10/24"]);
}

#[test]
fn the_agent_refuses_another_nodes_or_another_machines_spec() {
    let ns = node();
    let root = TempDir::new("safety-identity");
    let spec = spec(&[nic(0, "192.0.2.10", "192.0.2.0/24")]);
    // The downward API says worker-02; the spec (and the old NODE_NAME) say worker-01.
    let mut wrong_node = env(&spec);
    wrong_node.push(("MULTINIC_NODE_NAME", "worker-02".into()));
    let run1 = run(&ns, root.path(), &[], &wrong_node);
    assert_eq!(run1.code, 1, "{}", run1.stderr);
    let error = run1.report()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("spec.nodeName") && error.contains("worker-02"),
        "{error}"
    );
    // The machine's product UUID differs from spec.instanceId.
    let dmi = root.path().join("sys/class/dmi/id");
    std::fs::create_dir_all(&dmi).unwrap();
    std::fs::write(
        dmi.join("product_uuid"),
        "0BADC0DE-1B4D-4E6F-9A8B-7C6D5E4F3A2B\n",
    )
    .unwrap();
    let run2 = run(&ns, root.path(), &[], &env(&spec));
    assert_eq!(run2.code, 1, "{}", run2.stderr);
    let error = run2.report()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("spec.instanceId"), "{error}");
    assert!(
        all_addresses(&ns).is_empty(),
        "nothing applied on the wrong machine"
    );
    // Same UUID in another case: this is the machine.
    std::fs::write(
        dmi.join("product_uuid"),
        "8A3F5E2C-1B4D-4E6F-9A8B-7C6D5E4F3A2B\n",
    )
    .unwrap();
    let run3 = run(&ns, root.path(), &[], &env(&spec));
    assert_eq!(run3.code, 0, "{}", run3.stderr);
    assert_eq!(ns.addresses("multinic0"), ["192.0.2.10/24"]);
}

/// A TCP listener on 127.0.0.1:`port` inside the namespace, until dropped.
fn listener(ns: &Netns, port: u16) -> Killed {
    python_until_ready(
        ns,
        &format!(
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',{port}))\ns.listen(16)\nprint('ready',flush=True)\nwhile True:\n    s.accept()[0].close()\n"
        ),
    )
}

/// A listener on 127.0.0.1:`port` that never answers a connect: its accept queue (backlog 0)
/// is held full by one connection it never accepts, so the kernel drops every further SYN, as
/// a route into nowhere would.
fn stalled_listener(ns: &Netns, port: u16) -> Killed {
    python_until_ready(
        ns,
        &format!(
            "import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',{port}))\ns.listen(0)\nc=socket.create_connection(('127.0.0.1',{port}))\nprint('ready',flush=True)\ntime.sleep(3600)\n"
        ),
    )
}

/// Runs a python3 script in the namespace until dropped; returns once it printed `ready`.
fn python_until_ready(ns: &Netns, script: &str) -> Killed {
    let mut child = ns
        .command("/usr/bin/python3")
        .args(["-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    Killed(child)
}

#[test]
fn the_api_server_probe_is_on_by_default_and_reverts_when_it_fails() {
    let ns = node();
    let root = TempDir::new("safety-probe");
    let spec = spec(&[nic(0, "192.0.2.10", "192.0.2.0/24")]);
    let port = 6443u16;
    let mut api_env = env(&spec);
    api_env.push(("KUBERNETES_SERVICE_HOST", "127.0.0.1".into()));
    api_env.push(("KUBERNETES_SERVICE_PORT", port.to_string()));
    // Nothing listens: the API server is unreachable after applying, so the run reverts.
    let cut_off = run(&ns, root.path(), &[], &api_env);
    assert_eq!(cut_off.code, 2, "{}", cut_off.stderr);
    assert_eq!(
        cut_off.reasons(),
        [("multinic0".into(), "ProbeFailed".into())]
    );
    assert!(all_addresses(&ns).is_empty());
    assert!(files_under(&root.path().join("etc")).is_empty());
    // The API server does not answer at all (a route into nowhere): the probe gives up after
    // its timeout and the run reverts.
    let stalled = stalled_listener(&ns, port);
    let silent = run(&ns, root.path(), &[], &api_env);
    drop(stalled);
    assert_eq!(silent.code, 2, "{}", silent.stderr);
    let report = silent.report();
    assert_eq!(report["interfaces"][0]["reason"], "ProbeFailed", "{report}");
    let message = report["interfaces"][0]["message"].as_str().unwrap_or("");
    assert!(message.contains("timed out after 5s"), "{report}");
    assert!(all_addresses(&ns).is_empty());
    assert!(files_under(&root.path().join("etc")).is_empty());
    // The API server answers: applied and kept.
    let _api = listener(&ns, port);
    let ok = run(&ns, root.path(), &[], &api_env);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(ns.addresses("multinic0"), ["192.0.2.10/24"]);
}

#[test]
fn an_empty_interface_list_removes_everything_multinic_configured() {
    let ns = node();
    let root = TempDir::new("safety-empty");
    let two = spec(&[
        nic(0, "192.0.2.10", "192.0.2.0/24"),
        nic(1, "198.51.100.20", "198.51.100.0/24"),
    ]);
    assert_eq!(run(&ns, root.path(), &[], &env(&two)).code, 0);
    assert_eq!(all_addresses(&ns).len(), 2);
    let empty = run(&ns, root.path(), &[], &env(&spec(&[])));
    assert_eq!(empty.code, 0, "{}", empty.stderr);
    let reasons = empty.reasons();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().all(|(_, r)| r == "Removed"), "{reasons:?}");
    assert!(all_addresses(&ns).is_empty(), "{:?}", all_addresses(&ns));
    assert!(tables(&ns).trim().is_empty(), "{}", tables(&ns));
    assert!(files_under(&root.path().join("etc")).is_empty());
}

/// Starts the agent paused before write `n + 1` of its run; returns once it is there (or
/// `None` when the run needs no more than `n` writes and exits on its own).
fn start_paused(
    ns: &Netns,
    root: &Path,
    n: u64,
    env: &[(&str, String)],
) -> Option<std::process::Child> {
    let marker = root.join(format!("paused-{n}"));
    let _ = std::fs::remove_file(&marker);
    let mut cmd = ns.command(agent_support::BIN);
    cmd.arg("agent")
        .args(["--root", root.to_str().unwrap()])
        .args(["--report", root.join("report.json").to_str().unwrap()])
        .args(["--handoff", "none"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "MULTINIC_TEST_PAUSE_AFTER_WRITES",
            format!("{n}:{}", marker.display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawning the agent");
    let paused = wait_for(Duration::from_secs(30), || {
        marker.exists() || child.try_wait().ok().flatten().is_some()
    });
    assert!(paused.is_some(), "agent neither paused at {n} nor exited");
    if marker.exists() { Some(child) } else { None }
}

#[test]
fn sigterm_mid_run_reverts_and_writes_the_report() {
    let ns = node();
    let root = TempDir::new("safety-term");
    let v1 = spec(&[nic(0, "192.0.2.10", "192.0.2.0/24")]);
    assert_eq!(run(&ns, root.path(), &[], &env(&v1)).code, 0);
    let before = (
        all_addresses(&ns),
        tables(&ns),
        files_under(&root.path().join("etc")),
    );
    let v2 = spec(&[
        nic(0, "192.0.2.11", "192.0.2.0/24"),
        nic(1, "198.51.100.20", "198.51.100.0/24"),
    ]);
    let mut child = start_paused(&ns, root.path(), 3, &env(&v2)).expect("v2 needs > 3 writes");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(2),
        "some NIC failed: the run was stopped"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.path().join("report.json")).unwrap())
            .unwrap();
    let text = report.to_string();
    assert!(text.contains("interrupted"), "{text}");
    assert!(!text.contains("\"Configured\""), "{text}");
    assert_eq!(
        (
            all_addresses(&ns),
            tables(&ns),
            files_under(&root.path().join("etc"))
        ),
        before,
        "SIGTERM reverted the run"
    );
}

#[test]
fn sigkill_at_any_write_converges_on_the_next_run_and_leaks_nothing() {
    let ns = node();
    let root = TempDir::new("safety-kill");
    let v1 = spec(&[
        nic(0, "192.0.2.10", "192.0.2.0/24"),
        nic(1, "198.51.100.20", "198.51.100.0/24"),
    ]);
    // v2 moves NIC0, drops NIC1, adds NIC2; v3 (after the kill) keeps only NIC0.
    let v2 = spec(&[
        nic(0, "192.0.2.11", "192.0.2.0/24"),
        nic(2, "203.0.113.30", "203.0.113.0/24"),
    ]);
    let v3 = spec(&[nic(0, "192.0.2.12", "192.0.2.0/24")]);
    let mut killed_at = Vec::new();
    for n in 0.. {
        let first = run(&ns, root.path(), &[], &env(&v1));
        assert_eq!(first.code, 0, "v1 before kill {n}: {}", first.stderr);
        let Some(mut child) = start_paused(&ns, root.path(), n, &env(&v2)) else {
            break;
        };
        child.kill().unwrap();
        child.wait().unwrap();
        killed_at.push(n);
        let next = run(&ns, root.path(), &[], &env(&v3));
        assert_eq!(next.code, 0, "after a kill at write {n}: {}", next.stderr);
        assert_eq!(
            all_addresses(&ns),
            ["multinic0 192.0.2.12"],
            "after a kill at write {n}"
        );
        let left = tables(&ns);
        assert!(
            ["198.51.100", "203.0.113", "192.0.2.10", "192.0.2.11"]
                .iter()
                .all(|gone| !left.contains(gone)),
            "after a kill at write {n}: {left}"
        );
        let files = files_under(&root.path().join("etc"));
        assert!(
            files.iter().all(|f| f.contains("multinic0")),
            "after a kill at write {n}: {files:?}"
        );
        let again = run(&ns, root.path(), &[], &env(&v3));
        assert!(
            again.reasons().iter().all(|(_, r)| r == "Unchanged"),
            "converged after a kill at write {n}: {:?}",
            again.reasons()
        );
        assert!(n < 100, "the run never finished");
    }
    println!("killed at writes {killed_at:?}");
    assert!(killed_at.len() > 5, "killed at {killed_at:?}");
}
