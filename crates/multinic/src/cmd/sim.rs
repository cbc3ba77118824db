//! `multinic sim`: runs the in-memory Kubernetes API server and node simulator until
//! interrupted, for the demo and for trying the controller and kubectl by hand.

use anyhow::Context;
use multinic_sim::{RunnerChoice, Sim, SimConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Options of `multinic sim`.
#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Number of simulated nodes to register (sim-node-0 ..).
    #[arg(long, env = "MULTINIC_SIM_NODES", default_value_t = 3)]
    pub nodes: usize,
    /// Back each node with its own network namespace holding veth NICs with fa:16:3e MACs
    /// (needs root); without it nodes are lightweight.
    #[arg(long, env = "MULTINIC_SIM_NETNS")]
    pub netns: bool,
    /// Where to write the kubeconfig (default: inside the sim's work directory).
    #[arg(long, env = "MULTINIC_SIM_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, env = "MULTINIC_SIM_PORT", default_value_t = 0)]
    pub port: u16,
    /// Local binary that stands in for the image's `multinic` command in Job pods
    /// (default: this binary).
    #[arg(long, env = "MULTINIC_SIM_AGENT_BINARY")]
    pub agent_binary: Option<PathBuf>,
    /// Answer agent Jobs at once with a successful report instead of running processes.
    #[arg(long, env = "MULTINIC_SIM_INSTANT", conflicts_with = "agent_binary")]
    pub instant: bool,
    /// Changes kept for watch resumption; older resourceVersions get 410 Gone.
    #[arg(long, env = "MULTINIC_SIM_WATCH_HISTORY", default_value_t = 10_000)]
    pub watch_history: usize,
    /// Seconds between watch bookmarks.
    #[arg(long, env = "MULTINIC_SIM_BOOKMARK_SECONDS", default_value_t = 5)]
    pub bookmark_seconds: u64,
}

/// Runs the simulator until Ctrl-C or SIGTERM, then removes everything it started.
pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let runner = if args.instant {
        RunnerChoice::Instant
    } else {
        let agent_binary = match args.agent_binary {
            Some(p) => p,
            None => std::env::current_exe().context("finding this binary to run agents with")?,
        };
        RunnerChoice::Process { agent_binary }
    };
    let config = SimConfig {
        port: args.port,
        netns: args.netns,
        kubeconfig_path: args.kubeconfig,
        history_limit: args.watch_history,
        bookmark_interval: Duration::from_secs(args.bookmark_seconds.max(1)),
        runner,
        ..SimConfig::with_nodes(args.nodes)
    };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
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
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        sim.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}
