//! End-to-end harness for the controller: a simulator whose nodes are network namespaces with
//! veth NICs and whose Jobs run the real `multinic agent`, the controller in-process (so a
//! test can stop and restart it), and helpers to wait on resources and read the nodes back.

#![allow(dead_code)]

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use multinic_api::{MultiNicNodeConfig, MultiNicNodeConfigSpec, NodeConfigState, StateReason};
use multinic_controller::{ControllerConfig, JobConfig, LeaderConfig, RetryPolicy, WatchMode};
use multinic_sim::{NodeSpec, RunnerChoice, Sim, SimConfig, SimHandle};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Namespace the tests use.
pub const NS: &str = multinic_api::DEFAULT_NAMESPACE;

/// The `multinic` binary under test (also the agent the simulated kubelet runs).
pub fn multinic_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_multinic"))
}

/// A simulator with `n` namespace-backed nodes (`sim-node-0` Ubuntu, `sim-node-1` Rocky 9 ...).
pub struct Cluster {
    pub sim: SimHandle,
    pub client: Client,
}

impl Cluster {
    pub async fn start(n: usize) -> Self {
        // Logs of the controller under test, when asked for with MULTINIC_TEST_LOG=debug.
        if let Ok(filter) = std::env::var("MULTINIC_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let sim = Sim::start(SimConfig {
            netns: true,
            runner: RunnerChoice::Process {
                agent_binary: multinic_bin(),
            },
            ..SimConfig::with_nodes(n)
        })
        .await
        .expect("starting the simulator");
        let client = sim.kube_client().expect("client");
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&multinic_api::crd_yaml()).unwrap();
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("creating the CRD");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns = serde_json::from_value(serde_json::json!({"metadata": {"name": NS}})).unwrap();
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("creating the namespace");
        Self { sim, client }
    }

    pub fn configs(&self) -> Api<MultiNicNodeConfig> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    /// The generated description of node `i` (name, uuid, MACs).
    pub fn node(i: usize) -> NodeSpec {
        NodeSpec::generate(i)
    }

    /// Creates the resource `name` with `spec`.
    pub async fn create(&self, name: &str, spec: MultiNicNodeConfigSpec) -> MultiNicNodeConfig {
        let obj = MultiNicNodeConfig::new(name, spec);
        self.configs()
            .create(&PostParams::default(), &obj)
            .await
            .expect("creating the resource")
    }

    /// Replaces the spec of `name` (a new generation).
    pub async fn set_spec(&self, name: &str, spec: &MultiNicNodeConfigSpec) {
        let patch = serde_json::json!({"spec": spec});
        self.configs()
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("updating the spec");
    }

    /// Waits until `name` satisfies `pred`, returning it; panics with the last seen state.
    pub async fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&MultiNicNodeConfig) -> bool,
    ) -> MultiNicNodeConfig {
        wait_for_config(&self.configs(), name, timeout, pred).await
    }

    /// Waits until `name` is Configured at its current generation.
    pub async fn wait_configured(&self, name: &str) -> MultiNicNodeConfig {
        self.wait_for(name, Duration::from_secs(60), configured_now)
            .await
    }

    /// Waits until `name` is gone.
    pub async fn wait_gone(&self, name: &str) {
        wait_config_gone(&self.configs(), name, Duration::from_secs(60)).await;
    }

    pub async fn delete(&self, name: &str) {
        self.configs()
            .delete(name, &DeleteParams::default())
            .await
            .expect("deleting the resource");
    }

    /// `ip -n <netns> -o addr show` of the node (its IPv4/IPv6 addresses per NIC).
    pub fn addresses(&self, node: &str) -> String {
        netns_addresses(&self.sim.node_netns(node).expect("node has a netns"))
    }

    /// Files under the node's root directory `dir` (e.g. `etc/netplan`), sorted.
    pub fn files(&self, node: &str, dir: &str) -> Vec<String> {
        file_names(&self.sim.node_root(node).join(dir))
    }

    /// Requests the simulator served for `verb` on `resource` (e.g. "create", "jobs").
    pub fn requests(&self, verb: &str, resource: &str) -> u64 {
        self.sim
            .request_counts()
            .get(&(verb.to_string(), resource.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Collects every status the resource `name` goes through, until the returned guard drops.
    pub fn record_statuses(&self, name: &str) -> StatusLog {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let wc = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let stream = watcher(self.configs(), wc).applied_objects();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(obj)) = stream.next().await {
                if let Some(status) = obj.status.clone() {
                    sink.lock().unwrap().push(status);
                }
            }
        });
        StatusLog { log, task }
    }

    /// Names of the Jobs that exist now.
    pub async fn job_names(&self) -> Vec<String> {
        self.jobs()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|j| j.name_any())
            .collect()
    }
}

/// Statuses seen by [`Cluster::record_statuses`].
pub struct StatusLog {
    pub log: Arc<Mutex<Vec<multinic_api::MultiNicNodeConfigStatus>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StatusLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The controller configuration the tests run with: fast retries, no HTTP server, the agent
/// told not to hand off to a host network manager (there is none in a test namespace).
pub fn test_config() -> ControllerConfig {
    ControllerConfig {
        namespace: Some(NS.into()),
        mode: WatchMode::Watch,
        job: JobConfig {
            image: "multinic:test".into(),
            active_deadline_seconds: 60,
            agent_env: vec![("MULTINIC_HANDOFF".into(), "none".into())],
            ..JobConfig::default()
        },
        max_jobs_in_flight: 10,
        max_failures: multinic_controller::fleet::MaxFailures::Count(3),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(2),
        },
        node_missing_recheck: Duration::from_secs(2),
        concurrency: 0,
        instance: format!("test-{}", std::process::id()),
        leader_election: None,
        http_addr: None,
    }
}

