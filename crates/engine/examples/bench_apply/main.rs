//! Benchmark: configure 10 NICs in a fresh network namespace, then re-apply, comparing in the
//! same run (whole process each time, median of several runs):
//!   agent   - the `multinic agent` binary in job mode, configured through the environment
//!             exactly as the controller's Job configures it (the contender the goal is on)
//!   engine  - `multinic-engine` as a library in one small process (netlink, files, verify)
//!   go-ip   - the earlier Go agent's way: one `ip`/`sysctl` process per step
//!   nmstate - `nmstatectl apply --kernel` for what it can do here
//!   floors  - the kernel writes alone in one `ip -batch` process, and the agent binary's
//!             `--version` (a process starting and exiting)
//!
//! Run: `cargo run --release -p multinic-engine --example bench_apply -- [--runs N]
//!       [--agent [LABEL=]PATH]... [--nmstatectl PATH]` (as root). For each run and contender
//! the driver makes a fresh namespace with 10 veth NICs and starts a small timer inside it
//! (`ip netns exec`), which times the contender's whole process(es) from spawn to exit, so
//! the cost of entering the namespace is not counted for anyone. Each agent also runs once
//! more per run, untimed, with debug logs in JSON, to place its phases (see `phases.rs`), and
//! the last agent once more with its whole node root on tmpfs, to show the disk's share.
//! Namespaces are deleted afterwards, their veth pairs first (see `netns.rs`).

mod inner;
mod netns;
mod phases;

use multinic_api::{MacAddress, ValidInterface};
use multinic_netconf::{DesiredNode, NetOptions};
use netns::{Netns, Timed};
use phases::Phases;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

type Res<T> = Result<T, Box<dyn Error>>;

const NICS: u8 = 10;
const TABLE_BASE: u32 = 100;
const NODE: &str = "bench-node";

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("inner-engine") => inner::inner_engine(Path::new(&args[2]), Path::new(&args[3])),
        Some("inner-go") => inner::inner_go(Path::new(&args[2]), args[3] == "again"),
        Some("time-inside") => inner::time_inside(&args[2..]),
        _ => {
            let mut runs = 7;
            let mut nmstatectl = PathBuf::from("nmstatectl");
            let mut agents = Vec::new();
            let mut it = args.iter().skip(1);
            while let Some(arg) = it.next() {
                match arg.as_str() {
                    "--runs" => runs = it.next().ok_or("--runs N")?.parse()?,
                    "--nmstatectl" => nmstatectl = it.next().ok_or("--nmstatectl PATH")?.into(),
                    "--agent" => {
                        let given = it.next().ok_or("--agent [LABEL=]PATH")?;
                        let (label, path) = given.split_once('=').unwrap_or(("agent", given));
                        agents.push((label.to_owned(), std::fs::canonicalize(path)?));
                    }
                    other => return Err(format!("unknown argument {other}").into()),
                }
            }
            drive(runs, &nmstatectl, &agents)
        }
    }
}

fn mac(k: u8) -> String {
    format!("fa:16:3e:00:00:{k:02x}")
}

fn desired() -> DesiredNode {
    let ifaces: Vec<ValidInterface> = (0..NICS)
        .map(|k| {
            let address = format!("198.18.{k}.10/24").parse().expect("address");
            ValidInterface {
                index: usize::from(k),
                requested_slot: Some(k),
                port_id: None,
                mac: mac(k).parse::<MacAddress>().expect("mac"),
                address,
                network: ipnet::IpNet::trunc(&address),
                mtu: Some(1450),
            }
        })
        .collect();
    let options = NetOptions {
        // nmstate's kernel mode refuses tables above 255; every contender uses 100..109.
        route_table_base: TABLE_BASE,
        ..NetOptions::default()
    };
    DesiredNode::build(&ifaces, &options, &|_| None).0
}

