//! The simulated kubelet, a client of any Kubernetes API server (the embedded one included,
//! through a `kube::Client` to itself, so there is one kubelet stand-in): it registers its
//! Nodes and renews their Leases ([`crate::nodereg`]), binds Pods whose nodeSelector picks one of
//! its nodes ([`crate::schedule`]; test control planes run no scheduler), and runs the Pods
//! bound to its nodes through a [`PodRunner`], reporting their status as a kubelet does
//! ([`crate::podrun`]).
//!
//! One watch on Nodes (a cache for scheduling and adoption) and one on Pods drive it; each
//! running Pod is a task of its own.

use crate::error::SimError;
use crate::netns::NetnsGuard;
use crate::node::{NETNS_ANNOTATION, NodeSpec};
use crate::podspec::NodeContext;
use crate::runner::PodRunner;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_stream};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How to start a [`Kubelet`].
#[derive(Clone)]
pub struct KubeletConfig {
    /// Nodes to register and run Pods for.
    pub nodes: Vec<NodeSpec>,
    /// Back each node with a network namespace holding veth NICs (needs root); the namespace
    /// is named `<netns_prefix>-<i>` and the Node carries its name in
    /// [`NETNS_ANNOTATION`].
    pub netns: bool,
    /// Prefix of the namespaces' names (unique per kubelet on this machine).
    pub netns_prefix: String,
    /// Node roots (`<dir>/nodes/<node>/root`) and pod directories (`<dir>/pods/<ns>/<pod>`).
    pub work_dir: PathBuf,
    /// Who runs the Pods' containers.
    pub runner: Arc<dyn PodRunner>,
    /// Also run (and schedule) Pods for Nodes someone else created through the API, as
    /// lightweight nodes (a root directory; the namespace the Node's annotation names, if any).
    pub adopt_api_nodes: bool,
    /// How often each node's Lease is renewed (a kubelet renews its 40 s Lease every 10 s).
    pub lease_renew_interval: Duration,
    /// Delete the registered Nodes (and so their Leases) when stopping.
    pub deregister_on_stop: bool,
}

impl KubeletConfig {
    /// `nodes` run through `runner`, lightweight, without adoption, Leases renewed every 10 s.
    pub fn new(nodes: Vec<NodeSpec>, work_dir: PathBuf, runner: Arc<dyn PodRunner>) -> Self {
        Self {
            nodes,
            netns: false,
            netns_prefix: format!("mnsim-{}", std::process::id()),
            work_dir,
            runner,
            adopt_api_nodes: false,
            lease_renew_interval: Duration::from_secs(10),
            deregister_on_stop: false,
        }
    }
}

/// What the kubelet knows of a Node from its watch.
#[derive(Clone, Debug, Default)]
pub(crate) struct NodeInfo {
    pub(crate) uid: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) unschedulable: bool,
    pub(crate) internal_ip: Option<String>,
    pub(crate) netns: Option<String>,
}

impl NodeInfo {
    fn of(node: &Node) -> Self {
        let internal_ip = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .map(|a| a.address.clone());
        Self {
            uid: node.metadata.uid.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            unschedulable: node
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false),
            internal_ip,
            netns: node
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(NETNS_ANNOTATION))
                .cloned(),
        }
    }
}

/// A Pod this kubelet has taken on, by uid.
pub(crate) enum PodEntry {
    /// Its container runs; `stop` asks it to end with a grace period.
    Running {
        stop: watch::Sender<Option<Duration>>,
        task: JoinHandle<()>,
    },
    /// Finished (or never to run here); `delete_sent` once the final delete was sent.
    Done { delete_sent: bool },
}

