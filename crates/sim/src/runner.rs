//! Who runs a Pod's container: [`ProcessRunner`] starts the command as a local process (inside
//! the node's network namespace when it has one), [`InstantRunner`] answers at once with a
//! successful agent report computed from the Job's `MULTINIC_NODE_SPEC`.

use futures::future::BoxFuture;
use multinic_api::report::env as agent_env;
use multinic_api::report::{AgentAction, AgentReport, REPORT_VERSION, ReportInterface, env};
use multinic_api::{InterfaceReason, MultiNicNodeConfigSpec};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// Everything a runner needs to run one Pod's (first) container.
#[derive(Clone, Debug)]
pub struct PodRun {
    /// Pod name.
    pub pod: String,
    /// Pod namespace.
    pub namespace: String,
    /// Node the pod runs on.
    pub node: String,
    /// The node's network namespace, if it has one.
    pub netns: Option<String>,
    /// The container's command followed by its args, host paths already substituted.
    pub command: Vec<String>,
    /// The container's environment, resolved.
    pub env: Vec<(String, String)>,
    /// Per-pod directory (logs, mounts, termination log).
    pub pod_dir: PathBuf,
    /// Host file standing in for the container's terminationMessagePath.
    pub termination_log: PathBuf,
    /// The node's root directory (its stand-in for `/`).
    pub node_root: PathBuf,
    /// Turns `Some(grace)` when the pod is being deleted: the container gets SIGTERM, and
    /// SIGKILL once the grace period has passed.
    pub stop: StopSignal,
}

/// The kubelet's request to end a container gracefully (see [`PodRun::stop`]).
#[derive(Clone, Debug)]
pub struct StopSignal(tokio::sync::watch::Receiver<Option<Duration>>);

impl StopSignal {
    /// A signal and the sender that raises it with the grace period.
    pub fn new() -> (tokio::sync::watch::Sender<Option<Duration>>, Self) {
        let (tx, rx) = tokio::sync::watch::channel(None);
        (tx, Self(rx))
    }

    /// Whether termination was requested.
    pub fn is_requested(&self) -> bool {
        self.0.borrow().is_some()
    }

    /// Resolves with the grace period once termination is requested; never when the sender is
    /// gone without asking (the pod's task is then being dropped, which kills the container).
    pub async fn requested(&mut self) -> Duration {
        let requested = self
            .0
            .wait_for(Option::is_some)
            .await
            .map(|g| g.unwrap_or_default());
        match requested {
            Ok(grace) => grace,
            Err(_) => std::future::pending().await,
        }
    }
}

/// How a container ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    /// Exit code (128+signal when killed).
    pub exit_code: i32,
    /// The tail of its output, for `FallbackToLogsOnError`.
    pub log_tail: String,
}

/// Runs Pods on simulated nodes.
pub trait PodRunner: Send + Sync {
    /// Runs the container to completion. Dropping the future must stop it.
    fn run(&self, pod: PodRun) -> BoxFuture<'static, RunOutcome>;
}

/// Runs the container's command as a local process; the image's `multinic` command is mapped
/// to `agent_binary`.
#[derive(Clone, Debug)]
pub struct ProcessRunner {
    /// The local `multinic` binary.
    pub agent_binary: PathBuf,
    /// `PATH` given to the process.
    pub path: String,
}

impl ProcessRunner {
    /// A runner mapping `multinic` to `agent_binary`, with a standard PATH.
    pub fn new(agent_binary: PathBuf) -> Self {
        Self {
            agent_binary,
            path: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        }
    }

    /// The argv to run, and whether it is the agent.
    fn program(&self, command: &[String]) -> (Vec<String>, bool) {
        let mut argv = command.to_vec();
        let agent = match argv.first() {
            Some(first) if first.rsplit('/').next() == Some("multinic") => {
                argv[0] = self.agent_binary.display().to_string();
                true
            }
            Some(_) => false,
            // No command: the image's entrypoint, which is `multinic`.
            None => {
                argv.push(self.agent_binary.display().to_string());
                true
            }
        };
        (argv, agent)
    }
}

fn tail(s: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(max_lines)..].join("\n")
}

