//! The cleanup decision: the next step for a resource whose deletion waits on the cleanup
//! finalizer. Pure, like [`super::decide`].

use super::{JobFacts, JobPhase, NodeFacts, pod_check_in, same_uuid};
use jiff::Timestamp;
use multinic_api::report::AgentAction;
use multinic_api::{MultiNicNodeConfigSpec, MultiNicNodeConfigStatus};
use multinic_netconf::OsFlavor;

/// The next step for a resource being deleted (its finalizer still set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CleanupAction {
    /// Delete a finished Job that is not the cleanup's result.
    DeleteJob(String),
    /// An apply or cleanup Job is still running on the node: wait for it.
    Wait,
    /// The running Job has had no Pod for [`super::POD_GRACE`]: read its `FailedCreate`
    /// Events for an admission refusal, as [`super::Action::CheckPods`] does.
    CheckPods(String),
    /// Run the cleanup Job (`attempt` is 1-based).
    Start {
        /// OS flavor of the node.
        flavor: OsFlavor,
    },
    /// The cleanup Job succeeded: delete it and let the finalizer go.
    Done(String),
    /// The cleanup Job failed: delete it, report, and try again later.
    Failed(String),
    /// Nothing to clean up (the Node is gone or runs an OS multinic never configured).
    Release(String),
}

/// What the cleanup decision reads besides the Node and the Jobs.
#[derive(Clone, Copy, Debug)]
pub struct Leaving<'a> {
    /// The resource's spec.
    pub spec: &'a MultiNicNodeConfigSpec,
    /// The resource's status, if any.
    pub status: Option<&'a MultiNicNodeConfigStatus>,
    /// An older resource owns the node.
    pub conflict: Option<&'a str>,
    /// Current time.
    pub now: Timestamp,
}

/// The next step for a resource whose deletion is waiting on the cleanup finalizer.
pub fn decide_cleanup(
    node: Option<&NodeFacts>,
    leaving: Leaving<'_>,
    jobs: &[JobFacts],
) -> CleanupAction {
    let node_name = leaving.spec.node_name.as_str();
    if let Some(job) = jobs.iter().find(|j| j.phase.finished()) {
        return match (job.action, job.phase) {
            (AgentAction::Cleanup, JobPhase::Succeeded) => CleanupAction::Done(job.name.clone()),
            (AgentAction::Cleanup, _) => CleanupAction::Failed(job.name.clone()),
            (AgentAction::Apply, _) => CleanupAction::DeleteJob(job.name.clone()),
        };
    }
    if let Some(running) = jobs.iter().find(|j| !j.phase.finished()) {
        // Cleanup or apply Job alike: a refused Pod would hold the deletion until its deadline.
        return if pod_check_in(running, leaving.now).is_some_and(|w| w.is_zero()) {
            CleanupAction::CheckPods(running.name.clone())
        } else {
            CleanupAction::Wait
        };
    }
    let Some(node) = node else {
        return CleanupAction::Release(format!("Node {node_name:?} no longer exists"));
    };
    // A resource that never configured its node has nothing there to remove, and a cleanup
    // Job would take what the node's owner configured.
    if let Some(owner) = leaving.conflict {
        return CleanupAction::Release(format!(
            "Node {node_name:?} belongs to {owner}; its NICs are not this resource's"
        ));
    }
    if let Some(want) = &leaving.spec.instance_id
        && !same_uuid(want, node.system_uuid.as_deref().unwrap_or(""))
    {
        return CleanupAction::Release(format!(
            "Node {node_name:?} is not instance {want} (another VM); multinic never configured it"
        ));
    }
    if leaving
        .status
        .and_then(|s| s.last_job_name.as_deref())
        .is_none()
    {
        return CleanupAction::Release(format!(
            "no agent Job ever ran for this resource on {node_name:?}"
        ));
    }
    match node.flavor() {
        Some(flavor) => CleanupAction::Start { flavor },
        None => CleanupAction::Release(format!(
            "Node {node_name:?} runs {:?}, which multinic never configured",
            node.os_image.as_deref().unwrap_or("")
        )),
    }
}
