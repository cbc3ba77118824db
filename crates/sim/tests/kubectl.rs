//! The machine's real kubectl against the simulator: `get nodes`, `apply -f` of the CRD and of
//! a custom resource, `explain`, `get -o yaml`, `label`, `wait --for=condition/jsonpath`, `describe` (with
//! the controller's Events), `delete`, a custom resource that breaks its schema being refused
//! with the field named, and `logs` of a pod. Its imperative commands are in
//! `kubectl_imperative.rs`.

mod common;

use common::kubectl::{kubectl, kubectl_async, write};
use common::sim_with_crd;
use kube::api::{Api, Patch, PatchParams};
use multinic_api::MultiNicNodeConfig;
use multinic_sim::{Sim, SimConfig};
use serde_json::json;
use std::path::PathBuf;

const CR: &str = "apiVersion: multinic.io/v1alpha1
kind: MultiNicNodeConfig
metadata:
  name: sim-node-0
  namespace: multinic-system
  labels: {multinic.io/node-name: sim-node-0}
spec:
  nodeName: sim-node-0
  interfaces:
    - id: 0
      macAddress: \"fa:16:3e:00:00:00\"
      address: \"11.11.11.132\"
      cidr: \"11.11.11.0/24\"
      mtu: 1450
";

#[tokio::test(flavor = "multi_thread")]
async fn get_nodes() {
    let sim = Sim::start(SimConfig::with_nodes(2)).await.unwrap();
    let out = kubectl_async(&sim, &["get", "nodes"]).await;
    assert!(out.ok, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert!(lines[0].starts_with("NAME") && lines[0].contains("STATUS"));
    assert!(
        lines[1].starts_with("sim-node-0")
            && lines[1].contains("Ready")
            && lines[1].contains("Ubuntu 22.04.4 LTS"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("Rocky Linux 9.3 (Blue Onyx)"),
        "{}",
        lines[2]
    );
    let out = kubectl_async(
        &sim,
        &[
            "get",
            "node",
            "sim-node-1",
            "-o",
            "jsonpath={.status.nodeInfo.systemUUID}",
        ],
    )
    .await;
    assert_eq!(out.stdout, multinic_sim::NodeSpec::generate(1).system_uuid);
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_crd_and_resource_then_get_wait_and_delete() {
    let sim = Sim::start(SimConfig::with_nodes(1)).await.unwrap();
    let dir = sim.work_dir.clone();
    let crd = write(&dir, "crd.yaml", &multinic_api::crd_yaml());
    let ns = write(
        &dir,
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: multinic-system\n",
    );
    let cr = write(&dir, "cr.yaml", CR);
    let s = |p: &PathBuf| p.display().to_string();

    let out = kubectl_async(&sim, &["apply", "-f", &s(&crd)]).await;
    assert!(
        out.ok && out.stdout.contains("created"),
        "{} {}",
        out.stdout,
        out.stderr
    );
    let out = kubectl_async(
        &sim,
        &[
            "wait",
            "--for=condition=Established",
            "crd/multinicnodeconfigs.multinic.io",
            "--timeout=10s",
        ],
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    assert!(kubectl_async(&sim, &["apply", "-f", &s(&ns)]).await.ok);
    let out = kubectl_async(&sim, &["apply", "-f", &s(&cr)]).await;
    assert!(
        out.ok
            && out
                .stdout
                .contains("multinicnodeconfig.multinic.io/sim-node-0 created"),
        "{} {}",
        out.stdout,
        out.stderr
    );
    // explain reads the CRD's schema through the OpenAPI v3 documents (after an apply of the
    // new kind, so kubectl's discovery cache knows it).
    let out = kubectl_async(&sim, &["explain", "mnnc.spec.interfaces.mtu"]).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("KIND:       MultiNicNodeConfig") && out.stdout.contains("68..9000"),
        "{}",
        out.stdout
    );
    let out = kubectl_async(&sim, &["apply", "-f", &s(&cr)]).await;
    assert!(
        out.ok && out.stdout.contains("unchanged"),
        "{} {}",
        out.stdout,
        out.stderr
    );

    let out = kubectl_async(
        &sim,
        &[
            "get",
            "mnnc",
            "-n",
            "multinic-system",
            "sim-node-0",
            "-o",
            "yaml",
        ],
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    let obj: serde_json::Value = serde_yaml::from_str(&out.stdout).unwrap();
    assert_eq!(obj["spec"]["nodeName"], "sim-node-0");
    assert_eq!(obj["metadata"]["generation"], 1);
    assert!(
        obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );

    let out = kubectl_async(
        &sim,
        &[
            "label",
            "mnnc",
            "-n",
            "multinic-system",
            "sim-node-0",
            "team=net",
        ],
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    let out = kubectl_async(&sim, &["get", "mnnc", "-A", "-l", "team=net"]).await;
    assert!(out.stdout.contains("sim-node-0"), "{}", out.stdout);
    let header = out.stdout.lines().next().unwrap_or("").to_string();
    for col in ["NAMESPACE", "NAME", "NODE", "STATE", "AGE"] {
        assert!(header.contains(col), "{header}");
    }

    // A controller writes status; kubectl waits for it.
    let api: Api<MultiNicNodeConfig> =
        Api::namespaced(sim.kube_client().unwrap(), "multinic-system");
    let waiter = kubectl_async(
        &sim,
        &[
            "wait",
            "-n",
            "multinic-system",
            "--for=condition=Ready",
            "mnnc/sim-node-0",
            "--timeout=20s",
        ],
    );
    let writer = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let status = json!({"status": {"state": "Configured", "conditions": [{"type": "Ready", "status": "True",
            "reason": "Configured", "message": "all set", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        api.patch_status("sim-node-0", &PatchParams::default(), &Patch::Merge(status))
            .await
            .unwrap();
    };
    let (out, ()) = tokio::join!(waiter, writer);
    assert!(
        out.ok && out.stdout.contains("condition met"),
        "{} {}",
        out.stdout,
        out.stderr
    );
    let out = kubectl_async(
        &sim,
        &[
            "wait",
            "-n",
            "multinic-system",
            "--for=jsonpath={.status.state}=Configured",
            "mnnc/sim-node-0",
            "--timeout=10s",
        ],
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    let out = kubectl_async(&sim, &["get", "mnnc", "-n", "multinic-system"]).await;
    assert!(
        out.stdout
            .lines()
            .nth(1)
            .unwrap_or("")
            .contains("Configured"),
        "{}",
        out.stdout
    );

    // An Event the controller publishes (kube-runtime Recorder) shows in `kubectl describe`.
    let recorder = kube::runtime::events::Recorder::new(
        sim.kube_client().unwrap(),
        "multinic-controller".into(),
    );
    let obj = api.get("sim-node-0").await.unwrap();
    let ev = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Normal,
        reason: "Configured".into(),
        note: Some("3 interfaces configured".into()),
        action: "Apply".into(),
        secondary: None,
    };
    recorder
        .publish(&ev, &kube::Resource::object_ref(&obj, &()))
        .await
        .unwrap();
    let out = kubectl_async(
        &sim,
        &["describe", "mnnc", "-n", "multinic-system", "sim-node-0"],
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("3 interfaces configured") && out.stdout.contains("Configured"),
        "{}",
        out.stdout
    );

    let out = kubectl_async(&sim, &["delete", "-f", &s(&cr)]).await;
    assert!(
        out.ok && out.stdout.contains("deleted"),
        "{} {}",
        out.stdout,
        out.stderr
    );
    let out = kubectl_async(
        &sim,
        &["get", "mnnc", "-n", "multinic-system", "sim-node-0"],
    )
    .await;
    assert!(!out.ok && out.stderr.contains("NotFound"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_breaking_its_schema_is_refused() {
    let (sim, _client) = sim_with_crd(SimConfig::default()).await;
    let bad = CR
        .replace("mtu: 1450", "mtu: 20000")
        .replace("fa:16:3e:00:00:00", "not-a-mac");
    let path = write(&sim.work_dir, "bad.yaml", &bad);
    let out = kubectl(&sim, &["apply", "-f", &path.display().to_string()]);
    assert!(!out.ok, "{}", out.stdout);
    assert!(out.stderr.contains("is invalid"), "{}", out.stderr);
    assert!(
        out.stderr.contains("spec.interfaces[0].mtu"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("spec.interfaces[0].macAddress"),
        "{}",
        out.stderr
    );
    let out = kubectl(&sim, &["get", "mnnc", "-A"]);
    assert!(
        !out.stdout.contains("sim-node-0"),
        "nothing was stored: {}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_of_a_process_pod() {
    let config = SimConfig {
        runner: multinic_sim::RunnerChoice::Process {
            agent_binary: "/bin/false".into(),
        },
        ..SimConfig::with_nodes(1)
    };
    let sim = Sim::start(config).await.unwrap();
    let pod = write(
        &sim.work_dir,
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: talker\nspec:\n  nodeName: sim-node-0\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: busybox\n    command: [sh, -c, 'echo hello from $HOSTNAME']\n",
    );
    let out = kubectl_async(&sim, &["apply", "-f", &pod.display().to_string()]).await;
    assert!(out.ok, "{}", out.stderr);
    let out = kubectl_async(
        &sim,
        &[
            "wait",
            "--for=jsonpath={.status.phase}=Succeeded",
            "pod/talker",
            "--timeout=20s",
        ],
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    let out = kubectl_async(&sim, &["logs", "talker"]).await;
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "hello from talker");
}
