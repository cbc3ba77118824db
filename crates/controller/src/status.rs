//! Status computed apart from sending it: the status each step leads to, whether it differs
//! from what is stored (timestamps aside), and the exact server-side apply body.

use crate::decide::{JobFacts, JobPhase, Verdict};
use jiff::Timestamp;
use multinic_api::conditions::{STATUS_FALSE, STATUS_TRUE};
use multinic_api::report::AgentReport;
use multinic_api::{
    Condition, ConditionType, InterfaceSpec, InterfaceState, InterfaceStatus,
    MultiNicNodeConfigSpec, MultiNicNodeConfigStatus, NodeConfigState, StateReason,
};
use serde_json::{Value, json};

/// Status while a Job applies `generation`: InProgress, every interface Pending.
pub fn in_progress(
    spec: &MultiNicNodeConfigSpec,
    generation: i64,
    job_name: &str,
    attempt: u32,
    prev: Option<&MultiNicNodeConfigStatus>,
    now: Timestamp,
) -> MultiNicNodeConfigStatus {
    let interfaces = spec
        .interfaces
        .iter()
        .map(|i| pending_interface(i, "", now))
        .collect();
    let message =
        format!("agent Job {job_name} is applying generation {generation} (attempt {attempt})");
    let mut next = build(
        generation,
        NodeConfigState::InProgress,
        StateReason::Applying,
        &message,
        interfaces,
        now,
    );
    next.attempts = Some(attempt.saturating_sub(1)).filter(|n| *n > 0);
    next.last_job_name = Some(job_name.to_string());
    finish(next, prev)
}

/// Status for a verdict reached without a Job (invalid spec, Node problems, retries spent).
pub fn settled(
    spec: &MultiNicNodeConfigSpec,
    generation: i64,
    verdict: &Verdict,
    prev: Option<&MultiNicNodeConfigStatus>,
    now: Timestamp,
) -> MultiNicNodeConfigStatus {
    let same_generation = prev.and_then(|p| p.observed_generation) == Some(generation);
    let interfaces = if verdict.reason == StateReason::InvalidSpec {
        invalid_interfaces(spec, now)
    } else if verdict.reason == StateReason::RetriesExhausted && same_generation {
        // Keep the last run's per-interface detail: it says what failed.
        prev.map(|p| p.interface_statuses.clone())
            .unwrap_or_default()
    } else {
        spec.interfaces
            .iter()
            .map(|i| pending_interface(i, "", now))
            .collect()
    };
    let mut next = build(
        generation,
        verdict.state,
        verdict.reason,
        &verdict.message,
        interfaces,
        now,
    );
    if same_generation {
        next.attempts = prev.and_then(|p| p.attempts);
    }
    next.last_job_name = prev.and_then(|p| p.last_job_name.clone());
    finish(next, prev)
}

/// Status from a finished Job of `generation` and the agent's report (if it left one).
/// `job_detail` explains a failure without a report (the Job's own condition message).
pub fn recorded(
    spec: &MultiNicNodeConfigSpec,
    generation: i64,
    job: &JobFacts,
    report: Option<&AgentReport>,
    job_detail: &str,
    prev: Option<&MultiNicNodeConfigStatus>,
    now: Timestamp,
) -> MultiNicNodeConfigStatus {
    // A report of another generation is not about this spec: treat it as missing.
    let report = report.filter(|r| r.generation.is_none_or(|g| g == generation));
    let interfaces: Vec<InterfaceStatus> = spec
        .interfaces
        .iter()
        .map(|i| interface_from_report(i, report, job_detail, now))
        .collect();
    let all_ok = interfaces
        .iter()
        .all(|i| i.status == InterfaceState::Configured);
    let run_ok = job.phase == JobPhase::Succeeded && report.is_some_and(AgentReport::succeeded);
    let (state, reason, message) = match report {
        _ if all_ok && run_ok => (
            NodeConfigState::Configured,
            StateReason::Configured,
            format!("every interface of generation {generation} is configured"),
        ),
        Some(r) if r.error.is_none() && !r.interfaces.is_empty() => (
            NodeConfigState::Failed,
            StateReason::InterfacesFailed,
            failed_summary(&interfaces),
        ),
        Some(r) => (
            NodeConfigState::Failed,
            StateReason::JobFailed,
            format!(
                "agent Job {} failed: {}",
                job.name,
                r.error.as_deref().unwrap_or(job_detail)
            ),
        ),
        None => (
            NodeConfigState::Failed,
            StateReason::JobFailed,
            format!(
                "agent Job {} failed without a report: {job_detail}",
                job.name
            ),
        ),
    };
    let mut next = build(generation, state, reason, &message, interfaces, now);
    let failed_before = job.attempt.saturating_sub(1);
    let failures = if state == NodeConfigState::Failed {
        job.attempt
    } else {
        failed_before
    };
    next.attempts = Some(failures).filter(|n| *n > 0);
    next.last_job_name = Some(job.name.clone());
    finish(next, prev)
}

