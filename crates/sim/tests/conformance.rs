//! Conformance-style tests: one test per API promise the simulator makes, driven through
//! kube-rs's own `Api` exactly as product code would use it. Watch, runtime and kubectl
//! promises live in `conformance_watch.rs`, `kubectl.rs` and `kubelet.rs`.
//!
//! | Promise | Test |
//! |---|---|
//! | discovery: groups, versions, resources with verbs, shortNames, namespaced | `discovery_lists_resources_with_verbs_and_short_names` |
//! | one cluster-wide increasing resourceVersion; uid; creationTimestamp | `create_sets_uid_timestamp_generation_and_increasing_resource_version` |
//! | generation bumps on spec changes only | `generation_bumps_on_spec_changes_only` |
//! | `/status` writes change only status; main writes ignore status | `status_subresource_is_separate` |
//! | optimistic concurrency: 409 Conflict on a stale resourceVersion | `stale_resource_version_is_a_conflict` |
//! | 409 AlreadyExists, 404 NotFound as Status objects | `already_exists_and_not_found_are_status_objects` |
//! | custom resources validated against openAPIV3Schema: 422 with field causes | `schema_violations_are_422_with_field_causes` |
//! | schema defaults and pruning of unknown fields | `unknown_fields_are_pruned` |
//! | JSON merge patch, JSON patch with `test`, strategic merge | `merge_json_and_strategic_patches` |
//! | server-side apply with fieldManager and force, also on status | `server_side_apply_creates_updates_and_records_managers` |
//! | label selectors (=, !=, in, notin, exists, !exists) | `label_selectors` |
//! | field selectors (metadata.name, metadata.namespace, spec.nodeName) | `field_selectors` |
//! | finalizers and deletionTimestamp | `finalizers_hold_deletion_until_removed` |
//! | ownerReference cascading: background, foreground, orphan | `owner_references_cascade` |
//! | list pagination with limit/continue, or a complete list | `list_pagination` |
//! | namespaces: must exist; deleting one deletes its contents | `namespaces_scope_and_terminate` |
//! | generateName | `generate_name_makes_unique_names` |
//! | CRD deletion stops serving its resources | `deleting_a_crd_removes_its_resources` |
//! | events (core/v1, events.k8s.io/v1), leases | `events_and_leases` |
//! | Table output with printer columns, PartialObjectMetadata | `table_and_metadata_only_responses` |
//! | request counters by verb and resource | `request_counters` |

mod common;

