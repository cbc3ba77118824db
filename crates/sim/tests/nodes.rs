//! The simulated kubelet's nodes: API-created Nodes adopted as lightweight nodes, node Leases
//! and the netns annotation, scheduling by required node affinity, and the kubelet's own
//! request counts.
//!
//! | Promise | Test |
//! |---|---|
//! | a pod bound to an API-created Node runs (instant agent) and its Job completes | `api_created_node_runs_pods` |
//! | each node has a Lease in kube-node-lease that is renewed; a namespace-backed Node names its namespace in `sim.multinic.io/netns` | `leases_renewed_and_netns_annotated` |
//! | a Pod pinned by `matchFields metadata.name` is bound to that node and runs there | `affinity_pins_the_pod_to_its_node` |

mod common;

use common::eventually;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use multinic_sim::{NETNS_ANNOTATION, RunnerChoice, Sim, SimConfig};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn api_created_node_runs_pods() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let client = sim.kube_client().unwrap();
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "worker-07",
        "labels": {"kubernetes.io/hostname": "worker-07"}}}))
    .unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
    let jobs: Api<Job> = Api::namespaced(client, "default");
    let job: Job = serde_json::from_value(json!({"metadata": {"name": "on-07"}, "spec": {"backoffLimit": 0,
        "template": {"spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": "worker-07"},
        "containers": [{"name": "agent", "image": "multinic", "env": [{"name": "NODE_NAME", "value": "worker-07"}]}]}}}}))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    eventually(10, "the Job on the adopted node completes", || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get("on-07").await.ok()?;
            (j.status?.succeeded == Some(1)).then_some(())
        }
    })
    .await;
    assert!(
        sim.node_root("worker-07").exists(),
        "the adopted node got a root directory"
    );
}

#[tokio::test]
async fn leases_renewed_and_netns_annotated() {
    let sim = Sim::start(SimConfig {
        netns: true,
        lease_renew_interval: Duration::from_millis(200),
        ..SimConfig::with_nodes(2)
    })
    .await
    .unwrap();
    let client = sim.kube_client().unwrap();
    let node = Api::<Node>::all(client.clone())
        .get("sim-node-1")
        .await
        .unwrap();
    let annotation = node.metadata.annotations.unwrap()[NETNS_ANNOTATION].clone();
    assert_eq!(Some(annotation), sim.node_netns("sim-node-1"));
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let first = leases.get("sim-node-1").await.unwrap().spec.unwrap();
    assert_eq!(first.holder_identity.as_deref(), Some("sim-node-1"));
    eventually(10, "the Lease is renewed", || {
        let leases = leases.clone();
        let before = first.renew_time.clone();
        async move {
            let now = leases.get("sim-node-1").await.ok()?.spec?.renew_time;
            (now > before).then_some(())
        }
    })
    .await;
    let counts = sim.kubelet_request_counts();
    assert!(
        counts.get(&("patch".into(), "leases".into())) >= Some(&1),
        "{counts:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn affinity_pins_the_pod_to_its_node() {
    let sim = Sim::start(SimConfig {
        runner: RunnerChoice::Process {
            agent_binary: "/bin/false".into(),
        },
        ..SimConfig::with_nodes(3)
    })
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(sim.kube_client().unwrap(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "pinned"}, "spec": {
        "restartPolicy": "Never",
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": ["sim-node-2"]}]}]}}},
        "containers": [{"name": "c", "image": "busybox",
            "command": ["sh", "-c", "echo -n $NODE > /dev/termination-log"],
            "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let done = eventually(10, "the pinned pod succeeded", || {
        let pods = pods.clone();
        async move {
            let p = pods.get("pinned").await.ok()?;
            (p.status.as_ref()?.phase.as_deref() == Some("Succeeded")).then_some(p)
        }
    })
    .await;
    assert_eq!(done.spec.unwrap().node_name.as_deref(), Some("sim-node-2"));
    let state = done.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap();
    assert_eq!(
        state.terminated.unwrap().message.as_deref(),
        Some("sim-node-2")
    );
    sim.shutdown().await;
}
