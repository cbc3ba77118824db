//! `multinic agent --mode service` end to end in a network namespace: converges, serves
//! /healthz, /readyz and /metrics, repairs drift (an address removed by hand, the MTU changed,
//! a persistent file deleted) within two intervals, counts the repairs, stops cleanly on
//! SIGTERM; in a dry run changes nothing, and waits while another agent holds the host lock.

mod agent_support;

use agent_support::{BIN, Killed, Netns, TempDir, free_port, hold_host_lock, wait_for};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The agent's `--interval`.
const INTERVAL: &str = "2s";
/// Two intervals: a drift right after a pass is seen by the next one, one interval later.
const REPAIR_LIMIT: Duration = Duration::from_secs(2 * 2);

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Starts `multinic agent --mode service` for node worker-01 (Ubuntu, no hand-off) with `spec`,
/// its metrics on `port` and its log in `agent.log` under `root`; `extra` adds arguments.
fn start_service(ns: &Netns, root: &TempDir, spec: &str, port: u16, extra: &[&str]) -> Killed {
    let log = std::fs::File::create(root.path().join("agent.log")).unwrap();
    let child = ns
        .command(BIN)
        .args(["agent", "--mode", "service", "--handoff", "none"])
        .args(extra)
        .args(["--root", root.path().to_str().unwrap()])
        .args([
            "--report",
            root.path().join("report.json").to_str().unwrap(),
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NODE_NAME", "worker-01")
        .env("MULTINIC_OS", "ubuntu")
        .env("MULTINIC_NODE_SPEC", spec)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("starting the agent");
    Killed(child)
}

#[test]
fn service_repairs_drift_within_two_intervals_and_reports_it() {
    let ns = Netns::new();
    ns.add_nic("0", "fa:16:3e:00:04:01");
    let root = TempDir::new("service");
    let spec = r#"{"nodeName":"worker-01","interfaces":[
        {"id":2,"macAddress":"fa:16:3e:00:04:01","address":"192.0.2.10","cidr":"192.0.2.0/24","mtu":1400}]}"#;
    let port = free_port();
    let mut agent = start_service(&ns, &root, spec, port, &["--interval", INTERVAL]);
    let agent_log = || std::fs::read_to_string(root.path().join("agent.log")).unwrap_or_default();

    let ready = wait_for(Duration::from_secs(20), || {
        ns.http_get(port, "/readyz")
            .is_some_and(|r| r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"))
    });
    assert!(ready.is_some(), "never ready:\n{}", agent_log());
    assert_eq!(ns.addresses("multinic2"), ["192.0.2.10/24"]);
    let health = ns.http_get(port, "/healthz").unwrap();
    assert!(health.contains(" 200 "), "{health}");
    let netplan = root.path().join("etc/netplan/92-multinic2.yaml");
    assert!(netplan.exists());

    // An address removed by hand comes back.
    ns.ip(&["addr", "del", "192.0.2.10/24", "dev", "multinic2"]);
    let took = wait_for(REPAIR_LIMIT, || {
        ns.addresses("multinic2") == ["192.0.2.10/24"]
    });
    assert!(
        took.is_some(),
        "address not restored in time:\n{}",
        agent_log()
    );

    // So does the MTU, and a deleted persistent file.
    ns.ip(&["link", "set", "multinic2", "mtu", "1500"]);
    assert!(
        wait_for(REPAIR_LIMIT, || ns.mtu("multinic2") == 1400).is_some(),
        "MTU not restored:\n{}",
        agent_log()
    );
    std::fs::remove_file(&netplan).unwrap();
    assert!(
        wait_for(REPAIR_LIMIT, || netplan.exists()).is_some(),
        "file not restored:\n{}",
        agent_log()
    );

    // Metrics show the three repairs, successes and the NIC's state. The file reappears
    // during the repairing pass, a moment before that pass is counted, so read the metrics
    // until the pass has been recorded (or the time is up and the asserts below report it).
    let mut metrics = String::new();
    wait_for(REPAIR_LIMIT, || {
        metrics = ns.http_get(port, "/metrics").expect("metrics answer");
        metric(&metrics, "multinic_agent_applies_total{result=\"applied\"}").unwrap_or(0.0) >= 4.0
    });
    let repairs = metric(&metrics, "multinic_agent_drift_repairs_total").unwrap_or(0.0);
    assert!(repairs >= 3.0, "drift repairs {repairs}:\n{metrics}");
    let applied =
        metric(&metrics, "multinic_agent_applies_total{result=\"applied\"}").unwrap_or(0.0);
    assert!(applied >= 4.0, "initial apply + 3 repairs:\n{metrics}");
    assert!(
        metric(&metrics, "multinic_agent_last_success_timestamp_seconds").unwrap_or(0.0) > 1.6e9
    );
    assert!(
        metrics.contains("multinic_agent_nic_state{name=\"multinic2\",mac=\"fa:16:3e:00:04:01\""),
        "{metrics}"
    );

    // Once repaired, passes find nothing to do.
    let unchanged = wait_for(REPAIR_LIMIT, || {
        ns.http_get(port, "/metrics").is_some_and(|m| {
            metric(&m, "multinic_agent_applies_total{result=\"unchanged\"}").is_some()
        })
    });
    assert!(unchanged.is_some(), "no unchanged pass:\n{}", agent_log());

    // SIGTERM stops the loop and the server; exit 0.
    let pid = agent.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let mut code = None;
    wait_for(Duration::from_secs(10), || {
        code = agent.0.try_wait().ok().flatten().and_then(|s| s.code());
        code.is_some()
    });
    assert_eq!(code, Some(0), "no clean stop:\n{}", agent_log());
    assert!(agent_log().contains("agent service stopped"));
}

#[test]
fn failing_passes_back_off_and_keep_the_service_unready() {
    let ns = Netns::new();
    let root = TempDir::new("service-backoff");
    // The NIC does not exist: every pass fails it (MacNotFound).
    let spec = r#"{"nodeName":"worker-01","interfaces":[
        {"macAddress":"fa:16:3e:00:04:09","address":"192.0.2.10","cidr":"192.0.2.0/24"}]}"#;
    let port = free_port();
    let child = ns
        .command(BIN)
        .args([
            "agent",
            "--mode",
            "service",
            "--interval",
            "1s",
            "--max-backoff",
            "1m",
        ])
        .args([
            "--handoff",
            "none",
            "--os",
            "ubuntu",
            "--node-name",
            "worker-01",
        ])
        .args(["--root", root.path().to_str().unwrap()])
        .args([
            "--report",
            root.path().join("report.json").to_str().unwrap(),
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MULTINIC_NODE_SPEC", spec)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the agent");
    let _agent = Killed(child);
    let serving = wait_for(Duration::from_secs(20), || {
        ns.http_get(port, "/healthz")
            .is_some_and(|r| r.contains(" 200 "))
    });
    assert!(serving.is_some(), "health endpoint never answered");
    // Passes at 0 s, then after 2 s and 4 s more (doubling from the 1 s interval): by 7 s
    // three passes, where a fixed 1 s interval would have made eight.
    std::thread::sleep(Duration::from_secs(7));
    let metrics = ns.http_get(port, "/metrics").expect("metrics answer");
    let partial =
        metric(&metrics, "multinic_agent_applies_total{result=\"partial\"}").unwrap_or(0.0);
    assert!(
        (2.0..=4.0).contains(&partial),
        "partial passes {partial}:\n{metrics}"
    );
    assert!(
        metrics.contains("reason=\"MacNotFound\"} 1"),
        "the NIC's state is shown:\n{metrics}"
    );
    assert!(
        metric(&metrics, "multinic_agent_last_success_timestamp_seconds").unwrap_or(0.0) == 0.0
    );
    let ready = ns.http_get(port, "/readyz").unwrap();
    assert!(ready.contains(" 503 "), "{ready}");
}

