//! Two controller replicas with leader election on the real control plane, both as the chart's
//! ServiceAccount (its leader-election Role): only the leader acts, and when it is killed the
//! standby takes the Lease over within the lease duration and configures the next node.
//!
//! | Promise | Test |
//! |---|---|
//! | only one replica acts (one Job create in the audit log); the standby leads within the lease duration after the leader is killed | `standby_takes_over_within_the_lease_duration` |

mod chart_support;
mod controller_support;
mod realcp_nodes;
mod realcp_support;

use controller_support::{RunningController, lease_holder, replica_config, spec_for};
use realcp_nodes::RealCluster;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_within_the_lease_duration() {
    let Some(cluster) = RealCluster::start(2).await else {
        return;
    };
    let account = cluster.apply_rbac("default", |_| {});
    let client = cluster.client_as(&account).await;
    let a = RunningController::start(client.clone(), replica_config("replica-a"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while lease_holder(&cluster.admin).await.as_deref() != Some("replica-a") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica-a never led"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _b = RunningController::start(client, replica_config("replica-b"));
    let first = controller_support::Cluster::node(0);
    cluster
        .create(
            &first.name,
            spec_for(0, &[(0, "10.33.0.5", "10.33.0.0/24")]),
        )
        .await;
    cluster.wait_configured(&first.name).await;
    let creates = |cluster: &RealCluster| {
        cluster
            .requests_of(&account)
            .into_iter()
            .filter(|(verb, resource, code)| verb == "create" && resource == "jobs" && *code < 300)
            .count()
    };
    // Both replicas saw the resource; only the leader created a Job.
    assert_eq!(creates(&cluster), 1);
    assert_eq!(
        lease_holder(&cluster.admin).await.as_deref(),
        Some("replica-a")
    );

    let lease = replica_config("replica-b")
        .leader_election
        .expect("replicas elect a leader")
        .lease_duration;
    a.kill().await;
    let killed = tokio::time::Instant::now();
    // Within the lease duration (plus one renew round of the standby's own clock).
    let deadline = killed + lease + Duration::from_secs(2);
    while lease_holder(&cluster.admin).await.as_deref() != Some("replica-b") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica-b did not take over within the lease duration ({lease:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = controller_support::Cluster::node(1);
    cluster
        .create(
            &second.name,
            spec_for(1, &[(0, "10.34.0.5", "10.34.0.0/24")]),
        )
        .await;
    cluster.wait_configured(&second.name).await;
    assert_eq!(creates(&cluster), 2);
    cluster.stop().await;
}
