//! The controller's checks against the Node, end to end: instanceId mismatch, a Node that is
//! missing and then appears, an OS it does not know, and a RHEL-family node.

mod controller_support;

use controller_support::{
    Cluster, RunningController, event_reasons, reason_is, spec_for, test_config,
};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use multinic_api::{NodeConfigState, StateReason};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_id_mismatch_fails_without_a_job_and_says_why() {
    let cluster = Cluster::start(1).await;
    let _controller = RunningController::start(cluster.client.clone(), test_config());
    let node = Cluster::node(0);
    let mut spec = spec_for(0, &[(0, "10.20.0.5", "10.20.0.0/24")]);
    spec.instance_id = Some("00000000-0000-4000-8000-000000000000".into());
    cluster.create(&node.name, spec).await;
    let obj = cluster
        .wait_for(&node.name, Duration::from_secs(30), |o| {
            reason_is(o, NodeConfigState::Failed, StateReason::InstanceIdMismatch)
        })
        .await;
    let message = &obj.status.unwrap().conditions[0].message;
    assert!(message.contains(&node.system_uuid), "{message}");
    assert_eq!(
        cluster.requests("create", "jobs"),
        0,
        "no Job for a mismatched node"
    );
    let events = event_reasons(&cluster, &node.name).await;
    assert!(
        events.iter().any(|(r, _)| r == "InstanceIdMismatch"),
        "{events:?}"
    );
    assert!(!cluster.addresses(&node.name).contains("10.20.0.5"));
    // Deleting it needs no cleanup Job either way; it goes.
    cluster.delete(&node.name).await;
    cluster.wait_gone(&node.name).await;
    cluster.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_missing_then_appearing_is_configured() {
    let cluster = Cluster::start(1).await;
    let node = Cluster::node(0);
    let original = cluster.nodes().get(&node.name).await.unwrap();
    cluster
        .nodes()
        .delete(&node.name, &DeleteParams::default())
        .await
        .unwrap();
    // No periodic recheck within the test: only the Node's watch event can wake the resource.
    let mut config = test_config();
    config.node_missing_recheck = Duration::from_secs(600);
    let _controller = RunningController::start(cluster.client.clone(), config);
    cluster
        .create(&node.name, spec_for(0, &[(0, "10.21.0.5", "10.21.0.0/24")]))
        .await;
    cluster
        .wait_for(&node.name, Duration::from_secs(30), |o| {
            reason_is(o, NodeConfigState::Pending, StateReason::NodeNotFound)
        })
        .await;
    assert_eq!(cluster.requests("create", "jobs"), 0);

    // The Node (re)appears: its watch event wakes the resource.
    let mut fresh = original.clone();
    fresh.metadata = kube::api::ObjectMeta {
        name: original.metadata.name.clone(),
        labels: original.metadata.labels.clone(),
        ..Default::default()
    };
    let status = fresh.status.take();
    cluster
        .nodes()
        .create(&PostParams::default(), &fresh)
        .await
        .unwrap();
    cluster
        .nodes()
        .patch_status(
            &node.name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": status})),
        )
        .await
        .unwrap();
    cluster.wait_configured(&node.name).await;
    assert!(cluster.addresses(&node.name).contains("10.21.0.5/24"));
    cluster.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_os_is_refused_until_the_node_reports_a_known_one() {
    let cluster = Cluster::start(1).await;
    let node = Cluster::node(0);
    let set_os = |image: &'static str| {
        let nodes = cluster.nodes();
        let name = node.name.clone();
        async move {
            nodes
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"status": {"nodeInfo": {"osImage": image}}})),
                )
                .await
                .unwrap();
        }
    };
    set_os("Debian GNU/Linux 12 (bookworm)").await;
    let _controller = RunningController::start(cluster.client.clone(), test_config());
    cluster
        .create(&node.name, spec_for(0, &[(0, "10.22.0.5", "10.22.0.0/24")]))
        .await;
    let obj = cluster
        .wait_for(&node.name, Duration::from_secs(30), |o| {
            reason_is(o, NodeConfigState::Failed, StateReason::UnsupportedOS)
        })
        .await;
    assert!(obj.status.unwrap().conditions[0].message.contains("Debian"));
    assert_eq!(cluster.requests("create", "jobs"), 0, "never guessed");
    let events = event_reasons(&cluster, &node.name).await;
    assert!(
        events.iter().any(|(r, _)| r == "UnsupportedOS"),
        "{events:?}"
    );

    set_os("Ubuntu 22.04.4 LTS").await;
    cluster.wait_configured(&node.name).await;
    assert!(cluster.addresses(&node.name).contains("10.22.0.5/24"));
    cluster.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rhel_node_gets_keyfiles_and_cleanup_removes_them() {
    let cluster = Cluster::start(2).await;
    let _controller = RunningController::start(cluster.client.clone(), test_config());
    let node = Cluster::node(1);
    assert!(node.os_image.starts_with("Rocky Linux 9"));
    cluster
        .create(&node.name, spec_for(1, &[(2, "10.23.0.5", "10.23.0.0/24")]))
        .await;
    cluster.wait_configured(&node.name).await;
    assert!(cluster.addresses(&node.name).contains("10.23.0.5/24"));
    let keyfiles = cluster.files(&node.name, "etc/NetworkManager/system-connections");
    assert_eq!(keyfiles, ["multinic2.nmconnection"]);
    assert!(
        cluster.files(&node.name, "etc/netplan").is_empty(),
        "no netplan on RHEL"
    );
    cluster.delete(&node.name).await;
    cluster.wait_gone(&node.name).await;
    assert!(
        cluster
            .files(&node.name, "etc/NetworkManager/system-connections")
            .is_empty()
    );
    assert!(!cluster.addresses(&node.name).contains("10.23.0.5/"));
    cluster.sim.shutdown().await;
}
