//! Starting and stopping the whole simulator: the API server, the kubeconfig, the Job
//! controller and the kubelet (a client of this server, registering the nodes); and taking all
//! of it down again.

use crate::error::SimError;
use crate::http::{AppState, RequestCounters};
use crate::kubelet::{Kubelet, KubeletConfig};
use crate::store::Store;
use crate::{SimConfig, SimHandle};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the simulator started; stopping (or dropping) it ends all of it.
pub(crate) struct Runtime {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    pub(crate) kubelet: Option<Kubelet>,
    work_dir: Option<PathBuf>,
}

impl Runtime {
    pub(crate) async fn stop(&mut self) {
        // The kubelet first: its pods' processes end while the server still answers.
        if let Some(k) = self.kubelet.as_mut() {
            k.stop().await;
        }
        self.kubelet = None;
        let _ = self.shutdown.send(true);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
        self.cleanup();
    }

    fn cleanup(&mut self) {
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
        // Dropping the kubelet kills its pods' processes and removes its namespaces.
        self.kubelet = None;
        let _ = self.shutdown.send(true);
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
        kubelet: None,
        work_dir: owned,
    };

    let store = Arc::new(Store::new(config.history_limit));
    let namespaces = store
        .lookup("", "v1", "namespaces")
        .expect("built-in types are always served");
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

    runtime
        .tasks
        .push(tokio::spawn(crate::jobs::run(store.clone(), shutdown_rx)));
    let kubelet_config = KubeletConfig {
        netns: config.netns,
        netns_prefix: format!("mnsim-{}-{seq}", std::process::id()),
        adopt_api_nodes: true,
        lease_renew_interval: config.lease_renew_interval,
        ..KubeletConfig::new(
            config.nodes.clone(),
            work_dir.clone(),
            config.runner.clone().into_runner(),
        )
    };
    let uri: axum::http::Uri = base_url
        .parse()
        .map_err(|e: axum::http::uri::InvalidUri| SimError::Client(e.to_string()))?;
    runtime.kubelet = Some(Kubelet::start(kube::Config::new(uri), kubelet_config).await?);
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
