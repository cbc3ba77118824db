//! Conformance-style tests, part one: one test per API promise the simulator makes, driven
//! through kube-rs's own `Api` exactly as product code would use it. The other promises each
//! have a test listed in the same kind of table in `conformance_objects.rs` (selectors,
//! deletion, pagination), `conformance_wire.rs` (apply, events, wire formats, validation),
//! `conformance_watch.rs` (watch and kube-runtime), `kubectl.rs`, `kubectl_imperative.rs`, `kubelet.rs` (nodes, Jobs)
//! and `nodes.rs`.
//!
//! | Promise | Test |
//! |---|---|
//! | discovery: groups, versions, resources with verbs, shortNames, namespaced | `discovery_lists_resources_with_verbs_and_short_names` |
//! | one cluster-wide increasing resourceVersion; uid; creationTimestamp | `create_sets_uid_timestamp_generation_and_increasing_resource_version` |
//! | generation bumps on spec changes only | `generation_bumps_on_spec_changes_only` |
//! | `/status` writes change only status; main writes ignore status | `status_subresource_is_separate` |
//! | optimistic concurrency: 409 Conflict on a stale resourceVersion | `stale_resource_version_is_a_conflict` |
//! | under contention, read-modify-write with retry on 409 loses no update | `concurrent_read_modify_write_loses_no_update` |
//! | 409 AlreadyExists, 404 NotFound as Status objects | `already_exists_and_not_found_are_status_objects` |
//! | custom resources validated against openAPIV3Schema: 422 with field causes | `schema_violations_are_422_with_field_causes` |
//! | schema defaults and pruning of unknown fields | `unknown_fields_are_pruned` |
//! | JSON merge patch, JSON patch with `test`, strategic merge | `merge_json_and_strategic_patches` |
//! | the CRD's `self == oldSelf` rules (spec.nodeName immutable) | `immutable_fields_of_the_crd_hold` |

mod common;

both_backends! {
    discovery_lists_resources_with_verbs_and_short_names,
    create_sets_uid_timestamp_generation_and_increasing_resource_version,
    generation_bumps_on_spec_changes_only,
    status_subresource_is_separate,
    stale_resource_version_is_a_conflict,
    already_exists_and_not_found_are_status_objects,
    schema_violations_are_422_with_field_causes,
    unknown_fields_are_pruned,
    merge_json_and_strategic_patches,
    concurrent_read_modify_write_loses_no_update,
    immutable_fields_of_the_crd_hold,
}

use common::{Target, mnnc, raw_get, status_of};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use multinic_api::MultiNicNodeConfig;
use serde_json::json;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

async fn discovery_lists_resources_with_verbs_and_short_names(t: Target) {
    let client = t.client.clone();
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
    let (code, doc) = raw_get(&client, "/apis/multinic.io/v1alpha1", "application/json").await;
    assert_eq!(code, 200);
    assert_eq!(doc["resources"][0]["shortNames"], json!(["mnnc"]));
}

async fn create_sets_uid_timestamp_generation_and_increasing_resource_version(t: Target) {
    let client = t.client.clone();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &t.ns);
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client.clone(), &t.ns);
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

async fn generation_bumps_on_spec_changes_only(t: Target) {
    let client = t.client.clone();
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client, &t.ns);
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

async fn status_subresource_is_separate(t: Target) {
    let client = t.client.clone();
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client, &t.ns);
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

async fn stale_resource_version_is_a_conflict(t: Target) {
    let client = t.client.clone();
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client, &t.ns);
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

async fn already_exists_and_not_found_are_status_objects(t: Target) {
    let client = t.client.clone();
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client, &t.ns);
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

async fn schema_violations_are_422_with_field_causes(t: Target) {
    let client = t.client.clone();
    let api: Api<DynamicObject> = Api::namespaced_with(
        client,
        &t.ns,
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

async fn unknown_fields_are_pruned(t: Target) {
    let client = t.client.clone();
    let api: Api<DynamicObject> = Api::namespaced_with(
        client,
        &t.ns,
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

async fn merge_json_and_strategic_patches(t: Target) {
    let client = t.client.clone();
    let cms: Api<ConfigMap> = Api::namespaced(client, &t.ns);
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
        !cms.get("a").await.unwrap().data.unwrap().contains_key("k4"),
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

async fn concurrent_read_modify_write_loses_no_update(t: Target) {
    let client = t.client.clone();
    let cms: Api<ConfigMap> = Api::namespaced(client, &t.ns);
    let mut counter = cm("counter", json!({}));
    counter.data = Some([("n".to_string(), "0".to_string())].into());
    cms.create(&PostParams::default(), &counter).await.unwrap();
    let (writers, rounds) = (8, 10);
    let mut tasks = Vec::new();
    let conflicts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Every writer reads before any writes in the first round, so they are bound to collide.
    let first_round = std::sync::Arc::new(tokio::sync::Barrier::new(writers));
    for _ in 0..writers {
        let (cms, conflicts, barrier) = (cms.clone(), conflicts.clone(), first_round.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..rounds {
                loop {
                    let mut c = cms.get("counter").await.unwrap();
                    if round == 0 && conflicts.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                        barrier.wait().await;
                    }
                    let n: u32 = c.data.as_ref().unwrap()["n"].parse().unwrap();
                    c.data
                        .as_mut()
                        .unwrap()
                        .insert("n".into(), (n + 1).to_string());
                    match cms.replace("counter", &PostParams::default(), &c).await {
                        Ok(_) => break,
                        Err(e) => {
                            assert_eq!(status_of(e).code, 409);
                            conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = cms.get("counter").await.unwrap().data.unwrap()["n"].clone();
    assert_eq!(
        n,
        (writers * rounds).to_string(),
        "every increment survived"
    );
    assert!(
        conflicts.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "writers did collide"
    );
}

async fn immutable_fields_of_the_crd_hold(t: Target) {
    let api: Api<MultiNicNodeConfig> = Api::namespaced(t.client.clone(), &t.ns);
    api.create(&PostParams::default(), &mnnc("w1", "n1", 1450))
        .await
        .unwrap();
    let err = status_of(
        api.patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"nodeName": "n2"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert!(
        err.message
            .contains("spec.nodeName: Invalid value: \"n2\": spec.nodeName is immutable"),
        "{}",
        err.message
    );
    // Other fields still change.
    let changed = api
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"nodeName": "n1", "interfaces": []}})),
        )
        .await
        .unwrap();
    assert_eq!(changed.spec.node_name, "n1");
}
