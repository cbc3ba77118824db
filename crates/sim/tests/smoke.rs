use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use multinic_api::MultiNicNodeConfig;
use multinic_sim::{Sim, SimConfig};

#[tokio::test]
async fn smoke() {
    let sim = Sim::start(SimConfig::with_nodes(2)).await.unwrap();
    let client = sim.kube_client().unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 2);
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_yaml::from_str(&multinic_api::crd_yaml()).unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({"metadata": {"name": "multinic-system"}}))
            .unwrap(),
    )
    .await
    .unwrap();
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client.clone(), "multinic-system");
    let obj: MultiNicNodeConfig = serde_json::from_value(serde_json::json!({
        "apiVersion": "multinic.io/v1alpha1", "kind": "MultiNicNodeConfig",
        "metadata": {"name": "sim-node-0"},
        "spec": {"nodeName": "sim-node-0", "interfaces": [{"id": 0, "macAddress": "fa:16:3e:00:00:01", "address": "10.0.0.5", "cidr": "10.0.0.0/24", "mtu": 1450}]}
    })).unwrap();
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let got = api.get("sim-node-0").await.unwrap();
    assert_eq!(got.spec.node_name, "sim-node-0");
    sim.shutdown().await;
}
