//! `multinic sim` end to end: the command serves the API and writes a kubeconfig kubectl uses,
//! runs an agent Job with the real `multinic agent` inside a node's network namespace, and on
//! SIGTERM exits removing every namespace, process and directory it started.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn kubectl(kubeconfig: &str, args: &[&str]) -> (bool, String, String) {
    // Discovery cache next to the kubeconfig: ports get reused between sims.
    let cache = std::path::Path::new(kubeconfig).with_file_name("kubectl-cache");
    let out = Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .output()
        .expect(
            "running /usr/bin/kubectl (apt package kubectl, listed in scripts/apt-packages.txt)",
        );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn netns_list() -> String {
    String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

/// Kills the sim if the test fails half-way, so no namespace outlives the test.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

const JOB: &str = r#"apiVersion: batch/v1
kind: Job
metadata: {name: agent-apply}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      nodeSelector: {kubernetes.io/hostname: sim-node-0}
      volumes: [{name: host, hostPath: {path: /, type: Directory}}]
      containers:
      - name: agent
        image: multinic:dev
        command: [multinic, agent]
        env:
        - {name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
        - {name: MULTINIC_ROOT, value: /host}
        - {name: MULTINIC_HANDOFF, value: none}
        - {name: MULTINIC_GENERATION, value: "1"}
        - {name: MULTINIC_NODE_SPEC, value: '{"nodeName":"sim-node-0","interfaces":[{"id":0,"macAddress":"fa:16:3e:00:00:01","address":"11.11.11.5","cidr":"11.11.11.0/24","mtu":1450}]}'}
        volumeMounts: [{name: host, mountPath: /host}]
"#;

#[test]
fn sim_command_serves_runs_agents_and_cleans_up_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("sim-command-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig").display().to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_multinic"))
        .args([
            "sim",
            "--nodes",
            "2",
            "--netns",
            "--kubeconfig",
            &kubeconfig,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("multinic sim starts");
    let mut sim = Running(child);
    let stdout = sim.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let printed: Vec<String> = lines.by_ref().take(3).map(|l| l.unwrap()).collect();
    assert!(printed[0].contains("http://127.0.0.1:"), "{printed:?}");
    assert!(printed[1].contains(&kubeconfig), "{printed:?}");
    assert!(printed[2].contains("kubectl --kubeconfig"), "{printed:?}");
    let config = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(config.contains("server: http://127.0.0.1:"), "{config}");

    let (ok, out, err) = kubectl(&kubeconfig, &["get", "nodes"]);
    assert!(
        ok && out.contains("sim-node-0") && out.contains("sim-node-1"),
        "{out}{err}"
    );
    // The sim names its namespaces mnsim-<its pid>-...; other tests may run sims too.
    let prefix = format!("mnsim-{}-", sim.0.id());
    let namespaces: Vec<String> = netns_list()
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(namespaces.len(), 2, "{namespaces:?}");

    let job = dir.join("job.yaml");
    std::fs::write(&job, JOB).unwrap();
    let (ok, _, err) = kubectl(&kubeconfig, &["apply", "-f", &job.display().to_string()]);
    assert!(ok, "{err}");
    let (ok, out, err) = kubectl(
        &kubeconfig,
        &[
            "wait",
            "--for=condition=Complete",
            "job/agent-apply",
            "--timeout=60s",
        ],
    );
    assert!(ok, "{out}{err}");
    let (_, report, _) = kubectl(
        &kubeconfig,
        &[
            "get",
            "pods",
            "-l",
            "job-name=agent-apply",
            "-o",
            "jsonpath={.items[0].status.containerStatuses[0].state.terminated.message}",
        ],
    );
    assert!(report.contains("\"reason\":\"Configured\""), "{report}");

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(sim.0.id().to_string())
        .status();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = sim.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "multinic sim did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    let left = netns_list();
    for ns in &namespaces {
        assert!(!left.contains(ns.as_str()), "{ns} survived: {left}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
