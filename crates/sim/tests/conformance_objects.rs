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

both_backends! {
    label_selectors,
    field_selectors,
    finalizers_hold_deletion_until_removed,
    owner_references_cascade,
    list_pagination,
    namespaces_scope_and_terminate,
    generate_name_makes_unique_names,
    deleting_a_crd_removes_its_resources,
    kube_runtime_finalizer_helper_round_trip,
}

use common::{Target, eventually, mnnc, status_of};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use multinic_api::MultiNicNodeConfig;
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

async fn label_selectors(t: Target) {
    let client = t.client.clone();
    let cms: Api<ConfigMap> = Api::namespaced(client, &t.ns);
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
            // Only this check's objects: a real cluster's namespace also holds the
            // kube-root-ca.crt ConfigMap its root-CA publisher adds.
            l.items
                .into_iter()
                .map(|c| c.metadata.name.unwrap())
                .filter(|n| ["a", "b", "c"].contains(&n.as_str()))
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

async fn field_selectors(t: Target) {
    let client = t.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &t.ns);
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
                &ListParams::default()
                    .fields(&format!("spec.nodeName!=n1,metadata.namespace={}", t.ns))
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

async fn finalizers_hold_deletion_until_removed(t: Target) {
    let client = t.client.clone();
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client, &t.ns);
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

async fn owner_references_cascade(t: Target) {
    let client = t.client.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), &t.ns);
    let pods: Api<Pod> = Api::namespaced(client, &t.ns);
    let pp = PostParams::default();
    // The real garbage collector works asynchronously (the simulator's at once), so every
    // outcome is waited for.
    let gone = |api: Api<Pod>, name: &'static str| async move {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    };
    for (policy, keeps) in [
        (Some(DeleteParams::background()), false),
        (Some(DeleteParams::foreground()), false),
        (Some(DeleteParams::orphan()), true),
        (None, true),
    ] {
        let what = format!(
            "policy {:?}",
            policy.as_ref().map(|p| &p.propagation_policy)
        );
        let j = jobs.create(&pp, &job("j")).await.unwrap();
        let owned = pods.create(&pp, &owned_pod("owned", &j)).await.unwrap();
        assert!(owned.metadata.owner_references.is_some());
        jobs.delete("j", &policy.clone().unwrap_or_default())
            .await
            .unwrap();
        let jobs2 = jobs.clone();
        eventually(60, &format!("the Job to go ({what})"), || {
            let jobs = jobs2.clone();
            async move { jobs.get_opt("j").await.ok()?.is_none().then_some(()) }
        })
        .await;
        if keeps {
            // Orphans stay and lose the reference.
            let p = eventually(
                60,
                &format!("the orphan's reference to go ({what})"),
                || {
                    let pods = pods.clone();
                    async move {
                        let p = pods.get_opt("owned").await.ok()??;
                        let refs = p.metadata.owner_references.clone().unwrap_or_default();
                        refs.is_empty().then_some(p)
                    }
                },
            )
            .await;
            assert!(p.metadata.deletion_timestamp.is_none(), "{what}");
            pods.delete("owned", &DeleteParams::default().grace_period(0))
                .await
                .unwrap();
        }
        // Dependents go; the Job controller's own pods (if any) too.
        eventually(60, &format!("the dependent to go ({what})"), || {
            gone(pods.clone(), "owned")
        })
        .await;
        let others = pods.list(&ListParams::default()).await.unwrap();
        for p in others.items {
            let name = p.metadata.name.unwrap_or_default();
            let _ = pods
                .delete(&name, &DeleteParams::default().grace_period(0))
                .await;
        }
    }
    // Something created for an owner that is already gone is collected.
    let absent = jobs.create(&pp, &job("j")).await.unwrap();
    jobs.delete("j", &DeleteParams::background()).await.unwrap();
    let jobs2 = jobs.clone();
    eventually(60, "the Job to go", || {
        let jobs = jobs2.clone();
        async move { jobs.get_opt("j").await.ok()?.is_none().then_some(()) }
    })
    .await;
    pods.create(&pp, &owned_pod("late", &absent)).await.unwrap();
    eventually(
        60,
        "the dependent of an absent owner to be collected",
        || gone(pods.clone(), "late"),
    )
    .await;
}

