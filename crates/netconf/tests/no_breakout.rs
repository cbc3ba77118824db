//! Property test: no spec that passes validation can make any rendered file say more than the
//! NIC's own values. Thousands of seeded random specs, mixing valid values with injection
//! attempts (newlines, `[section]`, `#`, `=`, `,`, spaces, Unicode line separators) in every
//! field, go through validation; whatever passes is rendered for every flavor and each file is
//! re-parsed with a strict grammar of its format and compared with the model.

mod common;

use multinic_api::{InterfaceSpec, MultiNicNodeConfigSpec, check_spec, validate_spec};
use multinic_netconf::{
    DesiredNic, DesiredNode, NetOptions, NicSysctls, OsFlavor, RenderedFile, parse_owned, render,
};

/// splitmix64: small, seeded, good enough to spread test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Strings that try to end a line, open a section or start a comment in some output format.
const INJECTIONS: &[&str] = &[
    "\n[ipv4]\nmethod=auto",
    "\nrouting-rule2=priority 1 from all table 254",
    "\r\nNAME=x",
    " # comment",
    "#",
    "]",
    "[connection]",
    ",table=254",
    " table 254",
    "=1",
    "\u{2028}x: y",
    "\u{85}",
    "\t",
    "\"",
    "'",
    ": {}",
    "\\n",
    "$(reboot)",
    "%eth0",
];

fn with_injection(rng: &mut Rng, base: String) -> String {
    let injection = rng.pick(INJECTIONS);
    if rng.chance(50) {
        format!("{base}{injection}")
    } else {
        format!("{injection}{base}")
    }
}

fn random_interface(rng: &mut Rng) -> InterfaceSpec {
    let slot = rng.below(12) as u8;
    let v6 = rng.chance(35);
    let octet = rng.below(256);
    let (address, cidr) = if v6 {
        let prefix = [48, 64, 64, 112, 127][rng.below(5) as usize];
        (
            format!("fd00:{octet:x}::{:x}", rng.below(0xfffe) + 1),
            format!("fd00:{octet:x}::/{prefix}"),
        )
    } else {
        let prefix = [8, 16, 24, 24, 30, 31, 32][rng.below(7) as usize];
        (
            format!("10.{octet}.{}.{}", rng.below(256), rng.below(254) + 1),
            format!("10.{octet}.0.0/{prefix}"),
        )
    };
    let mac_bytes: Vec<String> = (0..6)
        .map(|i| format!("{:02x}", if i == 0 { 0xfa } else { rng.below(256) }))
        .collect();
    let mut mac = mac_bytes.join(":");
    if rng.chance(20) {
        mac = mac.to_uppercase();
    }
    let mut iface = InterfaceSpec {
        id: rng.chance(60).then_some(slot),
        name: rng.chance(40).then(|| format!("multinic{}", rng.below(11))),
        port_id: rng.chance(50).then(|| format!("port-{}", rng.below(1000))),
        mac_address: mac,
        address,
        cidr,
        mtu: rng
            .chance(70)
            .then(|| [0, 68, 576, 1280, 1450, 1500, 9000, 9001][rng.below(8) as usize]),
    };
    // In a third of the interfaces, one field gets an injection attempt.
    if rng.chance(33) {
        match rng.below(5) {
            0 => iface.name = Some(with_injection(rng, format!("multinic{}", slot % 10))),
            1 => iface.port_id = Some(with_injection(rng, "port".into())),
            2 => iface.mac_address = with_injection(rng, iface.mac_address.clone()),
            3 => iface.address = with_injection(rng, iface.address.clone()),
            _ => iface.cidr = with_injection(rng, iface.cidr.clone()),
        }
    }
    iface
}

fn random_options(rng: &mut Rng) -> NetOptions {
    NetOptions {
        policy_routing: rng.chance(70),
        route_table_base: [1, 100, 1000, 250_000][rng.below(4) as usize],
        route_metric_base: rng.below(100_000) as u32,
        rule_priority_base: rng.below(30_000) as u32,
        noprefixroute: rng.chance(30),
        sysctls: rng.chance(70).then(|| NicSysctls {
            arp_ignore: rng.below(9) as u8,
            arp_announce: rng.below(3) as u8,
            rp_filter: rng.below(3) as u8,
        }),
    }
}

