//! In-memory Kubernetes API server and node simulator for end-to-end tests, the demo and scale
//! benchmarks.
//!
//! [`Sim::start`] serves the Kubernetes API on `127.0.0.1` over plain HTTP (no auth), writes a
//! kubeconfig for it and starts a [`Kubelet`] against it. The [`Kubelet`] is a client of any
//! API server (`multinic sim --api` runs it alone against a real one): it registers simulated
//! Nodes and runs the Pods bound to them through a [`PodRunner`]: [`ProcessRunner`] runs the
//! container's command as a local process (inside the node's network namespace when the node
//! has one), [`InstantRunner`] answers at once with a successful agent report (for scale runs).

pub mod builtin;
pub mod clientcount;
pub mod discovery;
pub mod error;
pub mod gc;
pub mod http;
mod index;
pub mod jobs;
pub mod kubelet;
mod list;
pub mod meta;
pub mod netns;
pub mod node;
mod nodereg;
pub mod openapi;
pub mod patch;
mod patch_request;
mod podrun;
pub mod podspec;
pub mod protobuf;
pub mod registry;
pub mod route;
pub mod runner;
pub mod runtime;
pub mod scale;
mod schedule;
pub mod schema;
pub mod selectors;
pub mod store;
mod subresource;
pub mod table;
pub mod update;
pub mod validate;
pub mod watch;

pub use error::{ApiError, SimError};
pub use kubelet::{Kubelet, KubeletConfig};
pub use node::{NETNS_ANNOTATION, NodeSpec};
pub use runner::{InstantRunner, PodRunner, ProcessRunner, RunOutcome};
pub use store::Store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Which runner executes the Pods of Jobs.
#[derive(Clone)]
pub enum RunnerChoice {
    /// Run container commands as local processes; the image's `multinic` command maps to
    /// this binary.
    Process {
        /// Path of the local `multinic` binary.
        agent_binary: PathBuf,
    },
    /// Answer at once with a successful report (scale runs).
    Instant,
    /// A runner of the caller's own.
    Custom(Arc<dyn PodRunner>),
}

impl RunnerChoice {
    /// The runner this choice names.
    pub fn into_runner(self) -> Arc<dyn PodRunner> {
        match self {
            RunnerChoice::Process { agent_binary } => Arc::new(ProcessRunner::new(agent_binary)),
            RunnerChoice::Instant => Arc::new(InstantRunner),
            RunnerChoice::Custom(r) => r,
        }
    }
}

/// How to start the simulator.
#[derive(Clone)]
pub struct SimConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Nodes to register.
    pub nodes: Vec<NodeSpec>,
    /// Back each node with a network namespace holding veth NICs.
    pub netns: bool,
    /// Where to write the kubeconfig; defaults to `<work_dir>/kubeconfig`.
    pub kubeconfig_path: Option<PathBuf>,
    /// Directory for node roots, pod directories and the kubeconfig; defaults to a fresh
    /// directory under the system temp dir, removed on shutdown.
    pub work_dir: Option<PathBuf>,
    /// Changes kept for watch resumption; older resourceVersions get 410 Gone.
    pub history_limit: usize,
    /// Interval between BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// Who runs Job pods.
    pub runner: RunnerChoice,
    /// How often the kubelet renews each node's Lease.
    pub lease_renew_interval: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            port: 0,
            nodes: Vec::new(),
            netns: false,
            kubeconfig_path: None,
            work_dir: None,
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(5),
            runner: RunnerChoice::Instant,
            lease_renew_interval: Duration::from_secs(10),
        }
    }
}

impl SimConfig {
    /// A config with `n` generated nodes (`sim-node-0` ..).
    pub fn with_nodes(n: usize) -> Self {
        Self {
            nodes: (0..n).map(NodeSpec::generate).collect(),
            ..Self::default()
        }
    }
}

/// The simulator's entry point.
pub struct Sim;

impl Sim {
    /// Starts the API server and the Job controller, then the kubelet, which registers the
    /// nodes through the API.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        runtime::start(config).await
    }
}

/// A running simulator; dropping it stops everything it started.
pub struct SimHandle {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The port served.
    pub port: u16,
    /// The kubeconfig written for this server.
    pub kubeconfig_path: PathBuf,
    /// The work directory (node roots, pod directories).
    pub work_dir: PathBuf,
    pub(crate) store: Arc<Store>,
    pub(crate) counters: Arc<http::RequestCounters>,
    pub(crate) runtime: runtime::Runtime,
}

impl SimHandle {
    /// A kube client for this server (default namespace `default`).
    pub fn kube_client(&self) -> Result<kube::Client, SimError> {
        let uri: axum::http::Uri = self
            .base_url
            .parse()
            .map_err(|e: axum::http::uri::InvalidUri| SimError::Client(e.to_string()))?;
        let config = kube::Config::new(uri);
        kube::Client::try_from(config).map_err(|e| SimError::Client(e.to_string()))
    }

    /// The object store, for direct inspection.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// API requests served so far for clients other than the simulator's own kubelet, by
    /// (verb, resource): what the code under test asked for.
    pub fn request_counts(&self) -> BTreeMap<(String, String), u64> {
        let mut counts = self.counters.snapshot();
        for (key, n) in self.kubelet_request_counts() {
            if let Some(c) = counts.get_mut(&key) {
                *c = c.saturating_sub(n);
            }
        }
        counts.retain(|_, n| *n > 0);
        counts
    }

    /// Every API request served so far, the kubelet's included.
    pub fn all_request_counts(&self) -> BTreeMap<(String, String), u64> {
        self.counters.snapshot()
    }

    /// The requests the simulated kubelet sent (bindings, Pod status, Leases, its watches).
    pub fn kubelet_request_counts(&self) -> BTreeMap<(String, String), u64> {
        self.runtime
            .kubelet
            .as_ref()
            .map(Kubelet::request_counts)
            .unwrap_or_default()
    }

    /// Zeroes the request counters (the server's and the kubelet's).
    pub fn reset_request_counts(&self) {
        self.counters.reset();
        if let Some(k) = &self.runtime.kubelet {
            k.reset_request_counts();
        }
    }

    /// Changes how many changes are kept for watch resumption (a tiny value forces 410).
    pub fn set_watch_history(&self, limit: usize) {
        self.store.set_history_limit(limit)
    }

    /// Root directory of a node's host files.
    pub fn node_root(&self, node: &str) -> PathBuf {
        self.work_dir.join("nodes").join(node).join("root")
    }

    /// Name of a node's network namespace, when it has one.
    pub fn node_netns(&self, node: &str) -> Option<String> {
        self.runtime.kubelet.as_ref()?.netns_of(node)
    }

    /// Stops serving, ends running pods and removes namespaces and directories.
    pub async fn shutdown(mut self) {
        self.runtime.stop().await;
    }
}
