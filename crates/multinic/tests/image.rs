//! The shipped image, built and run on this machine. `scripts/image.sh` builds it twice (static
//! binary without the developer commands, FROM scratch, buildah, every timestamp 0); the OCI
//! archive is inspected (user, entrypoint, one layer, size, the same digest both times) and
//! run with podman (runc, vfs storage, all state in a temporary folder): `--version`; `sim`
//! refused; the agent configuring a veth NIC of a test network namespace the way a Job's
//! container does (uid 0, only CAP_NET_ADMIN, read-only root, the node's namespace); the
//! controller driving the simulator. Fails (never skips) without buildah, skopeo or podman.

mod agent_support;

use agent_support::{Netns, TempDir, wait_for};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use multinic_api::{MultiNicNodeConfig, MultiNicNodeConfigSpec, NodeConfigState};
use multinic_sim::{NodeSpec, RunnerChoice, Sim, SimConfig};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The shipped image must stay small: a static binary and nothing else.
const MAX_ARCHIVE_BYTES: u64 = 40 << 20;
const MAC: &str = "fa:16:3e:00:0d:01";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where image.sh builds; the same directory for both builds, so the second reuses the first.
fn image_target_dir() -> PathBuf {
    std::env::var_os("MULTINIC_IMAGE_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/image/cargo"))
}

/// Runs scripts/image.sh into `out`; returns the archive it wrote.
fn build_image(out: &Path) -> PathBuf {
    let run = Command::new(repo().join("scripts/image.sh"))
        .arg(out)
        .env("MULTINIC_IMAGE_TARGET_DIR", image_target_dir())
        .output()
        .expect("running scripts/image.sh");
    assert!(
        run.status.success(),
        "scripts/image.sh failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let archive = PathBuf::from(String::from_utf8_lossy(&run.stdout).trim());
    assert!(archive.is_file(), "no archive at {}", archive.display());
    archive
}

fn skopeo_inspect(archive: &Path, config: bool) -> Value {
    let mut cmd = Command::new("skopeo");
    cmd.arg("inspect");
    if config {
        cmd.arg("--config");
    }
    let out = cmd
        .arg(format!("oci-archive:{}", archive.display()))
        .output()
        .expect("skopeo is missing: apt-get install skopeo");
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("skopeo prints JSON")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// podman with its own storage (vfs) and run state in a temporary folder, runc as runtime;
/// everything it made is removed on Drop.
struct Podman {
    dir: TempDir,
}

impl Podman {
    fn new() -> Self {
        Self {
            dir: TempDir::new("podman"),
        }
    }

    fn command(&self) -> Command {
        let dir = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(dir.join("storage"))
            .arg("--runroot")
            .arg(dir.join("run"))
            .arg("--tmpdir")
            .arg(dir.join("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--runtime",
                "runc",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ]);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .expect("podman is missing: apt-get install podman runc")
    }

    /// `podman run --rm` with the limits this host allows and `extra` before the image.
    fn run_image(&self, extra: &[&str], args: &[&str]) -> Output {
        let (limits, image) = (ulimits(), image());
        let mut all = vec!["run", "--rm"];
        all.extend(limits.iter().map(String::as_str));
        all.extend_from_slice(extra);
        all.push(&image);
        all.extend_from_slice(args);
        self.run(&all)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force"]);
        let _ = self.run(&["system", "reset", "--force"]);
    }
}

/// The name image.sh gives the image (what the chart's default `multinic` resolves to).
fn image() -> String {
    format!("docker.io/library/multinic:{VERSION}")
}

/// `--ulimit` options runc can apply here: podman's defaults for open files and processes
/// are above this host's hard limits, and runc then fails with EPERM. Both get the hard limit
/// of open files of this process (processes allow no more on these hosts either).
fn ulimits() -> Vec<String> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let n: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    ["nofile", "nproc"]
        .iter()
        .flat_map(|kind| ["--ulimit".to_string(), format!("{kind}={n}:{n}")])
        .collect()
}

#[test]
fn image_builds_reproducibly_and_runs_agent_and_controller() {
    let work = TempDir::new("image");
    let first = build_image(&work.path().join("a"));
    let second = build_image(&work.path().join("b"));

    // Inspect: one layer, non-root, the entrypoint, epoch timestamps, small, reproducible.
    let manifest = skopeo_inspect(&first, false);
    assert_eq!(
        manifest["Digest"],
        skopeo_inspect(&second, false)["Digest"],
        "two builds of the same sources differ"
    );
    assert_eq!(manifest["Layers"].as_array().map(Vec::len), Some(1));
    let config = skopeo_inspect(&first, true);
    assert_eq!(config["config"]["User"], "65532:65532", "{config}");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/multinic"])
    );
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(1)
    );
    let size = std::fs::metadata(&first).unwrap().len();
    assert!(size < MAX_ARCHIVE_BYTES, "archive is {size} bytes");
    println!("image archive: {size} bytes, {}", manifest["Digest"]);

    let podman = Podman::new();
    let load = podman.run(&["load", "--quiet", "--input", first.to_str().unwrap()]);
    assert!(load.status.success(), "podman load: {}", text(&load.stderr));

    let version = podman.run_image(&["--network", "none"], &["--version"]);
    assert!(version.status.success(), "{}", text(&version.stderr));
    assert_eq!(text(&version.stdout), format!("multinic {VERSION}\n"));

    // The image's binary has no simulator.
    let sim = podman.run_image(&["--network", "none"], &["sim"]);
    assert_eq!(sim.status.code(), Some(2), "{}", text(&sim.stderr));
    assert!(
        text(&sim.stderr).contains("unrecognized subcommand 'sim'"),
        "{}",
        text(&sim.stderr)
    );

    agent_in_a_job_like_container(&podman);
    controller_against_the_simulator(&podman, &image_binary());
}

