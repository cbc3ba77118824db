//! Deletion: while the `multinic.io/cleanup` finalizer holds a resource, run a cleanup Job on
//! its node and let the finalizer go only when it succeeded (or at once when the Node is gone).
//! Returning an error keeps the finalizer (that is how kube-runtime's `finalizer` works), so
//! "still cleaning up" is [`Error::CleanupPending`].

use crate::decide::{self, CleanupAction};
use crate::error::Error;
use crate::job::{self, JobRequest};
use crate::launch::Launch;
use crate::reconcile::{Context, forget_node};
use crate::report;
use kube::ResourceExt;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use multinic_api::MultiNicNodeConfig;
use multinic_api::report::AgentAction;
use std::sync::Arc;

/// Reconciles a resource that is being deleted.
pub async fn cleanup(obj: Arc<MultiNicNodeConfig>, ctx: &Context) -> Result<Requeue, Error> {
    let uid = obj.uid().unwrap_or_default();
    let ns = obj.namespace().unwrap_or_default();
    let node_name = obj.spec.node_name.clone();
    let node = ctx.node(&node_name);
    let (mut jobs, _) = ctx.jobs_of(&obj);
    let conflict = ctx.conflict(&obj);
    let leaving = decide::Leaving {
        spec: &obj.spec,
        status: obj.status.as_ref(),
        conflict: conflict.as_deref(),
        now: jiff::Timestamp::now(),
    };
    for _ in 0..8 {
        match decide::decide_cleanup(node.as_ref(), leaving, &jobs) {
            CleanupAction::DeleteJob(name) => {
                ctx.delete_job(&ns, &name).await?;
                jobs.retain(|j| j.name != name);
            }
            CleanupAction::Wait => {
                return Err(Error::CleanupPending(format!(
                    "a Job is still running on {node_name}"
                )));
            }
            CleanupAction::CheckPods(name) => {
                let Some(refusal) = ctx.pod_refusal(&ns, &name).await? else {
                    return Err(Error::CleanupPending(format!(
                        "cleanup Job {name} has no Pod yet"
                    )));
                };
                ctx.delete_job(&ns, &name).await?;
                ctx.metrics
                    .failure(multinic_api::StateReason::JobRejected.as_str());
                let message =
                    format!("the API server refused the Pod of agent Job {name}: {refusal}");
                ctx.event(
                    &obj,
                    EventType::Warning,
                    multinic_api::StateReason::JobRejected.as_str(),
                    "Cleanup",
                    message.clone(),
                )
                .await;
                return Err(Error::CleanupFailed(message));
            }
            CleanupAction::Start { flavor } => {
                let attempt = {
                    let attempts = ctx
                        .cleanup_attempts
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    attempts.get(&uid).copied().unwrap_or(0) + 1
                };
                let name = job::job_name(
                    &node_name,
                    &uid,
                    AgentAction::Cleanup,
                    obj.metadata.generation.unwrap_or(0),
                    attempt,
                );
                let key = format!("{ns}/{name}");
                let protect = node
                    .as_ref()
                    .map(|n| n.addresses.clone())
                    .unwrap_or_default();
                let request = JobRequest {
                    owner: &obj,
                    action: AgentAction::Cleanup,
                    attempt,
                    flavor,
                    protect: &protect,
                };
                match ctx.launch_job(&key, request).await? {
                    Launch::Created => {}
                    Launch::NoSlot => {
                        return Err(Error::CleanupPending("waiting for a free Job slot".into()));
                    }
                    Launch::Rejected(message) => {
                        ctx.event(
                            &obj,
                            EventType::Warning,
                            multinic_api::StateReason::JobRejected.as_str(),
                            "Cleanup",
                            format!("the API server refused cleanup Job {name}: {message}"),
                        )
                        .await;
                        return Err(Error::CleanupFailed(format!(
                            "cleanup Job {name} refused: {message}"
                        )));
                    }
                }
                ctx.event(
                    &obj,
                    EventType::Normal,
                    multinic_api::StateReason::CleaningUp.as_str(),
                    "Cleanup",
                    format!("cleanup Job {name} removes multinic's configuration from {node_name}"),
                )
                .await;
                return Err(Error::CleanupPending(format!("cleanup Job {name} started")));
            }
            CleanupAction::Done(name) => {
                ctx.delete_job(&ns, &name).await?;
                ctx.event(
                    &obj,
                    EventType::Normal,
                    "CleanedUp",
                    "Cleanup",
                    format!("cleanup Job {name} removed multinic's configuration from {node_name}"),
                )
                .await;
                return Ok(released(ctx, &obj));
            }
            CleanupAction::Failed(name) => {
                // Read before the Job (and with it its Pod) is deleted.
                let detail = failure_detail(ctx, &ns, &name).await;
                ctx.delete_job(&ns, &name).await?;
                {
                    let mut attempts = ctx
                        .cleanup_attempts
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    *attempts.entry(uid.clone()).or_insert(0) += 1;
                }
                ctx.metrics
                    .failure(multinic_api::StateReason::CleanupFailed.as_str());
                ctx.event(
                    &obj,
                    EventType::Warning,
                    multinic_api::StateReason::CleanupFailed.as_str(),
                    "Cleanup",
                    format!("cleanup Job {name} failed ({detail}); the finalizer stays and cleanup is retried"),
                )
                .await;
                return Err(Error::CleanupFailed(format!(
                    "cleanup Job {name} failed: {detail}"
                )));
            }
            CleanupAction::Release(why) => {
                ctx.event(
                    &obj,
                    EventType::Normal,
                    "CleanupSkipped",
                    "Cleanup",
                    format!("{why}: nothing to clean up"),
                )
                .await;
                return Ok(released(ctx, &obj));
            }
        }
    }
    Err(Error::CleanupPending("still deleting leftover Jobs".into()))
}

fn released(ctx: &Context, obj: &MultiNicNodeConfig) -> Requeue {
    let uid = obj.uid().unwrap_or_default();
    ctx.cleanup_attempts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&uid);
    ctx.expect.forget(&uid);
    forget_node(ctx, obj);
    ctx.error_streak
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&ObjectRef::from_obj(obj));
    Requeue::await_change()
}

/// Why cleanup Job `name` failed: the agent's own error when its report has one (another agent
/// holds the host lock, the node is not the one the spec names ...), else the Job's `Failed`
/// condition.
async fn failure_detail(ctx: &Context, ns: &str, name: &str) -> String {
    let agent_error = match report::read_job_report(&ctx.client, ns, name).await {
        Ok(report) => report.and_then(|r| r.error),
        Err(e) => {
            tracing::warn!(job = name, error = %e, "cannot read the cleanup agent's report");
            None
        }
    };
    agent_error.unwrap_or_else(|| ctx.failed_job_detail(ns, name))
}
