//! The node's own network is never taken, and a run never half-succeeds: a protected NIC's
//! lower device, networks overlapping a protected NIC's, IPv6 router advertisements and
//! duplicate addresses, a failed verify read, an interrupted run. Each test in its own
//! network namespace.

mod common;

use common::*;
use multinic_api::InterfaceReason;
use multinic_engine::{EngineConfig, NicAction};
use multinic_netconf::OsFlavor;

fn config(root: &Root) -> EngineConfig {
    EngineConfig::new(root.path(), OsFlavor::Ubuntu)
}

/// `/proc/sys/net/ipv6/conf/<dev>/<key>`.
fn conf6(dev: &str, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{dev}/{key}"))
        .unwrap()
        .trim()
        .to_string()
}

netns_test!(lower_device_of_a_protected_macvlan_is_refused, {
    add_nics([0, 1]);
    // The node's address sits on a macvlan stacked on eth0: renaming or bouncing eth0 would
    // cut it, so eth0 is as protected as the macvlan itself.
    ip_batch(
        "link add mv0 link eth0 type macvlan mode bridge\nlink set eth0 up\nlink set mv0 up\naddr add 203.0.113.5/24 dev mv0\n",
    );
    let root = Root::new();
    let mut cfg = config(&root);
    cfg.guard.protected_addresses = vec!["203.0.113.5".parse().unwrap()];
    let (engine, _) = engine_with(cfg);
    let outcome = engine
        .apply(&model(&[iface(0, None), iface(1, None)]))
        .await
        .unwrap();
    let refused = outcome.nic("multinic0").unwrap();
    assert_eq!(
        refused.reason,
        InterfaceReason::PrimaryInterfaceProtected,
        "{refused:?}"
    );
    assert!(
        refused.message.contains("lower device of mv0"),
        "{}",
        refused.message
    );
    assert!(sh(&["ip", "link", "show", "eth0"]).contains("eth0"));
    assert!(is_up("eth0"));
    assert_eq!(addrs("mv0"), vec!["203.0.113.5/24".to_string()]);
    assert_eq!(
        outcome.nic("multinic1").unwrap().reason,
        InterfaceReason::Configured
    );
});

netns_test!(network_overlapping_a_protected_nic_is_refused, {
    add_nics([0, 1, 2]);
    // eth0 is the node's NIC: default route, 198.18.0.0/16.
    ip_batch(
        "link set eth0 up\naddr add 198.18.200.5/16 dev eth0\nroute add default via 198.18.0.1 dev eth0\n",
    );
    let root = Root::new();
    let (engine, _) = engine_with(config(&root));
    // NIC 1 wants 198.18.1.0/24, inside the node's /16; NIC 2 a network of its own.
    let outcome = engine
        .apply(&model(&[
            iface(1, None),
            iface_at(2, "192.0.2.10/24", None),
        ]))
        .await
        .unwrap();
    let refused = outcome.nic("multinic1").unwrap();
    assert_eq!(
        refused.reason,
        InterfaceReason::NetworkOverlap,
        "{refused:?}"
    );
    assert!(
        refused.message.contains("198.18.0.0/16") && refused.message.contains("eth0"),
        "{}",
        refused.message
    );
    assert!(sh(&["ip", "-o", "link"]).contains("eth1"), "eth1 untouched");
    assert!(addrs("eth1").is_empty());
    assert_eq!(
        outcome.nic("multinic2").unwrap().reason,
        InterfaceReason::Configured
    );
    assert!(!outcome.rolled_back);
    assert!(root.files().iter().all(|(_, t, _)| !t.contains(&mac(1))));
    // allow_primary lifts the overlap check along with the guard.
    let mut cfg = config(&root);
    cfg.guard.allow_primary = true;
    let (allowed, _) = engine_with(cfg);
    let plan = allowed.plan(&model(&[iface(1, None)])).unwrap();
    assert_eq!(plan.nics[0].action, NicAction::Configure, "{plan}");
});

netns_test!(
    ipv6_router_advertisements_off_and_kernel_addresses_are_no_drift,
    {
        add_nics([0]);
        let root = Root::new();
        let (engine, _) = engine_with(config(&root));
        assert_eq!(conf6("eth0", "accept_ra"), "1");
        let desired = model(&[iface_at(0, "2001:db8:0:1::10/64", None)]);
        let outcome = engine.apply(&desired).await.unwrap();
        assert!(
            outcome.succeeded(),
            "{:?} {:?}",
            outcome.nics,
            outcome.failure
        );
        assert_eq!(conf6("multinic0", "accept_ra"), "0");
        assert_eq!(conf6("multinic0", "autoconf"), "0");
        // A SLAAC-style address (finite lifetime, as the kernel makes from an RA) and a privacy
        // address are the kernel's: no drift, nothing removed.
        sh(&[
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8:0:1:f816:3eff:fe00:0/64",
            "dev",
            "multinic0",
            "valid_lft",
            "600",
            "preferred_lft",
            "300",
            "nodad",
        ]);
        assert!(
            engine.drift(&desired).unwrap().is_none(),
            "{:?}",
            engine.drift(&desired).unwrap().map(|p| p.to_string())
        );
        let again = engine.apply(&desired).await.unwrap();
        assert_eq!(again.writes.total(), 0, "{}", again.plan);
        assert!(
            sh(&["ip", "-6", "addr", "show", "dev", "multinic0"]).contains("fe00:0/64"),
            "kernel-made address left alone"
        );
        // Someone setting accept_ra back is drift and is repaired.
        std::fs::write("/proc/sys/net/ipv6/conf/multinic0/accept_ra", "2").unwrap();
        let drift = engine.drift(&desired).unwrap().expect("accept_ra drift");
        assert!(
            drift
                .to_string()
                .contains("accept_ra=2 autoconf=0 -> accept_ra=0"),
            "{drift}"
        );
        assert!(engine.apply(&desired).await.unwrap().succeeded());
        assert_eq!(conf6("multinic0", "accept_ra"), "0");
    }
);

