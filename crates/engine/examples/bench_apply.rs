//! Benchmark: configure 10 NICs in a fresh network namespace, then re-apply, comparing in the
//! same run (whole process each time, median of several runs):
//!   engine  - `multinic-engine` in one process (netlink, files, verify)
//!   go-ip   - the earlier Go agent's way: one `ip`/`sysctl` process per step
//!   nmstate - `nmstatectl apply --kernel` for what it can do here
//!
//! Run: `cargo run --release -p multinic-engine --example bench_apply -- [--runs N]
//!       [--nmstatectl PATH]` (as root). For each run and contender the driver makes a fresh
//! namespace with 10 veth NICs and starts a small timer inside it (`ip netns exec`), which
//! times the contender's whole process(es) from spawn to exit, so the cost of entering the
//! namespace is not counted for anyone. Namespaces are deleted afterwards.

use multinic_api::{MacAddress, ValidInterface};
use multinic_engine::{Engine, EngineConfig, NoopHandoff};
use multinic_netconf::{DesiredNode, NetOptions, OsFlavor};
use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn Error>>;

const NICS: u8 = 10;
const TABLE_BASE: u32 = 100;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("inner-engine") => inner_engine(Path::new(&args[2]), Path::new(&args[3])),
        Some("inner-go") => inner_go(Path::new(&args[2]), args[3] == "again"),
        Some("time-inside") => time_inside(&args[2..]),
        _ => {
            let mut runs = 7;
            let mut nmstatectl = PathBuf::from("nmstatectl");
            let mut it = args.iter().skip(1);
            while let Some(arg) = it.next() {
                match arg.as_str() {
                    "--runs" => runs = it.next().ok_or("--runs N")?.parse()?,
                    "--nmstatectl" => nmstatectl = it.next().ok_or("--nmstatectl PATH")?.into(),
                    other => return Err(format!("unknown argument {other}").into()),
                }
            }
            drive(runs, &nmstatectl)
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

/// Inside the namespace: one engine apply, prints `netlink files in-process-µs`.
fn inner_engine(spec: &Path, root: &Path) -> Res<()> {
    let desired: DesiredNode = serde_json::from_slice(&std::fs::read(spec)?)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut config = EngineConfig::new(root, OsFlavor::Ubuntu);
        config.route_table_base = TABLE_BASE;
        let engine = Engine::connect(config, Box::new(NoopHandoff))?;
        let start = Instant::now();
        let outcome = engine.apply(&desired).await?;
        let micros = start.elapsed().as_micros();
        if !outcome.succeeded() {
            return Err(format!("engine failed: {:?}", outcome.nics).into());
        }
        println!(
            "{} {} {micros}",
            outcome.writes.netlink, outcome.writes.files
        );
        Ok(())
    })
}

