//! `multinic render` end to end: the binary writes exactly the golden files (with their modes)
//! under --root, prints them with headers otherwise, honours the option flags, and rejects an
//! invalid spec with field paths and exit 1.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn testdata(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/netconf")
        .join(case)
}

fn multinic(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_multinic"))
        .args(args)
        // Keep the caller's environment from changing the options under test.
        .env_remove("MULTINIC_POLICY_ROUTING")
        .env_remove("MULTINIC_SYSCTLS")
        .env_remove("MULTINIC_NOPREFIXROUTE")
        .env_remove("MULTINIC_OS")
        .output()
        .expect("run multinic")
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("multinic-render-{}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn root_mode_writes_the_golden_files_with_their_modes() {
    for flavor in ["ubuntu", "rhel9", "rhel8", "rhel7"] {
        let root = TempDir::new(flavor);
        let input = testdata("three-nics").join("input.yaml");
        let out = multinic(&[
            "render",
            "--os",
            flavor,
            "--root",
            root.0.to_str().unwrap(),
            input.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed = String::from_utf8(out.stdout).unwrap();
        let manifest =
            std::fs::read_to_string(testdata("three-nics").join(flavor).join("files.txt")).unwrap();
        assert_eq!(listed.lines().count(), manifest.lines().count(), "{listed}");
        for line in manifest.lines() {
            let (mode, path) = line.split_once(' ').unwrap();
            let written = root.0.join(path.trim_start_matches('/'));
            assert!(
                listed.contains(&format!("{mode} {}", written.display())),
                "{listed}"
            );
            let golden = testdata("three-nics")
                .join(flavor)
                .join(path.trim_start_matches('/'));
            assert_eq!(
                std::fs::read_to_string(&written).unwrap(),
                std::fs::read_to_string(&golden).unwrap(),
                "{}",
                written.display()
            );
            let actual = std::fs::metadata(&written).unwrap().permissions().mode() & 0o7777;
            assert_eq!(format!("{actual:04o}"), mode, "{}", written.display());
        }
    }
}

#[test]
fn stdout_mode_prints_every_file_under_a_header() {
    let input = testdata("one-nic").join("input.yaml");
    let out = multinic(&["render", "--os", "ubuntu", input.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let golden =
        std::fs::read_to_string(testdata("one-nic").join("ubuntu/etc/netplan/90-multinic0.yaml"))
            .unwrap();
    let header = "==> /etc/netplan/90-multinic0.yaml (mode 0600) <==\n";
    assert!(text.starts_with(&format!("{header}{golden}")), "{text}");
    assert!(text.contains("==> /etc/sysctl.d/90-multinic0.conf (mode 0644) <==\n"));
}

#[test]
fn option_flags_change_the_output() {
    let input = testdata("one-nic").join("input.yaml");
    let input = input.to_str().unwrap();
    let plain = multinic(&["render", "--os", "rhel9", input]);
    let text = String::from_utf8(plain.stdout).unwrap();
    assert!(text.contains("routing-rule1=priority 1000 from 11.11.11.132 table 1000"));
    assert!(text.contains("/etc/sysctl.d/90-multinic0.conf"));

    let off = multinic(&[
        "render",
        "--os",
        "rhel9",
        "--no-policy-routing",
        "--no-sysctls",
        input,
    ]);
    let text = String::from_utf8(off.stdout).unwrap();
    assert!(
        !text.contains("routing-rule1") && !text.contains("route1="),
        "{text}"
    );
    assert!(!text.contains("sysctl.d"), "{text}");

    let based = multinic(&[
        "render",
        "--os",
        "rhel9",
        "--route-table-base",
        "500",
        "--rule-priority-base",
        "700",
        "--noprefixroute",
        input,
    ]);
    let text = String::from_utf8(based.stdout).unwrap();
    assert!(
        text.contains("routing-rule1=priority 700 from 11.11.11.132 table 500"),
        "{text}"
    );
    assert!(text.contains("route-table=500"), "{text}");
}

#[test]
fn invalid_spec_exits_1_with_field_paths() {
    let dir = TempDir::new("invalid");
    let file = dir.0.join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: multinic.io/v1alpha1\nkind: MultiNicNodeConfig\nmetadata: {name: w}\n\
         spec:\n  nodeName: w\n  interfaces:\n    - name: \"multinic0\\n[ipv4]\"\n\
         \x20     macAddress: \"fa:16:3e:00:00:01\"\n      address: \"10.0.0.300\"\n\
         \x20     cidr: \"10.0.0.0/24\"\n",
    )
    .unwrap();
    let root = dir.0.join("root");
    let out = multinic(&[
        "render",
        "--os",
        "ubuntu",
        "--root",
        root.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("spec.interfaces[0].address: "), "{stderr}");
    assert!(stderr.contains("spec.interfaces[0].name: "), "{stderr}");
    assert!(!root.exists(), "nothing may be written for an invalid spec");
}
