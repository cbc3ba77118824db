//! Node ownership and the rollout budget, from watch events alone.

use super::*;
use multinic_api::{Condition, MultiNicNodeConfigSpec, MultiNicNodeConfigStatus};

fn obj(name: &str, uid: &str, node: &str, created_secs: i64) -> MultiNicNodeConfig {
    let mut o = MultiNicNodeConfig::new(
        name,
        MultiNicNodeConfigSpec {
            node_name: node.into(),
            instance_id: None,
            interfaces: Vec::new(),
        },
    );
    o.metadata.namespace = Some("ns".into());
    o.metadata.uid = Some(uid.into());
    o.metadata.generation = Some(1);
    o.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::from_second(1_700_000_000 + created_secs).unwrap(),
    ));
    o
}

fn failed(mut o: MultiNicNodeConfig, reason: StateReason) -> MultiNicNodeConfig {
    o.status = Some(MultiNicNodeConfigStatus {
        state: Some(NodeConfigState::Failed),
        observed_generation: Some(1),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: reason.as_str().into(),
            message: String::new(),
            last_transition_time: None,
            observed_generation: Some(1),
        }],
        ..Default::default()
    });
    o
}

fn r(name: &str) -> Ref {
    ObjectRef::new(name).within("ns")
}

#[test]
fn the_oldest_resource_owns_a_node_and_its_deletion_wakes_the_next() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let fleet = Fleet::new(MaxFailures::Count(3), tx);
    let older = obj("a", "u-a", "n1", 0);
    let newer = obj("b", "u-b", "n1", 5);
    fleet.apply(&watcher::Event::Apply(newer.clone()));
    assert_eq!(fleet.owner_other_than("n1", "u-b"), None, "alone: it owns");
    fleet.apply(&watcher::Event::Apply(older.clone()));
    assert_eq!(fleet.owner_other_than("n1", "u-b"), Some(r("a")));
    assert_eq!(fleet.owner_other_than("n1", "u-a"), None);
    // Same second: the uid decides, the same way for both.
    let twin = obj("c", "u-0", "n2", 0);
    fleet.apply(&watcher::Event::Apply(twin));
    fleet.apply(&watcher::Event::Apply(obj("d", "u-9", "n2", 0)));
    assert_eq!(fleet.owner_other_than("n2", "u-9"), Some(r("c")));
    // Within the same second, the one that already ran a Job keeps the node.
    let mut ran = obj("d", "u-9", "n2", 0);
    ran.status = Some(MultiNicNodeConfigStatus {
        last_job_name: Some("j".into()),
        ..Default::default()
    });
    fleet.apply(&watcher::Event::Apply(ran));
    assert_eq!(fleet.owner_other_than("n2", "u-0"), Some(r("d")));
    while rx.try_recv().is_ok() {}
    fleet.apply(&watcher::Event::Delete(older));
    assert_eq!(
        rx.try_recv().unwrap(),
        r("b"),
        "the remaining claimant is woken"
    );
    assert_eq!(fleet.owner_other_than("n1", "u-b"), None);
}

#[test]
fn a_relist_drops_resources_it_no_longer_finds() {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let fleet = Fleet::new(MaxFailures::Count(3), tx);
    fleet.apply(&watcher::Event::Apply(obj("a", "u-a", "n1", 0)));
    fleet.apply(&watcher::Event::Init);
    fleet.apply(&watcher::Event::InitApply(obj("b", "u-b", "n1", 5)));
    fleet.apply(&watcher::Event::InitDone);
    assert_eq!(fleet.owner_other_than("n1", "u-b"), None);
}

#[test]
fn failures_pause_changed_resources_until_they_clear() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let fleet = Fleet::new(MaxFailures::Count(2), tx);
    for i in 0..5 {
        fleet.apply(&watcher::Event::Apply(obj(
            &format!("r{i}"),
            &format!("u{i}"),
            &format!("n{i}"),
            i,
        )));
    }
    fleet.apply(&watcher::Event::Apply(failed(
        obj("r0", "u0", "n0", 0),
        StateReason::JobFailed,
    )));
    assert_eq!(
        fleet.rollout_paused("u3"),
        None,
        "one failure is within budget"
    );
    // A failure that needs no Job run does not count.
    fleet.apply(&watcher::Event::Apply(failed(
        obj("r2", "u2", "n2", 2),
        StateReason::InvalidSpec,
    )));
    assert_eq!(fleet.rollout_paused("u3"), None);
    fleet.apply(&watcher::Event::Apply(failed(
        obj("r1", "u1", "n1", 1),
        StateReason::InterfacesFailed,
    )));
    assert_eq!(
        fleet.rollout_paused("u3"),
        Some(Spent {
            failed: 2,
            changing: 0,
            limit: 2
        })
    );
    assert_eq!(fleet.rollout_paused("u1"), None, "a failed one may retry");
    fleet.pause(&r("r3"));
    assert_eq!(fleet.paused(), 1);
    while rx.try_recv().is_ok() {}
    // r1's spec changes (a new generation): it no longer counts, r3 is woken.
    let mut changed = failed(obj("r1", "u1", "n1", 1), StateReason::InterfacesFailed);
    changed.metadata.generation = Some(2);
    fleet.apply(&watcher::Event::Apply(changed));
    assert_eq!(rx.try_recv().unwrap(), r("r3"));
    assert_eq!(fleet.paused(), 0);
}

