//! `multinic bench scale`: N MultiNicNodeConfigs on N lightweight simulated nodes with instant
//! agents, the controller as its own process; reports the time until all are Ready, the API
//! requests per resource by verb (the simulator's counters) and the controller's peak RSS.

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use multinic_api::{MultiNicNodeConfig, MultiNicNodeConfigSpec, NodeConfigState};
use multinic_sim::{NodeSpec, RunnerChoice, Sim, SimConfig};
use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

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
    /// Run the controller under this program (a profiler such as `heaptrack`).
    #[arg(long, hide = true)]
    pub controller_wrapper: Option<String>,
}

/// One run's figures.
struct Outcome {
    nodes: usize,
    ready_after: Duration,
    requests: BTreeMap<(String, String), u64>,
    peak_rss_kib: u64,
    cpu_seconds: f64,
    sim_cpu_seconds: f64,
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

async fn scale_once(n: usize, args: &ScaleArgs) -> anyhow::Result<Outcome> {
    let sim = Sim::start(SimConfig {
        nodes: (0..n).map(NodeSpec::generate).collect(),
        runner: RunnerChoice::Instant,
        history_limit: (n * 20).max(10_000),
        // Nothing in the simulator watches node Leases; renewing 10,000 every 10 s would only
        // load the machine the controller is measured on.
        lease_renew_interval: Duration::from_secs(3600),
        ..SimConfig::default()
    })
    .await
    .context("starting the simulator")?;
    let client = sim.kube_client()?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_yaml::from_str(&multinic_api::crd_yaml())?;
    crds.create(&PostParams::default(), &crd).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(
        serde_json::json!({"metadata": {"name": multinic_api::DEFAULT_NAMESPACE}}),
    )?;
    namespaces.create(&PostParams::default(), &ns).await?;

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
        .env("KUBECONFIG", &sim.kubeconfig_path)
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
    sim.reset_request_counts();
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
    let mut requests = sim.request_counts();
    // Neither the simulated kubelet's requests (bindings, pod status, leases) nor the bench's
    // own are the controller's.
    for ((verb, resource), n) in sim.kubelet_request_counts() {
        subtract(&mut requests, &verb, &resource, n);
    }
    subtract(&mut requests, "create", "multinicnodeconfigs", n as u64);
    for verb in ["list", "watch"] {
        subtract(&mut requests, verb, "multinicnodeconfigs", 1);
    }
    requests.retain(|_, n| *n > 0);
    let peak_rss_kib = peak_rss_kib(pid).unwrap_or(0);
    let sim_cpu_seconds = cpu_seconds(std::process::id()).unwrap_or(0.0) - own_cpu_before;
    let cpu_seconds = cpu_seconds(pid).unwrap_or(0.0);
    let _ = controller.kill().await;
    sim.shutdown().await;
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

fn subtract(requests: &mut BTreeMap<(String, String), u64>, verb: &str, resource: &str, n: u64) {
    if let Some(count) = requests.get_mut(&(verb.to_string(), resource.to_string())) {
        *count = count.saturating_sub(n);
    }
}

/// `VmHWM` (peak resident set) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User + system CPU time of a process so far (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(ticks / 100.0)
}

const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

fn print_table(outcomes: &[Outcome], markdown: bool) {
    let mut keys: Vec<(String, String)> = outcomes
        .iter()
        .flat_map(|o| o.requests.keys().cloned())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    keys.sort();
    let header: Vec<String> = outcomes
        .iter()
        .map(|o| format!("N = {}", o.nodes))
        .collect();
    let mut rows: Vec<(String, Vec<String>)> = vec![
        (
            "time until all Ready".into(),
            outcomes
                .iter()
                .map(|o| format!("{:.1} s", o.ready_after.as_secs_f64()))
                .collect(),
        ),
        (
            "Ready per second".into(),
            outcomes
                .iter()
                .map(|o| format!("{:.0}", o.nodes as f64 / o.ready_after.as_secs_f64()))
                .collect(),
        ),
        (
            "controller peak RSS (VmHWM)".into(),
            outcomes
                .iter()
                .map(|o| format!("{:.1} MiB", o.peak_rss_kib as f64 / 1024.0))
                .collect(),
        ),
        (
            "controller CPU time (user+system)".into(),
            outcomes
                .iter()
                .map(|o| format!("{:.1} s", o.cpu_seconds))
                .collect(),
        ),
        (
            "simulator + bench CPU time (same window)".into(),
            outcomes
                .iter()
                .map(|o| format!("{:.1} s", o.sim_cpu_seconds))
                .collect(),
        ),
        (
            "API writes per resource".into(),
            outcomes
                .iter()
                .map(|o| {
                    let writes: u64 = o
                        .requests
                        .iter()
                        .filter(|((verb, _), _)| WRITE_VERBS.contains(&verb.as_str()))
                        .map(|(_, n)| n)
                        .sum();
                    format!("{:.2}", writes as f64 / o.nodes as f64)
                })
                .collect(),
        ),
    ];
    for key in &keys {
        rows.push((
            format!("{} {} per resource", key.0, key.1),
            outcomes
                .iter()
                .map(|o| {
                    format!(
                        "{:.3}",
                        *o.requests.get(key).unwrap_or(&0) as f64 / o.nodes as f64
                    )
                })
                .collect(),
        ));
    }
    if markdown {
        println!("| measure | {} |", header.join(" | "));
        println!("|---|{}", "---|".repeat(header.len()));
        for (name, cells) in rows {
            println!("| {name} | {} |", cells.join(" | "));
        }
    } else {
        println!(
            "{:<44} {}",
            "measure",
            header
                .iter()
                .map(|h| format!("{h:>12}"))
                .collect::<String>()
        );
        for (name, cells) in rows {
            println!(
                "{name:<44} {}",
                cells.iter().map(|c| format!("{c:>12}")).collect::<String>()
            );
        }
    }
}
