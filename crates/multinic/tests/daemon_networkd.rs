//! The hand-off to the real systemd-networkd (Debian's), end to end: the built `multinic agent`
//! with an empty PATH writes the netplan YAML plus the networkd units netplan would generate
//! (matched by `MACAddress=`) and reloads networkd over a private system bus (see `daemons`).

mod agent_support;
mod daemons;

use agent_support::wait_for;
use daemons::{Daemon, Host, SETTLE, spec};

const MAC0: &str = "fa:16:3e:00:0d:01";
const MAC1: &str = "fa:16:3e:00:0d:02";
const UNIT0: &str = "/run/systemd/network/10-netplan-multinic0.network";
const UNIT1: &str = "/run/systemd/network/10-netplan-multinic1.network";
const YAML0: &str = "/etc/netplan/90-multinic0.yaml";

/// networkd running, NICs attached and seen by it (unmanaged: no unit matches them yet).
fn networkd_host(nics: &[(&str, &str)]) -> Host {
    let host = Host::start(Daemon::Networkd);
    for (tag, mac) in nics {
        host.attach_nic(tag, mac);
        let dev = format!("v{tag}a");
        let seen = wait_for(SETTLE, || {
            host.networkd_state(&dev).as_deref() == Some("unmanaged")
        });
        assert!(
            seen.is_some(),
            "networkd did not initialise {dev}: {:?}\n{}",
            host.networkd_state(&dev),
            host.log("networkd.log")
        );
    }
    host
}

fn configured(host: &Host, dev: &str) -> bool {
    wait_for(SETTLE, || {
        host.networkd_state(dev).as_deref() == Some("configured")
    })
    .is_some()
}

/// The agent's last poll of the link's state came after networkd configured `dev` with the
/// units of the agent's last `Reload`. `Reload` answers before networkd re-reads the link, so
/// a link that was configured before still reports "configured" right after it: an agent
/// that only polled would stop there, before networkd even began with the new units. Read from
/// networkd's debug log, where the bus calls and the link's state changes are in order.
fn assert_waited_for_the_new_units(log: &str, dev: &str) {
    let lines: Vec<&str> = log.lines().collect();
    let reload = lines
        .iter()
        .rposition(|l| l.contains("member=Reload "))
        .expect("the agent's Reload call in networkd's log");
    let sender = lines[reload]
        .split_whitespace()
        .find_map(|w| w.strip_prefix("sender="))
        .expect("sender of the Reload call");
    let last_poll = lines
        .iter()
        .rposition(|l| l.contains(&format!("sender={sender} ")) && l.contains("member=Get "))
        .expect("the agent's polls of the link state");
    let configured = format!("{dev}: State changed: configuring -> configured");
    assert!(
        last_poll > reload,
        "the agent did not poll the link's state after its last Reload"
    );
    assert!(
        lines[reload..last_poll]
            .iter()
            .any(|l| l.contains(&configured)),
        "the agent stopped polling before networkd configured {dev} with the new units"
    );
}

#[test]
fn fresh_apply_is_configured_by_networkd_and_survives_reload_restart_and_a_change() {
    let mut host = networkd_host(&[("0", MAC0)]);
    let run = host.apply(
        "ubuntu",
        &spec(&[(MAC0, "192.0.2.10", "192.0.2.0/24")]),
        &[],
    );
    let (reason, message) = run.nic("multinic0");
    assert_eq!(reason, "Configured");
    assert!(message.contains("handed to systemd-networkd"), "{message}");

    assert!(
        configured(&host, "multinic0"),
        "{:?}",
        host.networkd_state("multinic0")
    );
    assert_eq!(host.ns.addresses("multinic0"), ["192.0.2.10/24"]);
    assert!(
        host.file(YAML0).is_some(),
        "the netplan YAML stays the persistent source"
    );
    let (unit, _) = host.file(UNIT0).expect("runtime unit");
    assert!(unit.contains(&format!("MACAddress={MAC0}")), "{unit}");
    assert!(!unit.contains("PermanentMACAddress"), "{unit}");
    assert!(unit.contains("Address=192.0.2.10/24"), "{unit}");

    host.assert_addresses_stay("multinic0", &["192.0.2.10/24"], "after the run");
    host.networkd_reload();
    assert!(configured(&host, "multinic0"));
    host.assert_addresses_stay("multinic0", &["192.0.2.10/24"], "after a Reload");
    host.stop_daemon();
    host.start_daemon();
    assert!(
        configured(&host, "multinic0"),
        "{}",
        host.log("networkd.log")
    );
    host.assert_addresses_stay("multinic0", &["192.0.2.10/24"], "after a restart");

    let run = host.apply(
        "ubuntu",
        &spec(&[(MAC0, "192.0.2.20", "192.0.2.0/24")]),
        &[],
    );
    assert_eq!(run.nic("multinic0").0, "Configured");
    assert_waited_for_the_new_units(&host.log_all("networkd.log"), "multinic0");
    let (unit, _) = host.file(UNIT0).expect("runtime unit");
    assert!(unit.contains("Address=192.0.2.20/24"), "{unit}");
    host.networkd_reload();
    host.assert_addresses_stay("multinic0", &["192.0.2.20/24"], "after the IP change");
}