use common::{NS, mnnc, raw_get, sim_with_crd, status_of};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
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
async fn discovery_lists_resources_with_verbs_and_short_names() {
    let (_sim, client) = sim_with_crd(SimConfig::default()).await;
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    let groups: Vec<String> = discovery.groups().map(|g| g.name().to_string()).collect();
    for g in [
        "",
        "batch",
        "coordination.k8s.io",
        "events.k8s.io",
        "apiextensions.k8s.io",
        "multinic.io",
    ] {
        assert!(
            groups.contains(&g.to_string()),
            "group {g:?} missing from {groups:?}"
        );
    }
    let (ar, caps) = discovery
        .get("multinic.io")
        .unwrap()
        .recommended_kind("MultiNicNodeConfig")
        .unwrap();
    assert_eq!(ar.plural, "multinicnodeconfigs");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    assert!(caps.operations.iter().any(|v| v == "watch"));
    assert!(
        caps.subresources
            .iter()
            .any(|(s, _)| s.plural == "multinicnodeconfigs/status" || s.plural == "status")
    );
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    let (code, doc) = raw_get(
        &_sim.base_url,
        "/apis/multinic.io/v1alpha1",
        "application/json",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(doc["resources"][0]["shortNames"], json!(["mnnc"]));
}

#[tokio::test]
async fn create_sets_uid_timestamp_generation_and_increasing_resource_version() {
    let (_sim, client) = sim_with_crd(SimConfig::default()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client.clone(), NS);
    let a = cms
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let b = api
        .create(&PostParams::default(), &mnnc("w1", "n1", 1450))
        .await
        .unwrap();
    let c = cms
        .create(&PostParams::default(), &cm("c", json!({})))
        .await
        .unwrap();
    let rv =
        |m: &kube::core::ObjectMeta| m.resource_version.clone().unwrap().parse::<u64>().unwrap();
    assert!(rv(&a.metadata) < rv(&b.metadata) && rv(&b.metadata) < rv(&c.metadata));
    assert_ne!(a.metadata.uid, c.metadata.uid);
    assert!(b.metadata.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(b.metadata.creation_timestamp.is_some());
    assert_eq!(b.metadata.generation, Some(1));
}

#[tokio::test]
async fn generation_bumps_on_spec_changes_only() {
    let (_sim, client) = sim_with_crd(SimConfig::default()).await;
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client, NS);
    api.create(&PostParams::default(), &mnnc("w1", "n1", 1450))
        .await
        .unwrap();
    let pp = PatchParams::default();
    let labeled = api
        .patch(
            "w1",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labeled.metadata.generation,
        Some(1),
        "metadata changes keep generation"
    );
    let status = api
        .patch_status(
            "w1",
            &pp,
            &Patch::Merge(json!({"status": {"state": "Configured"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        status.metadata.generation,
        Some(1),
        "status changes keep generation"
    );
    let spec = api
        .patch(
            "w1",
            &pp,
            &Patch::Merge(
                json!({"spec": {"interfaces": [{"id": 0, "macAddress": "fa:16:3e:00:00:01",
        "address": "11.11.11.6", "cidr": "11.11.11.0/24"}]}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        spec.metadata.generation,
        Some(2),
        "spec changes bump generation"
    );
    let same = api
        .patch(
            "w1",
            &pp,
            &Patch::Merge(json!({"spec": {"nodeName": "n1"}})),
        )
        .await
        .unwrap();
    assert_eq!(same.metadata.generation, Some(2));
    assert_eq!(
        same.metadata.resource_version, spec.metadata.resource_version,
        "a no-op write changes nothing"
    );
}

#[tokio::test]
async fn status_subresource_is_separate() {
    let (_sim, client) = sim_with_crd(SimConfig::default()).await;
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client, NS);
    let mut obj = mnnc("w1", "n1", 1450);
    obj.status = Some(serde_json::from_value(json!({"state": "Configured"})).unwrap());
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert!(created.status.is_none(), "create ignores status");
    let mut with_status = created.clone();
    with_status.status = Some(serde_json::from_value(json!({"state": "Failed"})).unwrap());
    with_status.spec.interfaces[0].mtu = Some(1400);
    let after_status = api
        .replace_status("w1", &PostParams::default(), &with_status)
        .await
        .unwrap();
    assert_eq!(
        after_status
            .status
            .as_ref()
            .unwrap()
            .state
            .unwrap()
            .as_str(),
        "Failed"
    );
    assert_eq!(
        after_status.spec.interfaces[0].mtu,
        Some(1450),
        "/status does not change spec"
    );
    let mut main = after_status.clone();
    main.status = None;
    main.spec.interfaces[0].mtu = Some(1300);
    let after_main = api
        .replace("w1", &PostParams::default(), &main)
        .await
        .unwrap();
    assert_eq!(after_main.spec.interfaces[0].mtu, Some(1300));
    assert_eq!(
        after_main.status.unwrap().state.unwrap().as_str(),
        "Failed",
        "main writes keep status"
    );
}

#[tokio::test]
async fn stale_resource_version_is_a_conflict() {
    let (_sim, client) = sim_with_crd(SimConfig::default()).await;
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client, NS);
    let v1 = api
        .create(&PostParams::default(), &mnnc("w1", "n1", 1450))
        .await
        .unwrap();
    let mut v2 = v1.clone();
    v2.spec.interfaces[0].mtu = Some(1400);
    api.replace("w1", &PostParams::default(), &v2)
        .await
        .unwrap();
    let mut stale = v1.clone();
    stale.spec.interfaces[0].mtu = Some(1300);
    let err = status_of(
        api.replace("w1", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message.contains("the object has been modified"),
        "{}",
        err.message
    );
    let patch = Patch::Merge(
        json!({"metadata": {"resourceVersion": v1.metadata.resource_version}, "spec": {"nodeName": "x"}}),
    );
    let err = status_of(
        api.patch("w1", &PatchParams::default(), &patch)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.code, 409,
        "a resourceVersion in a patch is a precondition"
    );
}

#[tokio::test]
async fn already_exists_and_not_found_are_status_objects() {
    let (_sim, client) = sim_with_crd(SimConfig::default()).await;
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client, NS);
    api.create(&PostParams::default(), &mnnc("w1", "n1", 1450))
        .await
        .unwrap();
    let err = status_of(
        api.create(&PostParams::default(), &mnnc("w1", "n1", 1450))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
    assert!(err.is_failure());
    let err = status_of(api.get("nope").await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert_eq!(err.details.unwrap().name, "nope");
    assert!(api.get_opt("nope").await.unwrap().is_none());
}

#[tokio::test]
async fn schema_violations_are_422_with_field_causes() {
    let (_sim, client) = sim_with_crd(SimConfig::default()).await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        client,
        NS,
        &kube::core::ApiResource::erase::<MultiNicNodeConfig>(&()),
    );
    let bad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "multinic.io/v1alpha1", "kind": "MultiNicNodeConfig", "metadata": {"name": "bad"},
        "spec": {"nodeName": "n1", "interfaces": [{"id": 12, "macAddress": "zz", "address": "11.11.11.5", "cidr": "11.11.11.0/24", "mtu": "big"}]}
    })).unwrap();
    let err = status_of(api.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    let fields: Vec<String> = err
        .details
        .unwrap()
        .causes
        .into_iter()
        .map(|c| c.field)
        .collect();
    for f in [
        "spec.interfaces[0].id",
        "spec.interfaces[0].macAddress",
        "spec.interfaces[0].mtu",
    ] {
        assert!(fields.contains(&f.to_string()), "{f} not among {fields:?}");
    }
    assert!(
        err.message.contains("spec.interfaces[0].macAddress"),
        "{}",
        err.message
    );
    let missing: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "multinic.io/v1alpha1", "kind": "MultiNicNodeConfig",
        "metadata": {"name": "m"}, "spec": {"interfaces": []}}),
    )
    .unwrap();
    let err = status_of(
        api.create(&PostParams::default(), &missing)
            .await
            .unwrap_err(),
    );
    assert!(
        err.message.contains("spec.nodeName: Required value"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn unknown_fields_are_pruned() {
    let (_sim, client) = sim_with_crd(SimConfig::default()).await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        client,
        NS,
        &kube::core::ApiResource::erase::<MultiNicNodeConfig>(&()),
    );
    let obj: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "multinic.io/v1alpha1", "kind": "MultiNicNodeConfig",
        "metadata": {"name": "p"}, "spec": {"nodeName": "n1", "bogus": 1}}),
    )
    .unwrap();
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert!(created.data["spec"].get("bogus").is_none());
    assert_eq!(created.data["spec"]["nodeName"], "n1");
}

#[tokio::test]
async fn merge_json_and_strategic_patches() {
    let (_sim, client) = sim_with_crd(SimConfig::default()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(&PostParams::default(), &cm("a", json!({"x": "1"})))
        .await
        .unwrap();
    let pp = PatchParams::default();
    let merged = cms
        .patch(
            "a",
            &pp,
            &Patch::Merge(json!({"data": {"k": null, "k2": "v2"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged.data.unwrap().into_iter().collect::<Vec<_>>(),
        vec![("k2".to_string(), "v2".to_string())]
    );
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/k2", "value": "v2"}, {"op": "add", "path": "/data/k3", "value": "v3"}])).unwrap();
    let patched = cms.patch("a", &pp, &Patch::<()>::Json(ops)).await.unwrap();
    assert_eq!(patched.data.unwrap()["k3"], "v3");
    let failing: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/k2", "value": "other"}, {"op": "add", "path": "/data/k4", "value": "v4"}])).unwrap();
    let err = status_of(
        cms.patch("a", &pp, &Patch::<()>::Json(failing))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        cms.get("a")
            .await
            .unwrap()
            .data
            .unwrap()
            .get("k4")
            .is_none(),
        "a failed test applies nothing"
    );
    let smp = cms
        .patch(
            "a",
            &pp,
            &Patch::Strategic(json!({"metadata": {"labels": {"y": "2"}}})),
        )
        .await
        .unwrap();
    assert_eq!(smp.metadata.labels.unwrap().len(), 2);
}

#[tokio::test]
async fn server_side_apply_creates_updates_and_records_managers() {
    let (_sim, client) = sim_with_crd(SimConfig::default()).await;
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client, NS);
    let pp = PatchParams::apply("multinic-test").force();
    let created = api
        .patch("w1", &pp, &Patch::Apply(mnnc("w1", "n1", 1450)))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let managers: Vec<String> = created
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, vec!["multinic-test".to_string()]);
    let updated = api
        .patch("w1", &pp, &Patch::Apply(mnnc("w1", "n1", 1400)))
        .await
        .unwrap();
    assert_eq!(
        (updated.metadata.generation, updated.spec.interfaces[0].mtu),
        (Some(2), Some(1400))
    );
    let status = json!({"apiVersion": "multinic.io/v1alpha1", "kind": "MultiNicNodeConfig", "status": {"state": "InProgress"}});
    let with_status = api
        .patch_status(
            "w1",
            &PatchParams::apply("multinic-controller").force(),
            &Patch::Apply(status),
        )
        .await
        .unwrap();
    assert_eq!(
        with_status.status.unwrap().state.unwrap().as_str(),
        "InProgress"
    );
    assert_eq!(with_status.metadata.generation, Some(2));
    let err = status_of(
        api.patch(
            "w1",
            &PatchParams::default(),
            &Patch::Apply(mnnc("w1", "n1", 1)),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 400, "apply needs a field manager");
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
async fn events_and_leases() {
    let (_sim, client) = sim_with_crd(SimConfig::default()).await;
    let recorder = kube::runtime::events::Recorder::new(client.clone(), "multinic-test".into());
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        kind: Some("Node".into()),
        name: Some("n1".into()),
        api_version: Some("v1".into()),
        ..Default::default()
    };
    let ev = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Normal,
        reason: "Tested".into(),
        note: Some("hello".into()),
        action: "Test".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.unwrap();
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(client.clone());
    assert_eq!(
        events.list(&ListParams::default()).await.unwrap().items[0]
            .reason
            .as_deref(),
        Some("Tested")
    );
    let core_events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(client.clone(), "default");
    let e: k8s_openapi::api::core::v1::Event = serde_json::from_value(json!({"metadata": {"name": "e1"}, "involvedObject": {"kind": "Node", "name": "n1"}, "reason": "R"})).unwrap();
    core_events
        .create(&PostParams::default(), &e)
        .await
        .unwrap();
    let leases: Api<Lease> = Api::namespaced(client, "kube-system");
    let l: Lease = serde_json::from_value(json!({"metadata": {"name": "multinic-controller"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}})).unwrap();
    let created = leases.create(&PostParams::default(), &l).await.unwrap();
    let mut takeover = created.clone();
    takeover.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases
        .replace("multinic-controller", &PostParams::default(), &takeover)
        .await
        .unwrap();
    let err = status_of(
        leases
            .replace("multinic-controller", &PostParams::default(), &created)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.code, 409,
        "two candidates racing on one lease: the stale one loses"
    );
}

#[tokio::test]
async fn table_and_metadata_only_responses() {
    let (sim, client) = sim_with_crd(SimConfig::with_nodes(2)).await;
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &mnnc("w1", "n1", 1450))
        .await
        .unwrap();
    let path = format!("/apis/multinic.io/v1alpha1/namespaces/{NS}/multinicnodeconfigs");
    let (code, table) = raw_get(
        &sim.base_url,
        &path,
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    )
    .await;
    assert_eq!(code, 200);
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols[..3], ["Name", "Node", "State"]);
    assert_eq!(table["rows"][0]["cells"][1], "n1");
    let metas = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(metas.items[0].metadata.name.as_deref(), Some("w1"));
    let (_, raw) = raw_get(
        &sim.base_url,
        &path,
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
    )
    .await;
    assert_eq!(raw["kind"], "PartialObjectMetadataList");
    assert!(raw["items"][0].get("spec").is_none());
    assert_eq!(
        api.get_metadata("w1").await.unwrap().metadata.generation,
        Some(1)
    );
}

#[tokio::test]
async fn request_counters() {
    let (sim, client) = sim_with_crd(SimConfig::with_nodes(1)).await;
    sim.reset_request_counts();
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client, NS);
    api.create(&PostParams::default(), &mnnc("w1", "n1", 1450))
        .await
        .unwrap();
    api.get("w1").await.unwrap();
    api.get("w1").await.unwrap();
    api.patch_status(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"state": "Pending"}})),
    )
    .await
    .unwrap();
    let counts = sim.request_counts();
    let n = |verb: &str, res: &str| {
        counts
            .get(&(verb.to_string(), res.to_string()))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(
        (
            n("create", "multinicnodeconfigs"),
            n("get", "multinicnodeconfigs"),
            n("patch", "multinicnodeconfigs/status")
        ),
        (1, 2, 1)
    );
    let (_, doc) = raw_get(&sim.base_url, "/debug/requests", "application/json").await;
    assert!(
        doc["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["verb"] == "get" && r["count"] == 2)
    );
}
