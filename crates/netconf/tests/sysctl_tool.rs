//! The sysctl.d files are applied by the real `systemd-sysctl` (what runs them at boot) inside a
//! network namespace holding NICs with the multinic names; every key must be accepted and
//! read back from /proc with the configured value. Fails (does not skip) without systemd.

mod common;

use multinic_netconf::{OsFlavor, render};

const SYSTEMD_SYSCTL: &str = "/lib/systemd/systemd-sysctl";

#[test]
fn systemd_sysctl_applies_every_key_to_the_named_nic() {
    let mut checked = 0;
    for case in common::cases() {
        let Some(want) = case.node.sysctls else {
            continue;
        };
        let files: Vec<_> = render(OsFlavor::Ubuntu, &case.node)
            .into_iter()
            .filter(|f| f.path.starts_with("/etc/sysctl.d"))
            .collect();
        assert_eq!(files.len(), case.node.nics.len(), "{}", case.name);
        for flavor in OsFlavor::ALL {
            let same: Vec<_> = render(flavor, &case.node)
                .into_iter()
                .filter(|f| f.path.starts_with("/etc/sysctl.d"))
                .collect();
            assert_eq!(
                same, files,
                "{}: sysctl files differ on {flavor}",
                case.name
            );
        }
        let root = common::TempDir::new(&format!("sysctl-{}", case.name));
        common::write_under(&root.0, &files);
        let ns = common::Netns::new(&format!("sysctl-{}", case.name), &case.node.nics);
        let paths: Vec<String> = files
            .iter()
            .map(|f| {
                root.0
                    .join(f.path.strip_prefix("/").unwrap())
                    .display()
                    .to_string()
            })
            .collect();
        let mut args = vec!["netns", "exec", ns.0.as_str(), SYSTEMD_SYSCTL];
        args.extend(paths.iter().map(String::as_str));
        let out = common::run_tool("ip", &args, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // systemd-sysctl exits 0 even for keys it cannot write; it only says so on stderr.
        assert!(
            out.status.success() && stderr.is_empty(),
            "{}: {stderr}",
            case.name
        );
        for nic in &case.node.nics {
            for (key, value) in [
                ("arp_ignore", want.arp_ignore),
                ("arp_announce", want.arp_announce),
                ("rp_filter", want.rp_filter),
            ] {
                let proc = format!("/proc/sys/net/ipv4/conf/{}/{key}", nic.name);
                let out = common::run_tool("ip", &["netns", "exec", &ns.0, "cat", &proc], None);
                let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
                assert_eq!(got, value.to_string(), "{}: {proc}", case.name);
                checked += 1;
            }
        }
    }
    assert!(checked >= 3 * 15, "only {checked} values checked");
}
