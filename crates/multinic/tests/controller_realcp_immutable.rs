//! `spec.nodeName` and `spec.instanceId` are immutable once set, against the real
//! kube-apiserver (the CRD's CEL transition rules; the simulator does not evaluate CEL): a
//! resource cannot silently move to another node and orphan the old node's NICs.

mod realcp_support;

use kube::api::{Api, Patch, PatchParams, PostParams};
use multinic_api::{MultiNicNodeConfig, MultiNicNodeConfigSpec};
use realcp_support::RealControlPlane;

const NAMESPACE: &str = "multinic-system";

fn spec(node: &str, instance: Option<&str>) -> MultiNicNodeConfigSpec {
    serde_json::from_value(serde_json::json!({
        "nodeName": node,
        "instanceId": instance,
        "interfaces": [{"macAddress": "fa:16:3e:00:00:01", "address": "10.0.0.5", "cidr": "10.0.0.0/24"}],
    }))
    .unwrap()
}

/// A merge patch of `spec`: the server's verdict, `Err` with its message when refused.
async fn patch(
    api: &Api<MultiNicNodeConfig>,
    name: &str,
    spec: serde_json::Value,
) -> Result<(), String> {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": spec})),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_name_and_instance_id_cannot_change_once_set() {
    let Some(cp) = RealControlPlane::start().await else {
        return;
    };
    cp.install_crd().await;
    cp.kubectl_ok(&["create", "namespace", NAMESPACE]);
    let api: Api<MultiNicNodeConfig> = Api::namespaced(cp.client().await, NAMESPACE);
    let create = |name: &str, spec| MultiNicNodeConfig::new(name, spec);
    api.create(
        &PostParams::default(),
        &create("w1", spec("worker-01", None)),
    )
    .await
    .unwrap();

    let moved = patch(&api, "w1", serde_json::json!({"nodeName": "worker-02"})).await;
    assert!(
        moved
            .as_ref()
            .is_err_and(|e| e.contains("spec.nodeName is immutable")),
        "{moved:?}"
    );
    // The interfaces stay editable, and an instance id may be added once.
    let edited = patch(&api, "w1", serde_json::json!({"interfaces": []})).await;
    assert_eq!(edited, Ok(()));
    let uuid = "84183610-f911-4d8f-9ec2-f35bfeac671f";
    assert_eq!(
        patch(&api, "w1", serde_json::json!({"instanceId": uuid})).await,
        Ok(())
    );
    let changed = patch(
        &api,
        "w1",
        serde_json::json!({"instanceId": "00000000-0000-4000-8000-000000000000"}),
    )
    .await;
    assert!(
        changed
            .as_ref()
            .is_err_and(|e| e.contains("spec.instanceId is immutable")),
        "{changed:?}"
    );
    let removed = patch(&api, "w1", serde_json::json!({"instanceId": null})).await;
    assert!(
        removed
            .as_ref()
            .is_err_and(|e| e.contains("immutable once set")),
        "{removed:?}"
    );
    let kept = api.get("w1").await.unwrap();
    assert_eq!(kept.spec.node_name, "worker-01");
    assert_eq!(kept.spec.instance_id.as_deref(), Some(uuid));
}
