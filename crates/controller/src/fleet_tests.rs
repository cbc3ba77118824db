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
    assert_eq!(fleet.rollout_paused("u3"), Some((2, 2)));
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
    assert_eq!(fleet.rollout_paused("u1"), Some((1, 1)));
    // A status of an older generation is no failure of the current one.
    fleet.wrote_status("u0", Some(2), &written);
    assert_eq!(fleet.rollout_paused("u1"), None);
}
