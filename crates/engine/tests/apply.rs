//! The engine against a real kernel, each test in its own network namespace with veth NICs.

mod common;

use common::*;
use multinic_api::InterfaceReason;
use multinic_engine::{EngineConfig, NicAction};
use multinic_netconf::OsFlavor;

fn reasons(outcome: &multinic_engine::ApplyOutcome) -> Vec<(String, InterfaceReason)> {
    outcome
        .nics
        .iter()
        .map(|n| (n.name.clone(), n.reason))
        .collect()
}

netns_test!(fresh_apply_of_ten_nics, {
    add_nics(0..10);
    let root = Root::new();
    let (engine, handoff) = engine(&root);
    let ifaces: Vec<_> = (0..10).map(|k| iface(k, Some(1450))).collect();
    let outcome = engine.apply(&model(&ifaces)).await.unwrap();
    println!("{}", outcome.plan);
    assert!(outcome.succeeded(), "{:?}", outcome.nics);
    assert!(!outcome.rolled_back);
    for k in 0..10u8 {
        let name = format!("multinic{k}");
        let nic = outcome.nic(&name).unwrap();
        assert_eq!(nic.reason, InterfaceReason::Configured);
        assert_eq!(nic.mac, mac(k));
        assert_eq!(nic.source_index, Some(usize::from(k)));
        // Checked with iproute2 and /proc, not with the engine's own reader.
        assert_eq!(addrs(&name), vec![format!("198.18.{k}.10/24")]);
        assert!(is_up(&name));
        assert!(sh(&["ip", "-o", "link", "show", "dev", &name]).contains("mtu 1450"));
        assert!(rules(false).contains(&format!(
            "{}:\tfrom 198.18.{k}.10 lookup {}",
            1000 + u32::from(k),
            1000 + u32::from(k)
        )));
        let routes = table(1000 + u32::from(k));
        assert!(
            routes.contains(&format!("198.18.{k}.0/24 dev {name}")),
            "{routes}"
        );
        assert!(
            routes.contains(&format!("src 198.18.{k}.10 metric {}", 100 + u32::from(k))),
            "{routes}"
        );
        assert_eq!(conf(&name, "arp_ignore"), "1");
        assert_eq!(conf(&name, "arp_announce"), "2");
        assert_eq!(conf(&name, "rp_filter"), "2");
    }
    assert!(
        sh(&["ip", "-o", "link"])
            .lines()
            .all(|l| !l.contains(" eth")),
        "eth* renamed away"
    );
    let files = root.files();
    assert_eq!(
        files
            .iter()
            .filter(|f| f.0.starts_with("etc/netplan"))
            .count(),
        10
    );
    assert!(
        files
            .iter()
            .all(|(_, _, mode)| *mode == 0o600 || *mode == 0o644),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|(p, text, _)| p.ends_with("90-multinic0.yaml") || text.contains(&mac(0)))
    );
    assert_eq!(handoff.calls().len(), 1);
    assert_eq!(handoff.calls()[0].len(), 10);
    assert!(outcome.writes.netlink > 0 && outcome.writes.files >= 10);
});

netns_test!(identical_reapply_writes_nothing, {
    add_nics(0..10);
    let root = Root::new();
    let (engine, handoff) = engine(&root);
    let desired = model(&(0..10).map(|k| iface(k, Some(1400))).collect::<Vec<_>>());
    let first = engine.apply(&desired).await.unwrap();
    assert!(first.succeeded());
    let files_before = root.files();
    let second = engine.apply(&desired).await.unwrap();
    assert_eq!(second.writes.netlink, 0, "{}", second.plan);
    assert_eq!(second.writes.files, 0, "{}", second.plan);
    assert!(second.plan.is_empty());
    assert!(
        second
            .nics
            .iter()
            .all(|n| n.reason == InterfaceReason::Unchanged)
    );
    assert_eq!(root.files(), files_before);
    assert_eq!(handoff.calls().len(), 1, "no hand-off without file changes");
    assert!(engine.drift(&desired).unwrap().is_none());
});

