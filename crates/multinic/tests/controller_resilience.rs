//! The controller when things go wrong around it, end to end: restarted while a Job runs, a
//! spec that changes under a running Job, a 409 on a status write, two replicas, poll mode.

mod controller_support;

use bytes::Bytes;
use controller_support::{
    Cluster, RunningController, lease_holder, replica_config, slow_agent_command, spec_for,
    test_config, wait_for_leader,
};
use futures::future::BoxFuture;
use http::{Request, Response};
use multinic_api::NodeConfigState;
use multinic_controller::WatchMode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

fn in_progress(o: &multinic_api::MultiNicNodeConfig) -> bool {
    controller_support::in_state_now(o, NodeConfigState::InProgress)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_while_a_job_runs_makes_no_second_job() {
    let cluster = Cluster::start(1).await;
    let node = Cluster::node(0);
    let mut config = test_config();
    config.job.command = slow_agent_command(3);
    let first = RunningController::start(cluster.client.clone(), config.clone());
    cluster
        .create(&node.name, spec_for(0, &[(0, "10.30.0.5", "10.30.0.0/24")]))
        .await;
    cluster
        .wait_for(&node.name, Duration::from_secs(20), in_progress)
        .await;
    assert_eq!(cluster.job_names().await.len(), 1, "the Job runs");
    first.kill().await;

    let _second = RunningController::start(cluster.client.clone(), config);
    let obj = cluster.wait_configured(&node.name).await;
    assert_eq!(
        cluster.requests("create", "jobs"),
        1,
        "the restarted controller adopted the Job"
    );
    assert!(
        obj.status
            .unwrap()
            .last_job_name
            .unwrap()
            .ends_with("-g1-a1")
    );
    assert!(cluster.addresses(&node.name).contains("10.30.0.5/24"));
    assert!(
        cluster.job_names().await.is_empty(),
        "the adopted Job was deleted once recorded"
    );
    cluster.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_an_older_generation_never_writes_status() {
    let cluster = Cluster::start(1).await;
    let node = Cluster::node(0);
    let mut config = test_config();
    config.job.command = slow_agent_command(2);
    let _controller = RunningController::start(cluster.client.clone(), config);
    let statuses = cluster.record_statuses(&node.name);
    cluster
        .create(&node.name, spec_for(0, &[(0, "10.31.0.5", "10.31.0.0/24")]))
        .await;
    cluster
        .wait_for(&node.name, Duration::from_secs(20), in_progress)
        .await;
    // A new generation while the first Job still runs.
    cluster
        .set_spec(
            &node.name,
            &spec_for(0, &[(0, "10.31.0.6", "10.31.0.0/24")]),
        )
        .await;
    let obj = cluster.wait_configured(&node.name).await;
    let status = obj.status.unwrap();
    assert_eq!(status.observed_generation, Some(2));
    assert!(status.last_job_name.unwrap().contains("-g2-"));
    let seen = statuses.log.lock().unwrap().clone();
    assert!(
        !seen
            .iter()
            .any(|s| s.observed_generation == Some(1)
                && s.state == Some(NodeConfigState::Configured)),
        "the generation-1 Job's result was recorded: {seen:#?}"
    );
    assert_eq!(cluster.requests("create", "jobs"), 2);
    let addrs = cluster.addresses(&node.name);
    assert!(
        addrs.contains("10.31.0.6/24") && !addrs.contains("10.31.0.5/"),
        "{addrs}"
    );
    assert!(cluster.job_names().await.is_empty());
    cluster.sim.shutdown().await;
}

/// Answers the first `left` status writes of MultiNicNodeConfigs with 409 Conflict.
#[derive(Clone)]
struct Conflicts<S> {
    inner: S,
    left: Arc<AtomicUsize>,
    injected: Arc<AtomicUsize>,
}

type Body = Box<dyn http_body::Body<Data = Bytes, Error = tower::BoxError> + Send + Unpin>;

impl<S> tower::Service<Request<kube::client::Body>> for Conflicts<S>
where
    S: tower::Service<
            Request<kube::client::Body>,
            Response = Response<Body>,
            Error = tower::BoxError,
        >,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = tower::BoxError;
    type Future = BoxFuture<'static, Result<Response<Body>, tower::BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<kube::client::Body>) -> Self::Future {
        let path = req.uri().path();
        let status_write = req.method() == http::Method::PATCH
            && path.contains("/multinicnodeconfigs/")
            && path.ends_with("/status");
        let take = status_write
            && self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if take {
            self.injected.fetch_add(1, Ordering::SeqCst);
            let body = serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409,
                "reason": "Conflict", "message": "Operation cannot be fulfilled: injected conflict"
            });
            let full = http_body_util::Full::new(Bytes::from(body.to_string()));
            let boxed: Body = Box::new(http_body_util::BodyExt::map_err(full, |e| match e {}));
            let response = Response::builder()
                .status(409)
                .header("content-type", "application/json")
                .body(boxed)
                .expect("a valid response");
            return Box::pin(async move { Ok(response) });
        }
        Box::pin(self.inner.call(req))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_on_a_status_write_is_retried() {
    let cluster = Cluster::start(1).await;
    let node = Cluster::node(0);
    let left = Arc::new(AtomicUsize::new(2));
    let injected = Arc::new(AtomicUsize::new(0));
    let config = kube::Config::new(cluster.sim.base_url.parse().unwrap());
    let (l, i) = (left.clone(), injected.clone());
    let client = kube::client::ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&tower::layer::layer_fn(move |inner| Conflicts {
            inner,
            left: l.clone(),
            injected: i.clone(),
        }))
        .build();
    let _controller = RunningController::start(client, test_config());
    cluster
        .create(&node.name, spec_for(0, &[(0, "10.32.0.5", "10.32.0.0/24")]))
        .await;
    let obj = cluster.wait_configured(&node.name).await;
    assert_eq!(
        injected.load(Ordering::SeqCst),
        2,
        "both conflicts were hit"
    );
    assert_eq!(obj.status.unwrap().interfaces_ready.as_deref(), Some("1/1"));
    assert_eq!(
        cluster.requests("create", "jobs"),
        1,
        "a failed status write made no second Job"
    );
    cluster.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_both_act_and_the_standby_takes_over() {
    let cluster = Cluster::start(2).await;
    let a = RunningController::start(cluster.client.clone(), replica_config("replica-a"));
    wait_for_leader(&cluster.client, "replica-a").await;
    let _b = RunningController::start(cluster.client.clone(), replica_config("replica-b"));
    let first = Cluster::node(0);
    cluster
        .create(
            &first.name,
            spec_for(0, &[(0, "10.33.0.5", "10.33.0.0/24")]),
        )
        .await;
    cluster.wait_configured(&first.name).await;
    // Both replicas see the resource; only the leader acts, so no second create of any kind.
    assert_eq!(cluster.requests("create", "jobs"), 1);
    assert_eq!(
        lease_holder(&cluster.client).await.as_deref(),
        Some("replica-a")
    );

    a.kill().await;
    let second = Cluster::node(1);
    cluster
        .create(
            &second.name,
            spec_for(1, &[(0, "10.34.0.5", "10.34.0.0/24")]),
        )
        .await;
    cluster.wait_configured(&second.name).await;
    assert_eq!(
        lease_holder(&cluster.client).await.as_deref(),
        Some("replica-b")
    );
    assert_eq!(cluster.requests("create", "jobs"), 2);
    cluster.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_mode_converges_without_watches() {
    let cluster = Cluster::start(1).await;
    let node = Cluster::node(0);
    let mut config = test_config();
    config.mode = WatchMode::Poll(Duration::from_millis(500));
    let _controller = RunningController::start(cluster.client.clone(), config);
    cluster
        .create(&node.name, spec_for(0, &[(0, "10.35.0.5", "10.35.0.0/24")]))
        .await;
    cluster.wait_configured(&node.name).await;
    assert!(cluster.addresses(&node.name).contains("10.35.0.5/24"));
    let watches: u64 = cluster
        .sim
        .request_counts()
        .iter()
        .filter(|((verb, _), _)| verb == "watch")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(watches, 0, "poll mode opens no watch");
    cluster.delete(&node.name).await;
    cluster.wait_gone(&node.name).await;
    cluster.sim.shutdown().await;
}
