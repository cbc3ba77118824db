//! `multinic bench scale`: N MultiNicNodeConfigs on N lightweight simulated nodes with instant
//! agents, the controller as its own process; reports the time until all are Ready, the API
//! requests per resource by verb (the simulator's counters, or a real apiserver's audit log)
//! and the controller's peak RSS. With `--kubeconfig` the nodes are the simulator's kubelet
//! registered with that API server (a real control plane) instead of the embedded one.

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use multinic_api::{MultiNicNodeConfig, MultiNicNodeConfigSpec, NodeConfigState};
use multinic_sim::{Kubelet, KubeletConfig, NodeSpec, RunnerChoice, Sim, SimConfig, SimHandle};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

mod outcome;
use outcome::{Outcome, cpu_seconds, peak_rss_kib, print_table};

/// Benchmarks.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Controller scale: N resources on N lightweight nodes with instant agents.
    Scale(ScaleArgs),
}

/// Options of `multinic bench scale`.
#[derive(clap::Args, Debug)]
pub struct ScaleArgs {
    /// Node (and resource) counts to run, side by side, e.g. `1000,10000`.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub nodes: Vec<usize>,
    /// The controller's cap on Jobs in flight.
    #[arg(long, default_value_t = 200)]
    pub max_jobs_in_flight: usize,
    /// Give up on a run after this long.
    #[arg(long, default_value = "300s", value_parser = multinic_controller::config::parse_duration)]
    pub timeout: Duration,
    /// Print the result rows as Markdown (for docs/benchmarks.md).
    #[arg(long)]
    pub markdown: bool,
    /// Extra argument for the controller process (repeatable), e.g. `--controller-arg=--concurrency=16`.
    #[arg(long = "controller-arg", allow_hyphen_values = true)]
    pub controller_args: Vec<String>,
    /// Run against this API server (its kubeconfig, with admin rights: nodes, pods, CRDs)
    /// instead of the embedded simulator; the nodes are the simulator's kubelet registered
    /// there, the controller uses the same kubeconfig.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// With --kubeconfig: the apiserver's audit log (JSON lines, level Metadata or more), from
    /// which the controller's requests are counted (without it none are reported).
    #[arg(long, value_name = "PATH", requires = "kubeconfig")]
    pub audit_log: Option<PathBuf>,
    /// Run the controller under this program (a profiler such as `heaptrack`).
    #[arg(long, hide = true)]
    pub controller_wrapper: Option<String>,
}

/// Runs `multinic bench ...`.
pub fn run(command: &BenchCommand) -> anyhow::Result<ExitCode> {
    let BenchCommand::Scale(args) = command;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut outcomes = Vec::new();
    for &n in &args.nodes {
        eprintln!("bench scale: {n} nodes ...");
        outcomes.push(rt.block_on(scale_once(n, args))?);
    }
    print_table(&outcomes, args.markdown);
    Ok(ExitCode::SUCCESS)
}

/// Where the nodes live and who counts the requests.
enum Backend {
    /// The embedded simulator (its counters, less its kubelet's).
    Sim(SimHandle),
    /// Another API server with the simulator's kubelet registered; requests from its audit
    /// log, read from `offset` on.
    Remote {
        kubelet: Kubelet,
        kubeconfig: PathBuf,
        audit_log: Option<PathBuf>,
        offset: u64,
    },
}

impl Backend {
    async fn start(n: usize, args: &ScaleArgs) -> anyhow::Result<(Self, kube::Client)> {
        let nodes: Vec<NodeSpec> = (0..n).map(NodeSpec::generate).collect();
        // Nothing in the simulator (nor in the test control plane, which runs no node
        // lifecycle controller) watches node Leases; renewing 10,000 every 10 s would only
        // load the machine the controller is measured on.
        let renew = Duration::from_secs(3600);
        let Some(kubeconfig) = &args.kubeconfig else {
            let sim = Sim::start(SimConfig {
                nodes,
                runner: RunnerChoice::Instant,
                history_limit: (n * 20).max(10_000),
                lease_renew_interval: renew,
                ..SimConfig::default()
            })
            .await
            .context("starting the simulator")?;
            let client = sim.kube_client()?;
            return Ok((Backend::Sim(sim), client));
        };
        let config = kube_config(kubeconfig).await?;
        let client = kube::Client::try_from(config.clone())?;
        let work_dir = std::env::temp_dir().join(format!("multinic-bench-{}", std::process::id()));
        let kubelet = Kubelet::start(
            config,
            KubeletConfig {
                lease_renew_interval: renew,
                deregister_on_stop: true,
                ..KubeletConfig::new(nodes, work_dir, RunnerChoice::Instant.into_runner())
            },
        )
        .await
        .context("registering the nodes")?;
        Ok((
            Backend::Remote {
                kubelet,
                kubeconfig: kubeconfig.clone(),
                audit_log: args.audit_log.clone(),
                offset: 0,
            },
            client,
        ))
    }

