//! Conformance-style tests of watch semantics and of kube-runtime on top of them.
//!
//! | Promise | Test |
//! |---|---|
//! | watch resumes from a resourceVersion, in order; server-side timeout ends it | `watch_resumes_from_resource_version_in_order` |
//! | watch without a version starts with the current state | `watch_from_zero_starts_with_current_state` |
//! | objects entering/leaving a selector are ADDED/DELETED | `selector_enter_and_leave` |
//! | BOOKMARK events when allowed | `bookmarks_carry_the_current_version` |
//! | 410 Gone as an ERROR event once the version is older than the kept history | `too_old_version_is_410_gone_error_event` |
//! | kube-runtime `watcher` relists and continues after a forced 410 | `runtime_watcher_recovers_from_forced_410` |
//! | `sendInitialEvents` (streaming lists) | `streaming_list_watcher` |
//! | metadata-only watches (`Api<PartialObjectMeta<K>>`, as `metadata_watcher` did) | `metadata_watcher_sees_changes` |
//! | kube-runtime `Controller` reconciles, owns children, writes status | `controller_reconciles_and_owns_jobs` |

mod common;

both_backends! {
    watch_resumes_from_resource_version_in_order,
    watch_from_zero_starts_with_current_state,
    selector_enter_and_leave,
    streaming_list_watcher,
    metadata_watcher_sees_changes,
    controller_reconciles_and_owns_jobs,
}

use common::{NS, Target, eventually, mnnc, sim_with_crd};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Resource, ResourceExt};
use multinic_api::MultiNicNodeConfig;
use multinic_sim::SimConfig;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

fn describe<K: ResourceExt>(e: &WatchEvent<K>) -> String {
    match e {
        WatchEvent::Added(o) => format!("ADDED {}", o.name_any()),
        WatchEvent::Modified(o) => format!("MODIFIED {}", o.name_any()),
        WatchEvent::Deleted(o) => format!("DELETED {}", o.name_any()),
        WatchEvent::Bookmark(_) => "BOOKMARK".into(),
        WatchEvent::Error(s) => format!("ERROR {}", s.code),
    }
}

async fn watch_resumes_from_resource_version_in_order(t: Target) {
    let client = t.client.clone();
    let cms: Api<ConfigMap> = Api::namespaced(client, &t.ns);
    let pp = PostParams::default();
    let a = cms.create(&pp, &cm("a", json!({}))).await.unwrap();
    cms.create(&pp, &cm("b", json!({}))).await.unwrap();
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();
    cms.delete("b", &Default::default()).await.unwrap();
    let started = std::time::Instant::now();
    let wp = WatchParams::default().timeout(1).disable_bookmarks();
    let events: Vec<String> = cms
        .watch(&wp, &a.resource_version().unwrap())
        .await
        .unwrap()
        .map(|e| describe(&e.unwrap()))
        .collect()
        .await;
    assert_eq!(events, ["ADDED b", "MODIFIED a", "DELETED b"]);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "timeoutSeconds=1 ended it after {took:?}"
    );
}

async fn watch_from_zero_starts_with_current_state(t: Target) {
    let client = t.client.clone();
    let cms: Api<ConfigMap> = Api::namespaced(client, &t.ns);
    cms.create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let wp = WatchParams::default().timeout(1).disable_bookmarks();
    let events: Vec<String> = cms
        .watch(&wp, "0")
        .await
        .unwrap()
        .map(|e| describe(&e.unwrap()))
        .collect()
        .await;
    // A real namespace also holds the kube-root-ca.crt its root-CA publisher adds.
    let events: Vec<&String> = events
        .iter()
        .filter(|e| !e.ends_with("kube-root-ca.crt"))
        .collect();
    assert_eq!(events, ["ADDED a"]);
}

