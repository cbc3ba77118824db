//! Transitions that keep a node safe and status truthful: one owner per node, cleanup only
//! where multinic configured something, self-healing retries, Nodes that cannot run a Job,
//! refused Jobs and the rollout budget.

use super::tests::{Case, settled_reason, spec, start, status, ubuntu};
use super::*;
use multinic_api::{InterfaceState, InterfaceStatus};

fn failed_with(reason: StateReason, attempts: u32) -> MultiNicNodeConfigStatus {
    let mut st = status(2, NodeConfigState::Failed, reason);
    st.attempts = Some(attempts);
    st.last_updated = Some("2026-01-01T00:00:00Z".into());
    st.last_job_name = Some(format!("job-a{attempts}"));
    st
}

fn interface(reason: &str) -> InterfaceStatus {
    InterfaceStatus {
        id: Some(0),
        name: None,
        mac_address: "fa:16:3e:fb:9b:68".into(),
        address: None,
        cidr: None,
        mtu: None,
        status: InterfaceState::Failed,
        reason: reason.into(),
        message: String::new(),
        last_updated: None,
    }
}

#[test]
fn a_newer_resource_naming_a_claimed_node_fails_without_a_job() {
    let mut case = Case::new();
    case.conflict = Some("multinic-system/older");
    let action = case.decide();
    assert_eq!(
        settled_reason(&action),
        (NodeConfigState::Failed, StateReason::NodeConflict)
    );
    // Even while a Job runs on that node (the owner's, or one of ours from before).
    case.jobs = vec![super::tests::job("j", 2, 1, JobPhase::Running)];
    assert_eq!(
        settled_reason(&case.decide()),
        (NodeConfigState::Failed, StateReason::NodeConflict)
    );
}

#[test]
fn mac_not_found_is_retried_without_limit_with_capped_backoff() {
    let mut case = Case::new();
    let mut st = failed_with(StateReason::InterfacesFailed, 7);
    st.interface_statuses = vec![interface("MacNotFound")];
    case.status = Some(st.clone());
    // 10 minutes after the last failure: past the 60 s cap, so attempt 8 starts.
    assert_eq!(case.decide(), start(8));
    // Within the capped backoff it waits.
    case.now = "2026-01-01T00:00:30Z".parse().unwrap();
    assert_eq!(case.decide(), Action::Wait(Some(Duration::from_secs(30))));
    // Another failure reason needs a person: retries run out.
    st.interface_statuses = vec![interface("MacNotFound"), interface("ApplyFailed")];
    case.status = Some(st);
    case.now = "2026-01-01T00:10:00Z".parse().unwrap();
    assert_eq!(
        settled_reason(&case.decide()),
        (NodeConfigState::Failed, StateReason::RetriesExhausted)
    );
}

#[test]
fn a_node_not_ready_or_cordoned_gets_no_job_and_says_so() {
    let mut case = Case::new();
    case.node.as_mut().unwrap().not_ready = true;
    match case.decide() {
        Action::Settle { verdict, requeue } => {
            assert_eq!(verdict.reason, StateReason::NodeNotReady);
            assert_eq!(verdict.state, NodeConfigState::Pending);
            assert_eq!(requeue, None, "the Node watch wakes it");
        }
        other => panic!("{other:?}"),
    }
    case.node = Some(NodeFacts {
        unschedulable: true,
        ..ubuntu()
    });
    assert_eq!(
        settled_reason(&case.decide()),
        (NodeConfigState::Pending, StateReason::NodeNotReady)
    );
    // A retry due on a NotReady node waits there too, and counts no attempt.
    case.status = Some(failed_with(StateReason::JobFailed, 1));
    assert_eq!(
        settled_reason(&case.decide()),
        (NodeConfigState::Pending, StateReason::NodeNotReady)
    );
    case.node = Some(ubuntu());
    case.status = Some(status(
        2,
        NodeConfigState::Pending,
        StateReason::NodeNotReady,
    ));
    assert_eq!(case.decide(), start(1));
}

#[test]
fn a_rejected_job_is_tried_again_only_after_the_longest_backoff() {
    let mut case = Case::new();
    case.status = Some(failed_with(StateReason::JobRejected, 0));
    case.now = "2026-01-01T00:00:20Z".parse().unwrap();
    assert_eq!(case.decide(), Action::Wait(Some(Duration::from_secs(40))));
    case.now = "2026-01-01T00:01:00Z".parse().unwrap();
    assert_eq!(case.decide(), start(1));
}

