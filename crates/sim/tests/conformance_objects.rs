//! Conformance-style tests, part two: selectors, deletion (finalizers, kube-runtime's finalizer
//! helper, cascading, namespaces, CRDs), pagination and generateName; driven through kube-rs's
//! own `Api`. Part one is `conformance.rs`.
//!
//! | Promise | Test |
//! |---|---|
//! | label selectors (=, !=, in, notin, exists, !exists) | `label_selectors` |
//! | field selectors (metadata.name, metadata.namespace, spec.nodeName) | `field_selectors` |
//! | kube-runtime's `finalizer` helper: add, apply, cleanup, release | `kube_runtime_finalizer_helper_round_trip` |
//! | finalizers and deletionTimestamp | `finalizers_hold_deletion_until_removed` |
//! | ownerReference cascading: background, foreground, orphan; dependents of absent owners collected | `owner_references_cascade` |
//! | list pagination with limit/continue, or a complete list | `list_pagination` |
//! | namespaces: must exist; deleting one deletes its contents | `namespaces_scope_and_terminate` |
//! | generateName | `generate_name_makes_unique_names` |
//! | CRD deletion stops serving its resources | `deleting_a_crd_removes_its_resources` |

mod common;

use common::{NS, mnnc, sim_with_crd, status_of};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use multinic_api::MultiNicNodeConfig;
use multinic_sim::SimConfig;
use serde_json::json;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

fn pod(name: &str, node: &str) -> Pod {
    serde_json::from_value(
        json!({"metadata": {"name": name}, "spec": {"nodeName": node,
        "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .unwrap()
}

#[tokio::test]
async fn label_selectors() {
    let (_sim, client) = sim_with_crd(SimConfig::default()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    for (n, labels) in [
        ("a", json!({"app": "web", "tier": "front"})),
        ("b", json!({"app": "db"})),
        ("c", json!({})),
    ] {
        cms.create(&PostParams::default(), &cm(n, labels))
            .await
            .unwrap();
    }
    let names = |sel: &'static str| {
        let cms = cms.clone();
        async move {
            let l = cms.list(&ListParams::default().labels(sel)).await.unwrap();
            l.items
                .into_iter()
                .map(|c| c.metadata.name.unwrap())
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    assert_eq!(names("app=web").await, "a");
    assert_eq!(names("app!=web").await, "b,c");
    assert_eq!(names("app in (web,db)").await, "a,b");
    assert_eq!(names("app notin (web)").await, "b,c");
    assert_eq!(names("tier").await, "a");
    assert_eq!(names("!app").await, "c");
    assert_eq!(names("app,tier=front").await, "a");
}

#[tokio::test]
async fn field_selectors() {
    let (_sim, client) = sim_with_crd(SimConfig::default()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (n, node) in [("p1", "n1"), ("p2", "n2"), ("p3", "n1")] {
        pods.create(&PostParams::default(), &pod(n, node))
            .await
            .unwrap();
    }
    let names = |l: kube::core::ObjectList<Pod>| {
        l.items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            pods.list(&ListParams::default().fields("spec.nodeName=n1"))
                .await
                .unwrap()
        ),
        ["p1", "p3"]
    );
    assert_eq!(
        names(
            pods.list(&ListParams::default().fields("metadata.name=p2"))
                .await
                .unwrap()
        ),
        ["p2"]
    );
    assert_eq!(
        names(
            pods.list(
                &ListParams::default().fields("spec.nodeName!=n1,metadata.namespace=default")
            )
            .await
            .unwrap()
        ),
        ["p2"]
    );
    let all: Api<Pod> = Api::all(client);
    assert_eq!(
        all.list(&ListParams::default().fields("metadata.namespace=kube-system"))
            .await
            .unwrap()
            .items
            .len(),
        0
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (_sim, client) = sim_with_crd(SimConfig::default()).await;
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client, NS);
    let mut obj = mnnc("w1", "n1", 1450);
    obj.metadata.finalizers = Some(vec![multinic_api::CLEANUP_FINALIZER.to_string()]);
    api.create(&PostParams::default(), &obj).await.unwrap();
    let deleted = api.delete("w1", &DeleteParams::default()).await.unwrap();
    let held = deleted
        .left()
        .expect("DELETE of an object with finalizers returns the object");
    assert!(held.metadata.deletion_timestamp.is_some());
    let still = api.get("w1").await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_some());
    let again = api
        .delete("w1", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(
        again.metadata.deletion_timestamp, still.metadata.deletion_timestamp,
        "a second DELETE changes nothing"
    );
    let err = status_of(
        api.patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"finalizers": [multinic_api::CLEANUP_FINALIZER, "x.io/late"]}}),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        err.code, 422,
        "no new finalizers while deleting: {}",
        err.message
    );
    api.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(
        api.get_opt("w1").await.unwrap().is_none(),
        "gone once the last finalizer is removed"
    );
}

fn job(name: &str) -> Job {
    serde_json::from_value(
        json!({"metadata": {"name": name}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": "nowhere"},
        "containers": [{"name": "c", "image": "busybox"}]}}}}),
    )
    .unwrap()
}

fn owned_pod(name: &str, owner: &Job) -> Pod {
    let mut p = pod(name, "");
    p.spec.as_mut().unwrap().node_name = None;
    p.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: owner.metadata.name.clone().unwrap(),
            uid: owner.metadata.uid.clone().unwrap(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
    ]);
    p
}