/// The same NICs as the MultiNicNodeConfig spec the controller hands a Job.
fn spec_json() -> String {
    let interfaces: Vec<String> = (0..NICS)
        .map(|k| {
            format!(
                r#"{{"id":{k},"macAddress":"{}","address":"198.18.{k}.10","cidr":"198.18.{k}.0/24","mtu":1450}}"#,
                mac(k)
            )
        })
        .collect();
    format!(
        r#"{{"nodeName":"{NODE}","interfaces":[{}]}}"#,
        interfaces.join(",")
    )
}

/// The environment of the controller's agent Job (see `multinic-controller`'s job.rs), with
/// the API server a listener inside the namespace (the probe after applying connects to it)
/// and a system bus address where no bus listens (a node whose network daemon is not on
/// D-Bus: the hand-off reports "netlink and files only").
fn agent_env(spec: &str, root: &Path, work: &Path, extra: &[(&str, &str)]) -> Vec<String> {
    let mut env: Vec<String> = [
        ("MULTINIC_NODE_NAME", NODE),
        ("NODE_NAME", NODE),
        ("RUN_MODE", "job"),
        ("AGENT_ACTION", "apply"),
        ("DATA_SOURCE", "spec"),
        ("MULTINIC_NODE_SPEC", spec),
        ("MULTINIC_GENERATION", "1"),
        ("MULTINIC_OS", "ubuntu"),
        ("MULTINIC_ROUTE_TABLE_BASE", "100"),
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
        ("KUBERNETES_SERVICE_PORT", inner::LISTEN_PORT),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| format!("{k}={v}"))
    .collect();
    env.push(format!("MULTINIC_ROOT={}", root.display()));
    env.push(format!(
        "MULTINIC_REPORT={}",
        root.join("termination-log").display()
    ));
    env.push(format!(
        "DBUS_SYSTEM_BUS_ADDRESS=unix:path={}",
        work.join("no-system-bus").display()
    ));
    env
}

/// A node's root for one contender's run, shaped as the Job sees the node: `run/` on tmpfs
/// (the host's `/run`, which the Job mounts for the host lock and the run journal). The
/// report file is made by the timer before each run (the kubelet creates the termination-log
/// file before the container starts). Without `/dev/shm`, `run/` is a plain directory.
fn node_root(work: &Path, shm: Option<&Path>, tag: &str) -> Res<PathBuf> {
    let root = work.join(format!("root-{tag}"));
    std::fs::create_dir_all(&root)?;
    if let Some(shm) = shm {
        let run = shm.join(format!("run-{tag}"));
        std::fs::create_dir_all(&run)?;
        std::os::unix::fs::symlink(&run, root.join("run"))?;
    }
    Ok(root)
}

/// The floor of the kernel work: one `ip -batch` process. Fresh: per NIC rename + MTU + up in
/// one message, the address, the route and the rule (no sysctls, files, reads or verify);
/// re-apply: the four dumps a re-apply must read (links, addresses, every route, every rule).
fn ip_batch_files(work: &Path) -> Res<(PathBuf, PathBuf)> {
    let mut fresh = String::new();
    for k in 0..NICS {
        let (table, name) = (TABLE_BASE + u32::from(k), format!("multinic{k}"));
        fresh.push_str(&format!(
            "link set dev eth{k} name {name} mtu 1450 up\n\
             addr add 198.18.{k}.10/24 dev {name}\n\
             route add 198.18.{k}.0/24 dev {name} table {table} src 198.18.{k}.10 metric {table}\n\
             rule add from 198.18.{k}.10 table {table} priority {table}\n"
        ));
    }
    let again = "link show\naddr show\nroute show table all\nrule show\n";
    let paths = (work.join("ip-fresh.batch"), work.join("ip-again.batch"));
    std::fs::write(&paths.0, fresh)?;
    std::fs::write(&paths.1, again)?;
    Ok(paths)
}

/// Medians of one contender.
#[derive(Default)]
struct Series {
    fresh: Vec<Duration>,
    again: Vec<Duration>,
}

impl Series {
    fn push(&mut self, [fresh, again]: [Timed; 2]) {
        self.fresh.push(fresh.took);
        self.again.push(again.took);
    }

