//! Status computation, asserted as the exact server-side apply body.

use super::*;
use multinic_api::InterfaceReason;
use multinic_api::report::{AgentAction, ReportInterface};

fn spec() -> MultiNicNodeConfigSpec {
    serde_json::from_value(json!({
        "nodeName": "worker-01",
        "interfaces": [
            {"id": 0, "macAddress": "FA:16:3E:00:00:01", "address": "10.0.0.5", "cidr": "10.0.0.0/24", "mtu": 1450},
            {"name": "multinic1", "macAddress": "fa:16:3e:00:00:02", "address": "10.0.1.5", "cidr": "10.0.1.0/24"}
        ]
    }))
    .unwrap()
}

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn job(phase: JobPhase, attempt: u32) -> JobFacts {
    JobFacts {
        name: "multinic-worker-01-g3-a1".into(),
        action: AgentAction::Apply,
        generation: Some(3),
        attempt,
        phase,
        no_pod_since: None,
    }
}

fn report(reasons: [InterfaceReason; 2]) -> AgentReport {
    AgentReport {
        v: 1,
        node: "worker-01".into(),
        generation: Some(3),
        action: AgentAction::Apply,
        error: None,
        interfaces: ["fa:16:3e:00:00:01", "fa:16:3e:00:00:02"]
            .iter()
            .zip(reasons)
            .enumerate()
            .map(|(i, (mac, reason))| ReportInterface {
                id: Some(i as u8),
                name: Some(format!("multinic{i}")),
                mac_address: (*mac).into(),
                reason,
                message: if reason.is_success() {
                    String::new()
                } else {
                    "no NIC with this MAC".into()
                },
            })
            .collect(),
        duration_ms: 5,
    }
}

#[test]
fn in_progress_apply_body_is_exact() {
    let now = t("2026-01-01T00:00:00Z");
    let status = in_progress(&spec(), 3, "multinic-worker-01-g3-a1", 1, None, now);
    let ts = "2026-01-01T00:00:00Z";
    let cond = |type_: &str, s: &str| {
        json!({
            "type": type_, "status": s, "reason": "Applying",
            "message": "agent Job multinic-worker-01-g3-a1 is applying generation 3 (attempt 1)",
            "lastTransitionTime": ts, "observedGeneration": 3
        })
    };
    let expected = json!({
        "apiVersion": "multinic.io/v1alpha1",
        "kind": "MultiNicNodeConfig",
        "status": {
            "state": "InProgress",
            "observedGeneration": 3,
            "interfacesReady": "0/2",
            "conditions": [cond("Ready", "False"), cond("Progressing", "True"), cond("Degraded", "False")],
            "interfaceStatuses": [
                {"id": 0, "name": "multinic0", "macAddress": "fa:16:3e:00:00:01", "address": "10.0.0.5",
                 "cidr": "10.0.0.0/24", "mtu": 1450, "status": "Pending", "reason": "Pending", "lastUpdated": ts},
                {"id": 1, "name": "multinic1", "macAddress": "fa:16:3e:00:00:02", "address": "10.0.1.5",
                 "cidr": "10.0.1.0/24", "status": "Pending", "reason": "Pending", "lastUpdated": ts}
            ],
            "lastJobName": "multinic-worker-01-g3-a1",
            "lastUpdated": ts
        }
    });
    assert_eq!(apply_body(&status), expected);
}

#[test]
fn successful_report_makes_it_configured_and_ready() {
    let prev = in_progress(
        &spec(),
        3,
        "multinic-worker-01-g3-a1",
        1,
        None,
        t("2026-01-01T00:00:00Z"),
    );
    let report = report([InterfaceReason::Configured, InterfaceReason::Unchanged]);
    let next = recorded(
        &spec(),
        3,
        &job(JobPhase::Succeeded, 1),
        Some(&report),
        "",
        Some(&prev),
        t("2026-01-01T00:00:07Z"),
    );
    assert_eq!(next.state, Some(NodeConfigState::Configured));
    assert_eq!(next.interfaces_ready.as_deref(), Some("2/2"));
    assert_eq!(next.attempts, None);
    let ready = &next.conditions[0];
    assert_eq!(
        (
            ready.type_.as_str(),
            ready.status.as_str(),
            ready.reason.as_str()
        ),
        ("Ready", "True", "Configured")
    );
    assert_eq!(
        ready.last_transition_time.as_deref(),
        Some("2026-01-01T00:00:07Z")
    );
    // Degraded stayed False: its transition time is the earlier one.
    assert_eq!(
        next.conditions[2].last_transition_time.as_deref(),
        Some("2026-01-01T00:00:00Z")
    );
    assert_eq!(next.interface_statuses[1].reason, "Unchanged");
    assert!(needs_write(Some(&prev), &next));
}

