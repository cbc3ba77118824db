//! The machine's real kubectl's imperative commands (`create namespace`,
//! `create configmap/secret/serviceaccount/deployment/job`, `label`, `annotate`, `patch`,
//! `cordon`, `scale`, `delete`, `--dry-run=server`) against the simulator and against a real
//! kube-apiserver.

mod common;

use common::kubectl::{Out, kubectl_with};
use kube::api::Api;
use multinic_sim::{Sim, SimConfig};
use serde_json::json;
use std::path::PathBuf;

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