netns_test!(ip_change_leaves_nothing_old_behind, {
    add_nics(0..3);
    let root = Root::new();
    let (engine, _) = engine(&root);
    let before: Vec<_> = (0..3).map(|k| iface(k, None)).collect();
    assert!(engine.apply(&model(&before)).await.unwrap().succeeded());
    let mut after = before.clone();
    after[1] = iface_at(1, "198.19.7.20/25", None);
    let desired = model(&after);
    let drift = engine.drift(&desired).unwrap().expect("drift detected");
    assert!(drift.to_string().contains("198.19.7.20/25"), "{drift}");
    let outcome = engine.apply(&desired).await.unwrap();
    assert_eq!(
        outcome.nic("multinic1").unwrap().reason,
        InterfaceReason::Configured
    );
    assert_eq!(
        outcome.nic("multinic0").unwrap().reason,
        InterfaceReason::Unchanged
    );
    assert_eq!(addrs("multinic1"), vec!["198.19.7.20/25".to_string()]);
    let rules = rules(false);
    assert!(!rules.contains("198.18.1.10"), "{rules}");
    assert!(rules.contains("from 198.19.7.20 lookup 1001"), "{rules}");
    let routes = table(1001);
    assert!(!routes.contains("198.18.1."), "{routes}");
    assert!(routes.contains("198.19.7.0/25 dev multinic1"), "{routes}");
    assert!(
        !sh(&["ip", "route"]).contains("198.18.1."),
        "main table clean"
    );
    let files = root.files();
    assert!(
        files.iter().all(|(_, t, _)| !t.contains("198.18.1.10")),
        "{files:?}"
    );
    assert_eq!(engine.apply(&desired).await.unwrap().writes.total(), 0);
});

netns_test!(mtu_change, {
    add_nics(0..2);
    let root = Root::new();
    let (engine, _) = engine(&root);
    assert!(
        engine
            .apply(&model(&[iface(0, Some(1500)), iface(1, None)]))
            .await
            .unwrap()
            .succeeded()
    );
    let outcome = engine
        .apply(&model(&[iface(0, Some(9000)), iface(1, None)]))
        .await
        .unwrap();
    assert_eq!(
        reasons(&outcome)[0],
        ("multinic0".into(), InterfaceReason::Configured)
    );
    assert_eq!(
        reasons(&outcome)[1],
        ("multinic1".into(), InterfaceReason::Unchanged)
    );
    assert!(sh(&["ip", "-o", "link", "show", "dev", "multinic0"]).contains("mtu 9000"));
    // MTU-only change needs one netlink write and no bounce: the address stays.
    assert_eq!(outcome.writes.netlink, 1, "{}", outcome.plan);
    assert_eq!(addrs("multinic0"), vec!["198.18.0.10/24".to_string()]);
});

netns_test!(nic_removed_from_spec_is_stripped, {
    add_nics(0..3);
    let root = Root::new();
    let (engine, handoff) = engine(&root);
    let all: Vec<_> = (0..3).map(|k| iface(k, None)).collect();
    assert!(engine.apply(&model(&all)).await.unwrap().succeeded());
    let outcome = engine.apply(&model(&all[..2])).await.unwrap();
    println!("{}", outcome.plan);
    let removed = outcome.nic("multinic2").unwrap();
    assert_eq!(removed.reason, InterfaceReason::Removed);
    assert_eq!(removed.source_index, None);
    assert!(addrs("multinic2").is_empty());
    assert!(!is_up("multinic2"));
    assert!(!rules(false).contains("lookup 1002"));
    assert!(table(1002).trim().is_empty());
    assert!(
        root.files()
            .iter()
            .all(|(p, t, _)| !t.contains(&mac(2)) && !p.to_string_lossy().contains("multinic2"))
    );
    assert_eq!(
        outcome.nic("multinic0").unwrap().reason,
        InterfaceReason::Unchanged
    );
    let last = handoff.calls().pop().unwrap();
    assert!(last.iter().any(|n| n.name == "multinic2" && n.removed));
    let again = engine.apply(&model(&all[..2])).await.unwrap();
    assert_eq!(again.writes.total(), 0, "{}", again.plan);
});

netns_test!(missing_mac_does_not_stop_the_others, {
    add_nics([0, 2]);
    let root = Root::new();
    let (engine, _) = engine(&root);
    let outcome = engine
        .apply(&model(&[iface(0, None), iface(1, None), iface(2, None)]))
        .await
        .unwrap();
    assert_eq!(
        reasons(&outcome),
        vec![
            ("multinic0".into(), InterfaceReason::Configured),
            ("multinic1".into(), InterfaceReason::MacNotFound),
            ("multinic2".into(), InterfaceReason::Configured),
        ]
    );
    assert!(!outcome.rolled_back);
    assert_eq!(addrs("multinic2"), vec!["198.18.2.10/24".to_string()]);
    assert!(root.files().iter().all(|(_, t, _)| !t.contains(&mac(1))));
});

