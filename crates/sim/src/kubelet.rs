//! Starting and stopping the whole simulator, and the simulated kubelet: registers Nodes,
//! binds unscheduled Pods (nodeSelector), runs each Pod that lands on a simulated node through
//! the [`PodRunner`] and reports its status (termination message included).

use crate::error::SimError;
use crate::http::{AppState, RequestCounters};
use crate::netns::NetnsGuard;
use crate::podspec::{self, NodeContext};
use crate::registry::ResourceType;
use crate::runner::{InstantRunner, PodRunner, ProcessRunner, RunOutcome};
use crate::store::{ChangeKind, Store, Target};
use crate::{RunnerChoice, SimConfig, SimHandle, meta};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Longest termination message kept, as in Kubernetes.
const MAX_MESSAGE: usize = 4096;

/// What the simulator started; stopping (or dropping) it ends all of it.
pub(crate) struct Runtime {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    pods: Arc<Mutex<HashMap<String, JoinHandle<()>>>>,
    netns: HashMap<String, NetnsGuard>,
    work_dir: Option<PathBuf>,
}

impl Runtime {
    pub(crate) fn netns_of(&self, node: &str) -> Option<String> {
        self.netns.get(node).map(|g| g.name().to_string())
    }

    pub(crate) async fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        // Wait for the aborted pods: their futures kill the processes when dropped.
        for t in self.abort_pods() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
        self.cleanup();
    }

    fn abort_pods(&self) -> Vec<JoinHandle<()>> {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        let tasks: Vec<JoinHandle<()>> = pods.drain().map(|(_, t)| t).collect();
        tasks.iter().for_each(JoinHandle::abort);
        tasks
    }

    fn cleanup(&mut self) {
        self.netns.clear();
        if let Some(dir) = self.work_dir.take() {
            // A process that was just killed may still have been writing: retry briefly.
            for _ in 0..20 {
                if std::fs::remove_dir_all(&dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.abort_pods();
        for t in &self.tasks {
            t.abort();
        }
        self.cleanup();
    }
}

static SIM_COUNTER: AtomicUsize = AtomicUsize::new(0);

fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: multinic-sim\n  cluster:\n    server: {server}\n\
contexts:\n- name: multinic-sim\n  context:\n    cluster: multinic-sim\n    user: multinic-sim\n    namespace: default\n\
current-context: multinic-sim\nusers:\n- name: multinic-sim\n  user: {{}}\npreferences: {{}}\n"
    )
}

fn write(path: &std::path::Path, data: &str) -> Result<(), SimError> {
    std::fs::write(path, data).map_err(|source| SimError::Write {
        path: path.display().to_string(),
        source,
    })
}

fn core(store: &Store, plural: &str) -> Arc<ResourceType> {
    store
        .lookup("", "v1", plural)
        .expect("built-in types are always served")
}

