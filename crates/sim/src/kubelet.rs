//! The simulated kubelet: binds unscheduled Pods (nodeSelector), runs each Pod that lands on
//! a simulated node through the [`PodRunner`] and reports its status (termination message
//! included).

use crate::meta;
use crate::podspec::{self, NodeContext};
use crate::registry::ResourceType;
use crate::runner::{PodRunner, RunOutcome};
use crate::store::{ChangeKind, Store, Target};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Longest termination message kept, as in Kubernetes.
const MAX_MESSAGE: usize = 4096;

pub(crate) fn core(store: &Store, plural: &str) -> Arc<ResourceType> {
    store
        .lookup("", "v1", plural)
        .expect("built-in types are always served")
}

/// Starts the kubelet for `nodes`; it runs until `stop` turns true.
pub(crate) fn spawn(
    store: Arc<Store>,
    nodes: HashMap<String, NodeContext>,
    runner: Arc<dyn PodRunner>,
    pods: Arc<Mutex<HashMap<String, JoinHandle<()>>>>,
    work_dir: PathBuf,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    // Subscribe before the first resync so no change falls in between.
    let feed = store.subscribe_internal();
    let kubelet = Kubelet {
        store,
        nodes: Mutex::new(nodes),
        runner,
        pods,
        work_dir,
        next_node: AtomicUsize::new(0),
    };
    tokio::spawn(Arc::new(kubelet).run(feed, stop))
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
