//! Jobs through the real Job controller, TTL-after-finished controller and garbage collector,
//! their Pods run by the simulator's kubelet on a real control plane: backoffLimit,
//! activeDeadlineSeconds (the running Pod gets SIGTERM and reports it), ttlSecondsAfterFinished,
//! garbage collection through ownerReferences, and a Pod deletion's grace period.
//!
//! | Promise | Test |
//! |---|---|
//! | backoffLimit, activeDeadlineSeconds, ttlSecondsAfterFinished, GC of Pods through ownerReferences; deletion grace: SIGTERM, then SIGKILL after the grace period | `jobs_through_the_real_job_controller` |

mod chart_support;
mod controller_support;
mod realcp_nodes;
mod realcp_support;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use realcp_nodes::RealCluster;
use serde_json::{Value, json};
use std::time::Duration;

const NS: &str = "default";

fn job(name: &str, script: &str, extra: Value) -> Job {
    let mut spec = json!({"template": {"spec": {"restartPolicy": "Never",
        "nodeSelector": {"kubernetes.io/hostname": "sim-node-0"},
        "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", script]}]}}});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

/// Polls `check` every 200 ms until it answers, or panics after `secs`.
async fn until<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn condition(j: &Job, t: &str) -> Option<String> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t && c.status == "True")
        .map(|c| c.reason.clone().unwrap_or_default())
}

async fn pods_of(pods: &Api<Pod>, job: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .unwrap()
        .items
}

fn terminated(p: &Pod) -> Option<(i32, String)> {
    let t = p.status.as_ref()?.container_statuses.as_ref()?[0]
        .state
        .as_ref()?
        .terminated
        .clone()?;
    Some((t.exit_code, t.message.unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_through_the_real_job_controller() {
    let Some(cluster) = RealCluster::start(1).await else {
        return;
    };
    let jobs: Api<Job> = Api::namespaced(cluster.admin.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(cluster.admin.clone(), NS);
    let pp = PostParams::default();

    // A message and an exit code come back through the termination log.
    jobs.create(
        &pp,
        &job("ok", "echo -n done > /dev/termination-log", json!({})),
    )
    .await
    .unwrap();
    // backoffLimit 1: two failed Pods, then the Job fails.
    jobs.create(
        &pp,
        &job(
            "fails",
            "echo -n bad > /dev/termination-log; exit 3",
            json!({"backoffLimit": 1}),
        ),
    )
    .await
    .unwrap();
    // activeDeadlineSeconds: the running Pod is stopped (SIGTERM, which it reports).
    let trap = "trap 'echo -n got-term > /dev/termination-log; exit 7' TERM; while true; do sleep 0.1; done";
    // A long grace period: the Pod only goes in time if SIGTERM ends it.
    let mut slow = job(
        "slow",
        trap,
        json!({"activeDeadlineSeconds": 3, "backoffLimit": 0}),
    );
    if let Some(spec) = slow.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        spec.termination_grace_period_seconds = Some(600);
    }
    jobs.create(&pp, &slow).await.unwrap();
    // ttlSecondsAfterFinished: the finished Job and its Pod are deleted.
    jobs.create(
        &pp,
        &job("short-lived", "true", json!({"ttlSecondsAfterFinished": 1})),
    )
    .await
    .unwrap();

    let ok = until(60, "Job ok Complete", || {
        let jobs = jobs.clone();
        async move {
            jobs.get("ok")
                .await
                .ok()
                .filter(|j| condition(j, "Complete").is_some())
        }
    })
    .await;
    assert_eq!(ok.status.unwrap().succeeded, Some(1));
    let ok_pods = pods_of(&pods, "ok").await;
    assert_eq!(terminated(&ok_pods[0]), Some((0, "done".into())));
    assert_eq!(
        ok_pods[0].spec.as_ref().unwrap().node_name.as_deref(),
        Some("sim-node-0")
    );

    let reason = until(90, "Job fails Failed", || {
        let jobs = jobs.clone();
        async move { condition(&jobs.get("fails").await.ok()?, "Failed") }
    })
    .await;
    assert_eq!(reason, "BackoffLimitExceeded");
    let failed = pods_of(&pods, "fails").await;
    assert_eq!(failed.len(), 2, "one retry, then the Job gave up");
    assert!(
        failed
            .iter()
            .all(|p| terminated(p) == Some((3, "bad".into())))
    );

    let reason = until(60, "Job slow Failed", || {
        let jobs = jobs.clone();
        async move { condition(&jobs.get("slow").await.ok()?, "Failed") }
    })
    .await;
    assert_eq!(reason, "DeadlineExceeded");
    // The Pod was stopped gracefully, reported its SIGTERM and was deleted.
    until(60, "the slow Job's Pod is gone", || {
        let pods = pods.clone();
        async move { pods_of(&pods, "slow").await.is_empty().then_some(()) }
    })
    .await;

    until(60, "Job short-lived deleted by its TTL", || {
        let jobs = jobs.clone();
        async move {
            jobs.get_opt("short-lived")
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await;
    until(60, "its Pod collected", || {
        let pods = pods.clone();
        async move { pods_of(&pods, "short-lived").await.is_empty().then_some(()) }
    })
    .await;

    // Garbage collection through ownerReferences: deleting the Job removes its Pods.
    jobs.delete("fails", &DeleteParams::background())
        .await
        .unwrap();
    until(60, "the failed Job's Pods collected", || {
        let pods = pods.clone();
        async move { pods_of(&pods, "fails").await.is_empty().then_some(()) }
    })
    .await;

    // Deletion grace: a Pod ignoring SIGTERM is killed once its grace period has passed.
    let stubborn: Pod = serde_json::from_value(json!({"metadata": {"name": "stubborn"}, "spec": {
        "restartPolicy": "Never", "terminationGracePeriodSeconds": 2,
        "nodeSelector": {"kubernetes.io/hostname": "sim-node-0"},
        "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c",
            "trap '' TERM; echo -n started > /dev/termination-log; while true; do sleep 0.1; done"]}]}}))
    .unwrap();
    pods.create(&pp, &stubborn).await.unwrap();
    until(60, "stubborn Running", || {
        let pods = pods.clone();
        async move {
            let p = pods.get("stubborn").await.ok()?;
            (p.status?.phase.as_deref() == Some("Running")).then_some(())
        }
    })
    .await;
    let started = tokio::time::Instant::now();
    pods.delete("stubborn", &DeleteParams::default())
        .await
        .unwrap();
    // While the grace period runs the Pod is still there, marked for deletion.
    let marked = pods.get("stubborn").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    until(30, "stubborn deleted", || {
        let pods = pods.clone();
        async move { pods.get_opt("stubborn").await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the Pod went before its grace period passed: it ignores SIGTERM"
    );
    cluster.stop().await;
}
