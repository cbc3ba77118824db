//! The `kube` source against the project's in-memory Kubernetes API server: this node's
//! MultiNicNodeConfig is read by name from the configured namespace with its generation, goes
//! through the same check as every source, and a missing resource is an error naming it.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use multinic_agent::config::SourceConfig;
use multinic_agent::source::{self, SourceError};
use multinic_api::{InterfaceReason, MultiNicNodeConfig};
use multinic_sim::{Sim, SimConfig};

#[tokio::test]
async fn reads_this_nodes_resource_and_checks_it() {
    let sim = Sim::start(SimConfig::default()).await.expect("sim starts");
    let client = sim.kube_client().unwrap();
    let crd: CustomResourceDefinition = serde_yaml::from_str(&multinic_api::crd_yaml()).unwrap();
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .unwrap();
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "nics"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let resource: MultiNicNodeConfig = serde_json::from_value(serde_json::json!({
        "apiVersion": "multinic.io/v1alpha1", "kind": "MultiNicNodeConfig",
        "metadata": {"name": "worker-01"},
        "spec": {"nodeName": "worker-01", "interfaces": [
            {"macAddress": "fa:16:3e:00:05:01", "address": "192.0.2.10", "cidr": "192.0.2.0/24"},
            {"macAddress": "fa:16:3e:00:05:02", "address": "192.0.2.11", "cidr": "198.51.100.0/24"}
        ]}
    }))
    .unwrap();
    Api::<MultiNicNodeConfig>::namespaced(client.clone(), "nics")
        .create(&PostParams::default(), &resource)
        .await
        .unwrap();

    let config = SourceConfig::Kube {
        namespace: "nics".into(),
    };
    let loaded = source::load(&config, "worker-01", Some(&client))
        .await
        .expect("resource read");
    assert_eq!(loaded.generation, Some(1));
    assert_eq!(loaded.spec.interfaces.len(), 2);
    let checked = loaded.check("worker-01").unwrap();
    assert_eq!(checked.valid.len(), 1);
    let (index, entry) = &checked.invalid[0];
    assert_eq!(*index, 1);
    assert_eq!(entry.reason, InterfaceReason::InvalidSpec);
    assert!(
        entry.message.starts_with("spec.interfaces[1].address: "),
        "{}",
        entry.message
    );

    let missing = source::load(&config, "worker-09", Some(&client))
        .await
        .unwrap_err();
    assert!(matches!(missing, SourceError::Kube { .. }), "{missing:?}");
    assert!(missing.to_string().contains("nics/worker-09"), "{missing}");
    sim.shutdown().await;
}