async fn list_pagination(t: Target) {
    let client = t.client.clone();
    let cms: Api<ConfigMap> = Api::namespaced(client, &t.ns);
    for i in 0..7 {
        let labels = json!({"set": "paged"});
        cms.create(&PostParams::default(), &cm(&format!("cm-{i}"), labels))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        // Selected by label: a real namespace also holds kube-root-ca.crt.
        let mut lp = ListParams::default().labels("set=paged").limit(3);
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
        cms.list(&ListParams::default().labels("set=paged"))
            .await
            .unwrap()
            .items
            .len(),
        7,
        "no limit: the complete list"
    );
}

async fn namespaces_scope_and_terminate(t: Target) {
    let client = t.client.clone();
    let missing: Api<ConfigMap> = Api::namespaced(client.clone(), "nope");
    let err = status_of(
        missing
            .create(&PostParams::default(), &cm("a", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 404, "creating in a missing namespace");
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client.clone(), &t.ns);
    api.create(&PostParams::default(), &mnnc("w1", "n1", 1450))
        .await
        .unwrap();
    Api::<Namespace>::all(client.clone())
        .delete(&t.ns, &DeleteParams::default())
        .await
        .unwrap();
    // The API server terminates a namespace asynchronously (the simulator at once).
    let namespaces = Api::<Namespace>::all(client);
    eventually(60, "the namespace and its contents to go", || {
        let (api, namespaces, ns) = (api.clone(), namespaces.clone(), t.ns.clone());
        async move {
            let gone = api.get_opt("w1").await.ok()?.is_none()
                && namespaces.get_opt(&ns).await.ok()?.is_none();
            gone.then_some(())
        }
    })
    .await;
}

async fn generate_name_makes_unique_names(t: Target) {
    let client = t.client.clone();
    let cms: Api<ConfigMap> = Api::namespaced(client, &t.ns);
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

async fn deleting_a_crd_removes_its_resources(t: Target) {
    use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
    let client = t.client.clone();
    // A CRD of its own (the shared one serves the other checks on the real server).
    let group = format!("{}.deletion.test", t.ns);
    let mut crd: serde_json::Value =
        serde_yaml::from_str(&multinic_api::crd_yaml()).expect("crd yaml");
    crd["metadata"]["name"] = json!(format!("multinicnodeconfigs.{group}"));
    crd["spec"]["group"] = json!(group);
    let crd: CustomResourceDefinition = serde_json::from_value(crd).unwrap();
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let gvk = GroupVersionKind::gvk(&group, "v1alpha1", "MultiNicNodeConfig");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "multinicnodeconfigs");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &t.ns, &ar);
    let mut obj = serde_json::to_value(mnnc("w1", "n1", 1450)).unwrap();
    obj["apiVersion"] = json!(format!("{group}/v1alpha1"));
    let obj: DynamicObject = serde_json::from_value(obj).unwrap();
    // The API serves a new CRD's resources a moment after it is created.
    eventually(30, "the new CRD to be served", || {
        let (api, obj) = (api.clone(), obj.clone());
        async move { api.create(&PostParams::default(), &obj).await.ok() }
    })
    .await;
    crds.delete(
        crd.metadata.name.as_deref().unwrap(),
        &DeleteParams::default(),
    )
    .await
    .unwrap();
    // Deletion removes the resources first, then the CRD (asynchronously on a real server).
    eventually(60, "the resources to go with their CRD", || {
        let api = api.clone();
        async move {
            match api.get("w1").await {
                Err(kube::Error::Api(s)) if s.code == 404 => Some(()),
                _ => None,
            }
        }
    })
    .await;
}

async fn kube_runtime_finalizer_helper_round_trip(t: Target) {
    use kube::runtime::controller::Action;
    use kube::runtime::finalizer::{Event, finalizer};
    let client = t.client.clone();
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client, &t.ns);
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
