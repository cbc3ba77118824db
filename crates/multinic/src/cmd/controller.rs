//! `multinic controller`: parses the controller's command line and environment once into a
//! [`ControllerConfig`] and runs the `multinic-controller` library until SIGINT/SIGTERM.

use anyhow::Context;
use k8s_openapi::api::core::v1::ResourceRequirements;
use multinic_controller::config::{
    self, ControllerConfig, JobConfig, LeaderConfig, RetryPolicy, WatchMode,
};
use multinic_controller::fleet;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// Watch or poll.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeArg {
    /// Long-lived watches.
    Watch,
    /// Full lists every `--poll-interval`.
    Poll,
}

fn duration(text: &str) -> Result<Duration, String> {
    config::parse_duration(text)
}

/// Arguments of `multinic controller`; every one can also come from the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct ControllerArgs {
    /// Namespace of the MultiNicNodeConfigs (and their Jobs); empty means all namespaces.
    #[arg(long, env = "WATCH_NAMESPACE", default_value = multinic_api::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Watch every namespace (same as an empty --namespace).
    #[arg(long, env = "ALL_NAMESPACES")]
    pub all_namespaces: bool,
    /// Watch (default) or poll.
    #[arg(long, env = "CONTROLLER_MODE", value_enum, default_value = "watch")]
    pub mode: ModeArg,
    /// Interval of poll mode (e.g. 15s).
    #[arg(long, alias = "interval", env = "POLL_INTERVAL", default_value = "15s", value_parser = duration)]
    pub poll_interval: Duration,
    /// Cluster-wide cap on agent Jobs in flight.
    #[arg(long, env = "MAX_JOBS_IN_FLIGHT", default_value_t = 200)]
    pub max_jobs_in_flight: usize,
    /// Rollout budget: resources failed since their last change plus changes being applied
    /// right now. While that many are, no Job starts for another resource (`RolloutPaused`);
    /// first configurations of new resources take no budget. A number or a percentage (10%).
    #[arg(long, env = "MAX_FAILURES", default_value = "3", value_parser = fleet::MaxFailures::parse)]
    pub max_failures: fleet::MaxFailures,
    /// Reconciles run at once (0 = unbounded); bounds requests in flight and memory.
    #[arg(long, env = "CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// Jobs tried per generation before it stays Failed.
    #[arg(long, env = "RETRY_MAX_ATTEMPTS", default_value_t = 5)]
    pub retry_max_attempts: u32,
    /// Delay before the second attempt; doubled each time after.
    #[arg(long, env = "RETRY_BASE_DELAY", default_value = "10s", value_parser = duration)]
    pub retry_base_delay: Duration,
    /// Longest delay between attempts.
    #[arg(long, env = "RETRY_MAX_DELAY", default_value = "300s", value_parser = duration)]
    pub retry_max_delay: Duration,
    /// How often a resource whose Node is missing is looked at again.
    #[arg(long, env = "NODE_MISSING_RECHECK", default_value = "30s", value_parser = duration)]
    pub node_missing_recheck: Duration,
    /// Address of /metrics, /healthz and /readyz; `off` serves nothing.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: String,
    /// Elect a leader through a Lease, so only one replica acts.
    #[arg(long, env = "LEADER_ELECTION")]
    pub leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "multinic-controller")]
    pub lease_name: String,
    /// Namespace of the leader Lease (default: the controller's Pod namespace, else --namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long the Lease is valid without renewal.
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = duration)]
    pub lease_duration: Duration,
    /// How often the leader renews.
    #[arg(long, env = "RENEW_INTERVAL", default_value = "5s", value_parser = duration)]
    pub renew_interval: Duration,
    /// Longest time one Lease renewal may take before it counts as failed.
    #[arg(long, env = "RENEW_DEADLINE", default_value = "10s", value_parser = duration)]
    pub renew_deadline: Duration,
    /// This replica's name in Events and the Lease (default: the Pod name, else host-pid).
    #[arg(long, env = "POD_NAME")]
    pub instance: Option<String>,
    /// Agent image of the Jobs.
    #[arg(
        long,
        env = "JOB_IMAGE",
        default_value = "ghcr.io/multinic/multinic:latest"
    )]
    pub job_image: String,
    /// Image pull policy of the Jobs (Always, IfNotPresent, Never).
    #[arg(long, env = "JOB_PULL_POLICY")]
    pub job_pull_policy: Option<String>,
    /// Image pull Secret of the Jobs (repeatable).
    #[arg(long = "job-pull-secret")]
    pub job_pull_secrets: Vec<String>,
    /// Command that starts the agent in the image, comma-separated.
    #[arg(
        long,
        env = "JOB_COMMAND",
        default_value = "multinic,agent",
        value_delimiter = ','
    )]
    pub job_command: Vec<String>,
    /// The Jobs' backoffLimit (the controller retries by itself).
    #[arg(long, env = "JOB_BACKOFF_LIMIT", default_value_t = 0)]
    pub job_backoff_limit: i32,
    /// The Jobs' activeDeadlineSeconds.
    #[arg(long, env = "JOB_ACTIVE_DEADLINE", default_value_t = 300)]
    pub job_active_deadline: i64,
    /// The Jobs' ttlSecondsAfterFinished (a safety net: finished Jobs are deleted at once).
    #[arg(long, env = "JOB_TTL", default_value_t = 3600)]
    pub job_ttl: i32,
    /// Toleration of the Jobs, `key[=value][:Effect]` or `*` (repeatable; default: the
    /// control-plane and master NoSchedule taints).
    #[arg(long = "job-toleration", value_parser = config::parse_toleration)]
    pub job_tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
    /// Resource requests of the agent container, e.g. `cpu=10m,memory=32Mi`.
    #[arg(long, env = "JOB_REQUESTS", value_parser = config::parse_quantities)]
    pub job_requests:
        Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    /// Resource limits of the agent container, e.g. `memory=128Mi`.
    #[arg(long, env = "JOB_LIMITS", value_parser = config::parse_quantities)]
    pub job_limits:
        Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    /// Run the agent privileged (default: only CAP_NET_ADMIN).
    #[arg(long, env = "JOB_PRIVILEGED")]
    pub job_privileged: bool,
    /// Priority class of the agent Pods.
    #[arg(long, env = "JOB_PRIORITY_CLASS")]
    pub job_priority_class: Option<String>,
    /// SELinux type of the agent Pods, e.g. `spc_t` on RHEL hosts with SELinux enforcing.
    #[arg(long, env = "JOB_SELINUX_TYPE")]
    pub job_selinux_type: Option<String>,
    /// The host's D-Bus system socket, mounted into the agent for the hand-off to the host's
    /// network manager; `off` mounts none.
    #[arg(long, env = "JOB_DBUS_SOCKET", default_value = config::DBUS_SYSTEM_SOCKET)]
    pub job_dbus_socket: String,
    /// An agent option for the Jobs' environment, `NAME=value` (repeatable).
    #[arg(long = "agent-env", value_parser = config::parse_env_pair)]
    pub agent_env: Vec<(String, String)>,
}