#[test]
fn a_refused_job_that_could_not_be_deleted_is_deleted_not_adopted() {
    let mut case = Case::new();
    case.status = Some(failed_with(StateReason::JobRejected, 1));
    // The Job status names: its deletion failed after the Failed status was written.
    case.jobs = vec![super::tests::job("job-a1", 2, 1, JobPhase::Running)];
    assert_eq!(case.decide(), Action::DeleteJob("job-a1".into()));
    // Another running Job of this generation is still adopted, as after a restart.
    case.jobs = vec![super::tests::job("job-a2", 2, 2, JobPhase::Running)];
    assert!(
        matches!(
            case.decide(),
            Action::Start {
                job_exists: true,
                attempt: 2,
                ..
            }
        ),
        "{:?}",
        case.decide()
    );
}

#[test]
fn a_spent_rollout_budget_pauses_changed_resources_not_retries() {
    let mut case = Case::new();
    case.rollout_paused = Some(crate::fleet::Spent {
        failed: 1,
        changing: 2,
        limit: 3,
    });
    match case.decide() {
        Action::Settle { verdict, requeue } => {
            assert_eq!(
                (verdict.state, verdict.reason),
                (NodeConfigState::Pending, StateReason::RolloutPaused)
            );
            assert!(
                verdict.message.contains("1 resources failed")
                    && verdict.message.contains("2 changed ones are being applied"),
                "{}",
                verdict.message
            );
            assert!(requeue.is_some());
        }
        other => panic!("{other:?}"),
    }
    case.resume_requested = true;
    assert_eq!(case.decide(), start(1));
    // A Job-less settle after a slot wait keeps its attempt count.
    case.resume_requested = false;
    case.rollout_paused = None;
    let mut st = status(2, NodeConfigState::Pending, StateReason::WaitingForJobSlot);
    st.attempts = Some(2);
    case.status = Some(st);
    assert_eq!(case.decide(), start(3));
}

#[test]
fn deleting_a_resource_that_never_configured_its_node_runs_no_cleanup_job() {
    let node = ubuntu();
    let spec = spec();
    let never = status(2, NodeConfigState::Failed, StateReason::InvalidSpec);
    let leaving = |status, conflict| Leaving {
        spec: &spec,
        status,
        conflict,
        now: "2026-01-01T00:10:00Z".parse().unwrap(),
    };
    for (why, l) in [
        ("never ran", leaving(Some(&never), None)),
        ("no status", leaving(None, None)),
        ("conflict", leaving(None, Some("ns/older"))),
    ] {
        assert!(
            matches!(
                decide_cleanup(Some(&node), l, &[]),
                CleanupAction::Release(_)
            ),
            "{why}"
        );
    }
    let mut ran = never.clone();
    ran.last_job_name = Some("j".into());
    // Another VM under the same node name: the one multinic configured is gone.
    let other_vm = NodeFacts {
        system_uuid: Some("00000000-0000-4000-8000-000000000000".into()),
        ..ubuntu()
    };
    assert!(matches!(
        decide_cleanup(Some(&other_vm), leaving(Some(&ran), None), &[]),
        CleanupAction::Release(_)
    ));
    assert_eq!(
        decide_cleanup(Some(&node), leaving(Some(&ran), None), &[]),
        CleanupAction::Start {
            flavor: OsFlavor::Ubuntu
        }
    );
}

#[test]
fn a_job_without_a_pod_has_its_events_read_after_the_grace() {
    let mut case = Case::new();
    let mut pod_less = super::tests::job("j2", 2, 1, JobPhase::Running);
    pod_less.no_pod_since = Some("2026-01-01T00:09:58Z".parse().unwrap());
    case.jobs = vec![pod_less.clone()];
    let mut st = status(2, NodeConfigState::InProgress, StateReason::Applying);
    st.last_job_name = Some("j2".into());
    case.status = Some(st);
    // Created 2 s ago: looked at again when the grace is over, no sooner.
    assert_eq!(case.decide(), Action::Wait(Some(Duration::from_secs(3))));
    case.now = "2026-01-01T00:10:03Z".parse().unwrap();
    assert_eq!(case.decide(), Action::CheckPods("j2".into()));
    // Not for a Job of an older generation (it is only waited for).
    pod_less.generation = Some(1);
    case.jobs = vec![pod_less];
    assert_eq!(case.decide(), Action::Wait(None));
}