netns_test!(duplicate_ipv6_address_fails_and_reverts, {
    add_nics([0, 1]);
    // Another holder of the address on the same link: the veth peer answers DAD.
    ip_batch("addr add 2001:db8:0:7::10/64 dev peer0 nodad\n");
    let root = Root::new();
    let (engine, _) = engine_with(config(&root));
    let snapshot = engine.read_state().unwrap();
    let desired = model(&[iface_at(0, "2001:db8:0:7::10/64", None), iface(1, None)]);
    let outcome = engine.apply(&desired).await.unwrap();
    let dup = outcome.nic("multinic0").unwrap();
    assert_eq!(
        dup.reason,
        InterfaceReason::DuplicateAddress,
        "{:?}",
        outcome.nics
    );
    assert!(dup.message.contains("2001:db8:0:7::10"), "{}", dup.message);
    assert!(outcome.rolled_back);
    assert_eq!(
        outcome.nic("multinic1").unwrap().reason,
        InterfaceReason::RolledBack
    );
    assert_eq!(engine.read_state().unwrap(), snapshot);
    assert!(root.files().is_empty(), "{:?}", root.files());
    // Once the other holder is gone the same spec configures.
    sh(&[
        "ip",
        "-6",
        "addr",
        "del",
        "2001:db8:0:7::10/64",
        "dev",
        "peer0",
    ]);
    let outcome = engine.apply(&desired).await.unwrap();
    assert!(
        outcome.succeeded(),
        "{:?} {:?}",
        outcome.nics,
        outcome.failure
    );
    assert!(
        !sh(&[
            "ip",
            "-6",
            "addr",
            "show",
            "dev",
            "multinic0",
            "scope",
            "global"
        ])
        .contains("tentative"),
        "verify waited for DAD"
    );
});

netns_test!(failed_verify_read_reverts_the_kernel_and_the_files, {
    add_nics(0..3);
    let root = Root::new();
    let (engine, _) = engine_with(config(&root));
    assert!(
        engine
            .apply(&model(&[iface(0, None), iface(1, None)]))
            .await
            .unwrap()
            .succeeded()
    );
    let snapshot = engine.read_state().unwrap();
    let files = root.files();
    let mut cfg = config(&root);
    cfg.fault.fail_verify_reads = true;
    let (faulty, handoff) = engine_with(cfg);
    let changed = model(&[iface_at(0, "198.19.0.10/24", None), iface(2, None)]);
    let outcome = faulty
        .apply(&changed)
        .await
        .expect("a verify read error is an outcome");
    assert!(outcome.rolled_back, "{:?}", outcome.nics);
    let failure = outcome.failure.as_deref().unwrap();
    assert!(failure.contains("verifying"), "{failure}");
    assert!(
        outcome.nics.iter().all(
            |n| n.reason != InterfaceReason::Configured && n.reason != InterfaceReason::Removed
        ),
        "{:?}",
        outcome.nics
    );
    assert_eq!(engine.read_state().unwrap(), snapshot);
    // The files are written while the kernel changes run: whether or not they were renamed
    // into place before verify failed, each is as it was (every file is listed, so a temp
    // file left behind fails this too).
    assert_eq!(root.files(), files);
    assert!(handoff.calls().is_empty(), "no hand-off for a failed run");
});

netns_test!(interrupted_engine_changes_nothing_and_says_so, {
    add_nics(0..2);
    let root = Root::new();
    let (engine, _) = engine_with(config(&root));
    let snapshot = engine.read_state().unwrap();
    engine.interrupt().set();
    let outcome = engine
        .apply(&model(&[iface(0, None), iface(1, None)]))
        .await
        .unwrap();
    assert!(outcome.rolled_back);
    assert!(
        outcome.failure.as_deref().unwrap().contains("interrupted"),
        "{:?}",
        outcome.failure
    );
    assert_eq!(outcome.writes.total(), 0);
    assert_eq!(engine.read_state().unwrap(), snapshot);
    assert!(root.files().is_empty());
});
