//! Reading a Job from the controller's cache back: the facts the decisions need
//! ([`JobFacts`]: action, generation, attempt, phase, whether a Pod ever ran), the node it
//! runs on, why it failed, and trimming what the cache need not keep.

use super::{ACTION_LABEL, ATTEMPT_ANNOTATION, GENERATION_ANNOTATION, NODE_ANNOTATION};
use crate::decide::{JobFacts, JobPhase};
use k8s_openapi::api::batch::v1::Job;
use kube::{Resource, ResourceExt};
use multinic_api::report::AgentAction;

/// Reads a cached Job back; `None` for Jobs without the controller's annotations.
pub fn job_facts(job: &Job) -> Option<JobFacts> {
    let labels = job.meta().labels.as_ref()?;
    let action = match labels.get(ACTION_LABEL)?.as_str() {
        "apply" => AgentAction::Apply,
        "cleanup" => AgentAction::Cleanup,
        _ => return None,
    };
    let annotations = job.meta().annotations.as_ref()?;
    Some(JobFacts {
        name: job.name_any(),
        action,
        generation: annotations
            .get(GENERATION_ANNOTATION)
            .and_then(|g| g.parse().ok()),
        attempt: annotations
            .get(ATTEMPT_ANNOTATION)
            .and_then(|a| a.parse().ok())
            .unwrap_or(1),
        phase: job_phase(job),
        // From the Job controller's first sync (startTime), which counts a Pod it created in the
        // same status write: a Job it has not synced yet needs no timer, the sync is an event.
        no_pod_since: job
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .filter(|_| job_phase(job) == JobPhase::Running && !had_pod(job))
            .map(|t| t.0),
    })
}

/// Whether the Job controller counted any Pod of the Job (active, succeeded or failed).
fn had_pod(job: &Job) -> bool {
    job.status.as_ref().is_some_and(|s| {
        // A finished Pod the Job controller is still recording is in
        // `uncountedTerminatedPods`, with every counter at 0 for one status write.
        let uncounted = s.uncounted_terminated_pods.as_ref().is_some_and(|u| {
            u.succeeded.as_ref().is_some_and(|p| !p.is_empty())
                || u.failed.as_ref().is_some_and(|p| !p.is_empty())
        });
        uncounted
            || [s.active, s.ready, s.succeeded, s.failed, s.terminating]
                .iter()
                .any(|n| n.unwrap_or(0) > 0)
    })
}

/// The node a cached Job runs on.
pub fn job_node(job: &Job) -> Option<&str> {
    job.meta()
        .annotations
        .as_ref()?
        .get(NODE_ANNOTATION)
        .map(String::as_str)
}

/// Complete/Failed from the Job's conditions (the Job controller's final word).
pub fn job_phase(job: &Job) -> JobPhase {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    let is_true = |t: &str| {
        conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == t && c.status == "True"))
    };
    if is_true("Complete") {
        JobPhase::Succeeded
    } else if is_true("Failed") {
        JobPhase::Failed
    } else {
        JobPhase::Running
    }
}

/// The message of the Job's Failed condition, to explain a failure without a report.
pub fn job_failure_detail(job: &Job) -> String {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "Failed" && c.status == "True")
        })
        .map(|c| {
            let reason = c.reason.clone().unwrap_or_default();
            let message = c.message.clone().unwrap_or_default();
            format!("{reason}: {message}")
                .trim_matches([' ', ':'])
                .to_string()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "the Job failed".into())
}

/// Drops what the controller never reads from a cached Job (the Pod template carries the
/// whole spec), keeping memory flat however many Jobs are in flight.
pub fn trim_job(job: &mut Job) {
    job.metadata.managed_fields = None;
    job.spec = None;
    if let Some(status) = job.status.as_mut() {
        status.uncounted_terminated_pods = None;
    }
}
