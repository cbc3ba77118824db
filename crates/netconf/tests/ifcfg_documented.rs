//! RHEL 7 initscripts files have no offline validator, so they are checked against the
//! documentation: every ifcfg key must be one documented in initscripts' `sysconfig.txt` or
//! NetworkManager's nm-settings-ifcfg-rh(5) (RHEL 7's NetworkManager reads these files), with a
//! value that needs no shell quoting; and every `route-`/`rule-` line, which the docs define
//! as arguments to `ip route add` / `ip rule add`, is fed to the real `ip` inside a network
//! namespace this test creates and removes.

mod common;

use multinic_netconf::{DesiredNic, OsFlavor, RenderedFile, render};
use std::collections::BTreeMap;
use std::path::Path;

/// Keys multinic may write, each with what the documentation says it means.
const DOCUMENTED_KEYS: &[(&str, &str)] = &[
    ("DEVICE", "sysconfig.txt: name of physical device"),
    (
        "NAME",
        "sysconfig.txt: friendly name; ifcfg-rh: connection id",
    ),
    (
        "HWADDR",
        "sysconfig.txt: ethernet hardware address for this device",
    ),
    ("TYPE", "ifcfg-rh: connection type (Ethernet)"),
    ("ONBOOT", "sysconfig.txt: yes|no"),
    ("BOOTPROTO", "sysconfig.txt: none|bootp|dhcp"),
    (
        "DEFROUTE",
        "sysconfig.txt / ifcfg-rh: yes|no, set this interface as default route",
    ),
    ("PEERDNS", "sysconfig.txt: yes|no"),
    ("IPADDR", "sysconfig.txt: IPADDRn="),
    ("PREFIX", "sysconfig.txt: PREFIXn=, network prefix"),
    ("MTU", "sysconfig.txt: default MTU for this device"),
    ("IPV6INIT", "sysconfig.txt: yes|no"),
    ("IPV6_AUTOCONF", "sysconfig.txt: yes|no"),
    (
        "IPV6ADDR",
        "sysconfig.txt: <IPv6 address>[/<prefix length>]",
    ),
    ("IPV6_DEFROUTE", "ifcfg-rh: yes|no, IPv6 default route"),
];

fn ifcfg_values(file: &RenderedFile) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for line in file.contents.lines().filter(|l| !l.starts_with('#')) {
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{}: not KEY=VALUE: {line:?}", file.path.display()));
        assert!(
            DOCUMENTED_KEYS.iter().any(|(k, _)| *k == key),
            "{}: {key} is not a documented ifcfg key",
            file.path.display()
        );
        assert!(
            !value.is_empty()
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".:/_-".contains(&b)),
            "{}: {key}={value:?} would need shell quoting",
            file.path.display()
        );
        assert!(
            values.insert(key.to_string(), value.to_string()).is_none(),
            "{key} twice"
        );
    }
    values
}

fn file_named<'a>(files: &'a [RenderedFile], name: &str) -> Option<&'a RenderedFile> {
    files
        .iter()
        .find(|f| f.path == Path::new("/etc/sysconfig/network-scripts").join(name))
}

fn expected_ifcfg(nic: &DesiredNic) -> BTreeMap<&'static str, String> {
    let mut want = BTreeMap::from([
        ("DEVICE", nic.name.clone()),
        ("HWADDR", nic.mac.clone()),
        ("ONBOOT", "yes".to_string()),
        ("BOOTPROTO", "none".to_string()),
        ("DEFROUTE", "no".to_string()),
    ]);
    if nic.address.addr().is_ipv6() {
        want.insert("IPV6INIT", "yes".into());
        want.insert("IPV6_AUTOCONF", "no".into());
        want.insert("IPV6ADDR", nic.address.to_string());
    } else {
        want.insert("IPADDR", nic.address.addr().to_string());
        want.insert("PREFIX", nic.address.prefix_len().to_string());
    }
    if let Some(mtu) = nic.mtu {
        want.insert("MTU", mtu.to_string());
    }
    want
}

#[test]
fn ifcfg_files_use_documented_keys_with_the_nics_values() {
    for case in common::cases() {
        let files = render(OsFlavor::Rhel7, &case.node);
        for nic in &case.node.nics {
            let file = file_named(&files, &format!("ifcfg-{}", nic.name)).expect("ifcfg file");
            let values = ifcfg_values(file);
            for (key, want) in expected_ifcfg(nic) {
                assert_eq!(
                    values.get(key),
                    Some(&want),
                    "{}/{}: {key}",
                    case.name,
                    nic.name
                );
            }
            let family = if nic.address.addr().is_ipv6() {
                "6"
            } else {
                ""
            };
            let other = if family.is_empty() { "6" } else { "" };
            let has = |kind: &str, fam: &str| {
                file_named(&files, &format!("{kind}{fam}-{}", nic.name)).is_some()
            };
            assert_eq!(has("route", family), nic.routing.is_some(), "{}", case.name);
            assert_eq!(has("rule", family), nic.routing.is_some(), "{}", case.name);
            assert!(!has("route", other) && !has("rule", other), "{}", case.name);
        }
    }
}

/// The non-comment lines of a route/rule file, as `ip` arguments.
fn arg_lines(file: &RenderedFile) -> Vec<Vec<String>> {
    file.contents
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

#[test]
fn route_and_rule_lines_are_accepted_by_ip_and_do_what_they_say() {
    let mut applied = 0;
    for case in common::cases() {
        let files = render(OsFlavor::Rhel7, &case.node);
        let ns = common::Netns::new(&case.name, &case.node.nics);
        for nic in &case.node.nics {
            let Some(routing) = &nic.routing else {
                continue;
            };
            let v6 = nic.address.addr().is_ipv6();
            let (fam, flag) = if v6 { ("6", "-6") } else { ("", "-4") };
            // ifup configures the address before ifup-routes reads the route file, whose
            // `src` must name an address of the link.
            let address = nic.address.to_string();
            common::ip(&[
                "-n", &ns.0, "addr", "add", &address, "dev", &nic.name, "nodad",
            ])
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            for (kind, object) in [("route", "route"), ("rule", "rule")] {
                let file = file_named(&files, &format!("{kind}{fam}-{}", nic.name)).unwrap();
                let lines = arg_lines(file);
                assert_eq!(lines.len(), 1, "{}", file.path.display());
                for line in lines {
                    let args: Vec<&str> = [&["-n", &ns.0, flag, object, "add"][..]]
                        .concat()
                        .into_iter()
                        .chain(line.iter().map(String::as_str))
                        .collect();
                    common::ip(&args).unwrap_or_else(|e| panic!("{}: {e}", case.name));
                    applied += 1;
                }
            }
            let table = routing.table.to_string();
            let routes =
                common::ip(&["-n", &ns.0, flag, "route", "show", "table", &table]).unwrap();
            let net = nic.network.to_string();
            assert!(
                routes.contains(&net) && routes.contains(&format!("metric {}", routing.metric)),
                "{}: table {table}: {routes}",
                case.name
            );
            let rules = common::ip(&["-n", &ns.0, flag, "rule", "show"]).unwrap();
            let want = format!(
                "{}:\tfrom {} lookup {table}",
                routing.rule_priority,
                nic.address.addr()
            );
            assert!(
                rules.contains(&want),
                "{}: want {want:?} in {rules}",
                case.name
            );
        }
    }
    assert!(applied >= 20, "only {applied} lines applied");
}