impl ControllerArgs {
    /// The library configuration these arguments describe.
    pub fn to_config(&self) -> anyhow::Result<ControllerConfig> {
        let namespace =
            (!self.all_namespaces && !self.namespace.is_empty()).then(|| self.namespace.clone());
        let http_addr = match self.http_addr.as_str() {
            "off" | "" => None,
            addr => Some(
                addr.parse::<SocketAddr>()
                    .with_context(|| format!("--http-addr {addr:?} is not host:port"))?,
            ),
        };
        let instance = self.instance.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        let leader_election = self.leader_election.then(|| LeaderConfig {
            namespace: self
                .lease_namespace
                .clone()
                .or_else(|| namespace.clone())
                .unwrap_or_else(|| multinic_api::DEFAULT_NAMESPACE.to_string()),
            lease_name: self.lease_name.clone(),
            lease_duration: self.lease_duration,
            renew_interval: self.renew_interval,
            renew_deadline: self.renew_deadline,
        });
        if self.leader_election
            && !(self.renew_interval < self.renew_deadline
                && self.renew_deadline < self.lease_duration)
        {
            anyhow::bail!(
                "leader election needs --renew-interval < --renew-deadline < --lease-duration"
            );
        }
        if self.retry_max_attempts == 0 {
            anyhow::bail!("--retry-max-attempts must be at least 1");
        }
        if self.job_command.is_empty() || self.job_command[0].is_empty() {
            anyhow::bail!("--job-command must name a program");
        }
        let resources = (self.job_requests.is_some() || self.job_limits.is_some()).then(|| {
            ResourceRequirements {
                requests: self.job_requests.clone(),
                limits: self.job_limits.clone(),
                ..ResourceRequirements::default()
            }
        });
        Ok(ControllerConfig {
            namespace,
            mode: match self.mode {
                ModeArg::Watch => WatchMode::Watch,
                ModeArg::Poll => WatchMode::Poll(self.poll_interval),
            },
            job: JobConfig {
                image: self.job_image.clone(),
                pull_policy: self.job_pull_policy.clone(),
                pull_secrets: self.job_pull_secrets.clone(),
                command: self.job_command.clone(),
                resources,
                tolerations: if self.job_tolerations.is_empty() {
                    config::default_tolerations()
                } else {
                    self.job_tolerations.clone()
                },
                privileged: self.job_privileged,
                backoff_limit: self.job_backoff_limit,
                active_deadline_seconds: self.job_active_deadline,
                ttl_seconds_after_finished: self.job_ttl,
                agent_env: self.agent_env.clone(),
                priority_class: self.job_priority_class.clone(),
                selinux_type: self.job_selinux_type.clone().filter(|t| !t.is_empty()),
                dbus_socket: match self.job_dbus_socket.as_str() {
                    "off" | "" => None,
                    path => Some(path.to_string()),
                },
            },
            max_jobs_in_flight: self.max_jobs_in_flight,
            max_failures: self.max_failures,
            retry: RetryPolicy {
                max_attempts: self.retry_max_attempts,
                base_delay: self.retry_base_delay,
                max_delay: self.retry_max_delay,
            },
            node_missing_recheck: self.node_missing_recheck,
            concurrency: self.concurrency,
            instance,
            leader_election,
            http_addr,
        })
    }
}

/// Runs the controller with the cluster from KUBECONFIG / in-cluster config.
pub fn run(args: &ControllerArgs) -> anyhow::Result<ExitCode> {
    let config = args.to_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let client = kube::Client::try_default()
            .await
            .context("connecting to the Kubernetes API (KUBECONFIG or in-cluster)")?;
        multinic_controller::run(client, config, shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
