//! The hand-off to the real NetworkManager (Debian's), end to end: the built `multinic agent`
//! with an empty PATH configures veth NICs that NetworkManager already grabbed with its
//! automatic "Wired connection" DHCP profiles, over a private system bus (see `daemons`); a
//! NetworkManager that hangs fails the run after the call timeout with nothing changed, and
//! one whose agent was killed mid-run rolls the checkpoint back by itself.

mod agent_support;
mod daemons;

use agent_support::wait_for;
use daemons::{Daemon, Host, SETTLE, spec};
use std::process::Stdio;
use std::time::{Duration, Instant};

const MAC0: &str = "fa:16:3e:00:0e:01";
const MAC1: &str = "fa:16:3e:00:0e:02";
const KEYFILE0: &str = "/etc/NetworkManager/system-connections/multinic0.nmconnection";
const KEYFILE1: &str = "/etc/NetworkManager/system-connections/multinic1.nmconnection";

/// NetworkManager with its defaults, and NICs it has already taken with its own DHCP profile
/// (the hazard: that profile flushes addresses set over netlink).
fn nm_host(nics: &[(&str, &str)]) -> Host {
    let host = Host::start(Daemon::NetworkManager);
    for (tag, mac) in nics {
        host.attach_nic(tag, mac);
        let dev = format!("v{tag}a");
        let grabbed = wait_for(SETTLE, || {
            host.nm_device(&dev)
                .is_some_and(|(state, profile)| state >= 40 && profile.starts_with("Wired"))
        });
        assert!(
            grabbed.is_some(),
            "NM did not activate its own profile on {dev}: {:?}\n{}",
            host.nm_device(&dev),
            host.log("nm.log")
        );
    }
    host
}

fn connected(host: &Host, dev: &str) -> bool {
    wait_for(SETTLE, || {
        host.nm_device(dev) == Some((100, dev.to_owned()))
    })
    .is_some()
}

fn profile_address(host: &Host, name: &str) -> String {
    host.nmcli(&["-g", "ipv4.addresses", "connection", "show", name])
        .unwrap_or_default()
}

fn profile_names(host: &Host) -> Vec<String> {
    host.nm_profiles().into_iter().map(|(n, _)| n).collect()
}

#[test]
fn fresh_apply_takes_the_device_and_the_address_survives_a_wait_a_restart_and_a_change() {
    let mut host = nm_host(&[("0", MAC0)]);
    let run = host.apply("rhel9", &spec(&[(MAC0, "192.0.2.10", "192.0.2.0/24")]), &[]);
    let (reason, message) = run.nic("multinic0");
    assert_eq!(reason, "Configured");
    assert!(message.contains("handed to NetworkManager"), "{message}");

    assert!(
        connected(&host, "multinic0"),
        "{:?}",
        host.nm_device("multinic0")
    );
    assert_eq!(host.ns.addresses("multinic0"), ["192.0.2.10/24"]);
    let (text, mode) = host.file(KEYFILE0).expect("keyfile");
    assert_eq!(mode, 0o600);
    assert!(text.starts_with("# multinic-owned:"), "{text}");
    let profiles = profile_names(&host);
    assert!(
        !profiles.iter().any(|p| p.starts_with("Wired connection")),
        "NM's own profile for the NIC is removed: {profiles:?}"
    );
    assert!(
        host.nm_checkpoints().ends_with(" 0"),
        "{}",
        host.nm_checkpoints()
    );

    host.assert_addresses_stay("multinic0", &["192.0.2.10/24"], "after the run");
    host.stop_daemon();
    host.start_daemon();
    assert!(
        connected(&host, "multinic0"),
        "{:?}\n{}",
        host.nm_device("multinic0"),
        host.log("nm.log")
    );
    host.assert_addresses_stay("multinic0", &["192.0.2.10/24"], "after an NM restart");
    // NetworkManager.Reload (0: everything: NetworkManager.conf, DNS, profiles from disk).
    let reload = [
        "call",
        "org.freedesktop.NetworkManager",
        "/org/freedesktop/NetworkManager",
        "org.freedesktop.NetworkManager",
        "Reload",
        "u",
        "0",
    ];
    assert!(host.busctl(&reload).is_some(), "NM Reload refused");
    host.assert_addresses_stay("multinic0", &["192.0.2.10/24"], "after an NM Reload");
    assert!(
        connected(&host, "multinic0"),
        "after an NM Reload: {:?}",
        host.nm_device("multinic0")
    );
    let again = host.agent("rhel9", &spec(&[(MAC0, "192.0.2.10", "192.0.2.0/24")]), &[]);
    assert_eq!(again.nic("multinic0").0, "Unchanged", "{}", again.report);

    let run = host.apply("rhel9", &spec(&[(MAC0, "192.0.2.20", "192.0.2.0/24")]), &[]);
    assert_eq!(run.nic("multinic0").0, "Configured");
    assert!(connected(&host, "multinic0"));
    assert_eq!(profile_address(&host, "multinic0"), "192.0.2.20/24");
    host.assert_addresses_stay("multinic0", &["192.0.2.20/24"], "after the IP change");
}

