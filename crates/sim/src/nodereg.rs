//! Node registration and heartbeats, as a kubelet does them: the node's root directory, the
//! Node object (created with its status, or brought up to date when it exists), its Lease in
//! `kube-node-lease` (owned by the Node) renewed on an interval, and deletion on request.

use crate::error::SimError;
use crate::kubelet::{Shared, lock};
use crate::node::NodeSpec;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Namespace of the nodes' heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// `leaseDurationSeconds` of the Leases, as a kubelet sets it.
pub const LEASE_SECONDS: i32 = 40;
/// Registrations (and deletions) sent at once.
const PARALLEL: usize = 32;

/// Creates the node's root: its OS's network config directories and a matching
/// `/etc/os-release`.
pub(crate) fn prepare_root(spec: &NodeSpec, root: &Path) -> Result<(), SimError> {
    let write_err = |p: &Path| {
        let path = p.display().to_string();
        move |source| SimError::Write { path, source }
    };
    for dir in spec.config_dirs() {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).map_err(write_err(&d))?;
    }
    let os = root.join("etc/os-release");
    std::fs::write(&os, spec.os_release()).map_err(write_err(&os))
}

fn failed(node: &str, what: &str, e: impl std::fmt::Display) -> SimError {
    SimError::Node {
        node: node.to_string(),
        message: format!("{what}: {e}"),
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Registers every node (Node and Lease), a few at a time.
pub(crate) async fn register_all(
    client: &kube::Client,
    nodes: &[NodeSpec],
    netns: &HashMap<String, String>,
) -> Result<(), SimError> {
    let mut results = futures::stream::iter(nodes)
        .map(|spec| register(client, spec, netns.get(&spec.name).map(String::as_str)))
        .buffer_unordered(PARALLEL);
    while let Some(r) = results.next().await {
        r?;
    }
    Ok(())
}

/// Creates the Node with its status, or updates labels, annotations and status of an existing
/// one; then its Lease.
async fn register(
    client: &kube::Client,
    spec: &NodeSpec,
    netns: Option<&str>,
) -> Result<(), SimError> {
    let api: Api<Node> = Api::all(client.clone());
    let object = spec.object(netns);
    let node: Node =
        serde_json::from_value(object.clone()).map_err(|e| failed(&spec.name, "node object", e))?;
    let uid = match api.create(&PostParams::default(), &node).await {
        Ok(n) => n.metadata.uid,
        Err(e) if is_status(&e, 409) => {
            let meta = json!({"metadata": {"labels": object["metadata"]["labels"],
                "annotations": object["metadata"].get("annotations")}});
            api.patch(&spec.name, &PatchParams::default(), &Patch::Merge(meta))
                .await
                .map_err(|e| failed(&spec.name, "updating the existing Node", e))?;
            api.patch_status(
                &spec.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": object["status"]})),
            )
            .await
            .map_err(|e| failed(&spec.name, "updating the existing Node's status", e))?
            .metadata
            .uid
        }
        Err(e) => return Err(failed(&spec.name, "registering the Node", e)),
    };
    match create_lease(client, &spec.name, &uid.unwrap_or_default()).await {
        Ok(()) => Ok(()),
        Err(e) if is_status(&e, 409) => renew(client, &spec.name)
            .await
            .map_err(|e| failed(&spec.name, "renewing the Lease", e)),
        Err(e) => Err(failed(&spec.name, "creating the Lease", e)),
    }
}

async fn create_lease(client: &kube::Client, node: &str, uid: &str) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": node,
        "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid}]},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": crate::meta::now_micro()}}))
    .map_err(kube::Error::SerdeError)?;
    leases
        .create(&PostParams::default(), &lease)
        .await
        .map(|_| ())
}

async fn renew(client: &kube::Client, node: &str) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let patch = json!({"spec": {"holderIdentity": node, "leaseDurationSeconds": LEASE_SECONDS,
        "renewTime": crate::meta::now_micro()}});
    leases
        .patch(node, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
}

/// Renews every own node's Lease once per interval, spread evenly over it; a Lease that is
/// gone (its Node was deleted and collected) is created again once the Node exists again.
pub(crate) async fn renew_leases(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut names: Vec<String> = shared.own.keys().cloned().collect();
    names.sort();
    if names.is_empty() {
        return;
    }
    let step = shared.lease_renew_interval / names.len() as u32;
    let mut tick = tokio::time::interval(step.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for node in names.iter().cycle() {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        match renew(&shared.client, node).await {
            Err(e) if is_status(&e, 404) => {
                let uid = lock(&shared.nodes).get(node).map(|n| n.uid.clone());
                if let Some(uid) = uid {
                    let _ = create_lease(&shared.client, node, &uid).await;
                }
            }
            Err(e) => tracing::debug!(node, error = %e, "sim kubelet: renewing the node Lease"),
            Ok(()) => {}
        }
    }
}

/// Deletes the named Nodes (their Leases go with them through their owner references).
pub(crate) async fn deregister(client: &kube::Client, names: &[String]) {
    let api: Api<Node> = Api::all(client.clone());
    futures::stream::iter(names)
        .map(|n| {
            let api = api.clone();
            async move { api.delete(n, &DeleteParams::default()).await }
        })
        .buffer_unordered(PARALLEL)
        .for_each(|_| async {})
        .await;
}
