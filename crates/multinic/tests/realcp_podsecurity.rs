//! PodSecurity admission on the real control plane. It checks Pods only: in a namespace that
//! enforces `baseline` the agent Job is admitted and the real Job controller fails to create
//! its Pod (`FailedCreate` Events on the Job) until the Job's deadline. The controller, running
//! as the chart's ServiceAccount, reads those Events and says so in status instead.
//!
//! | Promise | Test |
//! |---|---|
//! | in a namespace enforcing `baseline` the agent Job's Pod is refused: the resource goes Failed/`JobRejected` with the API's PodSecurity message and a Warning Event, the Job is deleted and not created again before the retry delay, and the controller is refused nothing (it may list Events); labelled `privileged` as the chart labels its namespace, the same resource (retry annotation) is admitted and Configured; deleted under `baseline`, the cleanup Job's refused Pod is a Warning `JobRejected` Event and the finalizer holds until the namespace admits the cleanup | `a_pod_refused_by_pod_security_shows_in_status` |

mod chart_support;
mod controller_support;
mod realcp_nodes;
mod realcp_support;

use controller_support::{NS, RunningController, message, reason_is, spec_for, test_config};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams, Patch, PatchParams};
use multinic_api::{NodeConfigState, StateReason};
use realcp_nodes::RealCluster;
use std::time::Duration;

/// `(type, reason, action, note)` of the Events about the resource `name`.
async fn events_of(cluster: &RealCluster, name: &str) -> Vec<[String; 4]> {
    controller_support::events_about(&cluster.admin, name)
        .await
        .into_iter()
        .map(|e| {
            [
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.action.unwrap_or_default(),
                e.note.unwrap_or_default(),
            ]
        })
        .collect()
}

/// Whether a Warning `JobRejected` Event of `action` quotes the PodSecurity refusal.
fn refusal_event(events: &[[String; 4]], action: &str) -> bool {
    events.iter().any(|[t, r, a, note]| {
        t == "Warning" && r == "JobRejected" && a == action && note.contains("PodSecurity")
    })
}

fn enforce(cluster: &RealCluster, level: &str) {
    cluster.cp.kubectl_ok(&[
        "label",
        "--overwrite",
        "namespace",
        NS,
        &format!("pod-security.kubernetes.io/enforce={level}"),
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_refused_by_pod_security_shows_in_status() {
    let Some(cluster) = RealCluster::start(1).await else {
        return;
    };
    enforce(&cluster, "baseline");
    let account = cluster.apply_rbac("default", |_| {});
    let client = cluster.client_as(&account).await;
    let mut config = test_config();
    // No automatic retry within the test: what happens after the refusal is the point.
    config.retry.max_delay = Duration::from_secs(600);
    let _controller = RunningController::start(client, config);
    let node = controller_support::Cluster::node(0);
    cluster
        .create(&node.name, spec_for(0, &[(0, "10.70.0.5", "10.70.0.0/24")]))
        .await;

    let obj = cluster
        .wait_for(&node.name, |o| {
            reason_is(o, NodeConfigState::Failed, StateReason::JobRejected)
        })
        .await;
    let said = message(&obj);
    assert!(
        said.contains("is forbidden: violates PodSecurity \"baseline:latest\""),
        "{said}"
    );
    let events = events_of(&cluster, &node.name).await;
    assert!(refusal_event(&events, "Failed"), "{events:?}");
    // The Job is gone and, within the retry delay, not created again: no silent loop.
    let jobs: Api<Job> = Api::namespaced(cluster.admin.clone(), NS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !jobs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refused Job was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let requests = cluster.requests_of(&account);
    let creates = requests
        .iter()
        .filter(|(v, r, _)| v == "create" && r == "jobs")
        .count();
    assert_eq!(creates, 1, "{requests:?}");
    assert!(
        requests
            .iter()
            .any(|(v, r, code)| v == "list" && r == "events" && *code == 200),
        "the Job's Events were read: {requests:?}"
    );
    let refused: Vec<_> = requests.iter().filter(|(_, _, c)| *c == 403).collect();
    assert!(refused.is_empty(), "refused requests: {refused:?}");
    let still = cluster.configs().get(&node.name).await.unwrap();
    assert!(reason_is(
        &still,
        NodeConfigState::Failed,
        StateReason::JobRejected
    ));

    // The namespace labelled as the chart labels its own: the Job's Pod is admitted.
    enforce(&cluster, "privileged");
    let retry =
        serde_json::json!({"metadata": {"annotations": {multinic_api::RETRY_ANNOTATION: "now"}}});
    cluster
        .configs()
        .patch(&node.name, &PatchParams::default(), &Patch::Merge(retry))
        .await
        .unwrap();
    cluster.wait_configured(&node.name).await;
    assert!(cluster.addresses(&node.name).contains("10.70.0.5/24"));

    // Deleted under `baseline`: the cleanup Job's Pod is refused, said in an Event, and the
    // finalizer holds until the namespace admits it again.
    enforce(&cluster, "baseline");
    cluster
        .configs()
        .delete(&node.name, &Default::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let events = events_of(&cluster, &node.name).await;
        if refusal_event(&events, "Cleanup") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refusal Event for the cleanup Job: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        cluster
            .configs()
            .get_opt(&node.name)
            .await
            .unwrap()
            .is_some()
    );
    assert!(cluster.addresses(&node.name).contains("10.70.0.5/24"));
    enforce(&cluster, "privileged");
    cluster.wait_until_gone(&node.name).await;
    assert!(!cluster.addresses(&node.name).contains("10.70.0.5/"));
    let refused_requests: Vec<_> = cluster
        .requests_of(&account)
        .into_iter()
        .filter(|(_, _, c)| *c == 403)
        .collect();
    assert!(refused_requests.is_empty(), "{refused_requests:?}");
    cluster.stop().await;
}
