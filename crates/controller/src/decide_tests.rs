//! Every transition of the state machine, without a cluster.

use super::*;
use multinic_api::{Condition, InterfaceSpec};

pub(super) const UUID: &str = "84183610-f911-4d8f-9ec2-f35bfeac671f";

pub(super) fn spec() -> MultiNicNodeConfigSpec {
    MultiNicNodeConfigSpec {
        node_name: "worker-01".into(),
        instance_id: Some(UUID.into()),
        interfaces: vec![InterfaceSpec {
            id: Some(0),
            name: Some("multinic0".into()),
            port_id: None,
            mac_address: "fa:16:3e:fb:9b:68".into(),
            address: "11.11.11.132".into(),
            cidr: "11.11.11.0/24".into(),
            mtu: Some(1450),
        }],
    }
}

pub(super) fn ubuntu() -> NodeFacts {
    NodeFacts {
        system_uuid: Some(UUID.to_uppercase()),
        os_image: Some("Ubuntu 22.04.4 LTS".into()),
        ..NodeFacts::default()
    }
}

pub(super) fn status(
    generation: i64,
    state: NodeConfigState,
    reason: StateReason,
) -> MultiNicNodeConfigStatus {
    MultiNicNodeConfigStatus {
        state: Some(state),
        observed_generation: Some(generation),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: reason.as_str().into(),
            message: String::new(),
            last_transition_time: None,
            observed_generation: Some(generation),
        }],
        ..Default::default()
    }
}

pub(super) fn job(name: &str, generation: i64, attempt: u32, phase: JobPhase) -> JobFacts {
    JobFacts {
        name: name.into(),
        action: AgentAction::Apply,
        generation: Some(generation),
        attempt,
        phase,
        no_pod_since: None,
    }
}

const RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    base_delay: Duration::from_secs(10),
    max_delay: Duration::from_secs(60),
};

pub(super) struct Case {
    pub(super) spec: MultiNicNodeConfigSpec,
    pub(super) status: Option<MultiNicNodeConfigStatus>,
    pub(super) node: Option<NodeFacts>,
    pub(super) jobs: Vec<JobFacts>,
    pub(super) retry_requested: bool,
    pub(super) node_busy: bool,
    pub(super) now: Timestamp,
    pub(super) conflict: Option<&'static str>,
    pub(super) rollout_paused: Option<crate::fleet::Spent>,
    pub(super) resume_requested: bool,
}

impl Case {
    pub(super) fn new() -> Self {
        Self {
            spec: spec(),
            status: None,
            node: Some(ubuntu()),
            jobs: Vec::new(),
            retry_requested: false,
            node_busy: false,
            now: "2026-01-01T00:10:00Z".parse().unwrap(),
            conflict: None,
            rollout_paused: None,
            resume_requested: false,
        }
    }

    pub(super) fn decide(&self) -> Action {
        decide(&Observed {
            generation: 2,
            spec: &self.spec,
            status: self.status.as_ref(),
            retry_requested: self.retry_requested,
            node: self.node.as_ref(),
            jobs: &self.jobs,
            node_busy: self.node_busy,
            now: self.now,
            retry: &RETRY,
            node_recheck: Duration::from_secs(30),
            conflict: self.conflict,
            rollout_paused: self.rollout_paused,
            resume_requested: self.resume_requested,
        })
    }
}

pub(super) fn start(attempt: u32) -> Action {
    Action::Start {
        attempt,
        flavor: OsFlavor::Ubuntu,
        job_exists: false,
        clears_retry: false,
    }
}

pub(super) fn settled_reason(action: &Action) -> (NodeConfigState, StateReason) {
    match action {
        Action::Settle { verdict, .. } => (verdict.state, verdict.reason),
        other => panic!("expected Settle, got {other:?}"),
    }
}

#[test]
fn new_generation_starts_attempt_one() {
    assert_eq!(Case::new().decide(), start(1));
}

#[test]
fn invalid_spec_fails_without_a_job_naming_the_field() {
    let mut case = Case::new();
    case.spec.interfaces[0].cidr = "12.0.0.0/24".into();
    let action = case.decide();
    assert_eq!(
        settled_reason(&action),
        (NodeConfigState::Failed, StateReason::InvalidSpec)
    );
    let Action::Settle { verdict, .. } = action else {
        unreachable!()
    };
    assert!(
        verdict.message.contains("spec.interfaces[0]"),
        "{}",
        verdict.message
    );
}

