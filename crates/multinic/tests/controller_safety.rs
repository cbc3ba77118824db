//! The controller keeps nodes safe and status truthful, end to end against the simulator: one
//! owner per node, refused Jobs reported with the API's message, the rollout budget stopping a
//! bad push (failures and the changes in flight count, so it stops within the budget, not the
//! Job cap), and the Job cap holding across a controller restart.

mod controller_support;

use controller_support::{
    Cluster, NS, RunningController, event_reasons, message, reason_is, spec_for, test_config,
};
use kube::api::{ListParams, Patch, PatchParams};
use multinic_api::{NodeConfigState, StateReason};
use multinic_controller::fleet::MaxFailures;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Names of the resources whose status ever named an agent Job.
async fn resources_that_ran(cluster: &Cluster) -> Vec<String> {
    cluster
        .configs()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|o| o.status.as_ref().is_some_and(|s| s.last_job_name.is_some()))
        .filter_map(|o| o.metadata.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_resource_for_a_node_gets_no_job_and_no_cleanup() {
    let cluster = Cluster::start(1).await;
    let _controller = RunningController::start(cluster.client.clone(), test_config());
    let node = Cluster::node(0);
    cluster
        .create(&node.name, spec_for(0, &[(0, "10.30.0.5", "10.30.0.0/24")]))
        .await;
    cluster.wait_configured(&node.name).await;
    let jobs_before = cluster.requests("create", "jobs");

    let intruder = "intruder";
    cluster
        .create(intruder, spec_for(0, &[(1, "10.31.0.5", "10.31.0.0/24")]))
        .await;
    let obj = cluster
        .wait_for(intruder, WAIT, |o| {
            reason_is(o, NodeConfigState::Failed, StateReason::NodeConflict)
        })
        .await;
    assert!(message(&obj).contains(&node.name), "{}", message(&obj));
    assert!(
        event_reasons(&cluster, intruder)
            .await
            .iter()
            .any(|(r, _)| r == "NodeConflict")
    );
    // Deleting it runs no cleanup Job: the owner's NICs stay.
    cluster.delete(intruder).await;
    cluster.wait_gone(intruder).await;
    assert_eq!(
        cluster.requests("create", "jobs"),
        jobs_before,
        "no Job for the intruder"
    );
    assert!(cluster.addresses(&node.name).contains("10.30.0.5"));
    assert!(!cluster.addresses(&node.name).contains("10.31.0.5"));
    cluster.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_api_refuses_is_failed_with_its_message_once() {
    let cluster = Cluster::start(1).await;
    let mut config = test_config();
    // An empty image: the API server answers 422 (spec.template.spec.containers[0].image).
    config.job.image = String::new();
    let _controller = RunningController::start(cluster.client.clone(), config);
    let node = Cluster::node(0);
    cluster
        .create(&node.name, spec_for(0, &[(0, "10.32.0.5", "10.32.0.0/24")]))
        .await;
    let obj = cluster
        .wait_for(&node.name, WAIT, |o| {
            reason_is(o, NodeConfigState::Failed, StateReason::JobRejected)
        })
        .await;
    assert!(message(&obj).contains("image"), "{}", message(&obj));
    assert!(
        event_reasons(&cluster, &node.name)
            .await
            .iter()
            .any(|(r, _)| r == "JobRejected")
    );
    // No endless loop: within the (2 s) longest backoff the create is not repeated often.
    let refused = cluster.requests("create", "jobs");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = cluster.requests("create", "jobs") - refused;
    assert!(again <= 2, "{again} more creates in 3 s");
    cluster.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_push_stops_after_the_failure_budget() {
    let cluster = Cluster::start(4).await;
    let mut config = test_config();
    // Every agent run fails; one Job at a time so failures are seen before the next start.
    config.job.command = vec!["sh".into(), "-c".into(), "exit 1".into()];
    config.max_jobs_in_flight = 1;
    config.max_failures = MaxFailures::Count(2);
    config.retry.max_attempts = 1;
    let _controller = RunningController::start(cluster.client.clone(), config);
    let names: Vec<String> = (0..4).map(|i| Cluster::node(i).name).collect();
    for (i, name) in names.iter().enumerate() {
        let net = format!("10.{}.0", 40 + i);
        cluster
            .create(
                name,
                spec_for(i, &[(0, &format!("{net}.5"), &format!("{net}.0/24"))]),
            )
            .await;
    }
    // Two fail, the other two are held back.
    let mut paused = Vec::new();
    for name in &names {
        let obj = cluster
            .wait_for(name, WAIT, |o| {
                reason_is(o, NodeConfigState::Failed, StateReason::RetriesExhausted)
                    || reason_is(o, NodeConfigState::Pending, StateReason::RolloutPaused)
            })
            .await;
        if reason_is(&obj, NodeConfigState::Pending, StateReason::RolloutPaused) {
            paused.push(name.clone());
        }
    }
    assert_eq!(paused.len(), 2, "{paused:?}");
    assert_eq!(resources_that_ran(&cluster).await.len(), 2);
    assert!(
        event_reasons(&cluster, &paused[0])
            .await
            .iter()
            .any(|(r, _)| r == "RolloutPaused")
    );
    // The resume annotation lets one through.
    let patch = serde_json::json!({"metadata": {"annotations": {multinic_api::RESUME_ROLLOUT_ANNOTATION: "now"}}});
    cluster
        .configs()
        .patch(&paused[0], &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    cluster
        .wait_for(&paused[0], WAIT, |o| {
            o.status.as_ref().is_some_and(|s| s.last_job_name.is_some())
        })
        .await;
    assert!(
        cluster
            .configs()
            .get(&paused[1])
            .await
            .map(|o| reason_is(&o, NodeConfigState::Pending, StateReason::RolloutPaused))
            .unwrap()
    );
    cluster.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_cap_holds_across_a_restart() {
    let cluster = Cluster::start(2).await;
    let mut config = test_config();
    config.job.command = vec!["sh".into(), "-c".into(), "sleep 8".into()];
    config.max_jobs_in_flight = 1;
    let first = RunningController::start(cluster.client.clone(), config.clone());
    let (a, b) = (Cluster::node(0).name, Cluster::node(1).name);
    cluster
        .create(&a, spec_for(0, &[(0, "10.50.0.5", "10.50.0.0/24")]))
        .await;
    cluster
        .wait_for(&a, WAIT, |o| {
            reason_is(o, NodeConfigState::InProgress, StateReason::Applying)
        })
        .await;
    first.kill().await;
    cluster
        .create(&b, spec_for(1, &[(0, "10.51.0.5", "10.51.0.0/24")]))
        .await;
    // The new controller counts a's running Job before it acts: b waits for the slot.
    let _second = RunningController::start(cluster.client.clone(), config);
    cluster
        .wait_for(&b, WAIT, |o| {
            reason_is(o, NodeConfigState::Pending, StateReason::WaitingForJobSlot)
        })
        .await;
    assert_eq!(cluster.job_names().await.len(), 1, "only a's Job runs");
    cluster.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cordoned_node_gets_no_job_until_it_is_uncordoned() {
    let cluster = Cluster::start(1).await;
    let node = Cluster::node(0);
    let cordon = |on: bool| serde_json::json!({"spec": {"unschedulable": on}});
    cluster
        .nodes()
        .patch(
            &node.name,
            &PatchParams::default(),
            &Patch::Merge(cordon(true)),
        )
        .await
        .unwrap();
    let _controller = RunningController::start(cluster.client.clone(), test_config());
    cluster
        .create(&node.name, spec_for(0, &[(0, "10.60.0.5", "10.60.0.0/24")]))
        .await;
    cluster
        .wait_for(&node.name, WAIT, |o| {
            reason_is(o, NodeConfigState::Pending, StateReason::NodeNotReady)
        })
        .await;
    assert_eq!(cluster.requests("create", "jobs"), 0);
    // Uncordoning is a Node change: it wakes the resource (no periodic recheck needed).
    cluster
        .nodes()
        .patch(
            &node.name,
            &PatchParams::default(),
            &Patch::Merge(cordon(false)),
        )
        .await
        .unwrap();
    cluster.wait_configured(&node.name).await;
    assert!(cluster.addresses(&node.name).contains("10.60.0.5"));
    cluster.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_name_held_by_someone_else_is_never_taken_for_ours() {
    use k8s_openapi::api::batch::v1::Job;
    use kube::ResourceExt;
    use kube::api::PostParams;
    use multinic_api::report::AgentAction;
    let cluster = Cluster::start(1).await;
    let node = Cluster::node(0);
    // Written while no controller runs, so the Job name it will use is known first.
    let obj = cluster
        .create(&node.name, spec_for(0, &[(0, "10.70.0.5", "10.70.0.0/24")]))
        .await;
    let name = multinic_controller::job::job_name(
        &node.name,
        &obj.uid().unwrap(),
        AgentAction::Apply,
        1,
        1,
    );
    let foreign: Job = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": NS},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "x", "image": "x", "command": ["sh", "-c", "sleep 30"]}]}}}
    }))
    .unwrap();
    cluster
        .jobs()
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    let _controller = RunningController::start(cluster.client.clone(), test_config());
    let obj = cluster
        .wait_for(&node.name, WAIT, |o| {
            reason_is(o, NodeConfigState::Failed, StateReason::JobRejected)
        })
        .await;
    assert!(
        message(&obj).contains("does not belong"),
        "{}",
        message(&obj)
    );
    assert!(!cluster.addresses(&node.name).contains("10.70.0.5"));
    cluster.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_resource_that_never_ran_needs_no_cleanup_job() {
    let cluster = Cluster::start(1).await;
    let _controller = RunningController::start(cluster.client.clone(), test_config());
    let node = Cluster::node(0);
    // The metadata network: the schema lets it through, validation refuses it.
    cluster
        .create(
            &node.name,
            spec_for(0, &[(0, "169.254.169.10", "169.254.169.0/24")]),
        )
        .await;
    let obj = cluster
        .wait_for(&node.name, WAIT, |o| {
            reason_is(o, NodeConfigState::Failed, StateReason::InvalidSpec)
        })
        .await;
    assert!(
        message(&obj).contains("spec.interfaces[0].cidr"),
        "{}",
        message(&obj)
    );
    cluster.delete(&node.name).await;
    cluster.wait_gone(&node.name).await;
    assert_eq!(
        cluster.requests("create", "jobs"),
        0,
        "no apply or cleanup Job"
    );
    cluster.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_push_of_changes_stops_within_the_budget_not_the_job_cap() {
    const NODES: usize = 20;
    let cluster = Cluster::start(NODES).await;
    let mut config = test_config();
    config.max_jobs_in_flight = 50;
    config.max_failures = MaxFailures::Count(3);
    let _controller = RunningController::start(cluster.client.clone(), config);
    let names: Vec<String> = (0..NODES).map(|i| Cluster::node(i).name).collect();
    let good = |i: usize| {
        spec_for(
            i,
            &[(0, &format!("10.60.{i}.5"), &format!("10.60.{i}.0/24"))],
        )
    };
    // First configurations take no budget: all of them run at once and end Configured.
    for (i, name) in names.iter().enumerate() {
        cluster.create(name, good(i)).await;
    }
    for name in &names {
        cluster.wait_configured(name).await;
    }
    // The producer pushes a spec naming a NIC no node has: every run of it fails.
    for (i, name) in names.iter().enumerate() {
        let mut bad = good(i);
        bad.interfaces[0].mac_address = "02:00:5e:ff:ff:01".into();
        cluster.set_spec(name, &bad).await;
    }
    let mut ran = Vec::new();
    let mut paused = 0;
    for name in &names {
        let obj = cluster
            .wait_for(name, WAIT, |o| {
                reason_is(o, NodeConfigState::Failed, StateReason::InterfacesFailed)
                    || reason_is(o, NodeConfigState::Pending, StateReason::RolloutPaused)
            })
            .await;
        if reason_is(&obj, NodeConfigState::Pending, StateReason::RolloutPaused) {
            paused += 1;
        } else {
            ran.push(name.clone());
        }
    }
    // The Jobs running for changes count against the budget: three start, not fifty.
    assert!(
        (1..=3).contains(&ran.len()),
        "{} changed resources ran a Job (the budget lets up to three through): {ran:?}",
        ran.len()
    );
    assert_eq!(paused + ran.len(), NODES);
    // The nodes held back keep the configuration they had.
    for (i, name) in names.iter().enumerate() {
        if !ran.contains(name) {
            let addrs = cluster.addresses(name);
            assert!(addrs.contains(&format!("10.60.{i}.5/24")), "{addrs}");
        }
    }
    cluster.sim.shutdown().await;
}
