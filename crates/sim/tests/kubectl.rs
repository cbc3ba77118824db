//! The machine's real kubectl against the simulator: `get nodes`, `apply -f` of the CRD and of
//! a custom resource, `explain`, `get -o yaml`, `label`, `wait --for=condition/jsonpath`, `describe` (with
//! the controller's Events), `delete`, a custom resource that breaks its schema being refused
//! with the field named, `logs` of a pod, and the imperative commands (`create namespace`,
//! `create configmap/secret/serviceaccount/deployment/job`, `label`, `annotate`, `patch`,
//! `cordon`, `scale`, `delete`, `--dry-run=server`), those also against a real kube-apiserver.

mod common;

use common::sim_with_crd;
use kube::api::{Api, Patch, PatchParams};
use multinic_api::MultiNicNodeConfig;
use multinic_sim::{Sim, SimConfig, SimHandle};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

const KUBECTL: &str = "/usr/bin/kubectl";

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn kubectl(sim: &SimHandle, args: &[&str]) -> Out {
    // A discovery cache per sim: ports get reused, and kubectl caches discovery per host:port.
    let out = Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&sim.kubeconfig_path)
        .arg("--cache-dir")
        .arg(sim.work_dir.join("kubectl-cache"))
        .args(args)
        .output()
        .expect(
            "running /usr/bin/kubectl (apt package kubectl, listed in scripts/apt-packages.txt)",
        );
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// kubectl blocks, so tests call it off the async runtime.
async fn kubectl_async(sim: &SimHandle, args: &[&str]) -> Out {
    let cache = sim.work_dir.join("kubectl-cache");
    kubectl_with(sim.kubeconfig_path.clone(), cache, args).await
}

/// kubectl with a given kubeconfig and discovery cache, off the async runtime.
async fn kubectl_with(path: PathBuf, cache: PathBuf, args: &[&str]) -> Out {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(path)
            .arg("--cache-dir")
            .arg(cache)
            .args(args)
            .output()
            .expect("running /usr/bin/kubectl (apt package kubectl, listed in scripts/apt-packages.txt)");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

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

/// kubectl's imperative commands: the `create` ones send protobuf bodies (typed clients), the
/// others JSON patches; each result is read back through the API.
#[tokio::test(flavor = "multi_thread")]
async fn imperative_commands() {
    let sim = Sim::start(SimConfig::with_nodes(1)).await.unwrap();
    let cache = sim.work_dir.join("kubectl-cache");
    let client = sim.kube_client().unwrap();
    imperative(sim.kubeconfig_path.clone(), cache, client).await;
}

/// The same commands against a real kube-apiserver (skipped with a line saying so when no
/// control plane is configured, a failure with MULTINIC_REQUIRE_REAL_CP=1).
#[tokio::test(flavor = "multi_thread")]
async fn imperative_commands_on_real_server() {
    use k8s_openapi::api::core::v1::Node;
    let Some(cp) = common::realcp_support::RealControlPlane::start().await else {
        return;
    };
    let client = cp.client().await;
    // A Node to cordon (a real cluster's come from kubelets).
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "sim-node-0"}})).unwrap();
    Api::<Node>::all(client.clone())
        .create(&Default::default(), &node)
        .await
        .unwrap();
    imperative(cp.kubeconfig(), cp.dir().join("kubectl-cache"), client).await;
}