    fn kubeconfig(&self) -> &Path {
        match self {
            Backend::Sim(sim) => &sim.kubeconfig_path,
            Backend::Remote { kubeconfig, .. } => kubeconfig,
        }
    }

    /// Starts counting now.
    fn reset(&mut self) {
        match self {
            Backend::Sim(sim) => sim.reset_request_counts(),
            Backend::Remote {
                audit_log, offset, ..
            } => {
                *offset = audit_log
                    .as_ref()
                    .and_then(|p| std::fs::metadata(p).ok())
                    .map_or(0, |m| m.len());
            }
        }
    }

    /// Requests since [`Backend::reset`] by (verb, resource), the kubelet's left out.
    fn requests(&self) -> BTreeMap<(String, String), u64> {
        match self {
            Backend::Sim(sim) => sim.request_counts(),
            Backend::Remote {
                audit_log, offset, ..
            } => audit_log
                .as_ref()
                .map(|p| audit_requests(p, *offset))
                .unwrap_or_default(),
        }
    }

    async fn stop(self) {
        match self {
            Backend::Sim(sim) => sim.shutdown().await,
            Backend::Remote { mut kubelet, .. } => kubelet.stop().await,
        }
    }
}

async fn kube_config(path: &Path) -> anyhow::Result<kube::Config> {
    let file =
        Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("--kubeconfig {}", path.display()))
}

/// Requests in the audit log after `offset`, by (verb, resource[/subresource]): completed
/// requests of people and programs (not `system:` users such as the controller-manager), not
/// the simulator's kubelet.
fn audit_requests(path: &Path, offset: u64) -> BTreeMap<(String, String), u64> {
    let text = std::fs::read(path).unwrap_or_default();
    let from = (offset as usize).min(text.len());
    let mut counts = BTreeMap::new();
    for line in String::from_utf8_lossy(&text[from..]).lines() {
        let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let user = e["user"]["username"].as_str().unwrap_or_default();
        let agent = e["userAgent"].as_str().unwrap_or_default();
        if e["stage"] != "ResponseComplete"
            || user.starts_with("system:")
            || agent.starts_with(multinic_sim::clientcount::USER_AGENT)
        {
            continue;
        }
        let Some(resource) = e["objectRef"]["resource"].as_str() else {
            continue;
        };
        let resource = match e["objectRef"]["subresource"].as_str() {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_string(),
        };
        let verb = e["verb"].as_str().unwrap_or_default().to_string();
        *counts.entry((verb, resource)).or_default() += 1;
    }
    counts
}