#[test]
fn a_dry_run_service_changes_nothing_and_a_service_waits_for_the_host_lock() {
    let ns = Netns::new();
    ns.add_nic("0", "fa:16:3e:00:04:21");
    let spec = r#"{"nodeName":"worker-01","interfaces":[
        {"macAddress":"fa:16:3e:00:04:21","address":"192.0.2.21","cidr":"192.0.2.0/24","mtu":1400}]}"#;
    let log_of =
        |root: &TempDir| std::fs::read_to_string(root.path().join("agent.log")).unwrap_or_default();
    let netplan_files = |root: &TempDir| {
        std::fs::read_dir(root.path().join("etc/netplan")).map_or(0, |d| d.count())
    };

    // Dry run: every pass prints the plan; the NIC keeps its name, gets no address, and no
    // file is written.
    let dry_root = TempDir::new("service-dry");
    let dry = start_service(
        &ns,
        &dry_root,
        spec,
        free_port(),
        &["--interval", "1s", "--dry-run"],
    );
    let two_passes = wait_for(Duration::from_secs(15), || {
        log_of(&dry_root).matches("dry run, would apply").count() >= 2
    });
    assert!(two_passes.is_some(), "{}", log_of(&dry_root));
    drop(dry);
    assert!(!ns.has_link("multinic0"), "{}", log_of(&dry_root));
    assert!(
        ns.addresses("v0a").is_empty(),
        "{}",
        ns.ip(&["addr", "show"])
    );
    assert_eq!(netplan_files(&dry_root), 0);

    // Another agent holds the node's host lock: passes fail without changing anything, and
    // the first pass after it is released applies.
    let root = TempDir::new("service-lock");
    let held = hold_host_lock(root.path());
    let port = free_port();
    let _agent = start_service(
        &ns,
        &root,
        spec,
        port,
        &["--interval", "1s", "--lock-timeout", "300ms"],
    );
    let refused = wait_for(Duration::from_secs(15), || {
        log_of(&root).contains("not applying") && log_of(&root).contains("host lock")
    });
    assert!(refused.is_some(), "{}", log_of(&root));
    assert!(!ns.has_link("multinic0"), "{}", log_of(&root));
    assert_eq!(netplan_files(&root), 0);
    let ready = ns.http_get(port, "/readyz").unwrap_or_default();
    assert!(ready.contains(" 503 "), "{ready}");
    drop(held);
    let applied = wait_for(Duration::from_secs(15), || {
        ns.has_link("multinic0") && ns.addresses("multinic0") == ["192.0.2.21/24"]
    });
    assert!(applied.is_some(), "{}", log_of(&root));
    assert_eq!(netplan_files(&root), 1);
}