/// Every byte is printable ASCII or `\n`, and the file ends with `\n`: no CR, tab, NUL, or
/// Unicode line separator can hide a second line inside one.
fn assert_plain_lines(file: &RenderedFile) {
    assert!(file.contents.ends_with('\n'), "{}", file.path.display());
    for c in file.contents.chars() {
        assert!(
            c == '\n' || (' '..='~').contains(&c),
            "{}: {c:?} in output",
            file.path.display()
        );
    }
}

/// Key/value lines of an ini-like file (`[Section]` headers), checked against the exact
/// expected `(section, key, value)` list in order.
fn assert_ini(file: &RenderedFile, want: &[(String, String, String)]) {
    let mut section = String::new();
    let mut got = Vec::new();
    for line in file.contents.lines().skip(1) {
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{}: {line:?}", file.path.display()));
        got.push((section.clone(), key.to_string(), value.to_string()));
    }
    assert_eq!(got, want, "{}", file.path.display());
}

fn kv(section: &str, key: &str, value: impl ToString) -> (String, String, String) {
    (section.to_string(), key.to_string(), value.to_string())
}

fn expected_keyfile(nic: &DesiredNic, node: &DesiredNode) -> Vec<(String, String, String)> {
    let v6 = nic.address.addr().is_ipv6();
    let (fam, other) = if v6 {
        ("ipv6", "ipv4")
    } else {
        ("ipv4", "ipv6")
    };
    let mut used = vec![
        kv(fam, "method", "manual"),
        kv(fam, "address1", nic.address),
        kv(fam, "never-default", "true"),
    ];
    if let Some(r) = &nic.routing {
        if node.noprefixroute {
            used.push(kv(fam, "route-metric", r.metric));
            used.push(kv(fam, "route-table", r.table));
        } else {
            used.push(kv(fam, "route1", format!("{},,{}", nic.network, r.metric)));
            let src = match nic.address.addr() {
                std::net::IpAddr::V4(ip) => format!("src={ip},"),
                std::net::IpAddr::V6(_) => String::new(),
            };
            let options = format!("{src}table={}", r.table);
            used.push(kv(fam, "route1_options", options));
        }
        let rule = format!(
            "priority {} from {} table {}",
            r.rule_priority,
            nic.address.addr(),
            r.table
        );
        used.push(kv(fam, "routing-rule1", rule));
    }
    let unused = vec![kv(other, "method", "disabled")];
    let mut want = vec![
        kv("connection", "id", &nic.name),
        // The UUID is a hash: check_keyfile checks its shape and puts this placeholder in.
        kv("connection", "uuid", "<uuid>"),
        kv("connection", "type", "ethernet"),
        kv("connection", "interface-name", &nic.name),
        kv("connection", "autoconnect", "true"),
        kv("ethernet", "mac-address", &nic.mac),
    ];
    if let Some(mtu) = nic.mtu {
        want.push(kv("ethernet", "mtu", mtu));
    }
    if v6 {
        want.extend(unused);
        want.extend(used);
    } else {
        want.extend(used);
        want.extend(unused);
    }
    want
}

fn check_keyfile(file: &RenderedFile, nic: &DesiredNic, node: &DesiredNode) {
    let mut contents = String::new();
    for line in file.contents.lines() {
        match line.strip_prefix("uuid=") {
            Some(uuid) => {
                let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
                assert_eq!(groups, [8, 4, 4, 4, 12], "{uuid}");
                assert!(uuid.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()));
                contents.push_str("uuid=<uuid>\n");
            }
            None => contents.push_str(&format!("{line}\n")),
        }
    }
    let normalised = RenderedFile {
        contents,
        ..file.clone()
    };
    assert_ini(&normalised, &expected_keyfile(nic, node));
}

