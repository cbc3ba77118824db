//! The life of a Pod on a simulated node, as a kubelet reports it: Running with a container
//! status once its process started, then terminated with exit code, reason and the termination
//! message read from the container's termination-log file (phase Succeeded or Failed).
//! Deletion honours the grace period: SIGTERM, SIGKILL once it has passed, the final status,
//! then a delete with grace period 0 (the Pod's uid as precondition).

use crate::kubelet::{PodEntry, Shared, lock};
use crate::podspec::{self, NodeContext};
use crate::runner::{RunOutcome, StopSignal};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Longest termination message kept, as in Kubernetes.
const MAX_MESSAGE: usize = 4096;
/// Grace period when neither the deletion nor the Pod names one.
const DEFAULT_GRACE_SECONDS: i64 = 30;

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn grace(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref()?.termination_grace_period_seconds)
        .unwrap_or(DEFAULT_GRACE_SECONDS);
    Duration::from_secs(secs.max(0) as u64)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// A Pod was added or changed.
pub(crate) fn on_pod(shared: &Arc<Shared>, pod: Pod) {
    let id = uid(&pod);
    let deleting = pod.metadata.deletion_timestamp.is_some();
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    if node.is_empty() {
        if deleting {
            crate::schedule::forget(shared, &id);
        } else {
            crate::schedule::schedule(shared, pod);
        }
        return;
    }
    crate::schedule::forget(shared, &id);
    let Some(ctx) = shared.node_context(&node) else {
        return;
    };
    let mut pods = lock(&shared.pods);
    match pods.get_mut(&id) {
        Some(PodEntry::Running { stop, .. }) => {
            if deleting && stop.borrow().is_none() {
                stop.send_replace(Some(grace(&pod)));
            }
        }
        Some(PodEntry::Done { delete_sent }) => {
            // Deleted while its final status was on its way: the deletion waits for us.
            if deleting && !*delete_sent && grace(&pod) > Duration::ZERO {
                *delete_sent = true;
                spawn_delete(shared, pod);
            }
        }
        None => {
            let terminal = matches!(phase(&pod), "Succeeded" | "Failed");
            let entry = if deleting {
                // It never ran here: nothing to stop, the deletion only waits for us.
                if !terminal {
                    spawn_delete(shared, pod);
                }
                PodEntry::Done { delete_sent: true }
            } else if terminal {
                PodEntry::Done { delete_sent: false }
            } else if phase(&pod) == "Pending" {
                let (stop, signal) = StopSignal::new();
                let task = tokio::spawn(run(shared.clone(), pod, ctx, signal));
                PodEntry::Running { stop, task }
            } else {
                // Running under a kubelet before this one: its process is gone.
                tokio::spawn(report_lost(shared.clone(), pod));
                PodEntry::Done { delete_sent: false }
            };
            pods.insert(id, entry);
        }
    }
}

/// A Pod is gone from the API: its process (if any) is killed, its directory removed.
pub(crate) fn on_deleted(shared: &Shared, pod: &Pod) {
    let id = uid(pod);
    crate::schedule::forget(shared, &id);
    if let Some(entry) = lock(&shared.pods).remove(&id) {
        if let PodEntry::Running { task, .. } = entry {
            task.abort();
        }
        let dir = shared.pod_dir(
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
        );
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir));
    }
}

/// After a relist: Pods this kubelet knew that the API no longer has are treated as deleted.
pub(crate) fn forget_missing(shared: &Shared, seen: &HashSet<String>) {
    let gone: Vec<String> = lock(&shared.pods)
        .keys()
        .filter(|u| !seen.contains(*u))
        .cloned()
        .collect();
    for id in gone {
        if let Some(PodEntry::Running { task, .. }) = lock(&shared.pods).remove(&id) {
            task.abort();
        }
    }
    lock(&shared.unscheduled).retain(|u, _| seen.contains(u));
}

fn pods_api(shared: &Shared, pod: &Pod) -> Api<Pod> {
    Api::namespaced(
        shared.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
    )
}

async fn set_status(shared: &Shared, pod: &Pod, status: Value) {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let patch = Patch::Merge(json!({"status": status}));
    if let Err(e) = pods_api(shared, pod)
        .patch_status(name, &PatchParams::default(), &patch)
        .await
    {
        tracing::debug!(pod = name, error = %e, "sim kubelet: writing pod status");
    }
}

