//! The state machine: given what the controller observed about one resource, its Node and its
//! Jobs, the single next step. Pure, so every transition is tested without a cluster; the
//! reconciler only performs the step it is handed.

use crate::config::RetryPolicy;
use jiff::Timestamp;
use multinic_api::report::AgentAction;
use multinic_api::{
    MultiNicNodeConfigSpec, MultiNicNodeConfigStatus, NodeConfigState, StateReason,
};
use multinic_netconf::OsFlavor;
use std::time::Duration;

/// The Node, trimmed to the fields the controller reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// `status.nodeInfo.systemUUID`.
    pub system_uuid: Option<String>,
    /// `status.nodeInfo.osImage`.
    pub os_image: Option<String>,
    /// The Ready condition exists and is not True.
    pub not_ready: bool,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// The Node's own addresses (InternalIP, ExternalIP), protected from the agent.
    pub addresses: Vec<String>,
}

impl NodeFacts {
    /// The flavor the OS image maps to, if multinic supports it.
    pub fn flavor(&self) -> Option<OsFlavor> {
        self.os_image.as_deref().and_then(OsFlavor::from_os_image)
    }
}

/// Where a Job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobPhase {
    /// Not finished yet.
    Running,
    /// Finished, Complete.
    Succeeded,
    /// Finished, Failed.
    Failed,
}

impl JobPhase {
    /// Whether the Job has finished either way.
    pub fn finished(self) -> bool {
        self != Self::Running
    }
}

/// An agent Job of one resource, trimmed to what the controller reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobFacts {
    /// Job name.
    pub name: String,
    /// apply or cleanup.
    pub action: AgentAction,
    /// Generation of the spec the Job applies.
    pub generation: Option<i64>,
    /// Attempt number at that generation (1-based).
    pub attempt: u32,
    /// Running or finished.
    pub phase: JobPhase,
    /// When the Job controller started the Job (`status.startTime`), if it runs and has had
    /// no Pod at all yet (none active, succeeded or failed): the Job controller may be failing
    /// to create it (PodSecurity).
    pub no_pod_since: Option<Timestamp>,
}

/// Everything the decision reads.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    /// `metadata.generation` of the resource.
    pub generation: i64,
    /// The resource's spec.
    pub spec: &'a MultiNicNodeConfigSpec,
    /// The resource's status, if any.
    pub status: Option<&'a MultiNicNodeConfigStatus>,
    /// The `multinic.io/retry` annotation is set.
    pub retry_requested: bool,
    /// The Node named by `spec.nodeName`, if it exists.
    pub node: Option<&'a NodeFacts>,
    /// Every Job of this resource (apply and cleanup).
    pub jobs: &'a [JobFacts],
    /// Another resource has a Job running on the same node.
    pub node_busy: bool,
    /// Current time.
    pub now: Timestamp,
    /// Retry limits.
    pub retry: &'a RetryPolicy,
    /// How soon a missing Node is looked for again.
    pub node_recheck: Duration,
    /// An older resource that names the same node and owns it.
    pub conflict: Option<&'a str>,
    /// How the rollout budget stands when it is spent for this resource.
    pub rollout_paused: Option<crate::fleet::Spent>,
    /// The `multinic.io/resume-rollout` annotation is set.
    pub resume_requested: bool,
}

/// A status the controller reaches without running a Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Pending or Failed.
    pub state: NodeConfigState,
    /// Why.
    pub reason: StateReason,
    /// Detail for people (names the field or the mismatch).
    pub message: String,
}