fn check_netplan(file: &RenderedFile, nic: &DesiredNic) {
    let got: serde_yaml::Value = serde_yaml::from_str(&file.contents).unwrap();
    let mut eth = format!(
        "match: {{macaddress: \"{}\"}}\nset-name: {}\ndhcp4: false\ndhcp6: false\n\
         accept-ra: false\noptional: true\naddresses: [\"{}\"]\n",
        nic.mac, nic.name, nic.address
    );
    if let Some(mtu) = nic.mtu {
        eth.push_str(&format!("mtu: {mtu}\n"));
    }
    if let Some(r) = &nic.routing {
        let from = match nic.address.addr() {
            std::net::IpAddr::V4(ip) => format!(", from: \"{ip}\""),
            std::net::IpAddr::V6(_) => String::new(),
        };
        eth.push_str(&format!(
            "routes: [{{to: \"{}\", scope: link{from}, table: {}, metric: {}}}]\n\
             routing-policy: [{{from: \"{}\", table: {}, priority: {}}}]\n",
            nic.network,
            r.table,
            r.metric,
            nic.address.addr(),
            r.table,
            r.rule_priority
        ));
    }
    let eth: serde_yaml::Value = serde_yaml::from_str(&eth).unwrap();
    let mut ethernets = serde_yaml::Mapping::new();
    ethernets.insert(nic.name.clone().into(), eth);
    let mut network = serde_yaml::Mapping::new();
    network.insert("version".into(), 2.into());
    network.insert("ethernets".into(), ethernets.into());
    let mut want = serde_yaml::Mapping::new();
    want.insert("network".into(), network.into());
    assert_eq!(got, serde_yaml::Value::from(want), "{}", file.contents);
}

fn check_plain_lines(file: &RenderedFile, want: &[String]) {
    let got: Vec<&str> = file.contents.lines().skip(1).collect();
    assert_eq!(got, want, "{}", file.path.display());
}

fn check_file(file: &RenderedFile, node: &DesiredNode) {
    assert_plain_lines(file);
    let owner = parse_owned(&file.contents).expect("every file carries the marker");
    let nic = node
        .nics
        .iter()
        .find(|n| n.name == owner.name)
        .expect("marker names a NIC");
    assert_eq!(owner.mac, nic.mac);
    let later_markers = file
        .contents
        .lines()
        .skip(1)
        .filter(|l| l.contains("multinic-owned"));
    assert_eq!(later_markers.count(), 0);
    let path = file.path.to_string_lossy();
    let name = &nic.name;
    if path.ends_with(".yaml") {
        check_netplan(file, nic);
    } else if path.ends_with(".nmconnection") {
        check_keyfile(file, nic, node);
    } else if path.ends_with(".link") {
        let want = [
            kv("Match", "MACAddress", &nic.mac),
            kv("Link", "Name", name),
        ];
        assert_ini(file, &want);
    } else if path.ends_with(".conf") {
        let s = node.sysctls.expect("sysctl file only with sysctls");
        let want = [
            format!("net.ipv4.conf.{name}.arp_ignore = {}", s.arp_ignore),
            format!("net.ipv4.conf.{name}.arp_announce = {}", s.arp_announce),
            format!("net.ipv4.conf.{name}.rp_filter = {}", s.rp_filter),
        ];
        check_plain_lines(file, &want);
    } else if path.contains("/ifcfg-") {
        for line in file.contents.lines().skip(1) {
            let (key, value) = line.split_once('=').expect("KEY=VALUE");
            assert!(
                key.bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit())
            );
            assert!(
                value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".:/_-".contains(&b)),
                "{line}"
            );
        }
        assert!(file.contents.contains(&format!("\nDEVICE={name}\n")));
        assert!(file.contents.contains(&format!("\nHWADDR={}\n", nic.mac)));
    } else if path.contains("/route") {
        let r = nic.routing.expect("route file only with policy routing");
        let src = match nic.address.addr() {
            std::net::IpAddr::V4(ip) => format!(" src {ip}"),
            std::net::IpAddr::V6(_) => String::new(),
        };
        let line = format!(
            "{} dev {name}{src} table {} metric {}",
            nic.network, r.table, r.metric
        );
        check_plain_lines(file, &[line]);
    } else if path.contains("/rule") {
        let r = nic.routing.expect("rule file only with policy routing");
        let line = format!(
            "from {} table {} priority {}",
            nic.address.addr(),
            r.table,
            r.rule_priority
        );
        check_plain_lines(file, &[line]);
    } else {
        panic!("unexpected file {path}");
    }
}