/// Inside the namespace: the Go agent's way, one process per step.
fn inner_go(spec: &Path, again: bool) -> Res<()> {
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

/// Inside the namespace: times `first` then `again` as whole processes; prints
/// `first-µs again-µs` followed by the contender's own stdout of each run.
fn time_inside(args: &[String]) -> Res<()> {
    let split = args
        .iter()
        .position(|a| a == ";;")
        .ok_or("time-inside FIRST ;; AGAIN")?;
    let mut line = String::new();
    let mut outs = String::new();
    for argv in [&args[..split], &args[split + 1..]] {
        let start = Instant::now();
        let out = Command::new(&argv[0]).args(&argv[1..]).output()?;
        let took = start.elapsed();
        if !out.status.success() {
            return Err(format!("{argv:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        line.push_str(&format!("{} ", took.as_micros()));
        outs.push_str(&format!("{} ", String::from_utf8_lossy(&out.stdout).trim()));
    }
    println!("{}{}", line, outs.trim());
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

/// A fresh namespace with 10 veth NICs, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Res<Self> {
        let name = format!("mnb-{}-{tag}", std::process::id());
        check(Command::new("ip").args(["netns", "add", &name]).status()?)?;
        let ns = Self(name);
        let mut batch = String::from("link set lo up\n");
        for k in 0..NICS {
            batch.push_str(&format!(
                "link add eth{k} address {} type veth peer name peer{k}\nlink set peer{k} up\n",
                mac(k)
            ));
        }
        let mut child = Command::new("ip")
            .args(["-n", &ns.0, "-batch", "-"])
            .stdin(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .ok_or("stdin")?
            .write_all(batch.as_bytes())?;
        check(child.wait()?)?;
        Ok(ns)
    }

    /// Runs the in-namespace timer over `first ;; again`; returns both durations and the
    /// rest of its output.
    fn time(
        &self,
        exe: &str,
        first: &[&str],
        again: &[&str],
    ) -> Res<(Duration, Duration, Vec<u64>)> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, exe, "time-inside"])
            .args(first)
            .arg(";;")
            .args(again)
            .output()?;
        if !out.status.success() {
            return Err(format!("{first:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        let numbers: Vec<u64> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        let (first_us, again_us) = (numbers[0], numbers[1]);
        Ok((
            Duration::from_micros(first_us),
            Duration::from_micros(again_us),
            numbers[2..].to_vec(),
        ))
    }

    fn show(&self, what: &[&str]) -> String {
        Command::new("ip")
            .args(["-n", &self.0])
            .args(what)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn check(status: std::process::ExitStatus) -> Res<()> {
    if status.success() {
        Ok(())
    } else {
        Err(format!("exit {status}").into())
    }
}

/// Checks that a contender really configured all 10 NICs (address present on each).
fn assert_configured(ns: &Netns, prefix: &str) -> Res<()> {
    for k in 0..NICS {
        let out = ns.show(&["-o", "addr", "show", "dev", &format!("{prefix}{k}")]);
        if !out.contains(&format!("198.18.{k}.10/24")) {
            return Err(format!("{prefix}{k} not configured: {out}").into());
        }
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn drive(runs: usize, nmstatectl: &Path) -> Res<()> {
    let exe = std::env::current_exe()?;
    let exe = exe.to_str().ok_or("exe path")?;
    let work = std::env::temp_dir().join(format!("mnb-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let spec = work.join("desired.json");
    std::fs::write(&spec, serde_json::to_vec(&desired())?)?;
    let spec = spec.to_str().ok_or("spec path")?;
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
    let (mut e1, mut e2, mut g1, mut g2, mut n1, mut n2) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut inproc1, mut inproc2, mut writes) = (vec![], vec![], String::new());
    let (mut s1, mut s2) = (vec![], vec![]);
    let shm = Path::new("/dev/shm")
        .is_dir()
        .then(|| PathBuf::from(format!("/dev/shm/mnb-{}", std::process::id())));
    for run in 0..runs {
        let ns = Netns::new(&format!("{run}-e"))?;
        let root = work.join(format!("root-{run}"));
        let root_s = root.to_str().ok_or("root")?;
        let engine = [exe, "inner-engine", spec, root_s];
        let (t1, t2, extra) = ns.time(exe, &engine, &engine)?;
        assert_configured(&ns, "multinic")?;
        e1.push(t1);
        e2.push(t2);
        // extra: netlink, files, in-process µs of the first run, then of the re-apply.
        inproc1.push(Duration::from_micros(extra[2]));
        inproc2.push(Duration::from_micros(extra[5]));
        writes = format!(
            "first apply {} netlink + {} file writes; re-apply {} + {}",
            extra[0], extra[1], extra[3], extra[4]
        );
        drop(ns);

        // The same with the files on tmpfs: what the engine costs without disk waits.
        if let Some(shm) = &shm {
            let ns = Netns::new(&format!("{run}-t"))?;
            let root = shm.join(format!("root-{run}"));
            let engine = [exe, "inner-engine", spec, root.to_str().ok_or("root")?];
            let (t1, t2, _) = ns.time(exe, &engine, &engine)?;
            assert_configured(&ns, "multinic")?;
            s1.push(t1);
            s2.push(t2);
        }

        let ns = Netns::new(&format!("{run}-g"))?;
        let (t1, t2, _) = ns.time(
            exe,
            &[exe, "inner-go", spec, "first"],
            &[exe, "inner-go", spec, "again"],
        )?;
        assert_configured(&ns, "multinic")?;
        g1.push(t1);
        g2.push(t2);
        drop(ns);

        if have_nmstate {
            let ns = Netns::new(&format!("{run}-n"))?;
            // With its routes, nmstate 2.2.62 refuses to re-apply its own state in kernel
            // mode ("Multiple routes ... sharing the same metric and table"): re-apply the
            // addresses-only state.
            let (t1, t2, _) = ns.time(
                exe,
                &[nm, "apply", "--kernel", full.to_str().ok_or("yml")?],
                &[nm, "apply", "--kernel", addr_only.to_str().ok_or("yml")?],
            )?;
            assert_configured(&ns, "eth")?;
            n1.push(t1);
            n2.push(t2);
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    if let Some(shm) = &shm {
        let _ = std::fs::remove_dir_all(shm);
    }
    let (em1, em2) = (median(e1), median(e2));
    println!("runs: {runs} (median; whole process, timed inside the namespace)");
    println!(
        "| contender | fresh apply, 10 NICs | re-apply | fresh vs engine | re-apply vs engine |"
    );
    println!("|---|---|---|---|---|");
    println!("| multinic-engine | {em1:.1} ms | {em2:.1} ms | 1x | 1x |");
    if !s1.is_empty() {
        let (sm1, sm2) = (median(s1), median(s2));
        println!(
            "| multinic-engine, files on tmpfs | {sm1:.1} ms | {sm2:.1} ms | {:.2}x | {:.2}x |",
            sm1 / em1,
            sm2 / em2
        );
    }
    let (gm1, gm2) = (median(g1), median(g2));
    println!(
        "| (a) ip/sysctl per step | {gm1:.1} ms | {gm2:.1} ms | {:.1}x | {:.1}x |",
        gm1 / em1,
        gm2 / em2
    );
    if have_nmstate {
        let (nm1, nm2) = (median(n1), median(n2));
        println!(
            "| (b) nmstatectl apply --kernel | {nm1:.1} ms | {nm2:.1} ms | {:.1}x | {:.1}x |",
            nm1 / em1,
            nm2 / em2
        );
    }
    println!(
        "engine in-process apply time: fresh {:.2} ms, re-apply {:.2} ms; {writes}",
        median(inproc1),
        median(inproc2)
    );
    Ok(())
}