/// The next step for one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Delete a finished Job whose outcome is not (or no longer) wanted; status is untouched.
    DeleteJob(String),
    /// Turn the finished Job's outcome into status, then delete the Job.
    Record(JobFacts),
    /// Write a status that needs no Job, then look again after `requeue` (if any).
    Settle {
        /// The state to write.
        verdict: Verdict,
        /// When to look again without an event.
        requeue: Option<Duration>,
    },
    /// The current Job has had no Pod for [`POD_GRACE`]: read the Job controller's
    /// `FailedCreate` Events for it, to tell an admission refusal (PodSecurity, quota) from a
    /// slow start.
    CheckPods(String),
    /// Make sure the Job of this attempt exists and status says InProgress.
    Start {
        /// Attempt number (1-based) at this generation.
        attempt: u32,
        /// OS flavor of the node.
        flavor: OsFlavor,
        /// The Job is known to exist already (only status may be missing).
        job_exists: bool,
        /// The `multinic.io/retry` annotation is being honoured (and must be removed).
        clears_retry: bool,
    },
    /// Nothing to do until an event arrives or `requeue` elapses.
    Wait(Option<Duration>),
}

/// How long a busy node is looked at again when no Job event would wake the resource.
const NODE_BUSY_RECHECK: Duration = Duration::from_secs(5);
/// How long a Job may have no Pod at all before its Events are read: the Job controller
/// creates the Pod within moments, and a Pending Pod counts too.
pub const POD_GRACE: Duration = Duration::from_secs(5);
/// Safety net for a paused rollout (the budget's wake-up is the usual way out).
pub const ROLLOUT_RECHECK: Duration = Duration::from_secs(60);

