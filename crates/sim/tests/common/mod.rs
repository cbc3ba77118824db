//! Shared helpers for the simulator's integration tests.
#![allow(dead_code)]

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::core::Status;
use multinic_api::MultiNicNodeConfig;
use multinic_sim::{Sim, SimConfig, SimHandle};
use serde_json::json;
use std::time::Duration;

/// Namespace the tests put MultiNicNodeConfigs in.
pub const NS: &str = "multinic-system";

/// Starts a sim, installs the MultiNicNodeConfig CRD and creates the `multinic-system` namespace.
pub async fn sim_with_crd(config: SimConfig) -> (SimHandle, kube::Client) {
    let sim = Sim::start(config).await.expect("sim starts");
    let client = sim.kube_client().expect("client");
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(&multinic_api::crd_yaml()).expect("crd yaml");
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .expect("crd created");
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
    (sim, client)
}

/// A valid MultiNicNodeConfig for `node` with one interface of the given MTU.
pub fn mnnc(name: &str, node: &str, mtu: u32) -> MultiNicNodeConfig {
    serde_json::from_value(json!({
        "apiVersion": "multinic.io/v1alpha1", "kind": "MultiNicNodeConfig",
        "metadata": {"name": name, "labels": {"multinic.io/node-name": node}},
        "spec": {"nodeName": node, "interfaces": [
            {"id": 0, "macAddress": "fa:16:3e:00:00:01", "address": "11.11.11.5", "cidr": "11.11.11.0/24", "mtu": mtu}]}
    }))
    .expect("valid MultiNicNodeConfig")
}

/// The API `Status` inside a kube error (panics on other errors).
pub fn status_of(e: kube::Error) -> Box<Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Polls `check` every 50 ms until it returns Some, or panics after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GETs a path with a given Accept header straight over HTTP and returns (status, JSON body).
pub async fn raw_get(base_url: &str, path: &str, accept: &str) -> (u16, serde_json::Value) {
    let client =
        kube::Client::try_from(kube::Config::new(base_url.parse().expect("url"))).expect("client");
    let req = axum::http::Request::get(path)
        .header("Accept", accept)
        .body(Vec::new())
        .expect("request");
    let text = client.request_text(req).await;
    match text {
        Ok(t) => (
            200,
            serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)),
        ),
        Err(kube::Error::Api(s)) => (s.code, serde_json::to_value(&*s).expect("status")),
        Err(e) => panic!("GET {path}: {e}"),
    }
}