/// The static binary image.sh put into the image.
fn image_binary() -> PathBuf {
    let arch = std::env::consts::ARCH;
    image_target_dir().join(format!("{arch}-unknown-linux-gnu/release/multinic"))
}

/// As the controller's Job runs it: uid 0, every capability dropped but NET_ADMIN, read-only
/// root, the node's network namespace, the host directories under /host, the report in
/// /dev/termination-log.
fn agent_in_a_job_like_container(podman: &Podman) {
    let ns = Netns::new();
    ns.add_nic("0", MAC);
    let root = TempDir::new("image-root");
    let report = root.path().join("termination-log");
    std::fs::write(&report, "").unwrap();
    let spec = format!(
        r#"{{"nodeName":"worker-01","interfaces":[{{"macAddress":"{MAC}","address":"192.0.2.10","cidr":"192.0.2.0/24","mtu":1400}}]}}"#
    );
    let network = format!("ns:/run/netns/{}", ns.name);
    let host = format!("{}:/host", root.path().display());
    let log = format!("{}:/dev/termination-log", report.display());
    let env = [
        "NODE_NAME=worker-01".to_string(),
        "RUN_MODE=job".into(),
        "AGENT_ACTION=apply".into(),
        "DATA_SOURCE=spec".into(),
        format!("MULTINIC_NODE_SPEC={spec}"),
        "MULTINIC_ROOT=/host".into(),
        "MULTINIC_OS=ubuntu".into(),
        "MULTINIC_REPORT=/dev/termination-log".into(),
        "MULTINIC_HANDOFF=none".into(),
    ];
    let mut extra = vec![
        "--network",
        &network,
        "--user",
        "0:0",
        "--cap-drop",
        "all",
        "--cap-add",
        "NET_ADMIN",
        "--security-opt",
        "no-new-privileges",
        "--read-only",
        "--volume",
        &host,
        // The per-interface IPv6 sysctls, writable, as the Job mounts them: the container's
        // own /proc/sys is read-only, and managed NICs get accept_ra=0/autoconf=0 at once.
        "--volume",
        "/proc/sys/net/ipv6/conf:/host/proc/sys/net/ipv6/conf",
        "--volume",
        &log,
    ];
    for e in &env {
        extra.extend(["--env", e.as_str()]);
    }
    let run = podman.run_image(&extra, &["agent"]);
    let report_text = std::fs::read_to_string(&report).unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}\n{report_text}",
        text(&run.stderr)
    );
    let report: Value = serde_json::from_str(&report_text).expect("the report is JSON");
    assert_eq!(report["interfaces"][0]["reason"], "Configured", "{report}");
    assert_eq!(ns.addresses("multinic0"), ["192.0.2.10/24"]);
    assert_eq!(ns.mtu("multinic0"), 1400);
    for knob in ["accept_ra", "autoconf"] {
        let out = ns
            .command("cat")
            .arg(format!("/proc/sys/net/ipv6/conf/multinic0/{knob}"))
            .output()
            .unwrap();
        assert_eq!(text(&out.stdout).trim(), "0", "{knob} of multinic0");
    }
    assert!(
        root.path().join("etc/netplan").read_dir().unwrap().count() > 0,
        "no netplan file written under /host"
    );
}

