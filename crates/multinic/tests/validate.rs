//! `multinic validate` and `multinic crd` as a user runs them: one `FILE: <field path>:
//! <message>` line per problem, exit 0 when all files are valid and 1 otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn multinic(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_multinic"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run multinic")
}

#[test]
fn valid_examples_exit_0_and_print_no_problem() {
    let examples: Vec<String> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| format!("examples/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    assert!(examples.len() >= 5);
    let mut args = vec!["validate"];
    args.extend(examples.iter().map(String::as_str));
    let out = multinic(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn each_problem_is_one_line_naming_file_and_field_and_the_exit_code_is_1() {
    let out = multinic(&[
        "validate",
        "examples/worker-01.yaml",
        "testdata/invalid/20-address-outside-cidr.yaml",
        "testdata/invalid/34-duplicate-mac.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "testdata/invalid/20-address-outside-cidr.yaml: spec.interfaces[1].address: 13.13.13.10 is not inside cidr 12.12.12.0/24",
            "testdata/invalid/34-duplicate-mac.yaml: spec.interfaces[1].macAddress: duplicates spec.interfaces[0].macAddress",
        ]
    );
}

#[test]
fn multi_document_files_name_the_document_with_the_problem() {
    let dir = std::env::temp_dir().join(format!("multinic-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read_to_string(repo().join("examples/worker-01.yaml")).unwrap();
    let bad = good
        .replace("worker-01", "worker-02")
        .replace("mtu: 1450", "mtu: 10000");
    let file = dir.join("two.yaml");
    std::fs::write(&file, format!("{good}\n---\n{bad}")).unwrap();
    let out = multinic(&["validate", file.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains(
            "spec.interfaces[0].mtu: must be 68..9000, got 10000 (document 2, worker-02)"
        ),
        "{stdout}"
    );
}

#[test]
fn unreadable_or_foreign_input_is_an_error_not_a_pass() {
    let out = multinic(&["validate", "does/not/exist.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does/not/exist.yaml"));
    let out = multinic(&[
        "validate",
        "deploy/crds/multinic.io_multinicnodeconfigs.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("kind: expected MultiNicNodeConfig, got \"CustomResourceDefinition\"")
    );
}

#[test]
fn crd_prints_the_committed_crd() {
    let out = multinic(&["crd"]);
    assert_eq!(out.status.code(), Some(0));
    let committed =
        std::fs::read(repo().join("deploy/crds/multinic.io_multinicnodeconfigs.yaml")).unwrap();
    assert!(
        out.stdout == committed,
        "multinic crd differs from the committed CRD"
    );
}