#[test]
fn a_removed_nic_and_cleanup_deactivate_and_delete_the_profiles() {
    let host = nm_host(&[("0", MAC0), ("1", MAC1)]);
    let both = spec(&[
        (MAC0, "192.0.2.10", "192.0.2.0/24"),
        (MAC1, "198.51.100.10", "198.51.100.0/24"),
    ]);
    host.apply("rhel9", &both, &[]);
    assert!(connected(&host, "multinic0") && connected(&host, "multinic1"));

    let run = host.apply("rhel9", &spec(&[(MAC0, "192.0.2.10", "192.0.2.0/24")]), &[]);
    assert_eq!(
        run.nic("multinic0").0,
        "Unchanged",
        "NM's state of multinic0 is the engine's: nothing to repair"
    );
    let (reason, message) = run.nic("multinic1");
    assert!(
        reason == "Removed" && message.contains("NetworkManager"),
        "{reason}: {message}"
    );
    assert!(!profile_names(&host).contains(&"multinic1".to_owned()));
    assert!(host.file(KEYFILE1).is_none());
    assert!(host.ns.addresses("multinic1").is_empty());
    assert!(connected(&host, "multinic0"));
    assert_eq!(host.ns.addresses("multinic0"), ["192.0.2.10/24"]);

    let run = host.apply("rhel9", &both, &["--action", "cleanup"]);
    let (reason, message) = run.nic("multinic0");
    assert!(
        reason == "Removed" && message.contains("NetworkManager"),
        "{message}"
    );
    let profiles = profile_names(&host);
    assert!(
        !profiles.iter().any(|p| p.starts_with("multinic")),
        "{profiles:?}"
    );
    assert!(host.file(KEYFILE0).is_none());
    assert!(host.ns.addresses("multinic0").is_empty());
    assert!(
        host.nm_checkpoints().ends_with(" 0"),
        "{}",
        host.nm_checkpoints()
    );
}

#[test]
fn a_failed_probe_rolls_back_through_the_checkpoint() {
    let host = nm_host(&[("0", MAC0), ("1", MAC1)]);
    let v1 = spec(&[(MAC0, "192.0.2.10", "192.0.2.0/24")]);
    host.apply("rhel9", &v1, &[]);

    // An address change on multinic0 and a new NIC, then a probe nothing answers (loopback of
    // the test namespace, where nothing listens).
    let v2 = spec(&[
        (MAC0, "192.0.2.20", "192.0.2.0/24"),
        (MAC1, "198.51.100.10", "198.51.100.0/24"),
    ]);
    let run = host.agent("rhel9", &v2, &["--probe", "127.0.0.1:9"]);
    assert_eq!(run.code, 2, "{}\n{}", run.stderr, host.log("nm.log"));
    let ifs = run.interfaces();
    assert!(
        ifs.iter()
            .all(|i| i.1 == "ProbeFailed" && !i.2.contains("revert failed")),
        "{ifs:?}"
    );

    assert!(
        connected(&host, "multinic0"),
        "{:?}",
        host.nm_device("multinic0")
    );
    assert_eq!(profile_address(&host, "multinic0"), "192.0.2.10/24");
    host.assert_addresses_stay("multinic0", &["192.0.2.10/24"], "after the rollback");
    let (text, _) = host.file(KEYFILE0).expect("keyfile");
    assert!(
        text.starts_with("# multinic-owned:") && text.contains("address1=192.0.2.10/24"),
        "the keyfile is multinic's again: {text}"
    );
    // The new NIC is back under its own name, without multinic's profile or file.
    assert!(host.ns.has_link("v1a"));
    assert!(!profile_names(&host).contains(&"multinic1".to_owned()));
    assert!(host.file(KEYFILE1).is_none());
    assert!(
        host.nm_checkpoints().ends_with(" 0"),
        "{}",
        host.nm_checkpoints()
    );
}