/// State shared by the kubelet's tasks.
pub(crate) struct Shared {
    pub(crate) client: kube::Client,
    pub(crate) own: HashMap<String, NodeContext>,
    pub(crate) adopt: bool,
    pub(crate) work_dir: PathBuf,
    pub(crate) runner: Arc<dyn PodRunner>,
    pub(crate) lease_renew_interval: Duration,
    /// Every Node the API has, from the watch.
    pub(crate) nodes: Mutex<HashMap<String, NodeInfo>>,
    /// API-created Nodes taken on (adoption).
    adopted: Mutex<HashMap<String, NodeContext>>,
    pub(crate) pods: Mutex<HashMap<String, PodEntry>>,
    /// Unbound Pods no node fits yet, retried when Nodes change.
    pub(crate) unscheduled: Mutex<HashMap<String, Pod>>,
    /// Pods whose binding is in flight.
    pub(crate) binding: Mutex<HashSet<String>>,
    pub(crate) next_node: AtomicUsize,
    /// False once the server answered that it has no `pods/binding` (an older sim).
    pub(crate) binding_served: AtomicBool,
    pub(crate) counters: Arc<crate::clientcount::Counters>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// The node a Pod bound to `name` runs on: one of ours, or (with adoption) an API Node.
    pub(crate) fn node_context(&self, name: &str) -> Option<NodeContext> {
        if let Some(ctx) = self.own.get(name) {
            return Some(ctx.clone());
        }
        if !self.adopt {
            return None;
        }
        let mut adopted = lock(&self.adopted);
        if let Some(ctx) = adopted.get(name) {
            return Some(ctx.clone());
        }
        let info = lock(&self.nodes).get(name).cloned()?;
        let root = self.node_root(name);
        std::fs::create_dir_all(&root).ok()?;
        let ctx = NodeContext {
            name: name.to_string(),
            netns: info.netns,
            root,
            ip: info.internal_ip.unwrap_or_else(|| "127.0.0.1".into()),
        };
        adopted.insert(name.to_string(), ctx.clone());
        Some(ctx)
    }

    /// Whether Pods may be placed on `name` by this kubelet.
    pub(crate) fn serves(&self, name: &str) -> bool {
        self.adopt || self.own.contains_key(name)
    }

    pub(crate) fn node_root(&self, node: &str) -> PathBuf {
        self.work_dir.join("nodes").join(node).join("root")
    }

    pub(crate) fn pod_dir(&self, namespace: &str, name: &str) -> PathBuf {
        self.work_dir.join("pods").join(namespace).join(name)
    }
}

/// A running kubelet; stopping (or dropping) it ends its Pods' processes and removes its
/// network namespaces.
pub struct Kubelet {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    netns: HashMap<String, NetnsGuard>,
    deregister: Vec<String>,
}

impl Kubelet {
    /// Prepares the nodes (namespaces, root directories), registers them and their Leases
    /// with the API server `config` points at, and starts serving their Pods.
    pub async fn start(config: kube::Config, cfg: KubeletConfig) -> Result<Self, SimError> {
        // The namespaces' guards are held from the start, so a failure below removes them.
        let mut netns = HashMap::new();
        let mut own = HashMap::new();
        let root_of = |node: &str| cfg.work_dir.join("nodes").join(node).join("root");
        for (i, spec) in cfg.nodes.iter().enumerate() {
            let ns = if cfg.netns {
                let name = format!("{}-{i}", cfg.netns_prefix);
                netns.insert(
                    spec.name.clone(),
                    NetnsGuard::create(&name, &spec.name, &spec.macs)?,
                );
                Some(name)
            } else {
                None
            };
            let root = root_of(&spec.name);
            crate::nodereg::prepare_root(spec, &root)?;
            own.insert(
                spec.name.clone(),
                NodeContext {
                    name: spec.name.clone(),
                    netns: ns,
                    root,
                    ip: spec.internal_ip.to_string(),
                },
            );
        }
        let counters = Arc::new(crate::clientcount::Counters::default());
        let client = crate::clientcount::client(config, counters.clone())?;
        let (stop, stop_rx) = watch::channel(false);
        let mut kubelet = Kubelet {
            shared: Arc::new(Shared {
                client: client.clone(),
                own,
                adopt: cfg.adopt_api_nodes,
                work_dir: cfg.work_dir.clone(),
                runner: cfg.runner.clone(),
                lease_renew_interval: cfg.lease_renew_interval,
                nodes: Mutex::default(),
                adopted: Mutex::default(),
                pods: Mutex::default(),
                unscheduled: Mutex::default(),
                binding: Mutex::default(),
                next_node: AtomicUsize::new(0),
                binding_served: AtomicBool::new(true),
                counters,
            }),
            stop,
            tasks: Vec::new(),
            netns,
            deregister: Vec::new(),
        };
        let netns_of: HashMap<String, String> = kubelet
            .netns
            .iter()
            .map(|(node, g)| (node.clone(), g.name().to_string()))
            .collect();
        crate::nodereg::register_all(&client, &cfg.nodes, &netns_of).await?;
        if cfg.deregister_on_stop {
            kubelet.deregister = cfg.nodes.iter().map(|n| n.name.clone()).collect();
        }
        let shared = kubelet.shared.clone();
        kubelet
            .tasks
            .push(tokio::spawn(run(shared.clone(), stop_rx.clone())));
        kubelet
            .tasks
            .push(tokio::spawn(crate::nodereg::renew_leases(shared, stop_rx)));
        Ok(kubelet)
    }