async fn selector_enter_and_leave(t: Target) {
    let client = t.client.clone();
    let cms: Api<ConfigMap> = Api::namespaced(client, &t.ns);
    let a = cms
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let wp = WatchParams::default()
        .labels("app=web")
        .timeout(2)
        .disable_bookmarks();
    let stream = cms
        .watch(&wp, &a.resource_version().unwrap())
        .await
        .unwrap();
    let pp = PatchParams::default();
    cms.patch(
        "a",
        &pp,
        &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await
    .unwrap();
    cms.patch("a", &pp, &Patch::Merge(json!({"data": {"k": "v"}})))
        .await
        .unwrap();
    cms.patch(
        "a",
        &pp,
        &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await
    .unwrap();
    let events: Vec<String> = stream.map(|e| describe(&e.unwrap())).collect().await;
    assert_eq!(events, ["ADDED a", "MODIFIED a", "DELETED a"]);
}

/// Simulator only: needs a short bookmark interval (`SimConfig::bookmark_interval`; a real
/// server sends bookmarks about once a minute).
#[tokio::test]
async fn bookmarks_carry_the_current_version() {
    let config = SimConfig {
        bookmark_interval: Duration::from_millis(200),
        ..SimConfig::default()
    };
    let (_sim, client) = sim_with_crd(config).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let a = cms
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let mut stream = cms
        .watch(
            &WatchParams::default().timeout(5),
            &a.resource_version().unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Bookmark(b)) => {
            assert!(
                b.metadata.resource_version.parse::<u64>().unwrap()
                    >= a.resource_version().unwrap().parse::<u64>().unwrap()
            );
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }
}

/// Simulator only: forces 410 with `set_watch_history` (a real server compacts on its own
/// schedule).
#[tokio::test]
async fn too_old_version_is_410_gone_error_event() {
    let (sim, client) = sim_with_crd(SimConfig::default()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let first = cms
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    sim.set_watch_history(2);
    for i in 0..5 {
        cms.create(&PostParams::default(), &cm(&format!("x{i}"), json!({})))
            .await
            .unwrap();
    }
    let events: Vec<WatchEvent<ConfigMap>> = cms
        .watch(
            &WatchParams::default().timeout(2),
            &first.resource_version().unwrap(),
        )
        .await
        .unwrap()
        .map(|e| e.unwrap())
        .collect()
        .await;
    match &events[..] {
        [WatchEvent::Error(s)] => assert_eq!((s.code, s.reason.as_str()), (410, "Expired")),
        other => panic!(
            "expected one 410 ERROR event, got {:?}",
            other.iter().map(describe).collect::<Vec<_>>()
        ),
    }
}

/// Simulator only: forces 410 with `set_watch_history`.
#[tokio::test]
async fn runtime_watcher_recovers_from_forced_410() {
    let (sim, client) = sim_with_crd(SimConfig::default()).await;
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &mnnc("w0", "n0", 1450))
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cfg = watcher::Config::default().timeout(1).disable_bookmarks();
    let w = watcher(api.clone(), cfg).default_backoff();
    let task = tokio::spawn(async move {
        futures::pin_mut!(w);
        while let Some(ev) = w.next().await {
            let label = match ev {
                Ok(Event::InitDone) => "InitDone".to_string(),
                Ok(Event::Apply(o)) => format!("Apply {}", o.name_any()),
                Ok(Event::InitApply(o)) => format!("InitApply {}", o.name_any()),
                Ok(other) => format!("{other:?}").chars().take(10).collect(),
                Err(e) => format!("Err {e}"),
            };
            let _ = tx.send(label);
        }
    });
    let mut seen = Vec::new();
    let mut next = async || {
        let l = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("watcher event")
            .unwrap();
        seen.push(l.clone());
        l
    };
    while next().await != "InitDone" {}
    sim.set_watch_history(1);
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..5 {
        cms.create(&PostParams::default(), &cm(&format!("c{i}"), json!({})))
            .await
            .unwrap();
    }
    // The watch times out after 1s; resuming from the list's version now gets 410 and the
    // watcher must list again.
    while next().await != "InitDone" {}
    api.create(&PostParams::default(), &mnnc("w1", "n1", 1450))
        .await
        .unwrap();
    while next().await != "Apply w1" {}
    task.abort();
    assert!(
        seen.iter()
            .any(|s| s.starts_with("Err") && s.contains("Expired")),
        "the watcher saw the 410: {seen:?}"
    );
    let lists = sim
        .request_counts()
        .get(&("list".to_string(), "multinicnodeconfigs".to_string()))
        .copied()
        .unwrap_or(0);
    assert!(lists >= 2, "relisted after 410 ({lists} lists): {seen:?}");
}

async fn streaming_list_watcher(t: Target) {
    let client = t.client.clone();
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client, &t.ns);
    api.create(&PostParams::default(), &mnnc("w0", "n0", 1450))
        .await
        .unwrap();
    let w = watcher(api.clone(), watcher::Config::default().streaming_lists()).default_backoff();
    futures::pin_mut!(w);
    let mut names = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Event::InitApply(o) => names.push(o.name_any()),
            Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(names, ["w0"]);
}

async fn metadata_watcher_sees_changes(t: Target) {
    let client = t.client.clone();
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client.clone(), &t.ns);
    let metas: Api<PartialObjectMeta<MultiNicNodeConfig>> = Api::namespaced(client, &t.ns);
    let w = watcher(metas, watcher::Config::default())
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(w);
    api.create(&PostParams::default(), &mnnc("w0", "n0", 1450))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.metadata.name.as_deref(), first.metadata.generation),
        (Some("w0"), Some(1))
    );
    assert_eq!(first.types.unwrap().kind, "PartialObjectMetadata");
}

