//! `multinic sim`: runs the in-memory Kubernetes API server and node simulator until
//! interrupted, for the demo and for trying the controller and kubectl by hand; with `--api`,
//! only the simulated nodes, against any API server (a real control plane in the tests).

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};
use multinic_sim::{Kubelet, KubeletConfig, NodeSpec, RunnerChoice, Sim, SimConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const AFTER_HELP: &str = "\
Without --api, `multinic sim` serves its own API on 127.0.0.1 (plain HTTP, no auth), writes a
kubeconfig and registers the nodes with it.

With --api KUBECONFIG it serves nothing: it is only the nodes' kubelet, a client of that API
server (a real control plane, say). It registers sim-node-0 .. sim-node-<N-1> (systemUUID,
osImage, InternalIP 127.1.x.y, Ready, each with a Lease in kube-node-lease renewed every
--lease-renew-seconds), binds Pods whose nodeSelector picks one of them (there is no scheduler
in a test control plane), runs the Pods bound to them as local processes (inside the node's
network namespace with --netns; the Node's annotation sim.multinic.io/netns names it), and
writes Pod status as a kubelet does: Running, then terminated with exit code and the
termination message from the container's termination-log file. Deleting a Pod sends SIGTERM,
SIGKILL after its grace period, then deletes it with grace period 0. The kubeconfig's user
needs rights on nodes, leases in kube-node-lease, pods, pods/binding and pods/status (an admin
kubeconfig has them). On Ctrl-C or SIGTERM the processes end, the namespaces go and the Nodes
are deleted (unless --keep-nodes).";

/// Options of `multinic sim`.
#[derive(clap::Args, Debug)]
#[command(after_long_help = AFTER_HELP)]
pub struct SimArgs {
    /// Number of simulated nodes to register (sim-node-0 ..).
    #[arg(long, env = "MULTINIC_SIM_NODES", default_value_t = 3)]
    pub nodes: usize,
    /// Back each node with its own network namespace holding veth NICs with fa:16:3e MACs
    /// (needs root); without it nodes are lightweight.
    #[arg(long, env = "MULTINIC_SIM_NETNS")]
    pub netns: bool,
    /// Run only the nodes, against the API server this kubeconfig names, instead of serving
    /// an API of our own.
    #[arg(long, value_name = "KUBECONFIG", env = "MULTINIC_SIM_API",
        conflicts_with_all = ["kubeconfig", "port", "watch_history", "bookmark_seconds"])]
    pub api: Option<PathBuf>,
    /// With --api: leave the Nodes registered on exit.
    #[arg(long, requires = "api")]
    pub keep_nodes: bool,
    /// With --api: also run Pods bound to Nodes created through the API by someone else, as
    /// lightweight nodes (always on without --api).
    #[arg(long, requires = "api")]
    pub adopt_nodes: bool,
    /// Seconds between renewals of each node's Lease (a kubelet: 10).
    #[arg(long, env = "MULTINIC_SIM_LEASE_RENEW_SECONDS", default_value_t = 10)]
    pub lease_renew_seconds: u64,
    /// Where to write the kubeconfig (default: inside the sim's work directory).
    #[arg(long, env = "MULTINIC_SIM_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, env = "MULTINIC_SIM_PORT")]
    pub port: Option<u16>,
    /// Local binary that stands in for the image's `multinic` command in Job pods
    /// (default: this binary).
    #[arg(long, env = "MULTINIC_SIM_AGENT_BINARY")]
    pub agent_binary: Option<PathBuf>,
    /// Answer agent Jobs at once with a successful report instead of running processes.
    #[arg(long, env = "MULTINIC_SIM_INSTANT", conflicts_with = "agent_binary")]
    pub instant: bool,
    /// Changes kept for watch resumption; older resourceVersions get 410 Gone
    /// (default 10000).
    #[arg(long, env = "MULTINIC_SIM_WATCH_HISTORY")]
    pub watch_history: Option<usize>,
    /// Seconds between watch bookmarks (default 5).
    #[arg(long, env = "MULTINIC_SIM_BOOKMARK_SECONDS")]
    pub bookmark_seconds: Option<u64>,
}

/// Runs the simulator (or only its nodes) until Ctrl-C or SIGTERM, then removes everything it
/// started.
pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let runner = if args.instant {
        RunnerChoice::Instant
    } else {
        let agent_binary = match args.agent_binary.clone() {
            Some(p) => p,
            None => std::env::current_exe().context("finding this binary to run agents with")?,
        };
        RunnerChoice::Process { agent_binary }
    };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        match args.api.clone() {
            Some(kubeconfig) => nodes_only(&args, &kubeconfig, runner).await,
            None => serve(&args, runner).await,
        }
    })
}

async fn until_signalled() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

async fn serve(args: &SimArgs, runner: RunnerChoice) -> anyhow::Result<ExitCode> {
    let defaults = SimConfig::default();
    let config = SimConfig {
        port: args.port.unwrap_or(defaults.port),
        netns: args.netns,
        kubeconfig_path: args.kubeconfig.clone(),
        history_limit: args.watch_history.unwrap_or(defaults.history_limit),
        bookmark_interval: args
            .bookmark_seconds
            .map_or(defaults.bookmark_interval, |s| {
                Duration::from_secs(s.max(1))
            }),
        lease_renew_interval: Duration::from_secs(args.lease_renew_seconds.max(1)),
        runner,
        ..SimConfig::with_nodes(args.nodes)
    };
    let sim = Sim::start(config).await.context("starting the simulator")?;
    let kubeconfig = sim.kubeconfig_path.display();
    println!(
        "multinic sim serving the Kubernetes API at {}",
        sim.base_url
    );
    println!("kubeconfig: {kubeconfig}");
    println!("try:        kubectl --kubeconfig {kubeconfig} get nodes");
    println!("   or:      export KUBECONFIG={kubeconfig}");
    println!("stop with Ctrl-C; nodes, namespaces and processes started here go away with it");
    until_signalled().await?;
    sim.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn nodes_only(
    args: &SimArgs,
    kubeconfig: &std::path::Path,
    runner: RunnerChoice,
) -> anyhow::Result<ExitCode> {
    let file = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("--api: reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("--api: {}", kubeconfig.display()))?;
    let server = config.cluster_url.to_string();
    let work_dir = std::env::temp_dir().join(format!("multinic-sim-nodes-{}", std::process::id()));
    let _cleanup = RemoveDir(work_dir.clone());
    let nodes: Vec<NodeSpec> = (0..args.nodes).map(NodeSpec::generate).collect();
    let kubelet_config = KubeletConfig {
        netns: args.netns,
        adopt_api_nodes: args.adopt_nodes,
        lease_renew_interval: Duration::from_secs(args.lease_renew_seconds.max(1)),
        deregister_on_stop: !args.keep_nodes,
        ..KubeletConfig::new(nodes, work_dir, runner.into_runner())
    };
    let mut kubelet = Kubelet::start(config, kubelet_config)
        .await
        .with_context(|| format!("registering the nodes with {server}"))?;
    println!(
        "multinic sim: {} nodes registered with {server} (sim-node-0 ..); pods bound to them run here",
        args.nodes
    );
    println!("stop with Ctrl-C; processes, namespaces and (unless --keep-nodes) the Nodes go away");
    until_signalled().await?;
    kubelet.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// Removes the nodes' work directory (roots, pod directories) on the way out.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
