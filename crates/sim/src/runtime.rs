//! Starting and stopping the whole simulator: the API server, the kubeconfig, node
//! registration (with network namespaces and root directories), the kubelet and the Job
//! controller; and taking all of it down again.

use crate::error::SimError;
use crate::http::{AppState, RequestCounters};
use crate::kubelet::core;
use crate::netns::NetnsGuard;
use crate::podspec::NodeContext;
use crate::runner::{InstantRunner, PodRunner, ProcessRunner};
use crate::store::{Store, Target};
use crate::{RunnerChoice, SimConfig, SimHandle, meta};
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::task::JoinHandle;

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
    runtime.tasks.push(crate::kubelet::spawn(
        store.clone(),
        nodes,
        runner,
        runtime.pods.clone(),
        work_dir.clone(),
        shutdown_rx.clone(),
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