async fn imperative(kubeconfig: PathBuf, cache: PathBuf, client: kube::Client) {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Secret, ServiceAccount};
    let run = |args: &'static [&'static str]| kubectl_with(kubeconfig.clone(), cache.clone(), args);
    let ok = |out: Out, what: &str| {
        assert!(out.ok, "{what}: {} {}", out.stdout, out.stderr);
        out.stdout
    };

    let out = ok(run(&["create", "namespace", "imp"]).await, "create ns");
    assert!(out.contains("namespace/imp created"), "{out}");
    let ns = Api::<Namespace>::all(client.clone())
        .get("imp")
        .await
        .unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "imp");
    ok(
        run(&[
            "create",
            "configmap",
            "cm1",
            "-n",
            "imp",
            "--from-literal=a=b",
        ])
        .await,
        "create configmap",
    );
    let cm = cms.get("cm1").await.unwrap();
    assert_eq!(cm.data.unwrap()["a"], "b");

    ok(
        run(&[
            "create",
            "secret",
            "generic",
            "s1",
            "-n",
            "imp",
            "--from-literal=k=hello",
        ])
        .await,
        "create secret",
    );
    let s = Api::<Secret>::namespaced(client.clone(), "imp")
        .get("s1")
        .await
        .unwrap();
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    assert_eq!(s.data.unwrap()["k"].0, b"hello");

    ok(
        run(&["create", "serviceaccount", "sa1", "-n", "imp"]).await,
        "create sa",
    );
    Api::<ServiceAccount>::namespaced(client.clone(), "imp")
        .get("sa1")
        .await
        .unwrap();

    // A server-side dry run changes nothing.
    ok(
        run(&[
            "create",
            "configmap",
            "dry",
            "-n",
            "imp",
            "--dry-run=server",
        ])
        .await,
        "dry-run create",
    );
    assert!(cms.get_opt("dry").await.unwrap().is_none());
    ok(
        run(&[
            "delete",
            "configmap",
            "cm1",
            "-n",
            "imp",
            "--dry-run=server",
        ])
        .await,
        "dry-run delete",
    );
    assert!(cms.get_opt("cm1").await.unwrap().is_some());

    ok(
        run(&["label", "configmap", "cm1", "-n", "imp", "team=net"]).await,
        "label",
    );
    ok(
        run(&["annotate", "configmap", "cm1", "-n", "imp", "note=hi"]).await,
        "annotate",
    );
    let cm = cms.get("cm1").await.unwrap();
    assert_eq!(cm.metadata.labels.unwrap()["team"], "net");
    assert_eq!(cm.metadata.annotations.unwrap()["note"], "hi");
    ok(
        run(&["label", "configmap", "cm1", "-n", "imp", "team-"]).await,
        "unlabel",
    );
    let labels = cms
        .get("cm1")
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap_or_default();
    assert!(!labels.contains_key("team"), "{labels:?}");

    ok(
        run(&[
            "patch",
            "configmap",
            "cm1",
            "-n",
            "imp",
            "-p",
            r#"{"data":{"c":"d"}}"#,
        ])
        .await,
        "strategic patch",
    );
    ok(
        run(&[
            "patch",
            "configmap",
            "cm1",
            "-n",
            "imp",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/data/a","value":"z"}]"#,
        ])
        .await,
        "json patch",
    );
    let data = cms.get("cm1").await.unwrap().data.unwrap();
    assert_eq!((data["a"].as_str(), data["c"].as_str()), ("z", "d"));

    let nodes: Api<Node> = Api::all(client.clone());
    ok(run(&["cordon", "sim-node-0"]).await, "cordon");
    let spec = nodes.get("sim-node-0").await.unwrap().spec.unwrap();
    assert_eq!(spec.unschedulable, Some(true));
    ok(run(&["uncordon", "sim-node-0"]).await, "uncordon");
    let spec = nodes.get("sim-node-0").await.unwrap().spec.unwrap();
    assert_ne!(spec.unschedulable, Some(true));

    ok(
        run(&[
            "create",
            "deployment",
            "web",
            "-n",
            "imp",
            "--image=busybox",
        ])
        .await,
        "create deployment",
    );
    ok(
        run(&[
            "create",
            "job",
            "once",
            "-n",
            "imp",
            "--image=busybox",
            "--",
            "sh",
            "-c",
            "true",
        ])
        .await,
        "create job",
    );
    let job = Api::<k8s_openapi::api::batch::v1::Job>::namespaced(client.clone(), "imp")
        .get("once")
        .await
        .unwrap();
    let pod_spec = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        (
            pod_spec.containers[0].command.as_deref(),
            pod_spec.restart_policy.as_deref()
        ),
        (
            Some(&["sh".to_string(), "-c".into(), "true".into()][..]),
            Some("Never")
        )
    );
    let out = ok(
        run(&["scale", "deployment", "web", "-n", "imp", "--replicas=3"]).await,
        "scale",
    );
    assert!(out.contains("deployment.apps/web scaled"), "{out}");
    let d = Api::<Deployment>::namespaced(client.clone(), "imp")
        .get("web")
        .await
        .unwrap();
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(
        spec.template.spec.unwrap().containers[0].image.as_deref(),
        Some("busybox")
    );
    assert_eq!(d.metadata.generation, Some(2));

    ok(
        run(&["delete", "configmap", "cm1", "-n", "imp"]).await,
        "delete cm",
    );
    assert!(cms.get_opt("cm1").await.unwrap().is_none());
    ok(
        run(&["delete", "namespace", "imp", "--wait=true", "--timeout=60s"]).await,
        "delete ns",
    );
    assert!(
        Api::<Namespace>::all(client)
            .get_opt("imp")
            .await
            .unwrap()
            .is_none()
    );
}