#[tokio::test]
async fn owner_references_cascade() {
    let (_sim, client) = sim_with_crd(SimConfig::default()).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pp = PostParams::default();
    for (policy, keeps) in [
        (Some(DeleteParams::background()), false),
        (Some(DeleteParams::foreground()), false),
        (Some(DeleteParams::orphan()), true),
        (None, true),
    ] {
        let j = jobs.create(&pp, &job("j")).await.unwrap();
        let owned = pods.create(&pp, &owned_pod("owned", &j)).await.unwrap();
        assert!(owned.metadata.owner_references.is_some());
        jobs.delete("j", &policy.clone().unwrap_or_default())
            .await
            .unwrap();
        let left = pods.get_opt("owned").await.unwrap();
        assert_eq!(
            left.is_some(),
            keeps,
            "policy {:?}",
            policy.map(|p| p.propagation_policy)
        );
        if let Some(p) = left {
            assert!(
                p.metadata.owner_references.unwrap_or_default().is_empty(),
                "orphans lose the reference"
            );
            pods.delete("owned", &DeleteParams::default())
                .await
                .unwrap();
        }
        // the Job controller's own pods (none scheduled: nodeSelector matches no node) go too
        assert!(jobs.get_opt("j").await.unwrap().is_none());
    }
    // Something created for an owner that is already gone is collected.
    let gone = jobs.create(&pp, &job("j")).await.unwrap();
    jobs.delete("j", &DeleteParams::background()).await.unwrap();
    pods.create(&pp, &owned_pod("late", &gone)).await.unwrap();
    assert!(
        pods.get_opt("late").await.unwrap().is_none(),
        "dependent of an absent owner collected"
    );
}

#[tokio::test]
async fn list_pagination() {
    let (_sim, client) = sim_with_crd(SimConfig::default()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..7 {
        cms.create(&PostParams::default(), &cm(&format!("cm-{i}"), json!({})))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().limit(3);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = cms.list(&lp).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 3);
        seen.extend(page.items.into_iter().map(|c| c.metadata.name.unwrap()));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());
    assert_eq!(
        cms.list(&ListParams::default()).await.unwrap().items.len(),
        7,
        "no limit: the complete list"
    );
}

#[tokio::test]
async fn namespaces_scope_and_terminate() {
    let (_sim, client) = sim_with_crd(SimConfig::default()).await;
    let missing: Api<ConfigMap> = Api::namespaced(client.clone(), "nope");
    let err = status_of(
        missing
            .create(&PostParams::default(), &cm("a", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 404, "creating in a missing namespace");
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &mnnc("w1", "n1", 1450))
        .await
        .unwrap();
    Api::<Namespace>::all(client.clone())
        .delete(NS, &DeleteParams::default())
        .await
        .unwrap();
    assert!(api.get_opt("w1").await.unwrap().is_none());
    assert!(
        Api::<Namespace>::all(client)
            .get_opt(NS)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn generate_name_makes_unique_names() {
    let (_sim, client) = sim_with_crd(SimConfig::default()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut c = cm("", json!({}));
    c.metadata.name = None;
    c.metadata.generate_name = Some("gen-".into());
    let a = cms
        .create(&PostParams::default(), &c)
        .await
        .unwrap()
        .metadata
        .name
        .unwrap();
    let b = cms
        .create(&PostParams::default(), &c)
        .await
        .unwrap()
        .metadata
        .name
        .unwrap();
    assert!(a.starts_with("gen-") && a.len() == 9 && a != b, "{a} {b}");
}

#[tokio::test]
async fn deleting_a_crd_removes_its_resources() {
    let (_sim, client) = sim_with_crd(SimConfig::default()).await;
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &mnnc("w1", "n1", 1450))
        .await
        .unwrap();
    Api::<CustomResourceDefinition>::all(client)
        .delete("multinicnodeconfigs.multinic.io", &DeleteParams::default())
        .await
        .unwrap();
    let err = status_of(api.get("w1").await.unwrap_err());
    assert_eq!(err.code, 404);
}

#[tokio::test]
async fn kube_runtime_finalizer_helper_round_trip() {
    use kube::runtime::controller::Action;
    use kube::runtime::finalizer::{Event, finalizer};
    let (_sim, client) = sim_with_crd(SimConfig::default()).await;
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client, NS);
    api.create(&PostParams::default(), &mnnc("w1", "n1", 1450))
        .await
        .unwrap();
    let run = |obj: MultiNicNodeConfig| {
        let api = api.clone();
        async move {
            finalizer(
                &api,
                multinic_api::CLEANUP_FINALIZER,
                std::sync::Arc::new(obj),
                |ev| async move {
                    Ok::<_, kube::Error>(match ev {
                        Event::Apply(_) => Action::await_change(),
                        Event::Cleanup(_) => Action::await_change(),
                    })
                },
            )
            .await
            .map_err(|e| e.to_string())
        }
    };
    // First pass adds the finalizer (JSON patch with `test` against a missing path).
    run(api.get("w1").await.unwrap()).await.unwrap();
    let with = api.get("w1").await.unwrap();
    assert_eq!(
        with.metadata.finalizers.as_deref(),
        Some(&[multinic_api::CLEANUP_FINALIZER.to_string()][..])
    );
    run(with).await.unwrap();
    api.delete("w1", &DeleteParams::default()).await.unwrap();
    let deleting = api.get("w1").await.unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some());
    // Cleanup pass removes the finalizer, and the object goes.
    run(deleting).await.unwrap();
    assert!(api.get_opt("w1").await.unwrap().is_none());
}
