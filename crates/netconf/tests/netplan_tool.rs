//! Every ubuntu case goes through the real `netplan generate --root-dir`, and the
//! systemd-networkd files it generates must carry each NIC's MAC, name, address, MTU and policy
//! routing. Fails (does not skip) when netplan.io is not installed.

mod common;

use multinic_netconf::{OsFlavor, render};

#[test]
fn netplan_generate_accepts_every_ubuntu_case_and_keeps_every_value() {
    let mut checked_nics = 0;
    for case in common::cases() {
        let root = common::TempDir::new(&format!("netplan-{}", case.name));
        common::write_under(&root.0, &render(OsFlavor::Ubuntu, &case.node));
        let root_dir = root.0.display().to_string();
        let out = common::run_tool("netplan", &["generate", "--root-dir", &root_dir], None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{}: netplan generate failed: {stderr}",
            case.name
        );
        assert!(
            !stderr.contains("Permissions") && !stderr.to_lowercase().contains("error"),
            "{}: netplan complained: {stderr}",
            case.name
        );
        let generated = root.0.join("run/systemd/network");
        for nic in &case.node.nics {
            let read = |file: String| {
                std::fs::read_to_string(generated.join(&file))
                    .unwrap_or_else(|e| panic!("{}: {file}: {e}", case.name))
            };
            let network = read(format!("10-netplan-{}.network", nic.name));
            let link = read(format!("10-netplan-{}.link", nic.name));
            let mut want = vec![
                format!("MACAddress={}", nic.mac),
                format!("Name={}", nic.name),
                format!("Address={}", nic.address),
                "IPv6AcceptRA=no".to_string(),
            ];
            if let Some(mtu) = nic.mtu {
                want.push(format!("MTUBytes={mtu}"));
            }
            if let Some(routing) = &nic.routing {
                want.extend([
                    format!("Destination={}", nic.network),
                    format!("Table={}", routing.table),
                    format!("Metric={}", routing.metric),
                    format!("From={}", nic.address.addr()),
                    format!("Priority={}", routing.rule_priority),
                ]);
                // The route's source, as the agent sets it (IPv4 only).
                if nic.address.addr().is_ipv4() {
                    want.push(format!("PreferredSource={}", nic.address.addr()));
                }
            } else {
                assert!(!network.contains("[Route]"), "{}: {network}", case.name);
                assert!(!network.contains("[RoutingPolicyRule]"), "{network}");
            }
            for line in &want {
                assert!(
                    network.lines().any(|l| l.ends_with(line.as_str())),
                    "{}/{}: generated .network lacks {line:?}:\n{network}",
                    case.name,
                    nic.name
                );
            }
            assert!(link.contains(&format!("Name={}", nic.name)), "{link}");
            assert!(link.contains(&nic.mac), "{link}");
            checked_nics += 1;
        }
    }
    assert!(checked_nics >= 10, "only {checked_nics} NICs checked");
}

#[test]
fn netplan_generate_rejects_a_broken_file() {
    // Proves the check above can fail: netplan really validates what it reads.
    let case = &common::cases()[0];
    let mut files = render(OsFlavor::Ubuntu, &case.node);
    files[0].contents = files[0].contents.replace("dhcp4: false", "dhcp4: maybe");
    let root = common::TempDir::new("netplan-broken");
    common::write_under(&root.0, &files);
    let root_dir = root.0.display().to_string();
    let out = common::run_tool("netplan", &["generate", "--root-dir", &root_dir], None);
    assert!(!out.status.success());
}
