//! Conformance-style tests, part five: the `/scale` and `pods/binding` subresources and
//! server-side dry run, on both backends.
//!
//! | Promise | Test |
//! |---|---|
//! | Deployments' `/scale`: autoscaling/v1 Scale with replicas and selector; writes change spec.replicas only; negative replicas refused | `deployment_scale_subresource` |
//! | `dryRun=All` on create, patch and delete runs the checks and keeps nothing | `dry_run_keeps_nothing` |
//! | `pods/binding` sets `spec.nodeName` of an unbound Pod; binding a bound Pod is 409 | `pod_binding_binds_once` |

mod common;

both_backends! {
    deployment_scale_subresource,
    dry_run_keeps_nothing,
    pod_binding_binds_once,
}

use common::{Target, status_of};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::subresource::Scale;
use serde_json::json;

async fn deployment_scale_subresource(t: Target) {
    let api: Api<Deployment> = Api::namespaced(t.client.clone(), &t.ns);
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
        "replicas": 1, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}))
    .unwrap();
    let created = api.create(&PostParams::default(), &d).await.unwrap();
    let scale = api.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
    assert_eq!(
        scale.status.unwrap().selector.as_deref(),
        Some("app=web"),
        "the selector in string form"
    );
    let pp = PatchParams::default();
    let scaled = api
        .patch_scale("web", &pp, &Patch::Merge(json!({"spec": {"replicas": 3}})))
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(3));
    let after = api.get("web").await.unwrap();
    assert_eq!(after.spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(
        after.metadata.generation.unwrap(),
        created.metadata.generation.unwrap() + 1
    );
    let stale: Scale = serde_json::from_value(json!({"metadata": {"name": "web",
        "resourceVersion": created.metadata.resource_version}, "spec": {"replicas": 5}}))
    .unwrap();
    let err = status_of(
        api.replace_scale("web", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409, "a Scale's resourceVersion is a precondition");
    let err = status_of(
        api.patch_scale("web", &pp, &Patch::Merge(json!({"spec": {"replicas": -1}})))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422, "{}", err.message);
    assert!(err.message.contains("spec.replicas"), "{}", err.message);
}

async fn dry_run_keeps_nothing(t: Target) {
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), &t.ns);
    let cm = |name: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
    };
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let answered = cms.create(&dry, &cm("dry")).await.unwrap();
    assert_eq!(answered.metadata.name.as_deref(), Some("dry"));
    assert!(cms.get_opt("dry").await.unwrap().is_none(), "create kept");
    // A dry run still runs every check.
    let err = status_of(cms.create(&dry, &cm("Bad_Name")).await.unwrap_err());
    assert_eq!(err.code, 422);

    let real = cms
        .create(&PostParams::default(), &cm("real"))
        .await
        .unwrap();
    let patched = cms
        .patch(
            "real",
            &PatchParams::default().dry_run(),
            &Patch::Merge(json!({"data": {"k": "changed"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.data.unwrap()["k"],
        "changed",
        "the answer shows the change"
    );
    let stored = cms.get("real").await.unwrap();
    assert_eq!(stored.data.unwrap()["k"], "v", "patch kept");
    assert_eq!(
        stored.metadata.resource_version,
        real.metadata.resource_version
    );
    let dp = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    cms.delete("real", &dp).await.unwrap();
    assert!(cms.get_opt("real").await.unwrap().is_some(), "delete kept");
}

async fn pod_binding_binds_once(t: Target) {
    let api: Api<Pod> = Api::namespaced(t.client.clone(), &t.ns);
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "unbound"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
    .unwrap();
    api.create(&PostParams::default(), &pod).await.unwrap();
    let bind = |node: &str| {
        json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": "unbound"}, "target": {"kind": "Node", "name": node}})
    };
    type V = serde_json::Value;
    let pp = PostParams::default();
    api.create_subresource::<V, V>("binding", "unbound", &pp, &bind("node-a"))
        .await
        .unwrap();
    let bound = api.get("unbound").await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("node-a"));
    let err = status_of(
        api.create_subresource::<V, V>("binding", "unbound", &pp, &bind("node-b"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.code, 409,
        "a bound Pod is not bound again: {}",
        err.message
    );
    let still = api.get("unbound").await.unwrap();
    assert_eq!(still.spec.unwrap().node_name.as_deref(), Some("node-a"));
}
