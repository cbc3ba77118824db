//! `multinic agent` in job mode, end to end: the built binary runs inside a fresh network
//! namespace whose veth NICs carry fa:16:3e MACs, from the `spec` and `file` sources, then
//! cleans up; exit codes and the report's shape and size are checked.

mod agent_support;

use agent_support::{Netns, TempDir, run_agent};
use std::path::{Path, PathBuf};

const MAC_A: &str = "fa:16:3e:00:01:01";
const MAC_B: &str = "fa:16:3e:00:01:02";

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/agent")
        .join(name)
}

fn two_nic_node() -> Netns {
    let ns = Netns::new();
    ns.add_nic("0", MAC_A);
    ns.add_nic("1", MAC_B);
    ns
}

fn spec_json(interfaces: &str) -> String {
    format!(r#"{{"nodeName":"worker-01","interfaces":[{interfaces}]}}"#)
}

const TWO_NICS: &str = r#"
    {"id":2,"macAddress":"FA:16:3E:00:01:01","address":"192.0.2.10","cidr":"192.0.2.0/24","mtu":1400},
    {"macAddress":"fa:16:3e:00:01:02","address":"198.51.100.20","cidr":"198.51.100.0/24"}"#;

#[test]
fn spec_source_configures_reapplies_unchanged_then_cleans_up() {
    let ns = two_nic_node();
    let root = TempDir::new("job-spec");
    let spec = spec_json(TWO_NICS);
    let env = [
        ("NODE_NAME", "worker-01"),
        ("DATA_SOURCE", "spec"),
        ("MULTINIC_NODE_SPEC", spec.as_str()),
        ("MULTINIC_GENERATION", "7"),
        ("MULTINIC_OS", "ubuntu"),
    ];

    let run = run_agent(&ns, root.path(), &[], &env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.report();
    assert_eq!(report["node"], "worker-01");
    assert_eq!(report["generation"], 7);
    assert_eq!(report["action"], "apply");
    assert_eq!(
        run.reasons(),
        [
            ("multinic2".to_owned(), "Configured".to_owned()),
            ("multinic0".to_owned(), "Configured".to_owned())
        ]
    );
    assert_eq!(report["interfaces"][0]["macAddress"], MAC_A);
    assert_eq!(ns.addresses("multinic2"), ["192.0.2.10/24"]);
    assert_eq!(ns.addresses("multinic0"), ["198.51.100.20/24"]);
    assert_eq!(ns.mtu("multinic2"), 1400);
    assert!(root.path().join("etc/netplan/92-multinic2.yaml").exists());
    assert!(root.path().join("etc/netplan/90-multinic0.yaml").exists());
    assert!(
        run.stderr.contains("agent report"),
        "report is logged: {}",
        run.stderr
    );
    // stderr is a pipe, as a container runtime gives it: plain text, no terminal colours
    // (`kubectl logs` would show their escape codes).
    assert!(
        !run.stderr.contains('\u{1b}'),
        "terminal escape codes in a piped log: {:?}",
        run.stderr
    );

    // Same spec again: nothing to do.
    let again = run_agent(&ns, root.path(), &[], &env);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.reasons().iter().all(|(_, r)| r == "Unchanged"),
        "{:?}",
        again.reasons()
    );

    // Dry run of a changed spec prints the plan and changes nothing.
    let moved = spec_json(&TWO_NICS.replace("192.0.2.10", "192.0.2.11"));
    let dry = run_agent(
        &ns,
        root.path(),
        &["--dry-run"],
        &[
            ("NODE_NAME", "worker-01"),
            ("MULTINIC_NODE_SPEC", moved.as_str()),
            ("MULTINIC_OS", "ubuntu"),
        ],
    );
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(
        dry.stdout.contains("192.0.2.11"),
        "plan names the new address: {}",
        dry.stdout
    );
    assert_eq!(ns.addresses("multinic2"), ["192.0.2.10/24"]);
    assert!(dry.report_text.is_empty(), "a dry run writes no report");

    // Cleanup removes runtime state and files; the NICs themselves stay.
    let clean = run_agent(
        &ns,
        root.path(),
        &["--action", "cleanup"],
        &[("NODE_NAME", "worker-01"), ("MULTINIC_OS", "ubuntu")],
    );
    assert_eq!(clean.code, 0, "{}", clean.stderr);
    assert_eq!(clean.report()["action"], "cleanup");
    let reasons = clean.reasons();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().all(|(_, r)| r == "Removed"), "{reasons:?}");
    assert!(!root.path().join("etc/netplan/92-multinic2.yaml").exists());
    assert!(!root.path().join("etc/netplan/90-multinic0.yaml").exists());
    let leftover: Vec<String> = ["multinic0", "multinic2", "v0a", "v1a"]
        .iter()
        .flat_map(|dev| ns.addresses(dev))
        .collect();
    assert!(
        leftover.is_empty(),
        "addresses left after cleanup: {leftover:?}"
    );
}