#[test]
fn budgets_parse_as_counts_or_percentages() {
    assert_eq!(MaxFailures::parse("3"), Ok(MaxFailures::Count(3)));
    assert_eq!(MaxFailures::parse("10%"), Ok(MaxFailures::Percent(10)));
    assert!(MaxFailures::parse("0").is_err());
    assert!(MaxFailures::parse("101%").is_err());
    assert!(MaxFailures::parse("x").is_err());
    assert_eq!(MaxFailures::Percent(10).limit(1000), 100);
    assert_eq!(MaxFailures::Percent(10).limit(5), 1);
    assert_eq!(MaxFailures::Count(0).limit(5), 1);
}

#[test]
fn a_failure_written_by_this_controller_counts_before_the_watch_shows_it() {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let fleet = Fleet::new(MaxFailures::Count(1), tx);
    fleet.apply(&watcher::Event::Apply(obj("r0", "u0", "n0", 0)));
    fleet.apply(&watcher::Event::Apply(obj("r1", "u1", "n1", 1)));
    assert_eq!(fleet.rollout_paused("u1"), None);
    let written = failed(obj("r0", "u0", "n0", 0), StateReason::JobFailed)
        .status
        .unwrap();
    fleet.wrote_status("u0", Some(1), &written);
    assert_eq!(
        fleet.rollout_paused("u1"),
        Some(Spent {
            failed: 1,
            changing: 0,
            limit: 1
        })
    );
    // A status of an older generation is no failure of the current one.
    fleet.wrote_status("u0", Some(2), &written);
    assert_eq!(fleet.rollout_paused("u1"), None);
}

fn at(mut o: MultiNicNodeConfig, generation: i64, state: NodeConfigState) -> MultiNicNodeConfig {
    o.metadata.generation = Some(generation);
    o.status = Some(MultiNicNodeConfigStatus {
        state: Some(state),
        observed_generation: Some(generation),
        ..Default::default()
    });
    o
}

#[test]
fn changed_resources_with_a_job_running_use_the_budget_new_ones_do_not() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let fleet = Fleet::new(MaxFailures::Count(2), tx);
    for i in 0..6 {
        fleet.apply(&watcher::Event::Apply(obj(
            &format!("r{i}"),
            &format!("u{i}"),
            &format!("n{i}"),
            i,
        )));
    }
    // First configurations take no budget, however many run.
    assert_eq!(fleet.claim("u0", 1, false), Ok(false));
    fleet.apply(&watcher::Event::Apply(at(
        obj("r1", "u1", "n1", 1),
        1,
        NodeConfigState::InProgress,
    )));
    assert_eq!(fleet.rollout_paused("u5"), None);
    // Two changes start: the budget is spent before anything failed.
    assert_eq!(fleet.claim("u2", 2, false), Ok(true));
    assert_eq!(fleet.claim("u2", 2, false), Ok(false), "held already");
    assert_eq!(fleet.claim("u3", 2, false), Ok(true));
    let spent = Spent {
        failed: 0,
        changing: 2,
        limit: 2,
    };
    assert_eq!(fleet.claim("u4", 2, false), Err(spent));
    assert_eq!(fleet.rollout_paused("u4"), Some(spent));
    assert_eq!(fleet.rollout_paused("u2"), None, "a running change goes on");
    assert_eq!(
        fleet.claim("u4", 2, true),
        Ok(true),
        "the resume annotation"
    );
    fleet.unclaim("u4");
    fleet.pause(&r("r4"));
    // A stale Pending of u3's generation (written before its Job) does not end its run.
    fleet.apply(&watcher::Event::Apply(at(
        obj("r3", "u3", "n3", 3),
        2,
        NodeConfigState::Pending,
    )));
    assert_eq!(fleet.rollout_paused("u4"), Some(spent));
    assert!(rx.try_recv().is_err());
    // u2 fails: it moves from changing to failed, the budget stays spent.
    fleet.apply(&watcher::Event::Apply({
        let mut o = failed(obj("r2", "u2", "n2", 2), StateReason::JobFailed);
        o.metadata.generation = Some(2);
        o.status.as_mut().unwrap().observed_generation = Some(2);
        o
    }));
    assert_eq!(
        fleet.rollout_paused("u4"),
        Some(Spent {
            failed: 1,
            changing: 1,
            limit: 2
        })
    );
    // u3 is Configured: room again, the paused one is woken.
    fleet.apply(&watcher::Event::Apply(at(
        obj("r3", "u3", "n3", 3),
        2,
        NodeConfigState::Configured,
    )));
    assert_eq!(fleet.rollout_paused("u4"), None);
    assert_eq!(rx.try_recv().unwrap(), r("r4"));
    // After a restart the watch alone shows a change in flight.
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let fresh = Fleet::new(MaxFailures::Count(1), tx);
    fresh.apply(&watcher::Event::Apply(obj("r0", "u0", "n0", 0)));
    fresh.apply(&watcher::Event::Apply(at(
        obj("r1", "u1", "n1", 1),
        3,
        NodeConfigState::InProgress,
    )));
    assert!(fresh.rollout_paused("u0").is_some());
    // Its own InProgress write counts before the watch shows it; its outcome frees it.
    let written = at(obj("r0", "u0", "n0", 0), 2, NodeConfigState::InProgress);
    fresh.wrote_status("u0", Some(2), written.status.as_ref().unwrap());
    assert_eq!(fresh.rollout_paused("u0"), None, "u0 holds budget now");
    let done = at(obj("r1", "u1", "n1", 1), 3, NodeConfigState::Configured);
    fresh.wrote_status("u1", Some(3), done.status.as_ref().unwrap());
    fresh.wrote_status("u0", Some(2), done.status.as_ref().unwrap());
    assert_eq!(fresh.claim("u1", 4, false), Ok(true));
}
