//! Load check of the simulator: N nodes, one instant-agent Job per node created through the
//! API at once, timed until every Job is Complete, with a List+Watch client running alongside.
//! `cargo run --release -p multinic-sim --example jobs_load -- [NODES]`

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use multinic_sim::{Sim, SimConfig};
use serde_json::json;
use std::time::Instant;

#[tokio::main]
async fn main() {
    let nodes: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    let started = Instant::now();
    let sim = Sim::start(SimConfig::with_nodes(nodes))
        .await
        .expect("sim starts");
    let registered = started.elapsed();
    let client = sim.kube_client().expect("client");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    // Completion is observed through a watch, as a controller would, not by polling lists.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let watch = tokio::spawn(
        watcher(jobs.clone(), watcher::Config::default())
            .applied_objects()
            .for_each(move |j| {
                if let Ok(j) = j
                    && j.status.as_ref().and_then(|s| s.succeeded) == Some(1)
                {
                    let _ = done_tx.send(j.metadata.name.unwrap_or_default());
                }
                async {}
            }),
    );
    let t0 = Instant::now();
    let creates = futures::stream::iter(0..nodes).map(|i| {
        let jobs = jobs.clone();
        async move {
            let job: Job = serde_json::from_value(json!({"metadata": {"name": format!("apply-{i}")}, "spec": {"backoffLimit": 0,
                "template": {"spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": format!("sim-node-{i}")},
                "containers": [{"name": "agent", "image": "multinic", "env": [{"name": "NODE_NAME", "value": format!("sim-node-{i}")}]}]}}}}))
            .expect("job");
            jobs.create(&PostParams::default(), &job).await.expect("create")
        }
    });
    creates.buffer_unordered(32).collect::<Vec<_>>().await;
    let created = t0.elapsed();
    let mut done = std::collections::HashSet::new();
    while done.len() < nodes {
        done.insert(done_rx.recv().await.expect("watch runs"));
    }
    let completed = t0.elapsed();
    watch.abort();
    println!(
        "nodes={nodes} register={registered:?} create_all={created:?} all_complete={completed:?}"
    );
    for ((verb, resource), n) in sim.request_counts() {
        println!("  {verb:>8} {resource:<10} {n}");
    }
    let t = Instant::now();
    sim.shutdown().await;
    println!("shutdown={:?}", t.elapsed());
}