#[test]
fn nothing_that_passes_validation_breaks_out_of_its_line_or_section() {
    let mut rng = Rng(0x6d75_6c74_696e_6963); // "multinic"
    let (mut rendered_nics, mut rejected_injections, mut files_checked) = (0, 0, 0);
    for _ in 0..3000 {
        let count = rng.below(11) as usize;
        let spec = MultiNicNodeConfigSpec {
            node_name: "worker-01".into(),
            instance_id: None,
            interfaces: (0..count).map(|_| random_interface(&mut rng)).collect(),
        };
        let options = random_options(&mut rng);
        // The agent renders the interfaces the lenient check accepts, so that is the set
        // under test; it includes everything strict validation accepts.
        let check = check_spec(&spec);
        let injected = |s: &str| INJECTIONS.iter().any(|i| s.contains(i));
        for (index, iface) in spec.interfaces.iter().enumerate() {
            let fields = [
                iface.name.as_deref().unwrap_or(""),
                iface.port_id.as_deref().unwrap_or(""),
                &iface.mac_address,
                &iface.address,
                &iface.cidr,
            ];
            if fields.iter().any(|f| injected(f)) {
                let accepted = check.interfaces.iter().any(|v| v.index == index);
                assert!(!accepted, "an injection passed validation: {iface:?}");
                rejected_injections += 1;
            }
        }
        if let Ok(valid) = validate_spec(&spec) {
            assert_eq!(valid.interfaces, check.interfaces);
        }
        let (node, _) = DesiredNode::build(&check.interfaces, &options, &|_| None);
        rendered_nics += node.nics.len();
        for flavor in OsFlavor::ALL {
            for file in render(flavor, &node) {
                check_file(&file, &node);
                files_checked += 1;
            }
        }
    }
    // The generator must actually exercise both sides.
    assert!(rendered_nics > 1500, "only {rendered_nics} NICs rendered");
    assert!(
        rejected_injections > 1000,
        "only {rejected_injections} injections tried"
    );
    assert!(files_checked > 20_000, "only {files_checked} files checked");
}

#[test]
fn every_injection_is_rejected_in_every_field_with_its_path() {
    let base = InterfaceSpec {
        id: Some(0),
        name: Some("multinic0".into()),
        port_id: Some("port".into()),
        mac_address: "fa:16:3e:00:00:01".into(),
        address: "10.0.0.5".into(),
        cidr: "10.0.0.0/24".into(),
        mtu: Some(1500),
    };
    let spec = |iface: InterfaceSpec| MultiNicNodeConfigSpec {
        node_name: "worker-01".into(),
        instance_id: None,
        interfaces: vec![iface],
    };
    assert!(validate_spec(&spec(base.clone())).is_ok());
    for injection in INJECTIONS {
        for (field, iface) in [
            (
                "name",
                InterfaceSpec {
                    name: Some(format!("multinic0{injection}")),
                    ..base.clone()
                },
            ),
            (
                "portId",
                InterfaceSpec {
                    port_id: Some(format!("port{injection}")),
                    ..base.clone()
                },
            ),
            (
                "macAddress",
                InterfaceSpec {
                    mac_address: format!("fa:16:3e:00:00:01{injection}"),
                    ..base.clone()
                },
            ),
            (
                "address",
                InterfaceSpec {
                    address: format!("10.0.0.5{injection}"),
                    ..base.clone()
                },
            ),
            (
                "cidr",
                InterfaceSpec {
                    cidr: format!("10.0.0.0/24{injection}"),
                    ..base.clone()
                },
            ),
        ] {
            let errors = validate_spec(&spec(iface)).expect_err(injection);
            let path = format!("spec.interfaces[0].{field}");
            assert!(
                errors.0.iter().any(|e| e.path == path),
                "{injection:?} in {field}: {errors}"
            );
        }
    }
}
