//! Shared by `realcp_lifecycle`, `realcp_jobs` and `realcp_leader`: a real control plane
//! ([`realcp_support::RealControlPlane`]) whose Nodes are the simulator's kubelet
//! ([`multinic_sim::Kubelet`]) running Pods as local processes in network namespaces, the
//! CRD and namespace installed, the chart's RBAC applied as the chart renders it, and the
//! controller's identity read back from the apiserver's audit log.

#![allow(dead_code)] // each test file uses its own part of this module

use crate::chart_support;
use crate::controller_support::{self, NS};
use crate::realcp_support::RealControlPlane;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use multinic_api::{MultiNicNodeConfig, MultiNicNodeConfigSpec};
use multinic_sim::{Kubelet, KubeletConfig, NodeSpec, RunnerChoice};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Clusters started by this test process: tests of one file run at once, so each cluster's
/// network namespaces need a name of their own, not just the process id.
static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

/// The chart objects that make up the controller's identity and rights (as realcp_rbac.rs).
const RBAC_KINDS: &[&str] = &[
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
];

/// A real control plane with simulated nodes.
pub struct RealCluster {
    /// The simulated nodes' kubelet (dropped before the control plane: fields drop in order).
    pub kubelet: Kubelet,
    pub admin: kube::Client,
    pub cp: RealControlPlane,
    work_dir: std::path::PathBuf,
}

impl RealCluster {
    /// Starts the control plane (`None` when it is not available, see `realcp_support`),
    /// installs the CRD and the namespace (PodSecurity `privileged`, as docs/install.md says)
    /// and registers `n` namespace-backed nodes running the real `multinic agent`.
    pub async fn start(n: usize) -> Option<Self> {
        let cp = RealControlPlane::start().await?;
        let admin = cp.client().await;
        cp.install_crd().await;
        cp.kubectl_ok(&["create", "namespace", NS]);
        cp.kubectl_ok(&[
            "label",
            "namespace",
            NS,
            "pod-security.kubernetes.io/enforce=privileged",
        ]);
        let work_dir = cp.dir().join("nodes");
        let kubeconfig = Kubeconfig::read_from(cp.kubeconfig()).expect("admin kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("admin kube config");
        let runner = RunnerChoice::Process {
            agent_binary: controller_support::multinic_bin(),
        };
        let kubelet = Kubelet::start(
            config,
            KubeletConfig {
                netns: true,
                netns_prefix: format!(
                    "mnrcp-{}-{}",
                    std::process::id(),
                    CLUSTERS.fetch_add(1, Ordering::Relaxed)
                ),
                ..KubeletConfig::new(
                    (0..n).map(NodeSpec::generate).collect(),
                    work_dir.clone(),
                    runner.into_runner(),
                )
            },
        )
        .await
        .expect("registering the simulated nodes with the real control plane");
        Some(Self {
            kubelet,
            admin,
            cp,
            work_dir,
        })
    }

    /// Applies the chart's ServiceAccount, Roles, ClusterRole and bindings (rendered with
    /// `case`'s values through Helm's SDK) with `edit` applied to each object first; returns
    /// the ServiceAccount's name.
    pub fn apply_rbac(&self, case: &str, edit: impl Fn(&mut Value)) -> String {
        let mut objects: Vec<Value> = chart_support::render(case)
            .into_iter()
            .filter(|o| RBAC_KINDS.contains(&o["kind"].as_str().unwrap_or_default()))
            .collect();
        objects.iter_mut().for_each(edit);
        let account = objects
            .iter()
            .find(|o| o["kind"] == "ServiceAccount")
            .and_then(|o| o["metadata"]["name"].as_str())
            .expect("the chart renders a ServiceAccount")
            .to_string();
        self.cp.apply_objects(&format!("rbac-{case}"), NS, &objects);
        account
    }

    /// A client acting as the chart's ServiceAccount (a TokenRequest token), not admin.
    pub async fn client_as(&self, account: &str) -> kube::Client {
        self.cp.service_account_client(NS, account).await
    }

    /// Audit events of `account`'s requests: (verb, resource, code).
    pub fn requests_of(&self, account: &str) -> Vec<(String, String, u64)> {
        let user = format!("system:serviceaccount:{NS}:{account}");
        self.cp
            .audit_events()
            .into_iter()
            .filter(|e| e["stage"] == "ResponseComplete" && e["user"]["username"] == user)
            .map(|e| {
                let mut resource = e["objectRef"]["resource"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if let Some(sub) = e["objectRef"]["subresource"].as_str() {
                    resource = format!("{resource}/{sub}");
                }
                (
                    e["verb"].as_str().unwrap_or_default().to_string(),
                    resource,
                    e["responseStatus"]["code"].as_u64().unwrap_or_default(),
                )
            })
            .collect()
    }

    pub fn configs(&self) -> Api<MultiNicNodeConfig> {
        Api::namespaced(self.admin.clone(), NS)
    }

    /// Creates the resource `name` with `spec` (as the producer would, admin).
    pub async fn create(&self, name: &str, spec: MultiNicNodeConfigSpec) {
        self.configs()
            .create(&PostParams::default(), &MultiNicNodeConfig::new(name, spec))
            .await
            .expect("creating the resource");
    }

    /// Waits until `name` satisfies `pred`; panics with the last state seen.
    pub async fn wait_for(
        &self,
        name: &str,
        pred: impl Fn(&MultiNicNodeConfig) -> bool,
    ) -> MultiNicNodeConfig {
        controller_support::wait_for_config(&self.configs(), name, Duration::from_secs(90), pred)
            .await
    }

    /// Waits until `name` is Configured at its current generation.
    pub async fn wait_configured(&self, name: &str) -> MultiNicNodeConfig {
        self.wait_for(name, controller_support::configured_now)
            .await
    }

    /// Waits until `name` is gone (its finalizer released).
    pub async fn wait_until_gone(&self, name: &str) {
        let timeout = Duration::from_secs(90);
        controller_support::wait_config_gone(&self.configs(), name, timeout).await;
    }

    /// `ip -n <netns> -o addr show` of the node.
    pub fn addresses(&self, node: &str) -> String {
        controller_support::netns_addresses(&self.kubelet.netns_of(node).expect("node has a netns"))
    }

    /// Files under the node root's `dir`, sorted.
    pub fn files(&self, node: &str, dir: &str) -> Vec<String> {
        controller_support::file_names(&self.kubelet.node_root(node).join(dir))
    }

    /// Stops the nodes' processes and namespaces before the control plane goes.
    pub async fn stop(mut self) {
        self.kubelet.stop().await;
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}