struct Ctx {
    api: Api<MultiNicNodeConfig>,
    jobs: Api<Job>,
}

async fn reconcile(obj: Arc<MultiNicNodeConfig>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let name = obj.name_any();
    let owner = obj.controller_owner_ref(&()).unwrap();
    let job: Job = serde_json::from_value(json!({"metadata": {"name": format!("cfg-{name}"), "ownerReferences": [owner]},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}],
        "nodeSelector": {"kubernetes.io/hostname": "none"}}}}})).unwrap();
    ctx.jobs
        .patch(
            &job.name_any(),
            &PatchParams::apply("ctl").force(),
            &Patch::Apply(&job),
        )
        .await?;
    let status = json!({"apiVersion": "multinic.io/v1alpha1", "kind": "MultiNicNodeConfig",
        "status": {"state": "Configured", "observedGeneration": obj.metadata.generation}});
    ctx.api
        .patch_status(
            &name,
            &PatchParams::apply("ctl").force(),
            &Patch::Apply(status),
        )
        .await?;
    Ok(Action::await_change())
}

async fn controller_reconciles_and_owns_jobs(t: Target) {
    let client = t.client.clone();
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client.clone(), &t.ns);
    let jobs: Api<Job> = Api::namespaced(client, &t.ns);
    let ctx = Arc::new(Ctx {
        api: api.clone(),
        jobs: jobs.clone(),
    });
    let ctl = Controller::new(api.clone(), watcher::Config::default())
        .owns(jobs.clone(), watcher::Config::default())
        .run(
            reconcile,
            |_, _, _| Action::requeue(Duration::from_millis(200)),
            ctx,
        )
        .for_each(|_| async {});
    let task = tokio::spawn(ctl);
    for n in ["w1", "w2"] {
        api.create(&PostParams::default(), &mnnc(n, n, 1450))
            .await
            .unwrap();
    }
    let observed = |name: &'static str, generation: i64| {
        let api = api.clone();
        async move {
            let o = api.get(name).await.ok()?;
            (o.status?.observed_generation == Some(generation)).then_some(())
        }
    };
    eventually(10, "w1 reconciled", || observed("w1", 1)).await;
    eventually(10, "w2 reconciled", || observed("w2", 1)).await;
    api.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"interfaces": []}})),
    )
    .await
    .unwrap();
    eventually(10, "w1 generation 2 reconciled", || observed("w1", 2)).await;
    assert_eq!(
        jobs.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    // Deleting a child Job triggers the owner's reconcile, which re-creates it.
    jobs.delete("cfg-w2", &kube::api::DeleteParams::background())
        .await
        .unwrap();
    eventually(10, "job re-created", || {
        let jobs = jobs.clone();
        async move { jobs.get_opt("cfg-w2").await.ok()?.map(|_| ()) }
    })
    .await;
    task.abort();
}