#[test]
fn a_removed_nic_and_cleanup_remove_the_units() {
    let host = networkd_host(&[("0", MAC0), ("1", MAC1)]);
    let both = spec(&[
        (MAC0, "192.0.2.10", "192.0.2.0/24"),
        (MAC1, "198.51.100.10", "198.51.100.0/24"),
    ]);
    host.apply("ubuntu", &both, &[]);
    assert!(configured(&host, "multinic0") && configured(&host, "multinic1"));

    let run = host.apply(
        "ubuntu",
        &spec(&[(MAC0, "192.0.2.10", "192.0.2.0/24")]),
        &[],
    );
    assert_eq!(
        run.nic("multinic0").0,
        "Unchanged",
        "networkd's state of multinic0 is the engine's: nothing to repair"
    );
    let (reason, message) = run.nic("multinic1");
    assert!(
        reason == "Removed" && message.contains("systemd-networkd"),
        "{reason}: {message}"
    );
    assert!(host.file(UNIT1).is_none());
    assert!(
        wait_for(SETTLE, || host.networkd_state("multinic1").as_deref()
            == Some("unmanaged"))
        .is_some(),
        "{:?}",
        host.networkd_state("multinic1")
    );
    assert!(host.ns.addresses("multinic1").is_empty());
    assert!(configured(&host, "multinic0"));

    let run = host.apply("ubuntu", &both, &["--action", "cleanup"]);
    let (reason, message) = run.nic("multinic0");
    assert!(
        reason == "Removed" && message.contains("systemd-networkd"),
        "{message}"
    );
    assert!(host.file(UNIT0).is_none() && host.file(YAML0).is_none());
    assert!(
        wait_for(SETTLE, || host.networkd_state("multinic0").as_deref()
            == Some("unmanaged"))
        .is_some()
    );
    host.networkd_reload();
    host.assert_addresses_stay("multinic0", &[], "after cleanup and a Reload");
}

#[test]
fn a_failed_probe_puts_the_units_back() {
    let host = networkd_host(&[("0", MAC0)]);
    host.apply(
        "ubuntu",
        &spec(&[(MAC0, "192.0.2.10", "192.0.2.0/24")]),
        &[],
    );
    let before = host.file(UNIT0).expect("runtime unit");

    // Nothing listens on the test namespace's loopback.
    let v2 = spec(&[(MAC0, "192.0.2.20", "192.0.2.0/24")]);
    let run = host.agent("ubuntu", &v2, &["--probe", "127.0.0.1:9"]);
    assert_eq!(run.code, 2, "{}\n{}", run.stderr, host.log("networkd.log"));
    let (reason, message) = run.nic("multinic0");
    assert!(
        reason == "ProbeFailed" && !message.contains("revert failed"),
        "{reason}: {message}"
    );
    assert_eq!(host.file(UNIT0), Some(before));
    // The rollback's own Reload is the agent's last: it waited for the old units too.
    assert_waited_for_the_new_units(&host.log_all("networkd.log"), "multinic0");
    assert!(configured(&host, "multinic0"));
    host.networkd_reload();
    host.assert_addresses_stay("multinic0", &["192.0.2.10/24"], "after the rollback");
}

#[test]
fn without_networkd_on_the_bus_it_is_netlink_and_files_only_and_says_so() {
    let host = Host::start(Daemon::Neither);
    host.attach_nic("0", MAC0);
    let run = host.apply(
        "ubuntu",
        &spec(&[(MAC0, "192.0.2.10", "192.0.2.0/24")]),
        &[],
    );
    let (reason, message) = run.nic("multinic0");
    assert_eq!(reason, "Configured");
    assert!(
        message.contains("netlink and files only: neither NetworkManager nor systemd-networkd"),
        "{message}"
    );
    assert_eq!(host.ns.addresses("multinic0"), ["192.0.2.10/24"]);
    assert!(host.file(YAML0).is_some());
    assert!(
        host.file(UNIT0).is_none(),
        "no runtime units without networkd"
    );
}