#[test]
fn missing_node_is_pending_and_rechecked() {
    let mut case = Case::new();
    case.node = None;
    match case.decide() {
        Action::Settle { verdict, requeue } => {
            assert_eq!(
                (verdict.state, verdict.reason),
                (NodeConfigState::Pending, StateReason::NodeNotFound)
            );
            assert_eq!(requeue, Some(Duration::from_secs(30)));
        }
        other => panic!("{other:?}"),
    }
    // Once the Node appears (and status still says NodeNotFound), the Job starts.
    case.node = Some(ubuntu());
    case.status = Some(status(
        2,
        NodeConfigState::Pending,
        StateReason::NodeNotFound,
    ));
    assert_eq!(case.decide(), start(1));
}

#[test]
fn instance_id_compares_case_and_space_insensitively() {
    let mut case = Case::new();
    case.node.as_mut().unwrap().system_uuid = Some(format!(" {} ", UUID.to_uppercase()));
    assert_eq!(case.decide(), start(1));
    case.node.as_mut().unwrap().system_uuid = Some("00000000-0000-0000-0000-000000000000".into());
    assert_eq!(
        settled_reason(&case.decide()),
        (NodeConfigState::Failed, StateReason::InstanceIdMismatch)
    );
    // Without an instanceId in the spec there is nothing to compare.
    case.spec.instance_id = None;
    assert_eq!(case.decide(), start(1));
}

#[test]
fn unknown_os_is_refused_never_guessed() {
    let mut case = Case::new();
    case.node.as_mut().unwrap().os_image = Some("Debian GNU/Linux 12 (bookworm)".into());
    assert_eq!(
        settled_reason(&case.decide()),
        (NodeConfigState::Failed, StateReason::UnsupportedOS)
    );
    case.node.as_mut().unwrap().os_image = Some("Rocky Linux 9.3 (Blue Onyx)".into());
    assert!(matches!(
        case.decide(),
        Action::Start {
            flavor: OsFlavor::Rhel9,
            ..
        }
    ));
}

#[test]
fn running_job_tracked_by_status_is_waited_for() {
    let mut case = Case::new();
    case.jobs = vec![job("j2", 2, 1, JobPhase::Running)];
    let mut st = status(2, NodeConfigState::InProgress, StateReason::Applying);
    st.last_job_name = Some("j2".into());
    case.status = Some(st);
    assert_eq!(case.decide(), Action::Wait(None));
}

#[test]
fn running_job_without_status_gets_status_not_a_second_job() {
    let mut case = Case::new();
    case.jobs = vec![job("j2", 2, 1, JobPhase::Running)];
    case.status = Some(status(
        1,
        NodeConfigState::Configured,
        StateReason::Configured,
    ));
    assert_eq!(
        case.decide(),
        Action::Start {
            attempt: 1,
            flavor: OsFlavor::Ubuntu,
            job_exists: true,
            clears_retry: false
        }
    );
}

#[test]
fn finished_job_is_recorded_only_when_status_waits_for_it() {
    let mut case = Case::new();
    let done = job("j2", 2, 1, JobPhase::Succeeded);
    case.jobs = vec![done.clone()];
    let mut st = status(2, NodeConfigState::InProgress, StateReason::Applying);
    st.last_job_name = Some("j2".into());
    case.status = Some(st);
    assert_eq!(case.decide(), Action::Record(done));
    // Already recorded (a cache that lags behind the delete): only deleted again.
    let mut st = status(2, NodeConfigState::Configured, StateReason::Configured);
    st.last_job_name = Some("j2".into());
    case.status = Some(st);
    assert_eq!(case.decide(), Action::DeleteJob("j2".into()));
}

#[test]
fn finished_job_whose_in_progress_write_failed_is_still_recorded() {
    let mut case = Case::new();
    let done = job("j2", 2, 1, JobPhase::Succeeded);
    case.jobs = vec![done.clone()];
    case.status = Some(status(
        1,
        NodeConfigState::Configured,
        StateReason::Configured,
    ));
    assert_eq!(case.decide(), Action::Record(done));
    // But not when status already waits for a later attempt.
    let mut st = status(2, NodeConfigState::InProgress, StateReason::Applying);
    st.last_job_name = Some("j2-a2".into());
    case.status = Some(st);
    assert_eq!(case.decide(), Action::DeleteJob("j2".into()));
}

#[test]
fn job_of_an_older_generation_never_writes_status() {
    let mut case = Case::new();
    let mut st = status(1, NodeConfigState::InProgress, StateReason::Applying);
    st.last_job_name = Some("j1".into());
    case.status = Some(st);
    case.jobs = vec![job("j1", 1, 1, JobPhase::Running)];
    assert_eq!(
        case.decide(),
        Action::Wait(None),
        "one Job per node: wait for the old one"
    );
    case.jobs = vec![job("j1", 1, 1, JobPhase::Succeeded)];
    assert_eq!(case.decide(), Action::DeleteJob("j1".into()));
    case.jobs.clear();
    assert_eq!(case.decide(), start(1));
}