/// The config of one replica taking part in leader election on a short Lease.
pub fn replica_config(instance: &str) -> ControllerConfig {
    let mut config = test_config();
    config.instance = instance.into();
    config.leader_election = Some(LeaderConfig {
        namespace: NS.into(),
        lease_name: "multinic-controller".into(),
        lease_duration: Duration::from_secs(3),
        renew_interval: Duration::from_millis(500),
        renew_deadline: Duration::from_secs(2),
    });
    config
}

/// Who holds the controller's Lease now.
pub async fn lease_holder(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    leases
        .get_opt("multinic-controller")
        .await
        .unwrap()
        .and_then(|l| l.spec?.holder_identity)
}

/// Waits (at most 10 s) until `instance` holds the controller's Lease.
pub async fn wait_for_leader(client: &Client, instance: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while lease_holder(client).await.as_deref() != Some(instance) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{instance} never led"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A job command that waits `secs` before starting the real agent (to catch a Job running).
pub fn slow_agent_command(secs: u32) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("sleep {secs}; exec {} agent", multinic_bin().display()),
    ]
}

/// A controller running in this process until stopped (or dropped).
pub struct RunningController {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), multinic_controller::Error>>,
}

impl RunningController {
    pub fn start(client: Client, config: ControllerConfig) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(multinic_controller::run(client, config, async move {
            let _ = stopped.await;
        }));
        Self {
            stop: Some(stop),
            task,
        }
    }

    /// What the controller returned, if it stopped on its own within `limit`.
    pub async fn stopped_within(
        &mut self,
        limit: Duration,
    ) -> Option<Result<(), multinic_controller::Error>> {
        let joined = tokio::time::timeout(limit, &mut self.task).await.ok()?;
        Some(joined.expect("the controller task panicked"))
    }

    /// Kills the controller at once (as a crash would).
    pub async fn kill(mut self) {
        self.stop.take();
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A spec for node `i` with the given (MAC index, address, cidr) NICs.
pub fn spec_for(i: usize, nics: &[(usize, &str, &str)]) -> MultiNicNodeConfigSpec {
    let node = Cluster::node(i);
    serde_json::from_value(serde_json::json!({
        "nodeName": node.name,
        "instanceId": node.system_uuid,
        "interfaces": nics.iter().map(|(mac, address, cidr)| serde_json::json!({
            "id": *mac as u8,
            "macAddress": node.macs[*mac],
            "address": address,
            "cidr": cidr,
            "mtu": 1450,
        })).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// Whether `obj` is in `state` with Ready's reason `reason`, at its current generation.
pub fn reason_is(obj: &MultiNicNodeConfig, state: NodeConfigState, reason: StateReason) -> bool {
    let Some(status) = obj.status.as_ref() else {
        return false;
    };
    status.state == Some(state)
        && status.observed_generation == obj.metadata.generation
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.reason == reason.as_str())
}

/// The message of the resource's first condition (Ready), or "".
pub fn message(obj: &MultiNicNodeConfig) -> String {
    obj.status
        .as_ref()
        .and_then(|s| s.conditions.first())
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Every Event about the resource `name` in the test namespace, read through `client`.
pub async fn events_about(client: &Client, name: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), NS);
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

/// `(reason, note)` of every Event about the resource `name`.
pub async fn event_reasons(cluster: &Cluster, name: &str) -> Vec<(String, String)> {
    events_about(&cluster.client, name)
        .await
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// `ip -n <ns> -o addr show`: the addresses of every link of a node's namespace.
pub fn netns_addresses(ns: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "-o", "addr", "show"])
        .output()
        .expect("running ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The names of the files in `dir`, sorted (none when it does not exist).
pub fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Whether the resource's status is `state` for its current generation.
pub fn in_state_now(obj: &MultiNicNodeConfig, state: NodeConfigState) -> bool {
    let status = obj.status.as_ref();
    status.and_then(|s| s.state) == Some(state)
        && status.and_then(|s| s.observed_generation) == obj.metadata.generation
}

/// Whether the resource is Configured at its current generation.
pub fn configured_now(obj: &MultiNicNodeConfig) -> bool {
    in_state_now(obj, NodeConfigState::Configured)
}

/// Polls until the resource `name` is gone through `api` (its finalizer released; every
/// 100 ms, until `timeout`); panics with its finalizers and status. Shared by the simulated
/// and the real control-plane clusters.
pub async fn wait_config_gone(api: &Api<MultiNicNodeConfig>, name: &str, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if api
            .get_opt(name)
            .await
            .expect("reading the resource")
            .is_none()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = api.get_opt(name).await.expect("reading the resource");
    panic!(
        "{name} was not deleted: {:?}",
        left.map(|o| (o.metadata.finalizers, o.status))
    );
}

/// Polls the resource `name` through `api` until it satisfies `pred` (every 100 ms, until
/// `timeout`), returning it; panics with the last status seen. Shared by the simulated and the
/// real control-plane clusters.
pub async fn wait_for_config(
    api: &Api<MultiNicNodeConfig>,
    name: &str,
    timeout: Duration,
    pred: impl Fn(&MultiNicNodeConfig) -> bool,
) -> MultiNicNodeConfig {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        match api.get_opt(name).await.expect("reading the resource") {
            Some(obj) if pred(&obj) => return obj,
            other => last = other,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{name} did not reach the expected state in {timeout:?}; last: {}",
        serde_json::to_string_pretty(&last.map(|o| o.status)).unwrap()
    );
}
