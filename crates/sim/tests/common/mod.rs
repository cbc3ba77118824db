//! Shared helpers for the simulator's integration tests, and the two backends the conformance
//! suites run against: the simulator, and a real kube-apiserver started by
//! `scripts/control-plane.sh` (through the multinic crate's `realcp_support`).
#![allow(dead_code)]

pub mod kubectl;
#[path = "../../../multinic/tests/realcp_support/mod.rs"]
pub mod realcp_support;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
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
    install_crd(&client).await;
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

/// GETs a path with a given Accept header and returns (status, JSON body).
pub async fn raw_get(client: &kube::Client, path: &str, accept: &str) -> (u16, serde_json::Value) {
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

/// What one conformance check runs against: a client, a namespace of its own that exists
/// (`multinic-system` on a fresh simulator, a fresh `conf-N` on the shared real server), and
/// the simulator when that is the backend.
pub struct Target {
    /// Client for the backend (admin on the real server).
    pub client: kube::Client,
    /// The check's namespace.
    pub ns: String,
    /// The simulator, when the backend is one.
    pub sim: Option<SimHandle>,
}

impl Target {
    /// A fresh simulator with the CRD and the `multinic-system` namespace.
    pub async fn sim(config: SimConfig) -> Self {
        let (sim, client) = sim_with_crd(config).await;
        Self {
            client,
            ns: NS.into(),
            sim: Some(sim),
        }
    }

    /// Whether the backend is the real API server.
    pub fn is_real(&self) -> bool {
        self.sim.is_none()
    }

    /// A name unique on the backend for a cluster-scoped object (the real server is shared by
    /// every check of a suite, each with its own namespace).
    pub fn unique(&self, name: &str) -> String {
        format!("{name}-{}", self.ns)
    }
}

/// One conformance check, runnable on either backend.
pub type Check = fn(Target) -> futures::future::BoxFuture<'static, ()>;

/// Defines, for each named check (an `async fn(Target)` in the test file), a test
/// `on_sim::<check>` running it on a fresh simulator, plus `real_api_server` running all of
/// them, one after another, on one real control plane.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        /// Each check on a fresh simulator.
        mod on_sim {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let config = multinic_sim::SimConfig::default();
                    super::$name($crate::common::Target::sim(config).await).await;
                }
            )*
        }

        /// The same checks against a real kube-apiserver (skipped, with a line saying so, when
        /// no control plane is configured; a failure when MULTINIC_REQUIRE_REAL_CP=1).
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn real_api_server() {
            let all: Vec<(&str, $crate::common::Check)> = vec![
                $((stringify!($name), |t| Box::pin($name(t)))),*
            ];
            $crate::common::run_on_real_server(&all).await;
        }
    };
}

/// Starts a real control plane, installs the CRD, and runs every check in a namespace of its
/// own; a failing check does not stop the others, and the test fails listing all that failed.
pub async fn run_on_real_server(checks: &[(&str, Check)]) {
    let Some(cp) = realcp_support::RealControlPlane::start().await else {
        return;
    };
    let client = cp.client().await;
    install_crd(&client).await;
    let mut failed = Vec::new();
    for (i, (name, check)) in checks.iter().enumerate() {
        let ns = format!("conf-{i}");
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &obj)
            .await
            .expect("namespace created");
        // Pods need the namespace's default ServiceAccount, which a controller adds.
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        eventually(30, "the default ServiceAccount", || {
            let accounts = accounts.clone();
            async move { accounts.get_opt("default").await.ok()? }
        })
        .await;
        let target = Target {
            client: client.clone(),
            ns,
            sim: None,
        };
        // Each check in a task of its own: a panic is reported, not fatal to the rest.
        match tokio::spawn(check(target)).await {
            Ok(()) => eprintln!("real API server: {name} ok"),
            Err(e) => {
                eprintln!("real API server: {name} FAILED: {e}");
                failed.push(*name);
            }
        }
    }
    assert!(
        failed.is_empty(),
        "checks failing against the real API server: {failed:?} (logs above; control plane logs in {})",
        cp.dir().display()
    );
}

/// Creates the MultiNicNodeConfig CRD and waits until the API serves it.
pub async fn install_crd(client: &kube::Client) {
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(&multinic_api::crd_yaml()).expect("crd yaml");
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("crd created");
    let api: Api<MultiNicNodeConfig> = Api::all(client.clone());
    eventually(30, "the CRD to be served", || {
        let api = api.clone();
        async move { api.list(&Default::default()).await.ok() }
    })
    .await;
}