/// Whether `next` differs from what is stored, ignoring timestamps.
pub fn needs_write(
    prev: Option<&MultiNicNodeConfigStatus>,
    next: &MultiNicNodeConfigStatus,
) -> bool {
    match prev {
        None => true,
        Some(prev) => without_times(prev) != without_times(next),
    }
}

/// The server-side apply body that sets `status` (field manager `multinic-controller`).
pub fn apply_body(status: &MultiNicNodeConfigStatus) -> Value {
    json!({
        "apiVersion": format!("{}/{}", multinic_api::GROUP, multinic_api::VERSION),
        "kind": "MultiNicNodeConfig",
        "status": status,
    })
}

fn build(
    generation: i64,
    state: NodeConfigState,
    reason: StateReason,
    message: &str,
    interfaces: Vec<InterfaceStatus>,
    now: Timestamp,
) -> MultiNicNodeConfigStatus {
    let ready = interfaces
        .iter()
        .filter(|i| i.status == InterfaceState::Configured)
        .count();
    let total = interfaces.len();
    let (ready_c, progressing, degraded) = match state {
        NodeConfigState::Configured => (true, false, false),
        NodeConfigState::InProgress | NodeConfigState::Pending => (false, true, false),
        NodeConfigState::Failed => (false, false, true),
    };
    let condition = |type_: ConditionType, on: bool| Condition {
        type_: type_.as_str().to_string(),
        status: if on { STATUS_TRUE } else { STATUS_FALSE }.to_string(),
        reason: reason.as_str().to_string(),
        message: message.to_string(),
        last_transition_time: Some(now.to_string()),
        observed_generation: Some(generation),
    };
    MultiNicNodeConfigStatus {
        state: Some(state),
        observed_generation: Some(generation),
        interfaces_ready: Some(format!("{ready}/{total}")),
        conditions: vec![
            condition(ConditionType::Ready, ready_c),
            condition(ConditionType::Progressing, progressing),
            condition(ConditionType::Degraded, degraded),
        ],
        interface_statuses: interfaces,
        attempts: None,
        last_job_name: None,
        last_updated: Some(now.to_string()),
    }
}

/// Keeps earlier timestamps where nothing changed: a condition's lastTransitionTime while its
/// status holds, an interface's lastUpdated while its entry is the same, and the status's own
/// lastUpdated when nothing at all changed.
fn finish(
    mut next: MultiNicNodeConfigStatus,
    prev: Option<&MultiNicNodeConfigStatus>,
) -> MultiNicNodeConfigStatus {
    let Some(prev) = prev else { return next };
    for cond in &mut next.conditions {
        if let Some(old) = prev.conditions.iter().find(|c| c.type_ == cond.type_)
            && old.status == cond.status
            && old.last_transition_time.is_some()
        {
            cond.last_transition_time = old.last_transition_time.clone();
        }
    }
    for iface in &mut next.interface_statuses {
        if let Some(old) = prev
            .interface_statuses
            .iter()
            .find(|o| o.mac_address.eq_ignore_ascii_case(&iface.mac_address))
            && strip_interface(old) == strip_interface(iface)
        {
            iface.last_updated = old.last_updated.clone();
        }
    }
    if !needs_write(Some(prev), &next) {
        next.last_updated = prev.last_updated.clone();
    }
    next
}

