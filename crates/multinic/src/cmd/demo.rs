//! `multinic demo`: the whole system on this machine. Starts the simulator with three nodes
//! backed by network namespaces (Ubuntu and Rocky Linux), the controller, and example
//! resources; shows progress as a live table until every resource is Ready; reads the
//! addresses back from each namespace; changes one address; deletes one resource and shows
//! the cleanup; removes everything it started.

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use multinic_api::{MultiNicNodeConfig, MultiNicNodeConfigSpec, NodeConfigState};
use multinic_controller::{ControllerConfig, JobConfig, RetryPolicy, WatchMode};
use multinic_sim::{NodeSpec, RunnerChoice, Sim, SimConfig, SimHandle};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Options of `multinic demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Give up when the resources are not Ready after this long.
    #[arg(long, default_value = "120s", value_parser = multinic_controller::config::parse_duration)]
    pub timeout: Duration,
}

const NS: &str = multinic_api::DEFAULT_NAMESPACE;

/// Runs the demo; everything it started is gone when it returns, also on failure.
pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let exe = std::env::current_exe().context("finding this binary to run agents with")?;
        step("starting the simulator: 3 nodes, each a network namespace with veth NICs");
        let sim = Sim::start(SimConfig {
            netns: true,
            runner: RunnerChoice::Process { agent_binary: exe },
            ..SimConfig::with_nodes(3)
        })
        .await
        .context("starting the simulator (needs root for network namespaces)")?;
        let namespaces: Vec<String> = (0..3)
            .filter_map(|i| sim.node_netns(&NodeSpec::generate(i).name))
            .collect();
        let work_dir = sim.work_dir.clone();
        let result = demo(&sim, args.timeout).await;
        step("stopping: controller, agents, namespaces and files go away");
        sim.shutdown().await;
        result?;
        let listed = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()?;
        let left: Vec<&String> = namespaces
            .iter()
            .filter(|ns| String::from_utf8_lossy(&listed.stdout).contains(ns.as_str()))
            .collect();
        if !left.is_empty() || work_dir.exists() {
            bail!(
                "left behind: namespaces {left:?}, work dir exists: {}",
                work_dir.exists()
            );
        }
        println!("\ndemo finished: every step checked, nothing left behind");
        Ok(ExitCode::SUCCESS)
    })
}

async fn demo(sim: &SimHandle, timeout: Duration) -> anyhow::Result<()> {
    let client = sim.kube_client()?;
    for i in 0..3 {
        let node = NodeSpec::generate(i);
        println!(
            "  {:<12} {:<30} netns {}",
            node.name,
            node.os_image,
            sim.node_netns(&node.name).unwrap_or_default()
        );
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_yaml::from_str(&multinic_api::crd_yaml())?;
    crds.create(&PostParams::default(), &crd)
        .await
        .context("installing the CRD")?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(serde_json::json!({"metadata": {"name": NS}}))?;
    namespaces.create(&PostParams::default(), &ns).await?;

    step("starting the controller");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(multinic_controller::run(
        client.clone(),
        controller_config(),
        async move {
            let _ = stopped.await;
        },
    ));

    let api: Api<MultiNicNodeConfig> = Api::namespaced(client.clone(), NS);
    let specs = example_specs();
    step("applying one MultiNicNodeConfig per node");
    for (name, spec) in &specs {
        let obj = MultiNicNodeConfig::new(name, spec.clone());
        api.create(&PostParams::default(), &obj).await?;
        let nics: Vec<String> = spec
            .interfaces
            .iter()
            .map(|i| format!("{} {}", i.mac_address, i.address))
            .collect();
        println!("  {name:<12} {}", nics.join(", "));
    }
    watch_until_ready(&api, timeout).await?;

    step("reading the addresses back from each node's network namespace (ip -n NS addr)");
    for (name, spec) in &specs {
        let addrs = addresses(sim, name)?;
        println!("  {name}:");
        for line in addrs.lines().filter(|l| l.contains("multinic")) {
            println!("    {line}");
        }
        for iface in &spec.interfaces {
            if !addrs.contains(&format!("{}/", iface.address)) {
                bail!("{} is missing on {name}", iface.address);
            }
        }
    }

    let (changed, mut spec) = specs[0].clone();
    let old = spec.interfaces[0].address.clone();
    let new = "10.50.0.9".to_string();
    step(&format!("changing {changed} multinic0 from {old} to {new}"));
    spec.interfaces[0].address = new.clone();
    api.patch(
        &changed,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": spec})),
    )
    .await?;
    watch_until_ready(&api, timeout).await?;
    let addrs = addresses(sim, &changed)?;
    for line in addrs.lines().filter(|l| l.contains("multinic0")) {
        println!("    {line}");
    }
    if !addrs.contains(&format!("{new}/")) || addrs.contains(&format!("{old}/")) {
        bail!("after the change {changed} should have {new} and not {old}:\n{addrs}");
    }
    println!("  {new} is there, {old} is gone");

    let (deleted, deleted_spec) = specs[2].clone();
    let files_dir = sim.node_root(&deleted).join("etc/netplan");
    step(&format!(
        "deleting {deleted}: a cleanup Job removes its NICs' configuration"
    ));
    println!("  before: files {:?}", list_dir(&files_dir));
    api.delete(&deleted, &DeleteParams::default()).await?;
    wait_gone(&api, &deleted, timeout).await?;
    let addrs = addresses(sim, &deleted)?;
    let files = list_dir(&files_dir);
    println!("  after:  files {files:?}");
    for line in addrs.lines().filter(|l| l.contains("multinic")) {
        println!("    {line}");
    }
    if !files.is_empty()
        || deleted_spec
            .interfaces
            .iter()
            .any(|i| addrs.contains(&format!("{}/", i.address)))
    {
        bail!("cleanup of {deleted} left something behind");
    }
    println!("  no file and no address of {deleted} left");

    step("deleting the other resources (cleaned up the same way)");
    for (name, _) in &specs[..2] {
        api.delete(name, &DeleteParams::default()).await?;
    }
    for (name, _) in &specs[..2] {
        wait_gone(&api, name, timeout).await?;
    }
    let _ = stop.send(());
    match tokio::time::timeout(Duration::from_secs(10), controller).await {
        Ok(Ok(result)) => result.context("the controller failed")?,
        Ok(Err(join)) => bail!("the controller task failed: {join}"),
        Err(_) => bail!("the controller did not stop"),
    }
    Ok(())
}

fn controller_config() -> ControllerConfig {
    ControllerConfig {
        namespace: Some(NS.into()),
        mode: WatchMode::Watch,
        job: JobConfig {
            image: "multinic:demo".into(),
            active_deadline_seconds: 60,
            // The demo nodes have no netplan/NetworkManager daemons to hand off to.
            agent_env: vec![("MULTINIC_HANDOFF".into(), "none".into())],
            ..JobConfig::default()
        },
        max_jobs_in_flight: 10,
        max_failures: multinic_controller::fleet::MaxFailures::Count(3),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
        },
        node_missing_recheck: Duration::from_secs(5),
        concurrency: 8,
        instance: "multinic-demo".into(),
        leader_election: None,
        http_addr: None,
    }
}

/// The example resources, on the simulator's nodes (their MACs and instance ids).
fn example_specs() -> Vec<(String, MultiNicNodeConfigSpec)> {
    let nics: [&[(&str, &str)]; 3] = [
        &[("10.50.0.5", "10.50.0.0/24"), ("10.51.0.5", "10.51.0.0/24")],
        &[
            ("192.168.50.6", "192.168.50.0/24"),
            ("192.168.51.6", "192.168.51.0/24"),
            ("192.168.52.6", "192.168.52.0/24"),
        ],
        &[("10.60.0.7", "10.60.0.0/24")],
    ];
    nics.iter()
        .enumerate()
        .map(|(i, list)| {
            let node = NodeSpec::generate(i);
            let interfaces = list
                .iter()
                .enumerate()
                .map(|(k, (address, cidr))| multinic_api::InterfaceSpec {
                    id: Some(k as u8),
                    name: Some(format!("multinic{k}")),
                    port_id: None,
                    mac_address: node.macs[k].clone(),
                    address: (*address).into(),
                    cidr: (*cidr).into(),
                    mtu: Some(1450),
                })
                .collect();
            let spec = MultiNicNodeConfigSpec {
                node_name: node.name.clone(),
                instance_id: Some(node.system_uuid.clone()),
                interfaces,
            };
            (node.name, spec)
        })
        .collect()
}

/// Prints the table (node, state, ready NICs) as it changes, until every resource is
/// Configured at its generation.
async fn watch_until_ready(api: &Api<MultiNicNodeConfig>, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let tty = std::io::stdout().is_terminal();
    let mut last = String::new();
    let mut drawn_lines = 0;
    loop {
        let list = api.list(&ListParams::default()).await?;
        let mut table = format!(
            "  {:<12} {:<11} {:<6} {}\n",
            "NODE", "STATE", "READY", "REASON"
        );
        let mut all_ready = !list.items.is_empty();
        for obj in &list.items {
            let status = obj.status.clone().unwrap_or_default();
            let current = status.observed_generation == obj.metadata.generation;
            let state = status.state.filter(|_| current);
            all_ready &= state == Some(NodeConfigState::Configured);
            let reason = if current {
                status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Ready")
                    .map(|c| c.reason.clone())
                    .unwrap_or_default()
            } else {
                "spec changed".to_string()
            };
            table.push_str(&format!(
                "  {:<12} {:<11} {:<6} {}\n",
                obj.spec.node_name,
                state.map_or("-", |s| s.as_str()),
                status
                    .interfaces_ready
                    .clone()
                    .filter(|_| current)
                    .unwrap_or_else(|| "-".into()),
                reason
            ));
        }
        if table != last {
            let mut out = std::io::stdout().lock();
            if tty && drawn_lines > 0 {
                // Redraw the table in place.
                write!(out, "\x1b[{drawn_lines}A\x1b[J")?;
            } else if drawn_lines > 0 {
                writeln!(out)?;
            }
            write!(out, "{table}")?;
            out.flush()?;
            drawn_lines = table.lines().count();
            last = table;
        }
        if all_ready {
            println!("  all Ready after {:.1} s", started.elapsed().as_secs_f64());
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!("not every resource was Ready after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_gone(
    api: &Api<MultiNicNodeConfig>,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while api.get_opt(name).await?.is_some() {
        if started.elapsed() > timeout {
            bail!("{name} was not deleted after {timeout:?} (its finalizer waits for cleanup)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "  {name} deleted after {:.1} s (finalizer released once cleanup succeeded)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn addresses(sim: &SimHandle, node: &str) -> anyhow::Result<String> {
    let ns = sim
        .node_netns(node)
        .context("the node has no network namespace")?;
    let out = std::process::Command::new("ip")
        .args(["-n", &ns, "-br", "addr", "show"])
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip -n {ns} addr failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn list_dir(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn step(text: &str) {
    println!("\n==> {text}");
}
