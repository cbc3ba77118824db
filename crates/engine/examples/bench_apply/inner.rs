//! What runs inside the benchmark's namespace: the timer (`time-inside`), the engine as a
//! library in one process (`inner-engine`), and the earlier Go agent's one process per step
//! (`inner-go`).

use crate::{Res, TABLE_BASE};
use multinic_engine::{Engine, EngineConfig, NoopHandoff};
use multinic_netconf::{DesiredNode, OsFlavor};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// An environment value replaced by the port of a TCP listener on 127.0.0.1 inside the
/// namespace (the API server a Job's agent probes after applying).
pub const LISTEN_PORT: &str = "@listen-port";

/// Inside the namespace: one engine apply; prints `netlink files connect-µs apply-µs`.
pub fn inner_engine(spec: &Path, root: &Path) -> Res<()> {
    let desired: DesiredNode = serde_json::from_slice(&std::fs::read(spec)?)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut config = EngineConfig::new(root, OsFlavor::Ubuntu);
        config.route_table_base = TABLE_BASE;
        let start = Instant::now();
        let engine = Engine::connect(config, Box::new(NoopHandoff))?;
        let connected = start.elapsed().as_micros();
        let start = Instant::now();
        let outcome = engine.apply(&desired).await?;
        let applied = start.elapsed().as_micros();
        if !outcome.succeeded() {
            return Err(format!("engine failed: {:?}", outcome.nics).into());
        }
        println!(
            "{} {} {connected} {applied}",
            outcome.writes.netlink, outcome.writes.files
        );
        Ok(())
    })
}

/// Inside the namespace: the Go agent's way, one process per step.
pub fn inner_go(spec: &Path, again: bool) -> Res<()> {
    let desired: DesiredNode = serde_json::from_slice(&std::fs::read(spec)?)?;
    for (k, nic) in desired.nics.iter().enumerate() {
        let name = nic.name.as_str();
        let routing = nic.routing.ok_or("policy routing")?;
        let (table, prio, metric) = (
            routing.table.to_string(),
            routing.rule_priority.to_string(),
            routing.metric.to_string(),
        );
        let ip = nic.address.addr().to_string();
        let addr = nic.address.to_string();
        let net = nic.network.to_string();
        if !again {
            let old = format!("eth{k}");
            run(&["ip", "link", "set", "dev", &old, "down"], true)?;
            run(&["ip", "link", "set", "dev", &old, "name", name], true)?;
        }
        let mtu = nic.mtu.unwrap_or(1500).to_string();
        run(&["ip", "link", "set", "dev", name, "mtu", &mtu], true)?;
        run(&["ip", "addr", "replace", &addr, "dev", name], true)?;
        run(&["ip", "link", "set", "dev", name, "up"], true)?;
        // The Go agent ignored "File exists" from a rule that is already there.
        run(
            &[
                "ip", "rule", "add", "from", &ip, "table", &table, "priority", &prio,
            ],
            false,
        )?;
        run(
            &[
                "ip", "route", "replace", &net, "dev", name, "table", &table, "src", &ip, "metric",
                &metric,
            ],
            true,
        )?;
        for (key, value) in [
            ("arp_ignore", "1"),
            ("arp_announce", "2"),
            ("rp_filter", "2"),
        ] {
            run(
                &[
                    "sysctl",
                    "-q",
                    "-w",
                    &format!("net.ipv4.conf.{name}.{key}={value}"),
                ],
                true,
            )?;
        }
    }
    Ok(())
}

fn run(argv: &[&str], must: bool) -> Res<()> {
    let status = Command::new(argv[0])
        .args(&argv[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if must && !status.success() {
        return Err(format!("{argv:?}: {status}").into());
    }
    Ok(())
}

/// Inside the namespace: `time-inside OUT [K=V ...] FIRST... ;; [K=V ...] AGAIN...` times
/// both commands as whole processes (stdout and stderr on pipes, as a container runtime
/// gives them) and leaves `OUT/{0,1}.time` (`spawn-wall-µs took-µs`), `.stdout`, `.stderr`;
/// `OUT/error` when a command fails.
pub fn time_inside(args: &[String]) -> Res<()> {
    let out = Path::new(&args[0]);
    let args = &args[1..];
    let split = args
        .iter()
        .position(|a| a == ";;")
        .ok_or("time-inside OUT FIRST ;; AGAIN")?;
    let mut listener: Option<TcpListener> = None;
    for (i, argv) in [&args[..split], &args[split + 1..]].into_iter().enumerate() {
        let program = argv
            .iter()
            .position(|a| !a.contains('='))
            .ok_or("no program")?;
        let mut command = Command::new(&argv[program]);
        command.args(&argv[program + 1..]);
        for pair in &argv[..program] {
            let (key, value) = pair.split_once('=').ok_or("K=V")?;
            if key == "MULTINIC_REPORT" {
                // A new, empty report file for each run, as the kubelet makes one for each
                // container: the agent's report then never truncates the one before.
                let _ = std::fs::remove_file(value);
                std::fs::write(value, "")?;
            }
            if value == LISTEN_PORT {
                let bound = match &listener {
                    Some(l) => l,
                    None => listener.insert(TcpListener::bind("127.0.0.1:0")?),
                };
                command.env(key, bound.local_addr()?.port().to_string());
            } else {
                command.env(key, value);
            }
        }
        let spawned_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros();
        let start = Instant::now();
        let output = command.output()?;
        let took = start.elapsed().as_micros();
        std::fs::write(
            out.join(format!("{i}.time")),
            format!("{spawned_us} {took}"),
        )?;
        std::fs::write(out.join(format!("{i}.stdout")), &output.stdout)?;
        std::fs::write(out.join(format!("{i}.stderr")), &output.stderr)?;
        if !output.status.success() {
            let err = format!(
                "{argv:?}: {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            std::fs::write(out.join("error"), &err)?;
            return Err(err.into());
        }
    }
    Ok(())
}
