//! Wiring: trimmed caches (MultiNicNodeConfigs, the controller's Jobs, Nodes) fed by watches
//! or polls, kube-runtime's `Controller` with the finalizer around apply/cleanup, the Job-slot
//! wake-ups, leader election, housekeeping and the HTTP endpoints.

use crate::config::{ControllerConfig, FIELD_MANAGER, WatchMode};
use crate::error::Error;
use crate::expect::Expectations;
use crate::fleet::Fleet;
use crate::job::{self, MANAGED_BY_LABEL};
use crate::leader::LeaderElector;
use crate::metrics::{self, Metrics};
use crate::nodes::NodeCache;
use crate::reconcile::{self, Context};
use crate::slots::JobSlots;
use crate::{cleanup, poll, trim};
use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::runtime::controller::{Action as Requeue, Config as ControllerRunConfig};
use kube::runtime::events::Reporter;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use multinic_api::MultiNicNodeConfig;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs the controller until `shutdown` resolves (or leadership is lost, which is an error).
pub async fn run(
    client: Client,
    config: ControllerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::default());
    let (configs, configs_writer) = reflector::store::<MultiNicNodeConfig>();
    let http = match config.http_addr {
        Some(addr) => Some(AbortOnDrop(
            metrics::serve(addr, metrics.clone(), configs.clone()).await?,
        )),
        None => None,
    };

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut lost_rx = None;
    // Background tasks end with this function, also when its future is dropped.
    let mut renewal_task = None;
    let mut shutdown = Box::pin(shutdown);
    if let Some(leader) = config.leader_election.clone() {
        let elector = LeaderElector::new(client.clone(), leader, config.instance.clone());
        // A standby is healthy and able to take over, so it reports ready while it waits:
        // otherwise a multi-replica rollout (and `helm --wait`) could never finish.
        metrics.ready.store(true, Ordering::Relaxed);
        tokio::select! {
            acquired = elector.acquire() => acquired?,
            () = &mut shutdown => return Ok(()),
        }
        // Leading now: not ready again until this replica's caches are filled.
        metrics.ready.store(false, Ordering::Relaxed);
        let (lost, renewal) = elector.keep_leading();
        lost_rx = Some(lost);
        renewal_task = Some(AbortOnDrop(renewal));
    }
    // Ends with this function too: after a lost Lease nothing is left to shut down.
    let forward_shutdown = AbortOnDrop(tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(());
    }));

    let (jobs, jobs_writer) = reflector::store::<Job>();
    let (jobs_synced_tx, jobs_synced) = tokio::sync::watch::channel(false);
    let (configs_synced_tx, configs_synced) = tokio::sync::watch::channel(false);
    let nodes = Arc::new(NodeCache::default());
    let (wake_tx, wake_rx) = tokio::sync::mpsc::unbounded_channel();
    let fleet = Arc::new(Fleet::new(config.max_failures, wake_tx.clone()));
    let node_index = Arc::new(Mutex::new(HashMap::new()));
    let ctx = Arc::new(Context {
        client: client.clone(),
        reporter: Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(config.instance.clone()),
        },
        slots: JobSlots::new(config.max_jobs_in_flight, wake_tx),
        jobs: jobs.clone(),
        jobs_synced,
        nodes: nodes.clone(),
        metrics: metrics.clone(),
        expect: Expectations::default(),
        node_index: node_index.clone(),
        error_streak: Mutex::new(HashMap::new()),
        cleanup_attempts: Mutex::new(HashMap::new()),
        fleet: fleet.clone(),
        configs_synced: configs_synced.clone(),
        adopted: std::sync::OnceLock::new(),
        config: config.clone(),
    });

    let (config_api, job_api): (Api<MultiNicNodeConfig>, Api<Job>) = match &config.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let node_api: Api<Node> = Api::all(client.clone());
    let job_selector = format!("{MANAGED_BY_LABEL}={FIELD_MANAGER}");

    let config_stream = events(config_api, None, config.mode)
        .modify(trim::trim_config)
        .reflect(configs_writer)
        // Ownership and the rollout budget are kept from the events themselves.
        .inspect_ok(move |event| fleet.apply(event))
        .inspect_ok(move |event| mark_synced(event, &configs_synced_tx))
        .touched_objects();
    let job_stream = events(job_api, Some(&job_selector), config.mode)
        .modify(job::trim_job)
        .reflect(jobs_writer)
        .inspect_ok(move |event| mark_synced(event, &jobs_synced_tx))
        .touched_objects();
    // Nodes feed the compact cache; only Nodes whose facts changed wake their resources.
    let node_cache = nodes.clone();
    let node_stream = events(node_api, None, config.mode).flat_map(move |event| {
        let woken: Vec<Result<Node, watcher::Error>> = match event {
            Ok(event) => node_cache
                .apply(event)
                .into_iter()
                .map(|name| {
                    Ok(Node {
                        metadata: kube::api::ObjectMeta {
                            name: Some(name),
                            ..Default::default()
                        },
                        ..Default::default()
                    })
                })
                .collect(),
            Err(err) => vec![Err(err)],
        };
        futures::stream::iter(woken)
    });
    let watched_namespace = config.namespace.clone();
    let node_mapper = move |node: Node| -> Vec<ObjectRef<MultiNicNodeConfig>> {
        let name = node.name_any();
        let index = node_index.lock().unwrap_or_else(|p| p.into_inner());
        let mut refs = index.get(&name).cloned().unwrap_or_default();
        // The resource named after the node (if there is none, the Controller skips it).
        if let Some(ns) = &watched_namespace {
            refs.push(ObjectRef::new(&name).within(ns));
        }
        refs
    };
    let wake =
        futures::stream::unfold(
            wake_rx,
            |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
        );

    let housekeeping = AbortOnDrop(tokio::spawn(housekeeping(ctx.clone(), configs_synced)));
    let controller = Controller::for_stream(config_stream, configs)
        .owns_stream(job_stream)
        .watches_stream(node_stream, node_mapper)
        .reconcile_on(wake)
        .with_config(ControllerRunConfig::default().concurrency(config.concurrency))
        .graceful_shutdown_on(stop_rx.map(|_| ()))
        .run(reconcile_one, error_policy, ctx);
    tracing::info!(namespace = ?config.namespace, mode = ?config.mode, "controller running");
    let driven = controller.for_each(|result| async move {
        if let Err(err) = result {
            tracing::debug!(%err, "controller stream");
        }
    });
    let lost_now = async {
        match lost_rx.clone() {
            Some(mut rx) => {
                let _ = rx.wait_for(|lost| *lost).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = driven => {}
        // A shutdown lets the reconciles in flight finish; a lost Lease does not: another
        // replica may act from now on, so they are dropped here with their API calls (which
        // an unreachable API server would otherwise hold open).
        () = lost_now => {}
    }
    drop((housekeeping, http, renewal_task, forward_shutdown));
    if lost_rx.is_some_and(|rx| *rx.borrow()) {
        return Err(Error::Leader("leadership lost".into()));
    }
    tracing::info!("controller stopped");
    Ok(())
}

/// Flags a cache as filled once its first full list is in.
fn mark_synced<K>(event: &watcher::Event<K>, synced: &tokio::sync::watch::Sender<bool>) {
    if matches!(event, watcher::Event::InitDone) {
        synced.send_replace(true);
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watch or poll events of `api`, filtered by `labels`.
fn events<K>(
    api: Api<K>,
    labels: Option<&str>,
    mode: WatchMode,
) -> std::pin::Pin<Box<dyn Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Clone + Eq + std::hash::Hash,
{
    match mode {
        WatchMode::Watch => {
            let mut wc = watcher::Config::default().page_size(500);
            if let Some(l) = labels {
                wc = wc.labels(l);
            }
            watcher(api, wc).default_backoff().boxed()
        }
        WatchMode::Poll(interval) => {
            let mut lp = ListParams::default();
            if let Some(l) = labels {
                lp = lp.labels(l);
            }
            poll::poll_events(api, lp, interval)
                .default_backoff()
                .boxed()
        }
    }
}

async fn reconcile_one(obj: Arc<MultiNicNodeConfig>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let started = Instant::now();
    let _ = ctx.jobs_synced.clone().wait_for(|synced| *synced).await;
    // Ownership of a node is judged only once every resource naming it is known.
    let _ = ctx.configs_synced.clone().wait_for(|synced| *synced).await;
    ctx.nodes.wait_ready().await;
    ctx.adopt_running_jobs();
    let api: Api<MultiNicNodeConfig> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let key = ObjectRef::from_obj(&*obj);
    let result = finalizer(&api, multinic_api::CLEANUP_FINALIZER, obj, |event| async {
        match event {
            Finalizer::Apply(o) => reconcile::apply(o, &ctx).await,
            Finalizer::Cleanup(o) => cleanup::cleanup(o, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    let label = match &result {
        Ok(_) => "ok",
        Err(err) if err.is_waiting() => "waiting",
        Err(err) => err.metric_label(),
    };
    ctx.metrics.reconciled(label, started.elapsed());
    ctx.metrics.set_jobs_in_flight(ctx.slots.in_flight());
    ctx.metrics.set_rollout_paused(ctx.fleet.paused());
    if result.is_ok() {
        ctx.error_streak
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }
    result
}

fn error_policy(obj: Arc<MultiNicNodeConfig>, err: &Error, ctx: Arc<Context>) -> Requeue {
    if err.is_waiting() {
        tracing::debug!(resource = %obj.name_any(), %err, "waiting");
        return Requeue::requeue(Duration::from_secs(10));
    }
    let mut streaks = ctx.error_streak.lock().unwrap_or_else(|p| p.into_inner());
    let streak = streaks.entry(ObjectRef::from_obj(&*obj)).or_insert(0);
    *streak += 1;
    // Per-object exponential backoff: 0.5 s, 1 s, 2 s ... at most a minute.
    let delay = Duration::from_millis(500)
        .saturating_mul(1u32 << (*streak - 1).min(7))
        .min(Duration::from_secs(60));
    tracing::warn!(resource = %obj.name_any(), %err, retry_in = ?delay, "reconcile failed");
    Requeue::requeue(delay)
}

/// Every few seconds: frees Job slots whose Job vanished, forgets settled deletions, marks
/// the replica ready once its caches are filled, refreshes the Jobs-in-flight gauge.
async fn housekeeping(ctx: Arc<Context>, mut configs_synced: tokio::sync::watch::Receiver<bool>) {
    let _ = configs_synced.wait_for(|synced| *synced).await;
    let _ = ctx.jobs_synced.clone().wait_for(|synced| *synced).await;
    ctx.nodes.wait_ready().await;
    ctx.metrics.ready.store(true, Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let cached = |key: &str| {
            let (ns, name) = key.split_once('/').unwrap_or(("", key));
            ctx.jobs.get(&ObjectRef::new(name).within(ns))
        };
        ctx.slots
            .sweep(Duration::from_secs(120), |key| cached(key).is_some());
        ctx.expect.settle_deleted(|key, uid| {
            cached(key).is_some_and(|j| j.uid().as_deref() == Some(uid))
        });
        ctx.metrics.set_jobs_in_flight(ctx.slots.in_flight());
    }
}
