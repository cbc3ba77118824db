//! End to end: a resource deleted while the controller is down is still cleaned up when it
//! comes back (the finalizer holds it), and `kubectl wait --for=condition=Ready` works on
//! the status the controller writes.

mod controller_support;

use controller_support::{
    Cluster, NS, RunningController, lease_holder, replica_config, spec_for, test_config,
    wait_for_leader,
};
use std::process::Command;
use std::time::Duration;

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

/// `GET path` over plain HTTP/1.1; returns the whole response.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connecting");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_are_served() {
    let cluster = Cluster::start(1).await;
    let node = Cluster::node(0);
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = test_config();
    config.http_addr = Some(addr);
    let _controller = RunningController::start(cluster.client.clone(), config);
    cluster
        .create(&node.name, spec_for(0, &[(0, "10.42.0.5", "10.42.0.0/24")]))
        .await;
    cluster.wait_configured(&node.name).await;
    assert!(http_get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
    // Ready once the caches are filled (housekeeping marks it within a few seconds).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !http_get(addr, "/readyz").await.starts_with("HTTP/1.1 200") {
        let last = http_get(addr, "/readyz").await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready: {last}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The Job is deleted after the status write that made the resource Configured, so the
    // in-flight gauge reaches 0 a moment later: read until every value is there, then check.
    let needles = [
        "multinic_controller_reconciles_total{result=\"ok\"}",
        "multinic_controller_resources{state=\"Configured\"} 1",
        "multinic_controller_jobs_in_flight 0",
        "multinic_controller_reconcile_duration_seconds_count",
    ];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut metrics = http_get(addr, "/metrics").await;
    while !needles.iter().all(|n| metrics.contains(n)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        metrics = http_get(addr, "/metrics").await;
    }
    for needle in needles {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    cluster.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_that_exist_at_startup_all_converge() {
    // Every resource is reconciled at once when the caches fill; none may wait forever on a
    // cache that became ready while several reconciles waited for it.
    let cluster = Cluster::start(6).await;
    for i in 0..6 {
        let node = Cluster::node(i);
        cluster
            .create(
                &node.name,
                spec_for(
                    i,
                    &[(0, &format!("10.43.{i}.5"), &format!("10.43.{i}.0/24"))],
                ),
            )
            .await;
    }
    let _controller = RunningController::start(cluster.client.clone(), test_config());
    for i in 0..6 {
        let node = Cluster::node(i);
        cluster.wait_configured(&node.name).await;
        assert!(
            cluster
                .addresses(&node.name)
                .contains(&format!("10.43.{i}.5/24"))
        );
    }
    cluster.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_replica_is_ready_while_it_waits_for_the_lease() {
    let cluster = Cluster::start(1).await;
    let _leader = RunningController::start(cluster.client.clone(), replica_config("replica-a"));
    wait_for_leader(&cluster.client, "replica-a").await;

    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut standby = replica_config("replica-b");
    standby.http_addr = Some(addr);
    let _standby = RunningController::start(cluster.client.clone(), standby);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => http_get(addr, "/readyz").await,
            Err(_) => String::new(),
        };
        if response.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "standby never ready: {response}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        lease_holder(&cluster.client).await.as_deref(),
        Some("replica-a"),
        "the standby must be ready without taking the lease"
    );
    cluster.sim.shutdown().await;
}
