//! Two controller replicas with leader election on the real control plane, both as the chart's
//! ServiceAccount (its leader-election Role): only the leader acts, and when it is killed the
//! standby takes the Lease over within the lease duration and configures the next node; a
//! leader that cannot renew in time, or finds the Lease held by another, stops.
//!
//! | Promise | Test |
//! |---|---|
//! | only one replica acts (one Job create in the audit log); the standby leads within the lease duration after the leader is killed | `standby_takes_over_within_the_lease_duration` |
//! | a leader that cannot renew within the renew deadline (the API server frozen) stops, and so does one whose Lease another holder took | `a_leader_that_cannot_renew_or_loses_the_lease_stops` |

mod agent_support;
mod chart_support;
mod controller_support;
mod realcp_nodes;
mod realcp_support;

use agent_support::frozen::Frozen;
use controller_support::{
    NS, RunningController, lease_holder, replica_config, spec_for, wait_for_leader,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{Patch, PatchParams};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_or_loses_the_lease_stops() {
    let Some(cluster) = RealCluster::start(1).await else {
        return;
    };
    let election = replica_config("replica-a")
        .leader_election
        .expect("replicas elect a leader");
    // Stopping is decided by the renewal task: at most one renew interval past the deadline,
    // plus the controller's own shutdown.
    let stop_limit = election.renew_deadline + election.renew_interval + Duration::from_secs(3);

    // The API server stops answering (frozen, as a partitioned or overloaded one would be):
    // the leader's renewals time out and it stops on its own.
    let mut a = RunningController::start(cluster.admin.clone(), replica_config("replica-a"));
    wait_for_leader(&cluster.admin, "replica-a").await;
    let apiserver_pid = std::fs::read_to_string(cluster.cp.dir().join("pids/kube-apiserver.pid"))
        .expect("the control plane records the API server's pid")
        .trim()
        .to_owned();
    let frozen = Frozen::new(apiserver_pid, Duration::from_secs(60));
    let stopped = a.stopped_within(stop_limit).await;
    drop(frozen);
    let error = stopped
        .unwrap_or_else(|| panic!("the leader kept going past {stop_limit:?} without renewing"))
        .expect_err("a leader that lost the Lease exits with an error");
    assert!(error.to_string().contains("leadership lost"), "{error}");

    // Another holder appears in the Lease with a fresh renewal (a replica that judged it
    // expired): the leader sees it on its next round and stops.
    // Under another identity: the stopped replica's record still names replica-a, so only a
    // new name shows that this replica leads (it takes the Lease once that record expired).
    let mut a = RunningController::start(cluster.admin.clone(), replica_config("replica-c"));
    wait_for_leader(&cluster.admin, "replica-c").await;
    let leases: Api<Lease> = Api::namespaced(cluster.admin.clone(), NS);
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    leases
        .patch(
            &election.lease_name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "spec": {"holderIdentity": "intruder", "renewTime": now}
            })),
        )
        .await
        .expect("patching the Lease");
    let error = a
        .stopped_within(stop_limit)
        .await
        .unwrap_or_else(|| panic!("the leader kept going past {stop_limit:?} without the Lease"))
        .expect_err("a leader that lost the Lease exits with an error");
    assert!(error.to_string().contains("leadership lost"), "{error}");
    assert_eq!(
        lease_holder(&cluster.admin).await.as_deref(),
        Some("intruder")
    );
    cluster.stop().await;
}
