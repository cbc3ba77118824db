//! `multinic demo` end to end: exits 0 after every step it checks, and leaves no network
//! namespace behind.

use std::process::Command;

#[test]
fn demo_runs_every_step_and_leaves_nothing_behind() {
    let child = Command::new(env!("CARGO_BIN_EXE_multinic"))
        .args(["--log", "warn", "demo"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting multinic demo");
    let pid = child.id();
    let out = child.wait_with_output().expect("waiting for the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for expected in [
        "all Ready after",
        "10.50.0.5/24",
        "192.168.52.6/24",
        "10.50.0.9 is there, 10.50.0.5 is gone",
        "no file and no address of sim-node-2 left",
        "demo finished",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let prefix = format!("mnsim-{pid}-");
    assert!(
        !String::from_utf8_lossy(&netns.stdout).contains(&prefix),
        "the demo left namespaces behind"
    );
}