/// Starts everything [`crate::Sim::start`] promises.
pub(crate) async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
    let seq = SIM_COUNTER.fetch_add(1, Ordering::Relaxed);
    let (work_dir, owned) = match &config.work_dir {
        Some(d) => (d.clone(), None),
        None => {
            let d = std::env::temp_dir().join(format!("multinic-sim-{}-{seq}", std::process::id()));
            (d.clone(), Some(d))
        }
    };
    let mkdir = |p: &PathBuf| {
        std::fs::create_dir_all(p).map_err(|source| SimError::Write {
            path: p.display().to_string(),
            source,
        })
    };
    mkdir(&work_dir)?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut runtime = Runtime {
        shutdown,
        tasks: Vec::new(),
        pods: Arc::default(),
        netns: HashMap::new(),
        work_dir: owned,
    };

    let store = Arc::new(Store::new(config.history_limit));
    let namespaces = core(&store, "namespaces");
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        store.create(&namespaces, None, json!({"metadata": {"name": ns}}))?;
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
        .await
        .map_err(|source| SimError::Serve {
            port: config.port,
            source,
        })?;
    let port = listener
        .local_addr()
        .map_err(|source| SimError::Serve {
            port: config.port,
            source,
        })?
        .port();
    let base_url = format!("http://127.0.0.1:{port}");
    let counters = Arc::new(RequestCounters::default());
    let state = AppState {
        store: store.clone(),
        counters: counters.clone(),
        server: format!("127.0.0.1:{port}"),
        bookmark_interval: config.bookmark_interval,
        shutdown: shutdown_rx.clone(),
        pods_dir: work_dir.join("pods"),
    };
    let mut stop = shutdown_rx.clone();
    runtime.tasks.push(tokio::spawn(async move {
        let serve =
            axum::serve(listener, crate::http::router(state)).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "sim API server stopped");
        }
    }));
    let kubeconfig_path = config
        .kubeconfig_path
        .clone()
        .unwrap_or_else(|| work_dir.join("kubeconfig"));
    write(&kubeconfig_path, &kubeconfig(&base_url))?;

    let nodes_rt = core(&store, "nodes");
    let mut nodes = HashMap::new();
    for (i, spec) in config.nodes.iter().enumerate() {
        let netns = if config.netns {
            let name = format!("mnsim-{}-{seq}-{i}", std::process::id());
            let guard = NetnsGuard::create(&name, &spec.name, &spec.macs)?;
            runtime.netns.insert(spec.name.clone(), guard);
            Some(name)
        } else {
            None
        };
        let root = work_dir.join("nodes").join(&spec.name).join("root");
        for dir in spec.config_dirs() {
            mkdir(&root.join(dir))?;
        }
        write(&root.join("etc/os-release"), &spec.os_release())?;
        store.create(&nodes_rt, None, spec.object())?;
        let status = spec.status();
        store.modify(&nodes_rt, None, &spec.name, Target::Status, |cur| {
            let mut o = cur.clone();
            o["status"] = status;
            Ok(o)
        })?;
        register_lease(&store, &spec.name)?;
        nodes.insert(
            spec.name.clone(),
            NodeContext {
                name: spec.name.clone(),
                netns,
                root,
                ip: spec.internal_ip.to_string(),
            },
        );
    }
    let runner: Arc<dyn PodRunner> = match &config.runner {
        RunnerChoice::Process { agent_binary } => {
            Arc::new(ProcessRunner::new(agent_binary.clone()))
        }
        RunnerChoice::Instant => Arc::new(InstantRunner),
        RunnerChoice::Custom(r) => r.clone(),
    };
    let kubelet = Kubelet {
        store: store.clone(),
        nodes: Mutex::new(nodes),
        runner,
        pods: runtime.pods.clone(),
        work_dir: work_dir.clone(),
        next_node: AtomicUsize::new(0),
    };
    let feed = store.subscribe_internal();
    runtime.tasks.push(tokio::spawn(
        Arc::new(kubelet).run(feed, shutdown_rx.clone()),
    ));
    runtime
        .tasks
        .push(tokio::spawn(crate::jobs::run(store.clone(), shutdown_rx)));
    Ok(SimHandle {
        base_url,
        port,
        kubeconfig_path,
        work_dir,
        store,
        counters,
        runtime,
    })
}

/// The node's heartbeat Lease in kube-node-lease, as a kubelet keeps one (`kubectl describe
/// node` shows it).
fn register_lease(store: &Store, node: &str) -> Result<(), SimError> {
    let (Some(leases), Some(nodes)) = (
        store.lookup("coordination.k8s.io", "v1", "leases"),
        store.lookup("", "v1", "nodes"),
    ) else {
        return Ok(());
    };
    let uid = meta::uid(&store.get(&nodes, None, node)?).to_string();
    let lease = json!({"metadata": {"name": node,
        "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid}]},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": meta::now_micro()}});
    store.create(&leases, Some("kube-node-lease"), lease)?;
    Ok(())
}

