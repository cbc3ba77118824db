//! Nodes created through the API (not by `--nodes`) are adopted by the simulated kubelet as
//! lightweight nodes once a pod lands on them.
//!
//! | Promise | Test |
//! |---|---|
//! | a pod bound to an API-created Node runs (instant agent) and its Job completes | `api_created_node_runs_pods` |

mod common;

use common::eventually;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};
use multinic_sim::{Sim, SimConfig};
use serde_json::json;

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