fn without_times(s: &MultiNicNodeConfigStatus) -> MultiNicNodeConfigStatus {
    let mut s = s.clone();
    s.last_updated = None;
    for c in &mut s.conditions {
        c.last_transition_time = None;
    }
    s.interface_statuses = s.interface_statuses.iter().map(strip_interface).collect();
    s
}

fn strip_interface(i: &InterfaceStatus) -> InterfaceStatus {
    InterfaceStatus {
        last_updated: None,
        ..i.clone()
    }
}

fn base_interface(spec: &InterfaceSpec, now: Timestamp) -> InterfaceStatus {
    let id = spec.id.or_else(|| {
        spec.name
            .as_deref()
            .and_then(|n| multinic_api::parse_slot_name(n).ok())
    });
    InterfaceStatus {
        id,
        name: spec
            .name
            .clone()
            .or_else(|| id.map(|n| format!("{}{n}", multinic_api::INTERFACE_NAME_PREFIX))),
        mac_address: spec.mac_address.to_ascii_lowercase(),
        address: Some(spec.address.clone()),
        cidr: Some(spec.cidr.clone()),
        mtu: spec.mtu,
        status: InterfaceState::Pending,
        reason: String::new(),
        message: String::new(),
        last_updated: Some(now.to_string()),
    }
}

fn pending_interface(spec: &InterfaceSpec, message: &str, now: Timestamp) -> InterfaceStatus {
    InterfaceStatus {
        reason: multinic_api::InterfaceReason::Pending.as_str().to_string(),
        message: message.to_string(),
        ..base_interface(spec, now)
    }
}

fn invalid_interfaces(spec: &MultiNicNodeConfigSpec, now: Timestamp) -> Vec<InterfaceStatus> {
    let check = multinic_api::check_spec(spec);
    spec.interfaces
        .iter()
        .enumerate()
        .map(|(index, iface)| {
            let errors: Vec<String> = check
                .interface_errors(index)
                .map(ToString::to_string)
                .collect();
            if errors.is_empty() {
                pending_interface(iface, "not applied: the spec has errors", now)
            } else {
                InterfaceStatus {
                    status: InterfaceState::Failed,
                    reason: multinic_api::InterfaceReason::InvalidSpec
                        .as_str()
                        .to_string(),
                    message: errors.join("; "),
                    ..base_interface(iface, now)
                }
            }
        })
        .collect()
}

fn interface_from_report(
    spec: &InterfaceSpec,
    report: Option<&AgentReport>,
    job_detail: &str,
    now: Timestamp,
) -> InterfaceStatus {
    let base = base_interface(spec, now);
    let entry = report.and_then(|r| {
        r.interfaces
            .iter()
            .find(|e| e.mac_address.eq_ignore_ascii_case(&spec.mac_address))
    });
    let failed = |reason: &str, message: String| InterfaceStatus {
        status: InterfaceState::Failed,
        reason: reason.to_string(),
        message,
        ..base.clone()
    };
    match (report, entry) {
        (_, Some(e)) => InterfaceStatus {
            id: e.id.or(base.id),
            name: e.name.clone().or(base.name.clone()),
            status: if e.reason.is_success() {
                InterfaceState::Configured
            } else {
                InterfaceState::Failed
            },
            reason: e.reason.as_str().to_string(),
            message: e.message.clone(),
            ..base.clone()
        },
        (Some(r), None) => failed(
            multinic_api::InterfaceReason::ApplyFailed.as_str(),
            r.error
                .clone()
                .unwrap_or_else(|| "the agent's report does not mention this interface".into()),
        ),
        (None, None) => failed(
            multinic_api::InterfaceReason::ApplyFailed.as_str(),
            format!("the agent Job left no report: {job_detail}"),
        ),
    }
}

fn failed_summary(interfaces: &[InterfaceStatus]) -> String {
    let failed: Vec<String> = interfaces
        .iter()
        .filter(|i| i.status != InterfaceState::Configured)
        .map(|i| {
            let name = i.name.clone().unwrap_or_else(|| i.mac_address.clone());
            format!("{name}: {}", i.reason)
        })
        .collect();
    format!(
        "{} of {} interfaces failed ({})",
        failed.len(),
        interfaces.len(),
        failed.join(", ")
    )
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
