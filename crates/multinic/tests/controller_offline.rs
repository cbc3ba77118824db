//! End to end: a resource deleted while the controller is down is still cleaned up when it
//! comes back (the finalizer holds it), and `kubectl wait --for=condition=Ready` works on
//! the status the controller writes.

mod controller_support;

use controller_support::{Cluster, NS, RunningController, spec_for, test_config};
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_while_the_controller_is_down_is_cleaned_up_on_return() {
    let cluster = Cluster::start(1).await;
    let node = Cluster::node(0);
    let controller = RunningController::start(cluster.client.clone(), test_config());
    cluster
        .create(&node.name, spec_for(0, &[(0, "10.40.0.5", "10.40.0.0/24")]))
        .await;
    cluster.wait_configured(&node.name).await;
    assert!(cluster.addresses(&node.name).contains("10.40.0.5/24"));
    controller.kill().await;

    cluster.delete(&node.name).await;
    // Nobody acts: the finalizer keeps the resource, the node keeps its configuration.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let held = cluster.configs().get_opt(&node.name).await.unwrap();
    assert!(held.is_some_and(|o| o.metadata.deletion_timestamp.is_some()));
    assert!(cluster.addresses(&node.name).contains("10.40.0.5/24"));

    let _back = RunningController::start(cluster.client.clone(), test_config());
    cluster.wait_gone(&node.name).await;
    assert!(!cluster.addresses(&node.name).contains("10.40.0.5/"));
    assert!(cluster.files(&node.name, "etc/netplan").is_empty());
    cluster.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_wait_for_ready_returns_once_configured() {
    let cluster = Cluster::start(1).await;
    let node = Cluster::node(0);
    let _controller = RunningController::start(cluster.client.clone(), test_config());
    cluster
        .create(&node.name, spec_for(0, &[(0, "10.41.0.5", "10.41.0.0/24")]))
        .await;
    let kubeconfig = cluster.sim.kubeconfig_path.clone();
    let name = format!("mnnc/{}", node.name);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "-n",
                NS,
                "wait",
                "--for=condition=Ready",
                &name,
                "--timeout=60s",
            ])
            .output()
            .expect("running kubectl")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "kubectl wait failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("condition met"));
    let obj = cluster.configs().get(&node.name).await.unwrap();
    assert_eq!(
        obj.status.unwrap().state,
        Some(multinic_api::NodeConfigState::Configured)
    );
    cluster.sim.shutdown().await;
}