/// The final delete of a terminated Pod: grace period 0, only this Pod (uid precondition).
async fn delete_now(shared: &Shared, pod: &Pod) {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    if let Err(e) = pods_api(shared, pod).delete(name, &params).await {
        tracing::debug!(pod = name, error = %e, "sim kubelet: deleting the pod");
    }
}

fn spawn_delete(shared: &Arc<Shared>, pod: Pod) {
    let shared = shared.clone();
    tokio::spawn(async move { delete_now(&shared, &pod).await });
}

/// The status a kubelet reports for the Pod's (first) container in `state`.
fn status(pod: &Value, node: &NodeContext, phase: &str, started: &str, state: Value) -> Value {
    let container = pod.pointer("/spec/containers/0");
    let field = |k: &str| {
        container
            .and_then(|c| c.get(k))
            .cloned()
            .unwrap_or(json!(""))
    };
    let ready = if phase == "Running" { "True" } else { "False" };
    let cond = |t: &str, s: &str| json!({"type": t, "status": s, "lastTransitionTime": crate::meta::now()});
    json!({
        "phase": phase, "hostIP": node.ip, "hostIPs": [{"ip": node.ip}], "podIP": node.ip,
        "podIPs": [{"ip": node.ip}], "startTime": started, "qosClass": "BestEffort",
        "conditions": [cond("PodScheduled", "True"), cond("Initialized", "True"),
            cond("ContainersReady", ready), cond("Ready", ready)],
        "containerStatuses": [{"name": field("name"), "image": field("image"),
            "imageID": field("image"), "containerID": format!("sim://{}", crate::meta::uid(pod)),
            "ready": ready == "True", "started": ready == "True", "restartCount": 0, "state": state}],
    })
}

/// Runs the Pod's container and reports each step.
async fn run(shared: Arc<Shared>, pod: Pod, node: NodeContext, stop: StopSignal) {
    let value = serde_json::to_value(&pod).unwrap_or_default();
    let started = crate::meta::now();
    let pod_dir = shared.pod_dir(crate::meta::namespace(&value), crate::meta::name(&value));
    let stopped = stop.clone();
    let (outcome, message) = match podspec::prepare(&value, &node, &pod_dir, stop) {
        Ok(run) => {
            let running = json!({"running": {"startedAt": started}});
            set_status(
                &shared,
                &pod,
                status(&value, &node, "Running", &started, running),
            )
            .await;
            let termination_log = run.termination_log.clone();
            let outcome = shared.runner.run(run).await;
            let mut message = std::fs::read_to_string(&termination_log).unwrap_or_default();
            let fallback = value
                .pointer("/spec/containers/0/terminationMessagePolicy")
                .and_then(Value::as_str)
                == Some("FallbackToLogsOnError");
            if message.trim().is_empty() && fallback && outcome.exit_code != 0 {
                message = outcome.log_tail.clone();
            }
            (outcome, message)
        }
        Err(e) => (
            RunOutcome {
                exit_code: 128,
                log_tail: e.clone(),
            },
            e,
        ),
    };
    let message = truncate(message);
    let (phase, reason) = if outcome.exit_code == 0 {
        ("Succeeded", "Completed")
    } else {
        ("Failed", "Error")
    };
    let container_id = format!("sim://{}", uid(&pod));
    let mut terminated = json!({"exitCode": outcome.exit_code, "reason": reason,
        "startedAt": started, "finishedAt": crate::meta::now(), "containerID": container_id});
    if !message.is_empty() {
        terminated["message"] = json!(message);
    }
    let final_status = status(
        &value,
        &node,
        phase,
        &started,
        json!({"terminated": terminated}),
    );
    set_status(&shared, &pod, final_status).await;
    let deleting = stopped.is_requested();
    if let Some(entry) = lock(&shared.pods).get_mut(&uid(&pod)) {
        *entry = PodEntry::Done {
            delete_sent: deleting,
        };
    }
    if deleting {
        delete_now(&shared, &pod).await;
    }
}

/// A Pod that was running before this kubelet started: its container is lost.
async fn report_lost(shared: Arc<Shared>, pod: Pod) {
    let value = serde_json::to_value(&pod).unwrap_or_default();
    let Some(node) = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .and_then(|n| shared.node_context(n))
    else {
        return;
    };
    let started = value
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(crate::meta::now);
    let state = json!({"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown",
        "message": "The container could not be located when the pod was terminated",
        "startedAt": started, "finishedAt": crate::meta::now()}});
    set_status(
        &shared,
        &pod,
        status(&value, &node, "Failed", &started, state),
    )
    .await;
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    message
}