struct Kubelet {
    store: Arc<Store>,
    /// Nodes this kubelet runs pods for: the configured ones, plus Nodes created through the
    /// API (adopted as lightweight nodes when a pod lands on them).
    nodes: Mutex<HashMap<String, NodeContext>>,
    runner: Arc<dyn PodRunner>,
    pods: Arc<Mutex<HashMap<String, JoinHandle<()>>>>,
    work_dir: PathBuf,
    next_node: AtomicUsize,
}

impl Kubelet {
    async fn run(
        self: Arc<Self>,
        mut feed: tokio::sync::mpsc::UnboundedReceiver<Arc<crate::store::Change>>,
        mut stop: watch::Receiver<bool>,
    ) {
        self.resync();
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                got = feed.recv() => match got {
                    Some(c) if c.gr.group.is_empty() && c.gr.resource == "pods" => self.on_pod(c.kind, &c.object),
                    Some(_) => {}
                    None => return,
                }
            }
        }
    }

    fn resync(self: &Arc<Self>) {
        let pods = core(&self.store, "pods");
        let Ok(page) = self
            .store
            .list(&pods, None, &Default::default(), None, None)
        else {
            return;
        };
        let live: std::collections::HashSet<String> = page
            .items
            .iter()
            .map(|p| meta::uid(p).to_string())
            .collect();
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|uid, t| {
                let keep = live.contains(uid);
                if !keep {
                    t.abort();
                }
                keep
            });
        for p in &page.items {
            self.on_pod(ChangeKind::Modified, p);
        }
    }

    fn on_pod(self: &Arc<Self>, kind: ChangeKind, pod: &Value) {
        let uid = meta::uid(pod).to_string();
        if kind == ChangeKind::Deleted || meta::is_deleting(pod) {
            if let Some(t) = self
                .pods
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&uid)
            {
                t.abort();
            }
            return;
        }
        let node = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if node.is_empty() {
            self.schedule(pod);
            return;
        }
        let Some(ctx) = self.node_context(node) else {
            return;
        };
        if pod.pointer("/status/phase").and_then(Value::as_str) != Some("Pending") {
            return;
        }
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        if pods.contains_key(&uid) {
            return;
        }
        let me = self.clone();
        let pod = pod.clone();
        pods.insert(uid, tokio::spawn(async move { me.run_pod(pod, ctx).await }));
    }

    /// The node a pod runs on, adopting a Node created through the API on first use.
    fn node_context(&self, name: &str) -> Option<NodeContext> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ctx) = nodes.get(name) {
            return Some(ctx.clone());
        }
        let node = self
            .store
            .get(&core(&self.store, "nodes"), None, name)
            .ok()?;
        let ip = node
            .pointer("/status/addresses")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|x| x["type"] == json!("InternalIP")))
            .and_then(|x| x["address"].as_str())
            .unwrap_or("127.0.0.1")
            .to_string();
        let root = self.work_dir.join("nodes").join(name).join("root");
        std::fs::create_dir_all(&root).ok()?;
        let ctx = NodeContext {
            name: name.to_string(),
            netns: None,
            root,
            ip,
        };
        nodes.insert(name.to_string(), ctx.clone());
        Some(ctx)
    }

    /// The scheduler's part: bind a pod to the node its nodeSelector names (round-robin when it
    /// has none).
    fn schedule(&self, pod: &Value) {
        let selector = pod
            .pointer("/spec/nodeSelector")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let nodes_rt = core(&self.store, "nodes");
        let fits_labels = |n: &Value| {
            selector
                .iter()
                .all(|(k, v)| n.pointer("/metadata/labels").and_then(|l| l.get(k)) == Some(v))
        };
        // A hostname selector names one node: read it instead of listing all of them.
        let by_name = selector
            .get("kubernetes.io/hostname")
            .and_then(Value::as_str)
            .and_then(|host| self.store.get(&nodes_rt, None, host).ok());
        let candidates: Vec<Value> = match by_name {
            Some(node) => vec![node],
            None => match self
                .store
                .list(&nodes_rt, None, &Default::default(), None, None)
            {
                Ok(page) => page.items,
                Err(_) => return,
            },
        };
        let fits: Vec<&Value> = candidates.iter().filter(|n| fits_labels(n)).collect();
        if fits.is_empty() {
            return;
        }
        let chosen = meta::name(fits[self.next_node.fetch_add(1, Ordering::Relaxed) % fits.len()])
            .to_string();
        let _ = self.store.modify(
            &core(&self.store, "pods"),
            Some(meta::namespace(pod)),
            meta::name(pod),
            Target::Main,
            |cur| {
                let mut o = cur.clone();
                o["spec"]["nodeName"] = json!(chosen);
                Ok(o)
            },
        );
    }

    fn set_status(&self, pod: &Value, status: Value) {
        let _ = self.store.modify(
            &core(&self.store, "pods"),
            Some(meta::namespace(pod)),
            meta::name(pod),
            Target::Status,
            |cur| {
                let mut o = cur.clone();
                o["status"] = status;
                Ok(o)
            },
        );
    }

    async fn run_pod(self: Arc<Self>, pod: Value, node: NodeContext) {
        let container = pod
            .pointer("/spec/containers/0")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let cname = container.get("name").cloned().unwrap_or(json!("main"));
        let image = container.get("image").cloned().unwrap_or(json!(""));
        let container_id = format!("sim://{}", meta::uid(&pod));
        let started = meta::now();
        let pod_dir = self
            .work_dir
            .join("pods")
            .join(meta::namespace(&pod))
            .join(meta::name(&pod));
        let cond =
            |t: &str, s: &str| json!({"type": t, "status": s, "lastTransitionTime": meta::now()});
        let base = |phase: &str, ready: &str, state: Value| {
            json!({
                "phase": phase, "hostIP": node.ip, "podIP": node.ip, "podIPs": [{"ip": node.ip}], "startTime": started, "qosClass": "BestEffort",
                "conditions": [cond("PodScheduled", "True"), cond("Initialized", "True"), cond("ContainersReady", ready), cond("Ready", ready)],
                "containerStatuses": [{"name": cname, "image": image, "imageID": image, "containerID": container_id,
                    "ready": ready == "True", "started": ready == "True", "restartCount": 0, "state": state}],
            })
        };
        let (outcome, message) = match podspec::prepare(&pod, &node, &pod_dir) {
            Ok(run) => {
                self.set_status(
                    &pod,
                    base(
                        "Running",
                        "True",
                        json!({"running": {"startedAt": started}}),
                    ),
                );
                let termination_log = run.termination_log.clone();
                let outcome = self.runner.run(run).await;
                let mut message = std::fs::read_to_string(&termination_log).unwrap_or_default();
                let fallback = container
                    .get("terminationMessagePolicy")
                    .and_then(Value::as_str)
                    == Some("FallbackToLogsOnError");
                if message.trim().is_empty() && fallback && outcome.exit_code != 0 {
                    message = outcome.log_tail.clone();
                }
                (outcome, message)
            }
            Err(e) => (
                RunOutcome {
                    exit_code: 128,
                    log_tail: e.clone(),
                },
                e,
            ),
        };
        let mut message = message;
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let (phase, reason) = if outcome.exit_code == 0 {
            ("Succeeded", "Completed")
        } else {
            ("Failed", "Error")
        };
        let mut terminated = json!({"exitCode": outcome.exit_code, "reason": reason, "startedAt": started, "finishedAt": meta::now(), "containerID": container_id});
        if !message.is_empty() {
            terminated["message"] = json!(message);
        }
        self.set_status(
            &pod,
            base(phase, "False", json!({"terminated": terminated})),
        );
    }
}