async fn scale_once(n: usize, args: &ScaleArgs) -> anyhow::Result<Outcome> {
    let (mut backend, client) = Backend::start(n, args).await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_yaml::from_str(&multinic_api::crd_yaml())?;
    // A real cluster may have both already (from an earlier run).
    ignore_exists(crds.create(&PostParams::default(), &crd).await)?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(
        serde_json::json!({"metadata": {"name": multinic_api::DEFAULT_NAMESPACE}}),
    )?;
    ignore_exists(namespaces.create(&PostParams::default(), &ns).await)?;
    if args.kubeconfig.is_some() {
        // The CRD must be served before the controller and the bench use it.
        let name = crd.metadata.name.clone().unwrap_or_default();
        tokio::time::timeout(
            Duration::from_secs(60),
            kube::runtime::wait::await_condition(
                crds,
                &name,
                kube::runtime::wait::conditions::is_crd_established(),
            ),
        )
        .await
        .context("the CRD was not Established within 60 s")??;
    }

    let exe = std::env::current_exe().context("finding this binary")?;
    let mut command = match &args.controller_wrapper {
        Some(wrapper) => {
            let mut c = tokio::process::Command::new(wrapper);
            c.arg(&exe);
            c
        }
        None => tokio::process::Command::new(&exe),
    };
    let mut controller = command
        .arg("controller")
        .args(&args.controller_args)
        .args(["--http-addr", "off"])
        .arg(format!("--max-jobs-in-flight={}", args.max_jobs_in_flight))
        .env("KUBECONFIG", backend.kubeconfig())
        .env("MULTINIC_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .context("starting the controller process")?;
    let pid = controller.id().context("controller pid")?;
    // Let the controller list (empty) and open its watches before the clock starts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Ok(Some(status)) = controller.try_wait() {
        bail!("the controller exited at once: {status}");
    }

    let api: Api<MultiNicNodeConfig> =
        Api::namespaced(client.clone(), multinic_api::DEFAULT_NAMESPACE);
    backend.reset();
    let own_cpu_before = cpu_seconds(std::process::id()).unwrap_or(0.0);
    let started = Instant::now();
    let ready = tokio::spawn(wait_all_ready(api.clone(), n));
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let node = NodeSpec::generate(i);
                let obj = MultiNicNodeConfig::new(&node.name, spec_for(&node));
                api.create(&PostParams::default(), &obj).await.map(|_| ())
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await
        .context("creating the resources")?;
    let ready_after = match tokio::time::timeout(args.timeout, ready).await {
        Ok(joined) => {
            joined??;
            started.elapsed()
        }
        Err(_) => bail!("not every resource was Ready after {:?}", args.timeout),
    };
    // Let trailing writes (Job deletions) land before the counters are read.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Neither the simulated kubelet's requests (bindings, pod status, leases) nor the bench's
    // own are the controller's.
    let mut requests = backend.requests();
    subtract(&mut requests, "create", "multinicnodeconfigs", n as u64);
    for verb in ["list", "watch"] {
        subtract(&mut requests, verb, "multinicnodeconfigs", 1);
    }
    requests.retain(|_, n| *n > 0);
    let peak_rss_kib = peak_rss_kib(pid).unwrap_or(0);
    let sim_cpu_seconds = cpu_seconds(std::process::id()).unwrap_or(0.0) - own_cpu_before;
    let cpu_seconds = cpu_seconds(pid).unwrap_or(0.0);
    let _ = controller.kill().await;
    backend.stop().await;
    Ok(Outcome {
        nodes: n,
        ready_after,
        requests,
        peak_rss_kib,
        cpu_seconds,
        sim_cpu_seconds,
    })
}

fn spec_for(node: &NodeSpec) -> MultiNicNodeConfigSpec {
    MultiNicNodeConfigSpec {
        node_name: node.name.clone(),
        instance_id: Some(node.system_uuid.clone()),
        interfaces: vec![multinic_api::InterfaceSpec {
            id: Some(0),
            name: None,
            port_id: None,
            mac_address: node.macs[0].clone(),
            address: "10.100.0.5".into(),
            cidr: "10.100.0.0/24".into(),
            mtu: Some(1450),
        }],
    }
}

/// Resolves once `n` resources are Configured at their generation.
async fn wait_all_ready(api: Api<MultiNicNodeConfig>, n: usize) -> anyhow::Result<()> {
    let mut ready = HashSet::new();
    let stream = watcher(api, watcher::Config::default()).applied_objects();
    let mut stream = std::pin::pin!(stream);
    while let Some(obj) = stream.try_next().await? {
        let status = obj.status.as_ref();
        let done = status.and_then(|s| s.state) == Some(NodeConfigState::Configured)
            && status.and_then(|s| s.observed_generation) == obj.metadata.generation;
        if done {
            ready.insert(obj.metadata.name.clone().unwrap_or_default());
            if ready.len() >= n {
                return Ok(());
            }
        }
    }
    bail!("the watch ended before every resource was Ready")
}

fn ignore_exists<T>(result: Result<T, kube::Error>) -> anyhow::Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn subtract(requests: &mut BTreeMap<(String, String), u64>, verb: &str, resource: &str, n: u64) {
    if let Some(count) = requests.get_mut(&(verb.to_string(), resource.to_string())) {
        *count = count.saturating_sub(n);
    }
}
