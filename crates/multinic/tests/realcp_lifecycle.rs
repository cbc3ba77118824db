//! The controller's lifecycle against the real control plane (kube-apiserver with Node,RBAC
//! authorization, the real Job and garbage collectors), running as the chart's ServiceAccount
//! with a TokenRequest token, not as admin; the nodes are the simulator's kubelet running the
//! real agent in network namespaces.
//!
//! | Promise | Test |
//! |---|---|
//! | create -> Configured with the addresses on the node's NICs; IP change; NIC removed; delete -> cleanup; instanceId mismatch; node missing then appearing; no 403 for the controller in the audit log | `lifecycle_as_the_charts_service_account` |
//! | least privilege: with any one rule of the chart's Roles and ClusterRole removed, a create/delete cycle with leader election is refused (a 403 for the controller): with OwnerReferencesPermissionEnforcement enabled as on hardened clusters (scripts/control-plane.sh), the Jobs are admitted without `multinicnodeconfigs/finalizers` (their ownerReference leaves blockOwnerDeletion unset), so the chart does not grant it | `every_rule_is_needed` |

mod chart_support;
mod controller_support;
mod realcp_nodes;
mod realcp_support;

use controller_support::{RunningController, replica_config, spec_for, test_config};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use multinic_api::{MultiNicNodeConfig, NodeConfigState, StateReason};
use realcp_nodes::RealCluster;
use serde_json::Value;
use std::time::Duration;