#[test]
fn configured_generation_is_left_alone() {
    let mut case = Case::new();
    case.status = Some(status(
        2,
        NodeConfigState::Configured,
        StateReason::Configured,
    ));
    assert_eq!(case.decide(), Action::Wait(None));
}

#[test]
fn in_progress_without_a_visible_job_recreates_the_same_attempt() {
    let mut case = Case::new();
    let mut st = status(2, NodeConfigState::InProgress, StateReason::Applying);
    st.attempts = Some(1);
    case.status = Some(st);
    assert_eq!(case.decide(), start(2));
}

#[test]
fn failures_back_off_then_retry_then_exhaust() {
    let mut case = Case::new();
    let mut st = status(2, NodeConfigState::Failed, StateReason::JobFailed);
    st.attempts = Some(2);
    st.last_updated = Some("2026-01-01T00:09:55Z".into());
    case.status = Some(st.clone());
    // Second failure: 20 s backoff, 5 s elapsed.
    assert_eq!(case.decide(), Action::Wait(Some(Duration::from_secs(15))));
    case.now = "2026-01-01T00:10:30Z".parse().unwrap();
    assert_eq!(case.decide(), start(3));
    case.node_busy = true;
    assert_eq!(case.decide(), Action::Wait(Some(Duration::from_secs(5))));
    case.node_busy = false;

    st.attempts = Some(3);
    case.status = Some(st);
    assert_eq!(
        settled_reason(&case.decide()),
        (NodeConfigState::Failed, StateReason::RetriesExhausted)
    );
    let mut exhausted = status(2, NodeConfigState::Failed, StateReason::RetriesExhausted);
    exhausted.attempts = Some(3);
    case.status = Some(exhausted);
    assert_eq!(case.decide(), Action::Wait(None));
    case.retry_requested = true;
    assert_eq!(
        case.decide(),
        Action::Start {
            attempt: 1,
            flavor: OsFlavor::Ubuntu,
            job_exists: false,
            clears_retry: true
        }
    );
}

#[test]
fn spec_change_after_failure_starts_fresh() {
    let mut case = Case::new();
    let mut st = status(1, NodeConfigState::Failed, StateReason::RetriesExhausted);
    st.attempts = Some(3);
    case.status = Some(st);
    assert_eq!(case.decide(), start(1));
}

#[test]
fn cleanup_steps() {
    let node = ubuntu();
    let spec = spec();
    let mut ran = status(2, NodeConfigState::Configured, StateReason::Configured);
    ran.last_job_name = Some("a".into());
    let w = Leaving {
        spec: &spec,
        status: Some(&ran),
        conflict: None,
        now: "2026-01-01T00:10:00Z".parse().unwrap(),
    };
    let cleanup = |phase| JobFacts {
        action: AgentAction::Cleanup,
        ..job("c", 2, 1, phase)
    };
    assert!(matches!(
        decide_cleanup(None, w, &[]),
        CleanupAction::Release(_)
    ));
    assert_eq!(
        decide_cleanup(Some(&node), w, &[]),
        CleanupAction::Start {
            flavor: OsFlavor::Ubuntu
        }
    );
    assert_eq!(
        decide_cleanup(Some(&node), w, &[job("a", 2, 1, JobPhase::Running)]),
        CleanupAction::Wait
    );
    assert_eq!(
        decide_cleanup(Some(&node), w, &[job("a", 2, 1, JobPhase::Failed)]),
        CleanupAction::DeleteJob("a".into())
    );
    assert_eq!(
        decide_cleanup(Some(&node), w, &[cleanup(JobPhase::Running)]),
        CleanupAction::Wait
    );
    // A Job the Job controller started 10 s ago without any Pod: its Events are read.
    let pod_less = |ago: &str| JobFacts {
        no_pod_since: Some(ago.parse().unwrap()),
        ..cleanup(JobPhase::Running)
    };
    assert_eq!(
        decide_cleanup(Some(&node), w, &[pod_less("2026-01-01T00:09:50Z")]),
        CleanupAction::CheckPods("c".into())
    );
    assert_eq!(
        decide_cleanup(Some(&node), w, &[pod_less("2026-01-01T00:09:58Z")]),
        CleanupAction::Wait
    );
    assert_eq!(
        decide_cleanup(Some(&node), w, &[cleanup(JobPhase::Succeeded)]),
        CleanupAction::Done("c".into())
    );
    assert_eq!(
        decide_cleanup(Some(&node), w, &[cleanup(JobPhase::Failed)]),
        CleanupAction::Failed("c".into())
    );
    // A finished cleanup Job is dealt with first; once it is gone a missing Node releases.
    assert_eq!(
        decide_cleanup(None, w, &[cleanup(JobPhase::Failed)]),
        CleanupAction::Failed("c".into())
    );
}
