//! Load check of the simulator: N nodes, one instant-agent Job per node created through the
//! API at once, timed until every Job is Complete, with a List+Watch client running alongside.
//! Several sizes run one after another in one process, so the per-Job cost can be compared.
//! `cargo run --release -p multinic-sim --example jobs_load -- [NODES...]` (default 300 1000 3000)

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
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![300, 1000, 3000];
    }
    let mut rows = Vec::new();
    for nodes in sizes {
        rows.push((nodes, run(nodes).await));
    }
    let base = rows[0].1.as_secs_f64() / rows[0].0 as f64;
    println!(
        "| Jobs (= nodes) | create all + all Complete | per Job | per Job vs {} |",
        rows[0].0
    );
    println!("|---|---|---|---|");
    for (n, t) in &rows {
        let per = t.as_secs_f64() / *n as f64;
        println!(
            "| {n} | {:.2} s | {:.2} ms | {:.2}x |",
            t.as_secs_f64(),
            per * 1e3,
            per / base
        );
    }
}

/// One sim of `nodes` nodes: returns the time from the first create to the last Complete.
async fn run(nodes: usize) -> std::time::Duration {
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
    eprintln!(
        "nodes={nodes} register={registered:?} create_all={created:?} all_complete={completed:?}"
    );
    for ((verb, resource), n) in sim.request_counts() {
        eprintln!("  {verb:>8} {resource:<10} {n}");
    }
    sim.shutdown().await;
    completed
}