netns_test!(uppercase_mac_is_found, {
    add_nics([4]);
    let root = Root::new();
    let (engine, _) = engine(&root);
    let mut desired = model(&[iface(4, None)]);
    desired.nics[0].mac = mac(4).to_uppercase();
    let outcome = engine.apply(&desired).await.unwrap();
    assert_eq!(
        outcome.nics[0].reason,
        InterfaceReason::Configured,
        "{:?}",
        outcome.nics
    );
    assert_eq!(outcome.nics[0].mac, mac(4));
    assert_eq!(addrs("multinic4"), vec!["198.18.4.10/24".to_string()]);
    assert_eq!(engine.apply(&desired).await.unwrap().writes.total(), 0);
});

netns_test!(foreign_nic_named_multinic3_is_a_name_conflict, {
    add_nics([1, 3]);
    ip_batch("link add multinic3 address fa:16:3e:99:99:99 type veth peer name peerx\n");
    let root = Root::new();
    let (engine, _) = engine(&root);
    let outcome = engine
        .apply(&model(&[iface(1, None), iface(3, None)]))
        .await
        .unwrap();
    assert_eq!(
        outcome.nic("multinic1").unwrap().reason,
        InterfaceReason::Configured
    );
    let conflict = outcome.nic("multinic3").unwrap();
    assert_eq!(
        conflict.reason,
        InterfaceReason::NameConflict,
        "{:?}",
        conflict
    );
    assert!(
        conflict.message.contains("fa:16:3e:99:99:99"),
        "{}",
        conflict.message
    );
    // Both untouched: the holder keeps its name and MAC, our NIC keeps its kernel name.
    assert!(sh(&["ip", "link", "show", "multinic3"]).contains("fa:16:3e:99:99:99"));
    assert!(addrs("multinic3").is_empty());
    assert!(addrs("eth3").is_empty());
    assert!(!outcome.rolled_back);
});

netns_test!(nic_with_default_route_is_refused_and_untouched, {
    add_nics([0, 1]);
    ip_batch(
        "link set eth0 up\naddr add 203.0.113.5/24 dev eth0\nroute add default via 203.0.113.1 dev eth0\n",
    );
    let before = sh(&["ip", "-o", "addr", "show", "dev", "eth0"]);
    let root = Root::new();
    let (engine, _) = engine(&root);
    let outcome = engine
        .apply(&model(&[iface(0, Some(1400)), iface(1, None)]))
        .await
        .unwrap();
    let refused = outcome.nic("multinic0").unwrap();
    assert_eq!(refused.reason, InterfaceReason::PrimaryInterfaceProtected);
    assert!(
        refused.message.contains("default route"),
        "{}",
        refused.message
    );
    assert_eq!(
        outcome.nic("multinic1").unwrap().reason,
        InterfaceReason::Configured
    );
    assert_eq!(sh(&["ip", "-o", "addr", "show", "dev", "eth0"]), before);
    assert!(sh(&["ip", "-o", "link", "show", "dev", "eth0"]).contains("mtu 1500"));
    assert!(sh(&["ip", "route"]).contains("default via 203.0.113.1 dev eth0"));
    assert!(root.files().iter().all(|(_, t, _)| !t.contains(&mac(0))));
    // A protected address refuses too, and allow_primary lifts the guard.
    let mut config = EngineConfig::new(root.path(), OsFlavor::Ubuntu);
    config.guard.protected_addresses = vec!["198.18.1.10".parse().unwrap()];
    let (guarded, _) = engine_with(config);
    let plan = guarded.plan(&model(&[iface(1, None)])).unwrap();
    assert!(
        matches!(
            &plan.nics[0].action,
            NicAction::Skip {
                reason: InterfaceReason::PrimaryInterfaceProtected,
                ..
            }
        ),
        "{plan}"
    );
    let mut config = EngineConfig::new(root.path(), OsFlavor::Ubuntu);
    config.guard.allow_primary = true;
    let (allowed, _) = engine_with(config);
    let plan = allowed.plan(&model(&[iface(0, None)])).unwrap();
    assert_eq!(plan.nics[0].action, NicAction::Configure, "{plan}");
});

netns_test!(ipv6, {
    add_nics([0, 1]);
    let root = Root::new();
    let (engine, _) = engine(&root);
    let desired = model(&[iface_at(0, "2001:db8:0:1::10/64", None), iface(1, None)]);
    let outcome = engine.apply(&desired).await.unwrap();
    assert!(
        outcome.succeeded(),
        "{:?} {:?}",
        outcome.nics,
        outcome.failure
    );
    assert_eq!(addrs("multinic0"), vec!["2001:db8:0:1::10/64".to_string()]);
    assert!(
        rules(true).contains("from 2001:db8:0:1::10 lookup 1000"),
        "{}",
        rules(true)
    );
    assert!(
        table(1000).contains("2001:db8:0:1::/64 dev multinic0"),
        "{}",
        table(1000)
    );
    let again = engine.apply(&desired).await.unwrap();
    assert_eq!(again.writes.total(), 0, "{}", again.plan);
    // Changing the v6 address removes the old one with its rule.
    let changed = model(&[iface_at(0, "2001:db8:0:2::10/64", None), iface(1, None)]);
    assert!(engine.apply(&changed).await.unwrap().succeeded());
    assert_eq!(addrs("multinic0"), vec!["2001:db8:0:2::10/64".to_string()]);
    assert!(!rules(true).contains("2001:db8:0:1::10"));
    assert!(!table(1000).contains("2001:db8:0:1::"));
});

