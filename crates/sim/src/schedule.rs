//! The scheduler's part for the kubelet's own nodes (test control planes run no
//! kube-scheduler): an unbound Pod whose `nodeSelector` and required node affinity
//! (`matchFields` on `metadata.name`, `matchExpressions` on labels) fit a schedulable node this
//! kubelet serves is bound to it through `pods/binding`, round-robin among the fitting nodes.
//! Taints, preferred affinity and resources are not considered.

use crate::kubelet::{NodeInfo, Shared, lock};
use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;

const HOSTNAME: &str = "kubernetes.io/hostname";

/// Whether one requirement holds for `value` (absent: `None`).
fn requirement_holds(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |v: &str| v.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !value.is_some_and(|v| values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => match (
            value.and_then(number),
            values.first().and_then(|v| number(v)),
        ) {
            (Some(v), Some(bound)) if r.operator == "Gt" => v > bound,
            (Some(v), Some(bound)) => v < bound,
            _ => false,
        },
        _ => false,
    }
}

fn term_holds(term: &NodeSelectorTerm, name: &str, node: &NodeInfo) -> bool {
    let fields = term.match_fields.as_deref().unwrap_or_default();
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    // A term without requirements matches nothing, as in Kubernetes.
    (!fields.is_empty() || !exprs.is_empty())
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_holds(r, Some(name)))
        && exprs
            .iter()
            .all(|r| requirement_holds(r, node.labels.get(&r.key).map(String::as_str)))
}

/// A node that fits `pod`, if this kubelet serves one.
fn pick(shared: &Shared, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref();
    let selector = spec
        .and_then(|s| s.node_selector.clone())
        .unwrap_or_default();
    let terms = spec
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| r.node_selector_terms.as_slice());
    let nodes = lock(&shared.nodes);
    let fits = |name: &str| {
        shared.serves(name)
            && nodes.get(name).is_some_and(|n| {
                !n.unschedulable
                    && selector.iter().all(|(k, v)| n.labels.get(k) == Some(v))
                    && terms.is_none_or(|ts| ts.iter().any(|t| term_holds(t, name, n)))
            })
    };
    // A node named by the hostname label or by `metadata.name In [one]` is looked up instead
    // of scanning every node.
    let named = selector.get(HOSTNAME).cloned().or_else(|| match terms {
        Some([term]) => term
            .match_fields
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|r| r.key == "metadata.name" && r.operator == "In")
            .and_then(|r| match r.values.as_deref() {
                Some([one]) => Some(one.clone()),
                _ => None,
            }),
        _ => None,
    });
    if let Some(name) = named {
        return fits(&name).then_some(name);
    }
    let mut candidates: Vec<&String> = nodes.keys().filter(|n| fits(n)).collect();
    if candidates.is_empty() {
        return None;
    }
    candidates.sort();
    let i = shared.next_node.fetch_add(1, Ordering::Relaxed) % candidates.len();
    Some(candidates[i].clone())
}

/// Binds `pod` when a node fits, else keeps it for [`retry`].
pub(crate) fn schedule(shared: &Arc<Shared>, pod: Pod) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let Some(node) = pick(shared, &pod) else {
        lock(&shared.unscheduled).insert(uid, pod);
        return;
    };
    lock(&shared.unscheduled).remove(&uid);
    if !lock(&shared.binding).insert(uid.clone()) {
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        if let Err(e) = bind(&shared, &ns, &name, &uid, &node).await {
            tracing::debug!(pod = %name, node = %node, error = %e, "sim kubelet: binding");
        }
        lock(&shared.binding).remove(&uid);
    });
}

/// Tries every Pod that waits for a node again (the Nodes changed).
pub(crate) fn retry(shared: &Arc<Shared>) {
    let waiting: Vec<Pod> = {
        let mut unscheduled = lock(&shared.unscheduled);
        if unscheduled.is_empty() {
            return;
        }
        unscheduled.drain().map(|(_, p)| p).collect()
    };
    for pod in waiting {
        schedule(shared, pod);
    }
}

/// Forgets an unbound Pod (deleted, or bound by someone else).
pub(crate) fn forget(shared: &Shared, uid: &str) {
    lock(&shared.unscheduled).remove(uid);
}

async fn bind(
    shared: &Shared,
    ns: &str,
    name: &str,
    uid: &str,
    node: &str,
) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), ns);
    if shared.binding_served.load(Ordering::Relaxed) {
        let binding = json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "uid": uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        match pods
            .create_subresource::<Value, Value>("binding", name, &PostParams::default(), &binding)
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            other => return other.map(|_| ()),
        }
    }
    // Either the Pod is gone (then this fails too) or the server serves no `pods/binding`: the
    // embedded simulator lets spec.nodeName be set once instead.
    let patch = json!({"spec": {"nodeName": node}});
    pods.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    shared.binding_served.store(false, Ordering::Relaxed);
    Ok(())
}