#[test]
fn without_networkmanager_on_the_bus_it_is_netlink_and_files_only_and_says_so() {
    let host = Host::start(Daemon::Neither);
    host.attach_nic("0", MAC0);
    let one = spec(&[(MAC0, "192.0.2.10", "192.0.2.0/24")]);
    let run = host.apply("rhel9", &one, &[]);
    let (reason, message) = run.nic("multinic0");
    assert_eq!(reason, "Configured");
    assert!(
        message.contains("netlink and files only: neither NetworkManager nor systemd-networkd"),
        "{message}"
    );
    assert_eq!(host.ns.addresses("multinic0"), ["192.0.2.10/24"]);
    assert!(host.file(KEYFILE0).is_some());

    // No bus at all: the same, and the report names the missing bus.
    let run = host.apply(
        "rhel9",
        &spec(&[(MAC0, "192.0.2.20", "192.0.2.0/24")]),
        &["--system-bus", "unix:path=/nonexistent/system_bus_socket"],
    );
    let (_, message) = run.nic("multinic0");
    assert!(
        message.contains("netlink and files only: no system bus"),
        "{message}"
    );
    assert_eq!(host.ns.addresses("multinic0"), ["192.0.2.20/24"]);
}

#[test]
fn a_networkmanager_that_does_not_answer_fails_the_run_after_the_call_timeout() {
    let host = nm_host(&[("0", MAC0)]);
    host.apply("rhel9", &spec(&[(MAC0, "192.0.2.10", "192.0.2.0/24")]), &[]);
    let (keyfile, _) = host.file(KEYFILE0).expect("keyfile");

    // NetworkManager hangs: it keeps its bus name but answers nothing. The run's first call
    // to it (the checkpoint, before anything changes) gives up after the 10 s call timeout.
    let frozen = host.freeze_daemon(Duration::from_secs(60));
    let started = Instant::now();
    let run = host.agent("rhel9", &spec(&[(MAC0, "192.0.2.20", "192.0.2.0/24")]), &[]);
    let took = started.elapsed();
    drop(frozen);
    assert!(took < Duration::from_secs(30), "the run took {took:?}");
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.report.contains("no answer within 10s"),
        "{}\n{}",
        run.report,
        run.stderr
    );
    // Nothing changed: the address, the keyfile, and NM's hold on the device.
    assert_eq!(host.ns.addresses("multinic0"), ["192.0.2.10/24"]);
    assert_eq!(host.file(KEYFILE0).expect("keyfile").0, keyfile);
    assert!(
        wait_for(SETTLE, || connected(&host, "multinic0")).is_some(),
        "{:?}",
        host.nm_device("multinic0")
    );
}

#[test]
fn an_agent_killed_mid_run_is_rolled_back_by_networkmanager_itself() {
    let host = nm_host(&[("0", MAC0)]);
    host.apply("rhel9", &spec(&[(MAC0, "192.0.2.10", "192.0.2.0/24")]), &[]);

    // The next run stops after its first write, with NM's checkpoint made, and is killed
    // there (the node lost power to the Pod, the OOM killer): nobody is left to roll back.
    let marker = host.root.path().join("paused-1");
    let mut agent = host
        .agent_command("rhel9", &spec(&[(MAC0, "192.0.2.20", "192.0.2.0/24")]), &[])
        .env(
            "MULTINIC_TEST_PAUSE_AFTER_WRITES",
            format!("1:{}", marker.display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the agent");
    let paused = wait_for(Duration::from_secs(30), || {
        marker.exists() || agent.try_wait().ok().flatten().is_some()
    });
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(
        paused.is_some() && marker.exists(),
        "the agent never paused"
    );
    assert!(
        host.nm_checkpoints().starts_with("ao 1 "),
        "{}",
        host.nm_checkpoints()
    );

    // NetworkManager rolls the checkpoint back by itself when its timeout (60 s for one NIC)
    // passes: the checkpoint goes and multinic's profile is active again with the old address.
    let rolled_back = wait_for(Duration::from_secs(90), || {
        host.nm_checkpoints().ends_with(" 0")
    });
    assert!(rolled_back.is_some(), "{}", host.log("nm.log"));
    let restored = wait_for(SETTLE, || {
        connected(&host, "multinic0") && profile_address(&host, "multinic0") == "192.0.2.10/24"
    });
    assert!(
        restored.is_some(),
        "{:?}\n{}",
        host.nm_device("multinic0"),
        host.log("nm.log")
    );
    host.assert_addresses_stay("multinic0", &["192.0.2.10/24"], "after NM's own rollback");
}