/// The next step for a resource that is not being deleted.
pub fn decide(o: &Observed<'_>) -> Action {
    let status = o.status;
    let observed_here = status.and_then(|s| s.observed_generation) == Some(o.generation);
    let state = status.and_then(|s| s.state).filter(|_| observed_here);
    let last_job = status
        .filter(|_| observed_here)
        .and_then(|s| s.last_job_name.as_deref());
    let recording = last_job.filter(|_| state == Some(NodeConfigState::InProgress));

    // Finished Jobs first: a result this generation still waits for is recorded, any other
    // Job is only deleted, so a Job of an older generation (or a result already recorded, or
    // an attempt status has moved past) never writes status.
    if let Some(job) = o.jobs.iter().find(|j| j.phase.finished()) {
        let current = job.action == AgentAction::Apply && job.generation == Some(o.generation);
        let mentioned = last_job == Some(job.name.as_str());
        let wanted = current
            && match (mentioned, state) {
                // Status names this Job: record it unless that happened already.
                (true, s) => s == Some(NodeConfigState::InProgress),
                // Status waits for another Job of this generation.
                (false, Some(NodeConfigState::InProgress)) => false,
                // Status never heard of it (its InProgress write failed): still its result.
                (false, _) => true,
            };
        return if wanted {
            Action::Record(job.clone())
        } else {
            Action::DeleteJob(job.name.clone())
        };
    }

    if let Err(errors) = multinic_api::validate_spec(o.spec) {
        return settle(
            NodeConfigState::Failed,
            StateReason::InvalidSpec,
            errors.to_string(),
        );
    }

    if let Some(owner) = o.conflict {
        // Before a running Job is considered: the owner's Job on that node is not ours.
        return settle(
            NodeConfigState::Failed,
            StateReason::NodeConflict,
            format!(
                "Node {:?} is already claimed by {owner}, an older resource; this one gets no \
                 Job (delete one of them)",
                o.spec.node_name
            ),
        );
    }

    if let Some(job) = o.jobs.iter().find(|j| !j.phase.finished()) {
        let current = job.action == AgentAction::Apply && job.generation == Some(o.generation);
        let refused = state == Some(NodeConfigState::Failed)
            && status.and_then(ready_reason) == Some(StateReason::JobRejected)
            && last_job == Some(job.name.as_str());
        if current && refused {
            // Status already says its Pod was refused; only deleting it is left (that failed
            // last time). Adopting it would write InProgress, then Failed again, and so on.
            return Action::DeleteJob(job.name.clone());
        }
        if current && recording != Some(job.name.as_str()) {
            // The Job exists but status does not say so (e.g. the controller restarted
            // between creating it and writing status).
            if let Some(flavor) = o.node.and_then(NodeFacts::flavor) {
                return Action::Start {
                    attempt: job.attempt,
                    flavor,
                    job_exists: true,
                    clears_retry: false,
                };
            }
        }
        if current
            && recording == Some(job.name.as_str())
            && let Some(wait) = pod_check_in(job, o.now)
        {
            // No Job event may come while its Pods are refused: look again after the grace.
            return if wait.is_zero() {
                Action::CheckPods(job.name.clone())
            } else {
                Action::Wait(Some(wait))
            };
        }
        // Either status already tracks it, or it belongs to an older generation / a cleanup:
        // one Job per node at a time, so wait for it to finish.
        return Action::Wait(None);
    }

    // Attempts count per generation: a spec change starts over.
    let failed_attempts = status
        .filter(|_| observed_here)
        .and_then(|s| s.attempts)
        .unwrap_or(0);
    let reason = status.and_then(ready_reason);
    if state == Some(NodeConfigState::Configured) {
        return Action::Wait(None);
    }

    let Some(node) = o.node else {
        return Action::Settle {
            verdict: Verdict {
                state: NodeConfigState::Pending,
                reason: StateReason::NodeNotFound,
                message: format!("no Node named {:?} exists", o.spec.node_name),
            },
            requeue: Some(o.node_recheck),
        };
    };
    if let Some(want) = &o.spec.instance_id
        && !same_uuid(want, node.system_uuid.as_deref().unwrap_or(""))
    {
        return settle(
            NodeConfigState::Failed,
            StateReason::InstanceIdMismatch,
            format!(
                "spec.instanceId {want:?} does not match Node {:?} systemUUID {:?}",
                o.spec.node_name,
                node.system_uuid.as_deref().unwrap_or("")
            ),
        );
    }
    let Some(flavor) = node.flavor() else {
        return settle(
            NodeConfigState::Failed,
            StateReason::UnsupportedOS,
            format!(
                "Node {:?} osImage {:?} is not a supported OS (Ubuntu, RHEL/CentOS/Rocky/Alma/Oracle 7+)",
                o.spec.node_name,
                node.os_image.as_deref().unwrap_or("")
            ),
        );
    };

    let start = |attempt, clears_retry| Action::Start {
        attempt,
        flavor,
        job_exists: false,
        clears_retry,
    };
    let attempt = match (state, reason) {
        // Status says a Job runs but none is seen: re-create it under the same name (an
        // AlreadyExists answer means the cache was only behind).
        (Some(NodeConfigState::InProgress), _) => failed_attempts + 1,
        (Some(NodeConfigState::Failed), Some(r)) if r.is_job_failure() => {
            if o.retry_requested {
                return gated(o, node, start(1, true));
            }
            // A NIC not attached yet heals by itself: retried without limit.
            if !self_healing(status) && failed_attempts >= o.retry.max_attempts {
                if r == StateReason::RetriesExhausted {
                    return Action::Wait(None);
                }
                return settle(
                    NodeConfigState::Failed,
                    StateReason::RetriesExhausted,
                    format!(
                        "generation {} failed {failed_attempts} times; change the spec or set the \
                         multinic.io/retry annotation to try again",
                        o.generation
                    ),
                );
            }
            if let Some(wait) = not_yet(o, status, o.retry.delay_after(failed_attempts)) {
                return wait;
            }
            failed_attempts + 1
        }
        (Some(NodeConfigState::Failed), Some(StateReason::JobRejected)) => {
            if o.retry_requested {
                return gated(o, node, start(1, true));
            }
            // Quota or admission may change; look again at the longest backoff, no sooner.
            if let Some(wait) = not_yet(o, status, o.retry.max_delay) {
                return wait;
            }
            failed_attempts + 1
        }
        _ => {
            if let Some(spent) = o.rollout_paused
                && !o.resume_requested
            {
                return Action::Settle {
                    verdict: rollout_paused(spent),
                    requeue: Some(ROLLOUT_RECHECK),
                };
            }
            failed_attempts + 1
        }
    };
    gated(o, node, start(attempt, false))
}