#[test]
fn partial_failure_is_failed_with_per_interface_detail() {
    let report = report([InterfaceReason::Configured, InterfaceReason::MacNotFound]);
    let next = recorded(
        &spec(),
        3,
        &job(JobPhase::Failed, 2),
        Some(&report),
        "",
        None,
        t("2026-01-01T00:00:07Z"),
    );
    assert_eq!(next.state, Some(NodeConfigState::Failed));
    assert_eq!(next.interfaces_ready.as_deref(), Some("1/2"));
    assert_eq!(next.attempts, Some(2));
    assert_eq!(next.conditions[0].reason, "InterfacesFailed");
    assert_eq!(next.conditions[2].status, "True", "Degraded");
    let bad = &next.interface_statuses[1];
    assert_eq!(
        (bad.status, bad.reason.as_str(), bad.message.as_str()),
        (
            InterfaceState::Failed,
            "MacNotFound",
            "no NIC with this MAC"
        )
    );
}

#[test]
fn no_report_or_a_report_of_another_generation_is_job_failed() {
    let next = recorded(
        &spec(),
        3,
        &job(JobPhase::Failed, 1),
        None,
        "DeadlineExceeded: too slow",
        None,
        t("2026-01-01T00:00:07Z"),
    );
    assert_eq!(next.conditions[0].reason, "JobFailed");
    assert!(next.conditions[0].message.contains("DeadlineExceeded"));
    let mut other = report([InterfaceReason::Configured, InterfaceReason::Configured]);
    other.generation = Some(2);
    let next = recorded(
        &spec(),
        3,
        &job(JobPhase::Succeeded, 1),
        Some(&other),
        "x",
        None,
        t("2026-01-01T00:00:07Z"),
    );
    assert_eq!(next.state, Some(NodeConfigState::Failed));
    assert_eq!(next.conditions[0].reason, "JobFailed");
}

#[test]
fn same_outcome_later_is_not_a_write() {
    let verdict = Verdict {
        state: NodeConfigState::Pending,
        reason: StateReason::NodeNotFound,
        message: "no Node named \"worker-01\" exists".into(),
    };
    let first = settled(&spec(), 3, &verdict, None, t("2026-01-01T00:00:00Z"));
    let again = settled(
        &spec(),
        3,
        &verdict,
        Some(&first),
        t("2026-01-01T00:05:00Z"),
    );
    assert!(!needs_write(Some(&first), &again));
    assert_eq!(first, again, "timestamps carried over too");
    let moved = Verdict {
        message: "other".into(),
        ..verdict
    };
    assert!(needs_write(
        Some(&first),
        &settled(&spec(), 3, &moved, Some(&first), t("2026-01-01T00:05:00Z"))
    ));
}

#[test]
fn invalid_spec_marks_the_bad_interface_with_its_path() {
    let mut bad = spec();
    bad.interfaces[1].mtu = Some(20);
    let verdict = Verdict {
        state: NodeConfigState::Failed,
        reason: StateReason::InvalidSpec,
        message: "x".into(),
    };
    let next = settled(&bad, 4, &verdict, None, t("2026-01-01T00:00:00Z"));
    assert_eq!(next.interface_statuses[0].status, InterfaceState::Pending);
    let failed = &next.interface_statuses[1];
    assert_eq!(failed.status, InterfaceState::Failed);
    assert!(
        failed.message.contains("spec.interfaces[1].mtu"),
        "{}",
        failed.message
    );
}