#[test]
fn file_source_detects_the_os_and_applies() {
    let ns = two_nic_node();
    let root = TempDir::new("job-file");
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::copy(
        testdata("ubuntu-os-release"),
        root.path().join("etc/os-release"),
    )
    .unwrap();
    let file = testdata("two-nics.yaml");
    let run = run_agent(
        &ns,
        root.path(),
        &[
            "--source",
            "file",
            "--file",
            file.to_str().unwrap(),
            "--node-name",
            "worker-01",
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report()["generation"], 4);
    assert_eq!(ns.addresses("multinic2"), ["192.0.2.10/24"]);
    assert_eq!(ns.addresses("multinic0"), ["198.51.100.20/24"]);
    assert!(root.path().join("etc/netplan/92-multinic2.yaml").exists());

    // The same NICs as a mounted spec file (`--source spec --file`): nothing to change.
    let mounted = root.path().join("spec.json");
    std::fs::write(&mounted, spec_json(TWO_NICS)).unwrap();
    let again = run_agent(
        &ns,
        root.path(),
        &["--source", "spec", "--file", mounted.to_str().unwrap()],
        &[("NODE_NAME", "worker-01"), ("MULTINIC_GENERATION", "5")],
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.report()["generation"], 5);
    let reasons: Vec<String> = again.reasons().into_iter().map(|(_, r)| r).collect();
    assert_eq!(reasons, ["Unchanged", "Unchanged"]);
}

#[test]
fn invalid_and_missing_nics_fail_alone_with_exit_2() {
    let ns = two_nic_node();
    let root = TempDir::new("job-partial");
    let spec = spec_json(
        r#"
        {"macAddress":"fa:16:3e:00:01:01","address":"192.0.2.10","cidr":"192.0.2.0/24"},
        {"macAddress":"fa:16:3e:00:01:02","address":"198.51.100.20","cidr":"203.0.113.0/24"},
        {"macAddress":"fa:16:3e:00:09:09","address":"203.0.113.5","cidr":"203.0.113.0/24"}"#,
    );
    let run = run_agent(
        &ns,
        root.path(),
        &[],
        &[
            ("NODE_NAME", "worker-01"),
            ("MULTINIC_NODE_SPEC", spec.as_str()),
            ("MULTINIC_OS", "ubuntu"),
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    let report = run.report();
    let nics = report["interfaces"].as_array().unwrap();
    assert_eq!(nics.len(), 3, "{report}");
    assert_eq!(nics[0]["reason"], "Configured");
    assert_eq!(nics[1]["reason"], "InvalidSpec");
    assert_eq!(nics[1]["macAddress"], MAC_B);
    let message = nics[1]["message"].as_str().unwrap();
    assert!(
        message.starts_with("spec.interfaces[1].address: "),
        "{message}"
    );
    assert_eq!(nics[2]["reason"], "MacNotFound");
    assert_eq!(ns.addresses("multinic0"), ["192.0.2.10/24"]);
    assert!(
        ns.addresses("v1a").is_empty(),
        "the invalid NIC was left alone"
    );
}

#[test]
fn nothing_doable_exits_1_with_the_error_in_the_report() {
    let ns = Netns::new();
    let root = TempDir::new("job-fatal");
    let cases: [(&str, &str); 3] = [
        ("{not json", "inline spec: "),
        (
            r#"{"nodeName":"worker-02","interfaces":[]}"#,
            "spec.nodeName: \"worker-02\" is not this node",
        ),
        (
            r#"{"nodeName":"worker-01","instanceId":"nope","interfaces":[]}"#,
            "spec.instanceId: ",
        ),
    ];
    for (spec, error) in cases {
        let run = run_agent(
            &ns,
            root.path(),
            &[],
            &[
                ("NODE_NAME", "worker-01"),
                ("MULTINIC_NODE_SPEC", spec),
                ("MULTINIC_OS", "ubuntu"),
            ],
        );
        assert_eq!(run.code, 1, "{spec}: {}", run.stderr);
        let report = run.report();
        let got = report["error"].as_str().unwrap_or_default();
        assert!(got.contains(error), "{spec}: error {got:?} lacks {error:?}");
    }
    // A probe target that is no host:port is refused before anything is touched.
    let run = run_agent(
        &ns,
        root.path(),
        &["--probe", "no-port-here"],
        &[
            ("NODE_NAME", "worker-01"),
            ("MULTINIC_NODE_SPEC", r#"{"nodeName":"worker-01"}"#),
            ("MULTINIC_OS", "ubuntu"),
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.report()["error"].as_str().unwrap().contains("--probe"));
    // No os-release under the root and no --os: nothing can be rendered.
    let run = run_agent(
        &ns,
        root.path(),
        &[],
        &[
            ("NODE_NAME", "worker-01"),
            ("MULTINIC_NODE_SPEC", r#"{"nodeName":"worker-01"}"#),
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.report()["error"]
            .as_str()
            .unwrap()
            .contains("os-release")
    );
}

#[test]
fn ten_nics_with_long_failure_messages_fit_in_4096_bytes() {
    let ns = Netns::new();
    let root = TempDir::new("job-size");
    // Every entry invalid in several fields with long garbage, so every message is long.
    let garbage = "x".repeat(300);
    let interfaces: Vec<String> = (0..10)
        .map(|i| {
            format!(
                r#"{{"id":{i},"macAddress":"fa:16:3e:00:02:{i:02x}{garbage}","address":"{garbage}{i}","cidr":"{garbage}","portId":"{garbage}"}}"#
            )
        })
        .collect();
    let spec = spec_json(&interfaces.join(","));
    let run = run_agent(
        &ns,
        root.path(),
        &[],
        &[
            ("NODE_NAME", "worker-01"),
            ("MULTINIC_NODE_SPEC", spec.as_str()),
            ("MULTINIC_OS", "ubuntu"),
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.report_text.len() <= multinic_api::report::MAX_REPORT_BYTES,
        "{} bytes",
        run.report_text.len()
    );
    let report = multinic_api::report::decode_report(&run.report_text).expect("report decodes");
    assert_eq!(report.interfaces.len(), 10);
    for (slot, nic) in report.interfaces.iter().enumerate() {
        assert_eq!(nic.id, Some(u8::try_from(slot).unwrap()));
        assert_eq!(
            nic.name.as_deref(),
            Some(format!("multinic{slot}").as_str())
        );
        assert_eq!(nic.reason, multinic_api::InterfaceReason::InvalidSpec);
        assert!(
            nic.message
                .starts_with(&format!("spec.interfaces[{slot}].")),
            "{}",
            nic.message
        );
        assert!(nic.message.ends_with('…'), "trimmed: {}", nic.message);
        assert!(nic.mac_address.starts_with("fa:16:3e:00:02:"));
    }
}