/// Pending/RolloutPaused: the budget is spent (also when a concurrent start took its last unit
/// between the decision and the launch).
pub fn rollout_paused(spent: crate::fleet::Spent) -> Verdict {
    let crate::fleet::Spent {
        failed,
        changing,
        limit,
    } = spent;
    Verdict {
        state: NodeConfigState::Pending,
        reason: StateReason::RolloutPaused,
        message: format!(
            "{failed} resources failed since their last change and {changing} changed ones are \
             being applied (limit {limit}); no new Job starts until they finish or recover, or \
             set {} on this resource",
            multinic_api::RESUME_ROLLOUT_ANNOTATION
        ),
    }
}

/// For a running Job that has had no Pod yet: how long until its Events are worth reading
/// (zero: now).
pub fn pod_check_in(job: &JobFacts, now: Timestamp) -> Option<Duration> {
    let grace = jiff::SignedDuration::try_from(POD_GRACE).unwrap_or_default();
    let due = job.no_pod_since? + grace;
    Some(Duration::try_from(now.duration_until(due)).unwrap_or_default())
}

/// Holds a Job back while the node cannot run it (NotReady, cordoned) or is busy.
fn gated(o: &Observed<'_>, node: &NodeFacts, start: Action) -> Action {
    if node.not_ready || node.unschedulable {
        let why = if node.not_ready {
            "is NotReady"
        } else {
            "is unschedulable (cordoned)"
        };
        // The Node watch wakes the resource when the Node recovers.
        return Action::Settle {
            verdict: Verdict {
                state: NodeConfigState::Pending,
                reason: StateReason::NodeNotReady,
                message: format!(
                    "Node {:?} {why}; the Job starts when it recovers",
                    o.spec.node_name
                ),
            },
            requeue: None,
        };
    }
    if o.node_busy {
        return Action::Wait(Some(NODE_BUSY_RECHECK));
    }
    start
}

/// A wait until `delay` after the last status change, if that is still ahead.
fn not_yet(
    o: &Observed<'_>,
    status: Option<&MultiNicNodeConfigStatus>,
    delay: Duration,
) -> Option<Action> {
    let due = last_updated(status)?
        + jiff::SignedDuration::try_from(delay).unwrap_or(jiff::SignedDuration::MAX);
    (due > o.now).then(|| {
        let wait = o.now.duration_until(due);
        Action::Wait(Some(Duration::try_from(wait).unwrap_or_default()))
    })
}

/// Whether every failed interface failed only because its NIC is not there yet.
fn self_healing(status: Option<&MultiNicNodeConfigStatus>) -> bool {
    let mut failed = status
        .into_iter()
        .flat_map(|s| &s.interface_statuses)
        .filter(|i| i.status == multinic_api::InterfaceState::Failed)
        .peekable();
    failed.peek().is_some()
        && failed.all(|i| i.reason == multinic_api::InterfaceReason::MacNotFound.as_str())
}

fn settle(state: NodeConfigState, reason: StateReason, message: String) -> Action {
    Action::Settle {
        verdict: Verdict {
            state,
            reason,
            message,
        },
        requeue: None,
    }
}

/// Instance ids compare case-insensitively and ignoring whitespace (systemUUIDs come in
/// upper case from some hypervisors).
pub fn same_uuid(a: &str, b: &str) -> bool {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    norm(a) == norm(b)
}

/// The reason of the Ready condition, which names why the resource is in its state.
pub fn ready_reason(status: &MultiNicNodeConfigStatus) -> Option<StateReason> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == multinic_api::ConditionType::Ready.as_str())
        .and_then(|c| c.reason.parse().ok())
}

fn last_updated(status: Option<&MultiNicNodeConfigStatus>) -> Option<Timestamp> {
    status?.last_updated.as_deref()?.parse().ok()
}

#[path = "decide_cleanup.rs"]
mod cleanup;
pub use cleanup::{CleanupAction, Leaving, decide_cleanup};

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "decide_safety_tests.rs"]
mod safety_tests;
