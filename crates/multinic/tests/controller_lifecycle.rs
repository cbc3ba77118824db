//! The controller end to end against the simulator, with the real agent in network
//! namespaces: create, change an address, remove a NIC, delete.

mod controller_support;

use controller_support::{Cluster, RunningController, spec_for, test_config};
use multinic_api::{InterfaceState, NodeConfigState};

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
