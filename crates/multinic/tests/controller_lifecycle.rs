//! The controller end to end against the simulator, with the real agent in network
//! namespaces: create, change an address, remove a NIC, delete; a cleanup that fails keeps
//! the finalizer and is retried until it succeeds.

mod controller_support;

use controller_support::{Cluster, RunningController, event_reasons, spec_for, test_config};
use multinic_api::{InterfaceState, NodeConfigState};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_change_remove_and_delete_on_an_ubuntu_node() {
    let cluster = Cluster::start(1).await;
    let _controller = RunningController::start(cluster.client.clone(), test_config());
    let node = Cluster::node(0);

    // Create: Configured, with the addresses really on the NICs.
    cluster
        .create(
            &node.name,
            spec_for(
                0,
                &[
                    (0, "10.10.0.5", "10.10.0.0/24"),
                    (1, "10.11.0.5", "10.11.0.0/24"),
                ],
            ),
        )
        .await;
    let obj = cluster.wait_configured(&node.name).await;
    let status = obj.status.unwrap();
    assert_eq!(status.interfaces_ready.as_deref(), Some("2/2"));
    assert!(
        status
            .interface_statuses
            .iter()
            .all(|i| i.status == InterfaceState::Configured)
    );
    assert_eq!(
        obj.metadata.finalizers,
        Some(vec![multinic_api::CLEANUP_FINALIZER.to_string()])
    );
    let addrs = cluster.addresses(&node.name);
    assert!(
        addrs.contains("multinic0") && addrs.contains("10.10.0.5/24"),
        "{addrs}"
    );
    assert!(
        addrs.contains("multinic1") && addrs.contains("10.11.0.5/24"),
        "{addrs}"
    );
    assert_eq!(cluster.files(&node.name, "etc/netplan").len(), 2);
    // The finished Job was deleted right after its result was recorded.
    assert!(cluster.job_names().await.is_empty());

    // Change one address: the new one is there, the old one is gone.
    cluster
        .set_spec(
            &node.name,
            &spec_for(
                0,
                &[
                    (0, "10.10.0.6", "10.10.0.0/24"),
                    (1, "10.11.0.5", "10.11.0.0/24"),
                ],
            ),
        )
        .await;
    let obj = cluster.wait_configured(&node.name).await;
    assert_eq!(obj.status.unwrap().observed_generation, Some(2));
    let addrs = cluster.addresses(&node.name);
    assert!(
        addrs.contains("10.10.0.6/24") && !addrs.contains("10.10.0.5/"),
        "{addrs}"
    );

    // Remove a NIC from the spec: its address and file go.
    cluster
        .set_spec(
            &node.name,
            &spec_for(0, &[(0, "10.10.0.6", "10.10.0.0/24")]),
        )
        .await;
    let obj = cluster.wait_configured(&node.name).await;
    assert_eq!(obj.status.unwrap().interfaces_ready.as_deref(), Some("1/1"));
    let addrs = cluster.addresses(&node.name);
    assert!(!addrs.contains("10.11.0.5/"), "{addrs}");
    assert_eq!(cluster.files(&node.name, "etc/netplan").len(), 1);

    // Delete: the cleanup Job removes files and addresses, then the finalizer goes.
    cluster.delete(&node.name).await;
    cluster.wait_gone(&node.name).await;
    let addrs = cluster.addresses(&node.name);
    assert!(!addrs.contains("10.10.0.6/"), "{addrs}");
    assert!(cluster.files(&node.name, "etc/netplan").is_empty());
    assert!(cluster.job_names().await.is_empty());
    let _ = NodeConfigState::Configured;
    cluster.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_cleanup_keeps_the_finalizer_and_is_retried_until_it_succeeds() {
    let cluster = Cluster::start(1).await;
    let mut config = test_config();
    // A held host lock fails the cleanup agent quickly instead of after the default minute.
    config
        .job
        .agent_env
        .push(("MULTINIC_LOCK_TIMEOUT".into(), "300ms".into()));
    let _controller = RunningController::start(cluster.client.clone(), config);
    let node = Cluster::node(0);
    cluster
        .create(&node.name, spec_for(0, &[(0, "10.12.0.5", "10.12.0.0/24")]))
        .await;
    cluster.wait_configured(&node.name).await;

    // Another agent holds the node's host lock: every cleanup Job fails.
    let lock = cluster
        .sim
        .node_root(&node.name)
        .join("run/multinic/agent.lock");
    let held = std::fs::File::open(&lock).expect("the agent made its lock file");
    held.lock().unwrap();
    cluster.delete(&node.name).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let failures = loop {
        let failures: Vec<String> = event_reasons(&cluster, &node.name)
            .await
            .into_iter()
            .filter(|(reason, _)| reason == "CleanupFailed")
            .map(|(_, note)| note)
            .collect();
        if failures.len() >= 2 {
            break failures;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no second CleanupFailed Event: {:?}",
            event_reasons(&cluster, &node.name).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        failures[0].contains("another multinic agent")
            && failures[0].contains("the finalizer stays and cleanup is retried"),
        "{failures:?}"
    );
    // Still there, still held by the finalizer, and the node still configured.
    let obj = cluster.configs().get(&node.name).await.unwrap();
    assert!(obj.metadata.deletion_timestamp.is_some());
    assert_eq!(
        obj.metadata.finalizers,
        Some(vec![multinic_api::CLEANUP_FINALIZER.to_string()])
    );
    let addrs = cluster.addresses(&node.name);
    assert!(addrs.contains("10.12.0.5/24"), "{addrs}");
    assert_eq!(cluster.files(&node.name, "etc/netplan").len(), 1);

    // The lock is released: the next attempt cleans the node and the resource goes.
    drop(held);
    cluster.wait_gone(&node.name).await;
    let addrs = cluster.addresses(&node.name);
    assert!(!addrs.contains("10.12.0.5/"), "{addrs}");
    assert!(cluster.files(&node.name, "etc/netplan").is_empty());
    cluster.sim.shutdown().await;
}