impl PodRunner for ProcessRunner {
    fn run(&self, pod: PodRun) -> BoxFuture<'static, RunOutcome> {
        let (argv, agent) = self.program(&pod.command);
        let path = self.path.clone();
        let mut env = pod.env.clone();
        if agent {
            // The agent's own defaults (`/` and `/dev/termination-log`) are container paths no
            // arg or env names, so nothing maps them; point them into the node instead of at
            // this machine.
            for (name, value) in [
                (agent_env::ROOT, &pod.node_root),
                (agent_env::REPORT, &pod.termination_log),
            ] {
                if !env.iter().any(|(k, _)| k == name) {
                    env.push((name.to_string(), value.display().to_string()));
                }
            }
        }
        Box::pin(async move {
            let log_path = pod.pod_dir.join("log");
            let failed = |msg: String| RunOutcome {
                exit_code: 128,
                log_tail: msg,
            };
            let log = match std::fs::File::create(&log_path) {
                Ok(f) => f,
                Err(e) => return failed(format!("creating {}: {e}", log_path.display())),
            };
            let log2 = match log.try_clone() {
                Ok(f) => f,
                Err(e) => return failed(e.to_string()),
            };
            let mut cmd = match &pod.netns {
                Some(ns) => {
                    let mut c = tokio::process::Command::new("ip");
                    c.args(["netns", "exec", ns]).args(&argv);
                    c
                }
                None => {
                    let mut c = tokio::process::Command::new(&argv[0]);
                    c.args(&argv[1..]);
                    c
                }
            };
            cmd.env_clear()
                .env("PATH", path)
                .env("HOSTNAME", &pod.pod)
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .current_dir(&pod.pod_dir)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log2))
                .kill_on_drop(true);
            // Its own process group, so the whole container (children included) can be ended.
            cmd.process_group(0);
            let mut stop = pod.stop.clone();
            let status = match cmd.spawn() {
                Ok(mut child) => {
                    let group = child.id().map(ProcessGroup);
                    tokio::select! {
                        status = child.wait() => status,
                        grace = stop.requested() => {
                            // As a container runtime does: SIGTERM to every process of the
                            // container, SIGKILL to what is left after the grace period.
                            if let Some(g) = &group {
                                g.signal("TERM");
                            }
                            match tokio::time::timeout(grace, child.wait()).await {
                                Ok(status) => status,
                                Err(_) => {
                                    drop(group);
                                    child.wait().await
                                }
                            }
                        }
                    }
                }
                Err(e) => return failed(format!("starting {}: {e}", argv.join(" "))),
            };
            let log_tail = tail(&std::fs::read_to_string(&log_path).unwrap_or_default(), 20);
            match status {
                Ok(s) => RunOutcome {
                    exit_code: exit_code(s),
                    log_tail,
                },
                Err(e) => failed(e.to_string()),
            }
        })
    }
}

/// Kills a container's whole process group when dropped: when the pod's future is cancelled
/// (pod deleted, deadline, shutdown) and after its main process exited, as a container
/// runtime ends every process of a container.
struct ProcessGroup(u32);

impl ProcessGroup {
    fn signal(&self, signal: &str) {
        let _ = std::process::Command::new("kill")
            .args([&format!("-{signal}"), "--", &format!("-{}", self.0)])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.signal("KILL");
    }
}

/// The exit code a container runtime reports: the process's own, or 128 + the signal that
/// ended it (143 for SIGTERM, 137 for SIGKILL).
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(137)
}

/// Answers at once: writes a successful report for the spec in `MULTINIC_NODE_SPEC` to the
/// termination log and exits 0 (1 when the spec cannot be read).
#[derive(Clone, Debug, Default)]
pub struct InstantRunner;

/// The report a successful agent would write for this environment.
pub fn instant_report(vars: &[(String, String)]) -> Result<AgentReport, String> {
    let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let action = match get(env::AGENT_ACTION) {
        Some("cleanup") => AgentAction::Cleanup,
        _ => AgentAction::Apply,
    };
    let spec: Option<MultiNicNodeConfigSpec> = match get(env::NODE_SPEC) {
        Some(s) => Some(serde_json::from_str(s).map_err(|e| format!("{}: {e}", env::NODE_SPEC))?),
        None => None,
    };
    let mut interfaces = Vec::new();
    if let Some(spec) = &spec {
        let check = multinic_api::check_spec(spec);
        let mut used: Vec<u8> = check
            .interfaces
            .iter()
            .filter_map(|i| i.requested_slot)
            .collect();
        for (index, iface) in spec.interfaces.iter().enumerate() {
            let errors: Vec<String> = check
                .interface_errors(index)
                .map(|e| e.to_string())
                .collect();
            let valid = check.interfaces.iter().find(|v| v.index == index);
            let slot = valid.map(|v| {
                v.requested_slot.unwrap_or_else(|| {
                    let free = (0..=multinic_api::MAX_SLOT)
                        .find(|s| !used.contains(s))
                        .unwrap_or(0);
                    used.push(free);
                    free
                })
            });
            let reason = match (valid, action) {
                (None, _) => InterfaceReason::InvalidSpec,
                (Some(_), AgentAction::Apply) => InterfaceReason::Configured,
                (Some(_), AgentAction::Cleanup) => InterfaceReason::Removed,
            };
            interfaces.push(ReportInterface {
                id: slot,
                name: slot.map(|s| format!("{}{s}", multinic_api::INTERFACE_NAME_PREFIX)),
                mac_address: iface.mac_address.to_lowercase(),
                reason,
                message: errors.join("; "),
            });
        }
    }
    Ok(AgentReport {
        v: REPORT_VERSION,
        node: get(env::NODE_NAME).unwrap_or_default().to_string(),
        generation: get(env::GENERATION).and_then(|g| g.parse().ok()),
        action,
        error: None,
        interfaces,
        duration_ms: 0,
    })
}

impl PodRunner for InstantRunner {
    fn run(&self, pod: PodRun) -> BoxFuture<'static, RunOutcome> {
        Box::pin(async move {
            match instant_report(&pod.env) {
                Ok(report) => {
                    let json = serde_json::to_string(&report).unwrap_or_default();
                    let exit_code = if std::fs::write(&pod.termination_log, json).is_ok()
                        && report.succeeded()
                    {
                        0
                    } else {
                        1
                    };
                    RunOutcome {
                        exit_code,
                        log_tail: String::new(),
                    }
                }
                Err(e) => RunOutcome {
                    exit_code: 1,
                    log_tail: e,
                },
            }
        })
    }
}