fn reason_is(obj: &MultiNicNodeConfig, state: NodeConfigState, reason: StateReason) -> bool {
    let Some(status) = obj.status.as_ref() else {
        return false;
    };
    status.state == Some(state)
        && status.observed_generation == obj.metadata.generation
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "False" && c.reason == reason.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_as_the_charts_service_account() {
    let Some(cluster) = RealCluster::start(2).await else {
        return;
    };
    let account = cluster.apply_rbac("default", |_| {});
    let client = cluster.client_as(&account).await;
    let _controller = RunningController::start(client, test_config());
    let node = controller_support::Cluster::node(0);

    // Create: Configured, the addresses on the node's NICs, the persistent files written.
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
    assert_eq!(obj.status.unwrap().interfaces_ready.as_deref(), Some("2/2"));
    let addrs = cluster.addresses(&node.name);
    assert!(
        addrs.contains("10.10.0.5/24") && addrs.contains("10.11.0.5/24"),
        "{addrs}"
    );
    assert_eq!(cluster.files(&node.name, "etc/netplan").len(), 2);

    // Change one address.
    let changed = spec_for(
        0,
        &[
            (0, "10.10.0.6", "10.10.0.0/24"),
            (1, "10.11.0.5", "10.11.0.0/24"),
        ],
    );
    cluster
        .configs()
        .patch(
            &node.name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": changed})),
        )
        .await
        .unwrap();
    cluster.wait_configured(&node.name).await;
    let addrs = cluster.addresses(&node.name);
    assert!(
        addrs.contains("10.10.0.6/24") && !addrs.contains("10.10.0.5/"),
        "{addrs}"
    );

    // Remove a NIC.
    let one = spec_for(0, &[(0, "10.10.0.6", "10.10.0.0/24")]);
    cluster
        .configs()
        .patch(
            &node.name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": one})),
        )
        .await
        .unwrap();
    let obj = cluster.wait_configured(&node.name).await;
    assert_eq!(obj.status.unwrap().interfaces_ready.as_deref(), Some("1/1"));
    assert!(!cluster.addresses(&node.name).contains("10.11.0.5/"));
    assert_eq!(cluster.files(&node.name, "etc/netplan").len(), 1);

    // Delete: the cleanup Job removes files and addresses, then the finalizer goes.
    cluster
        .configs()
        .delete(&node.name, &DeleteParams::default())
        .await
        .unwrap();
    cluster.wait_until_gone(&node.name).await;
    assert!(!cluster.addresses(&node.name).contains("10.10.0.6/"));
    assert!(cluster.files(&node.name, "etc/netplan").is_empty());

    // instanceId mismatch: Failed, no Job.
    let other = controller_support::Cluster::node(1);
    let mut wrong = spec_for(1, &[(0, "10.20.0.5", "10.20.0.0/24")]);
    wrong.instance_id = Some("00000000-0000-4000-8000-000000000000".into());
    cluster.create(&other.name, wrong).await;
    cluster
        .wait_for(&other.name, |o| {
            reason_is(o, NodeConfigState::Failed, StateReason::InstanceIdMismatch)
        })
        .await;
    assert!(!cluster.addresses(&other.name).contains("10.20.0.5"));
    cluster
        .configs()
        .delete(&other.name, &DeleteParams::default())
        .await
        .unwrap();
    cluster.wait_until_gone(&other.name).await;

    // Node missing, then appearing: Pending/NodeNotFound, then Configured.
    let nodes: Api<Node> = Api::all(cluster.admin.clone());
    let original = nodes.get(&other.name).await.unwrap();
    nodes
        .delete(&other.name, &DeleteParams::default())
        .await
        .unwrap();
    cluster
        .create(
            &other.name,
            spec_for(1, &[(0, "10.21.0.5", "10.21.0.0/24")]),
        )
        .await;
    cluster
        .wait_for(&other.name, |o| {
            reason_is(o, NodeConfigState::Pending, StateReason::NodeNotFound)
        })
        .await;
    let fresh = Node {
        metadata: kube::api::ObjectMeta {
            name: original.metadata.name.clone(),
            labels: original.metadata.labels.clone(),
            annotations: original.metadata.annotations.clone(),
            ..Default::default()
        },
        spec: original.spec.clone(),
        status: original.status.clone(),
    };
    nodes.create(&PostParams::default(), &fresh).await.unwrap();
    cluster.wait_configured(&other.name).await;
    assert!(cluster.addresses(&other.name).contains("10.21.0.5/24"));

    // Least privilege held: the controller did its work and was never refused.
    let requests = cluster.requests_of(&account);
    assert!(
        requests
            .iter()
            .any(|(v, r, _)| v == "create" && r == "jobs"),
        "the audit log shows the controller's requests: {requests:?}"
    );
    let refused: Vec<_> = requests
        .iter()
        .filter(|(_, _, code)| *code == 403)
        .collect();
    assert!(refused.is_empty(), "refused requests: {refused:?}");
    cluster.stop().await;
}

/// Whether `check` turns true within `secs` (polled every 200 ms).
async fn within<F, Fut>(secs: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_is_needed() {
    let Some(cluster) = RealCluster::start(1).await else {
        return;
    };
    // Every (object, rule index) of the chart's Roles and ClusterRole.
    let rules: Vec<(String, usize)> = chart_support::render("default")
        .iter()
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
        .flat_map(|o| {
            let name = o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let rules = o["rules"].as_array().cloned().unwrap_or_default();
            (0..rules.len()).map(move |i| (name.clone(), i))
        })
        .collect();
    assert!(rules.len() >= 5, "{rules:?}");
    let node = controller_support::Cluster::node(0);
    let mut seen = 0;
    for (object, index) in &rules {
        let account = cluster.apply_rbac("default", |o: &mut Value| {
            if o["metadata"]["name"] == object.as_str()
                && matches!(o["kind"].as_str(), Some("Role" | "ClusterRole"))
                && let Some(rules) = o["rules"].as_array_mut()
            {
                rules.remove(*index);
            }
        });
        let before = cluster.requests_of(&account).len();
        let refused = || {
            cluster.requests_of(&account)[before..]
                .iter()
                .any(|(_, _, code)| *code == 403)
        };
        // The authorizer's cache of Roles catches up within a moment.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let client = cluster.client_as(&account).await;
        let controller = RunningController::start(client, replica_config("least-privilege"));
        cluster
            .create(&node.name, spec_for(0, &[(0, "10.40.0.5", "10.40.0.0/24")]))
            .await;
        let mut failed = !within(30, || async {
            refused() || {
                let o = cluster.configs().get_opt(&node.name).await.ok().flatten();
                o.and_then(|o| o.status.and_then(|s| s.state)) == Some(NodeConfigState::Configured)
            }
        })
        .await;
        if !failed && !refused() {
            cluster
                .configs()
                .delete(&node.name, &DeleteParams::default())
                .await
                .unwrap();
            failed = !within(30, || async {
                refused()
                    || cluster
                        .configs()
                        .get_opt(&node.name)
                        .await
                        .ok()
                        .flatten()
                        .is_none()
            })
            .await;
        }
        assert!(
            failed || refused(),
            "without rule {index} of {object} the whole cycle still worked: the rule is not needed"
        );
        seen += 1;
        // Back to a clean slate: the full rules, no resource (its finalizer dropped by admin).
        controller.kill().await;
        cluster.apply_rbac("default", |_| {});
        if cluster
            .configs()
            .get_opt(&node.name)
            .await
            .unwrap()
            .is_some()
        {
            let _ = cluster
                .configs()
                .patch(
                    &node.name,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
                )
                .await;
            let _ = cluster
                .configs()
                .delete(&node.name, &DeleteParams::default())
                .await;
            cluster.wait_until_gone(&node.name).await;
        }
    }
    assert_eq!(seen, rules.len());
    cluster.stop().await;
}