    fn medians(&self) -> (f64, f64) {
        (median(self.fresh.clone()), median(self.again.clone()))
    }
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

/// What every agent run shares: the timer, where it leaves its results, the work folder and
/// the spec.
struct AgentRun<'a> {
    exe: &'a str,
    out: &'a Path,
    work: &'a Path,
    spec: &'a str,
}

/// Times `agent` (fresh apply, then re-apply) in `ns` with its node root at `root` and `extra`
/// in its environment, and checks that it configured every NIC and then changed nothing.
fn run_agent(
    ns: &Netns,
    ctx: &AgentRun,
    agent: &str,
    root: &Path,
    extra: &[(&str, &str)],
) -> Res<[Timed; 2]> {
    let mut argv = agent_env(ctx.spec, root, ctx.work, extra);
    argv.extend([agent.to_owned(), "agent".to_owned()]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let timed = ns.time(ctx.exe, ctx.out, &argv, &argv)?;
    ns.assert_configured("multinic")?;
    check_report(root, "Unchanged")?;
    Ok(timed)
}

/// Checks a report the agent wrote: no error, every NIC with `reason`.
fn check_report(root: &Path, reason: &str) -> Res<()> {
    let text = std::fs::read_to_string(root.join("termination-log"))?;
    let report: serde_json::Value = serde_json::from_str(&text)?;
    let interfaces = report["interfaces"].as_array().ok_or("no interfaces")?;
    if report.get("error").is_some()
        || interfaces.len() != usize::from(NICS)
        || interfaces.iter().any(|i| i["reason"] != reason)
    {
        return Err(format!("agent report, expected every NIC {reason}: {text}").into());
    }
    Ok(())
}

fn drive(runs: usize, nmstatectl: &Path, agents: &[(String, PathBuf)]) -> Res<()> {
    let exe = std::env::current_exe()?;
    let exe = exe.to_str().ok_or("exe path")?;
    let work = std::env::temp_dir().join(format!("mnb-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let spec = work.join("desired.json");
    std::fs::write(&spec, serde_json::to_vec(&desired())?)?;
    let spec = spec.to_str().ok_or("spec path")?;
    let spec_text = spec_json();
    let full = work.join("nmstate-full.yml");
    let addr_only = work.join("nmstate-addr.yml");
    std::fs::write(&full, nmstate_yaml(true))?;
    std::fs::write(&addr_only, nmstate_yaml(false))?;
    let have_nmstate = Command::new(nmstatectl)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_nmstate {
        eprintln!(
            "{} not runnable: nmstate column skipped",
            nmstatectl.display()
        );
    }
    let nm = nmstatectl.to_str().ok_or("nmstatectl path")?;
    let mut agent_series: Vec<Series> = agents.iter().map(|_| Series::default()).collect();
    let mut agent_phases: Vec<[Phases; 2]> = agents.iter().map(|_| Default::default()).collect();
    let (mut engine, mut tmpfs, mut go, mut nmstate) = (
        Series::default(),
        Series::default(),
        Series::default(),
        Series::default(),
    );
    // The floors: the kernel work in one `ip` process, and the agent binary starting and
    // exiting (`--version`).
    let (mut ip_batch, mut start) = (Series::default(), Series::default());
    let (ip_fresh, ip_again) = ip_batch_files(&work)?;
    let (ip_fresh, ip_again) = (
        ip_fresh.to_str().ok_or("batch path")?,
        ip_again.to_str().ok_or("batch path")?,
    );
    let (mut inproc, mut writes) = (vec![], String::new());
    let shm = Path::new("/dev/shm")
        .is_dir()
        .then(|| PathBuf::from(format!("/dev/shm/mnb-{}", std::process::id())));
    let out = work.join("out");
    std::fs::create_dir_all(&out)?;
    let ctx = AgentRun {
        exe,
        out: &out,
        work: &work,
        spec: &spec_text,
    };
    let mut agent_tmpfs = Series::default();
    for run in 0..runs {
        // Each run starts with another agent: with a fixed order, the first agent of every
        // run measured up to 1.4x slower on the fresh apply than the second, whichever binary
        // it was (the cause is not pinned down), which biased every comparison.
        for step in 0..agents.len() {
            let a = (run + step) % agents.len();
            let agent = agents[a].1.to_str().ok_or("agent path")?;
            let ns = Netns::new(&format!("{run}-a{a}"))?;
            let root = node_root(&work, shm.as_deref(), &format!("{run}-a{a}"))?;
            agent_series[a].push(run_agent(&ns, &ctx, agent, &root, &[])?);
            drop(ns);

            // Untimed: the same with debug logs in JSON, to place the phases.
            let ns = Netns::new(&format!("{run}-p{a}"))?;
            let root = node_root(&work, shm.as_deref(), &format!("{run}-p{a}"))?;
            let logs = [
                (
                    "MULTINIC_LOG",
                    "info,multinic_agent=debug,multinic_engine=debug",
                ),
                ("MULTINIC_LOG_FORMAT", "json"),
            ];
            let [fresh, again] = run_agent(&ns, &ctx, agent, &root, &logs)?;
            agent_phases[a][0].add(&fresh);
            agent_phases[a][1].add(&again);
        }

        // The last agent once more with its whole root on tmpfs: its own time, without the
        // disk's share (the persistent files' flushes).
        if let (Some(shm), Some((_, agent))) = (&shm, agents.last()) {
            let ns = Netns::new(&format!("{run}-at"))?;
            // `run/` needs no link of its own: the whole root is on tmpfs.
            let root = node_root(shm, None, &format!("{run}-at"))?;
            let agent = agent.to_str().ok_or("agent path")?;
            agent_tmpfs.push(run_agent(&ns, &ctx, agent, &root, &[])?);
        }

        let ns = Netns::new(&format!("{run}-e"))?;
        let root = node_root(&work, shm.as_deref(), &run.to_string())?;
        let root_s = root.to_str().ok_or("root")?;
        let argv = [exe, "inner-engine", spec, root_s];
        let timed = ns.time(exe, &out, &argv, &argv)?;
        ns.assert_configured("multinic")?;
        // netlink, files, connect µs, apply µs: of the fresh apply, then of the re-apply.
        let n: Vec<Vec<u64>> = timed
            .iter()
            .map(|t| {
                t.stdout
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .collect();
        inproc.push((n[0][3], n[1][3]));
        writes = format!(
            "fresh apply {} netlink + {} file writes; re-apply {} + {}",
            n[0][0], n[0][1], n[1][0], n[1][1]
        );
        engine.push(timed);
        drop(ns);

        // The same with the files on tmpfs: what the engine costs without disk waits.
        if let Some(shm) = &shm {
            let ns = Netns::new(&format!("{run}-t"))?;
            let root = shm.join(format!("root-{run}"));
            let argv = [exe, "inner-engine", spec, root.to_str().ok_or("root")?];
            tmpfs.push(ns.time(exe, &out, &argv, &argv)?);
            ns.assert_configured("multinic")?;
        }

        let ns = Netns::new(&format!("{run}-i"))?;
        ip_batch.push(ns.time(
            exe,
            &out,
            &["ip", "-batch", ip_fresh],
            &["ip", "-batch", ip_again],
        )?);
        ns.assert_configured("multinic")?;
        drop(ns);
        if let Some((_, agent)) = agents.last() {
            let agent = agent.to_str().ok_or("agent path")?;
            let ns = Netns::new(&format!("{run}-v"))?;
            start.push(ns.time(exe, &out, &[agent, "--version"], &[agent, "--version"])?);
        }

        let ns = Netns::new(&format!("{run}-g"))?;
        go.push(ns.time(
            exe,
            &out,
            &[exe, "inner-go", spec, "first"],
            &[exe, "inner-go", spec, "again"],
        )?);
        ns.assert_configured("multinic")?;
        drop(ns);

        if have_nmstate {
            let ns = Netns::new(&format!("{run}-n"))?;
            // With its routes, nmstate 2.2.62 refuses to re-apply its own state in kernel
            // mode ("Multiple routes ... sharing the same metric and table"): re-apply the
            // addresses-only state.
            nmstate.push(ns.time(
                exe,
                &out,
                &[nm, "apply", "--kernel", full.to_str().ok_or("yml")?],
                &[nm, "apply", "--kernel", addr_only.to_str().ok_or("yml")?],
            )?);
            ns.assert_configured("eth")?;
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    if let Some(shm) = &shm {
        let _ = std::fs::remove_dir_all(shm);
    }

    let (b1, b2) = match agent_series.last() {
        Some(series) => series.medians(),
        None => engine.medians(),
    };
    let base = agents.last().map_or("multinic-engine", |(l, _)| l.as_str());
    println!("runs: {runs} (median; whole process, timed inside the namespace)");
    println!(
        "| contender | fresh apply, 10 NICs | re-apply | fresh vs {base} | re-apply vs {base} |"
    );
    println!("|---|---|---|---|---|");
    let row = |name: &str, series: &Series| {
        let (m1, m2) = series.medians();
        println!(
            "| {name} | {m1:.2} ms | {m2:.2} ms | {:.1}x | {:.1}x |",
            m1 / b1,
            m2 / b2
        );
    };
    for ((label, _), series) in agents.iter().zip(&agent_series) {
        row(&format!("{label} (`multinic agent`, job mode)"), series);
    }
    if let (false, Some((label, _))) = (agent_tmpfs.fresh.is_empty(), agents.last()) {
        row(
            &format!("{label}, its root on tmpfs (no disk waits)"),
            &agent_tmpfs,
        );
    }
    row("multinic-engine (library, one process)", &engine);
    if !tmpfs.fresh.is_empty() {
        row("multinic-engine, files on tmpfs", &tmpfs);
    }
    row(
        "(c) floor: the kernel writes (re-apply: reads) in one `ip -batch`",
        &ip_batch,
    );
    if !start.fresh.is_empty() {
        row(
            "floor: `multinic --version` (the binary starting and exiting)",
            &start,
        );
    }
    row("(a) ip/sysctl per step", &go);
    if have_nmstate {
        row("(b) nmstatectl apply --kernel", &nmstate);
    }
    let us = |v: Vec<u64>| median(v.into_iter().map(Duration::from_micros).collect());
    println!(
        "engine in-process Engine::apply: fresh {:.2} ms, re-apply {:.2} ms; {writes}",
        us(inproc.iter().map(|p| p.0).collect()),
        us(inproc.iter().map(|p| p.1).collect()),
    );
    for ((label, _), [fresh, again]) in agents.iter().zip(&agent_phases) {
        println!("\n{label}: where the time goes (median of {runs} debug-logged runs, ms)");
        fresh.print("fresh apply");
        again.print("re-apply");
    }
    Ok(())
}

/// nmstate state for the same NICs: up, address, route in the NIC's table. nmstate's kernel
/// mode cannot rename by MAC, set a veth's MTU, add rules or set these sysctls (checked with
/// 2.2.62), so those parts are left out.
fn nmstate_yaml(with_routes: bool) -> String {
    let mut y = String::from("interfaces:\n");
    for k in 0..NICS {
        y.push_str(&format!(
            "- name: eth{k}\n  type: ethernet\n  state: up\n  ipv4:\n    enabled: true\n    dhcp: false\n    address:\n    - ip: 198.18.{k}.10\n      prefix-length: 24\n"
        ));
    }
    if with_routes {
        y.push_str("routes:\n  config:\n");
        for k in 0..NICS {
            let k32 = u32::from(k);
            y.push_str(&format!(
                "  - destination: 198.18.{k}.0/24\n    next-hop-interface: eth{k}\n    table-id: {}\n    metric: {}\n",
                TABLE_BASE + k32,
                100 + k32
            ));
        }
    }
    y
}