    /// A client of the same API server (requests it makes are not counted as the kubelet's).
    pub fn client(&self) -> kube::Client {
        self.shared.client.clone()
    }

    /// Name of a node's network namespace, when it has one.
    pub fn netns_of(&self, node: &str) -> Option<String> {
        self.netns.get(node).map(|g| g.name().to_string())
    }

    /// Root directory standing in for a node's `/`.
    pub fn node_root(&self, node: &str) -> PathBuf {
        self.shared.node_root(node)
    }

    /// API requests this kubelet made, by (verb, resource), as the server counts them.
    pub fn request_counts(&self) -> BTreeMap<(String, String), u64> {
        self.shared.counters.snapshot()
    }

    /// Zeroes [`Kubelet::request_counts`].
    pub fn reset_request_counts(&self) {
        self.shared.counters.reset()
    }

    /// Stops serving: ends every Pod's process, deletes the Nodes when configured to, and
    /// removes the network namespaces. Safe to call more than once.
    pub async fn stop(&mut self) {
        let _ = self.stop.send(true);
        for t in self.abort_pods() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        let names = std::mem::take(&mut self.deregister);
        crate::nodereg::deregister(&self.shared.client, &names).await;
        self.netns.clear();
    }

    fn abort_pods(&self) -> Vec<JoinHandle<()>> {
        let tasks: Vec<JoinHandle<()>> = lock(&self.shared.pods)
            .drain()
            .filter_map(|(_, e)| match e {
                PodEntry::Running { task, .. } => Some(task),
                PodEntry::Done { .. } => None,
            })
            .collect();
        tasks.iter().for_each(JoinHandle::abort);
        tasks
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.abort_pods();
        self.tasks.iter().for_each(JoinHandle::abort);
        self.netns.clear();
    }
}

/// The watch loop: the Node cache first (scheduling and adoption read it), then Pods.
async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let nodes = watch_stream(
        Api::<Node>::all(shared.client.clone()),
        watcher::Config::default(),
    )
    .default_backoff();
    let pods = watch_stream(
        Api::<Pod>::all(shared.client.clone()),
        watcher::Config::default(),
    )
    .default_backoff();
    let (mut nodes, mut pods) = (std::pin::pin!(nodes), std::pin::pin!(pods));
    let mut node_init: Option<HashMap<String, NodeInfo>> = None;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            Some(ev) = nodes.next() => {
                let done = matches!(ev, Ok(Event::InitDone));
                on_node_event(&shared, ev, &mut node_init);
                if done {
                    break;
                }
            }
        }
    }
    let mut pod_init: Option<HashSet<String>> = None;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            Some(ev) = nodes.next() => on_node_event(&shared, ev, &mut node_init),
            Some(ev) = pods.next() => match ev {
                Ok(Event::Init) => pod_init = Some(HashSet::new()),
                Ok(Event::InitApply(pod)) => {
                    if let Some(seen) = pod_init.as_mut() {
                        seen.insert(pod.metadata.uid.clone().unwrap_or_default());
                    }
                    crate::podrun::on_pod(&shared, pod);
                }
                Ok(Event::InitDone) => {
                    if let Some(seen) = pod_init.take() {
                        crate::podrun::forget_missing(&shared, &seen);
                    }
                }
                Ok(Event::Apply(pod)) => crate::podrun::on_pod(&shared, pod),
                Ok(Event::Delete(pod)) => crate::podrun::on_deleted(&shared, &pod),
                Err(e) => tracing::debug!(error = %e, "sim kubelet: pod watch"),
            },
        }
    }
}

fn on_node_event(
    shared: &Arc<Shared>,
    ev: Result<Event<Node>, watcher::Error>,
    init: &mut Option<HashMap<String, NodeInfo>>,
) {
    let name = |n: &Node| n.metadata.name.clone().unwrap_or_default();
    match ev {
        Ok(Event::Init) => *init = Some(HashMap::new()),
        Ok(Event::InitApply(node)) => {
            if let Some(m) = init.as_mut() {
                m.insert(name(&node), NodeInfo::of(&node));
            }
        }
        Ok(Event::InitDone) => {
            if let Some(m) = init.take() {
                *lock(&shared.nodes) = m;
            }
            crate::schedule::retry(shared);
        }
        Ok(Event::Apply(node)) => {
            lock(&shared.nodes).insert(name(&node), NodeInfo::of(&node));
            crate::schedule::retry(shared);
        }
        Ok(Event::Delete(node)) => {
            lock(&shared.nodes).remove(&name(&node));
        }
        Err(e) => tracing::debug!(error = %e, "sim kubelet: node watch"),
    }
}