netns_test!(cleanup_removes_everything, {
    add_nics(0..10);
    let root = Root::new();
    let (engine, _) = engine(&root);
    assert!(
        engine
            .apply(&model(&(0..10).map(|k| iface(k, None)).collect::<Vec<_>>()))
            .await
            .unwrap()
            .succeeded()
    );
    // NIC 9 is detached from the VM before cleanup: only its files are left to remove.
    sh(&["ip", "link", "del", "multinic9"]);
    let outcome = engine.cleanup().await.unwrap();
    println!("{}", outcome.plan);
    assert_eq!(outcome.nics.len(), 10);
    let gone = outcome.nic("multinic9").unwrap();
    assert_eq!(
        (gone.reason, gone.mac.as_str()),
        (InterfaceReason::Removed, mac(9).as_str())
    );
    assert!(
        outcome
            .nics
            .iter()
            .all(|n| n.reason == InterfaceReason::Removed),
        "{:?}",
        outcome.nics
    );
    for k in 0..9u32 {
        let name = format!("multinic{k}");
        assert!(addrs(&name).is_empty());
        assert!(!is_up(&name));
        assert!(table(1000 + k).trim().is_empty());
    }
    assert!(!rules(false).contains("lookup 10"), "{}", rules(false));
    assert!(root.files().is_empty(), "{:?}", root.files());
    assert_eq!(engine.cleanup().await.unwrap().writes.total(), 0);
});

/// The agent may spawn runs on a multi-threaded runtime.
#[allow(dead_code)]
fn apply_future_is_send(engine: &multinic_engine::Engine, desired: &multinic_netconf::DesiredNode) {
    fn send<T: Send>(_: &T) {}
    send(&engine.apply(desired));
    send(&engine.cleanup());
}

netns_test!(enslaved_nic_is_refused, {
    add_nics([0, 1]);
    ip_batch("link add br0 type bridge\nlink set eth0 master br0\n");
    let root = Root::new();
    let (engine, _) = engine(&root);
    let outcome = engine
        .apply(&model(&[iface(0, None), iface(1, None)]))
        .await
        .unwrap();
    let refused = outcome.nic("multinic0").unwrap();
    assert_eq!(refused.reason, InterfaceReason::PrimaryInterfaceProtected);
    assert!(
        refused.message.contains("enslaved to br0"),
        "{}",
        refused.message
    );
    assert!(sh(&["ip", "link", "show", "eth0"]).contains("master br0"));
    assert_eq!(
        outcome.nic("multinic1").unwrap().reason,
        InterfaceReason::Configured
    );
});

netns_test!(options_noprefixroute_and_policy_routing_off, {
    add_nics([0, 1]);
    let root = Root::new();
    let (engine, _) = engine(&root);
    let ifaces = [iface(0, None), iface(1, None)];
    assert!(engine.apply(&model(&ifaces)).await.unwrap().succeeded());
    assert!(rules(false).contains("lookup 1000"));
    // Policy routing off, noprefixroute on, sysctls left alone: rules and table routes go,
    // addresses are re-added with the flag, and the main table loses its prefix route.
    let options = multinic_netconf::NetOptions {
        policy_routing: false,
        noprefixroute: true,
        sysctls: None,
        ..Default::default()
    };
    let (desired, _) = multinic_netconf::DesiredNode::build(&ifaces, &options, &|_| None);
    let outcome = engine.apply(&desired).await.unwrap();
    assert!(
        outcome.succeeded(),
        "{:?} {:?}",
        outcome.nics,
        outcome.failure
    );
    assert!(!rules(false).contains("lookup 100"), "{}", rules(false));
    assert!(table(1000).trim().is_empty());
    assert!(sh(&["ip", "addr", "show", "dev", "multinic0"]).contains("noprefixroute"));
    assert!(!sh(&["ip", "route"]).contains("198.18.0.0/24"));
    assert_eq!(
        conf("multinic0", "arp_ignore"),
        "1",
        "sysctls: None leaves values alone"
    );
    assert_eq!(engine.apply(&desired).await.unwrap().writes.total(), 0);
});