/// The controller from the image (default user, host network) against the simulator on the
/// host's loopback; the simulated kubelet runs the Jobs with the image's binary.
fn controller_against_the_simulator(podman: &Podman, binary: &Path) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The kube client and the simulator start tasks on the current runtime.
    let _in_runtime = rt.enter();
    let sim = rt
        .block_on(Sim::start(SimConfig {
            netns: true,
            runner: RunnerChoice::Process {
                agent_binary: binary.to_owned(),
            },
            ..SimConfig::with_nodes(1)
        }))
        .expect("starting the simulator");
    let client = sim.kube_client().expect("client");
    let node = NodeSpec::generate(0);
    let configs: Api<MultiNicNodeConfig> =
        Api::namespaced(client.clone(), multinic_api::DEFAULT_NAMESPACE);
    rt.block_on(async {
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&multinic_api::crd_yaml()).unwrap();
        Api::<CustomResourceDefinition>::all(client.clone())
            .create(&PostParams::default(), &crd)
            .await
            .expect("creating the CRD");
        let ns: Namespace = serde_json::from_value(
            serde_json::json!({"metadata": {"name": multinic_api::DEFAULT_NAMESPACE}}),
        )
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("creating the namespace");
        let spec: MultiNicNodeConfigSpec = serde_json::from_value(serde_json::json!({
            "nodeName": node.name,
            "interfaces": [{"macAddress": node.macs[0], "address": "192.0.2.20", "cidr": "192.0.2.0/24"}]
        }))
        .unwrap();
        configs
            .create(&PostParams::default(), &MultiNicNodeConfig::new(&node.name, spec))
            .await
            .expect("creating the resource");
    });

    // The kubeconfig, readable by the image's non-root user.
    let dir = TempDir::new("image-kubeconfig");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::copy(&sim.kubeconfig_path, &kubeconfig).unwrap();
    let mount = format!("{}:/etc/multinic/kubeconfig:ro", kubeconfig.display());
    let name = format!("multinic-controller-{}", std::process::id());
    let image = image();
    let mut run = vec!["run", "--detach", "--name", &name];
    let limits = ulimits();
    run.extend(limits.iter().map(String::as_str));
    run.extend([
        "--network",
        "host",
        "--volume",
        &mount,
        "--env",
        "KUBECONFIG=/etc/multinic/kubeconfig",
        &image,
        "controller",
        "--http-addr",
        "off",
        "--job-image",
        &image,
        "--job-dbus-socket",
        "off",
        "--agent-env",
        "MULTINIC_HANDOFF=none",
    ]);
    let started = podman.run(&run);
    assert!(started.status.success(), "{}", text(&started.stderr));
    let logs = || text(&podman.run(&["logs", &name]).stderr);
    let user = podman.run(&["inspect", "--format", "{{.Config.User}}", &name]);
    assert_eq!(text(&user.stdout).trim(), "65532:65532");

    let configured = wait_for(Duration::from_secs(90), || {
        rt.block_on(configs.get_opt(&node.name))
            .ok()
            .flatten()
            .and_then(|o| o.status)
            .and_then(|s| s.state)
            == Some(NodeConfigState::Configured)
    });
    assert!(
        configured.is_some(),
        "not Configured; controller log:\n{}",
        logs()
    );
    let netns = sim.node_netns(&node.name).expect("the node has a netns");
    let addresses = Command::new("ip")
        .args(["-n", &netns, "-o", "addr", "show"])
        .output()
        .unwrap();
    assert!(
        text(&addresses.stdout).contains("192.0.2.20/24"),
        "{}",
        text(&addresses.stdout)
    );
    let _ = podman.run(&["rm", "--force", &name]);
    drop(sim);
}
