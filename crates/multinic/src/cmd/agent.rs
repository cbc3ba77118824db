//! `multinic agent`: the node program. Parses the agent's command line and environment into
//! one typed [`AgentConfig`] and hands it to the `multinic-agent` library.

use anyhow::{Context, bail};
use multinic_agent::config::{
    AgentConfig, DbConfig, DbTls, DbTlsMode, GuardConfig, Handoff, InlineSpec, Redacted, RunMode,
    ServiceConfig, SourceConfig,
};
use multinic_api::report::{AgentAction, env};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Job (apply once, report, exit) or service (keep converged).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeArg {
    /// Apply once, write the report, exit 0/2/1.
    Job,
    /// Loop at `--interval`, repair drift, serve health and metrics.
    Service,
}

/// What to do to the node.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionArg {
    /// Make the node match the desired NICs.
    Apply,
    /// Remove everything multinic configured.
    Cleanup,
}

/// Where the desired NICs come from.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceArg {
    /// The spec as JSON in MULTINIC_NODE_SPEC or in `--file` (what the controller's Jobs use).
    Spec,
    /// This node's MultiNicNodeConfig from the API server.
    #[value(alias = "nodecr")]
    Kube,
    /// A MultiNicNodeConfig YAML file (`--file`).
    File,
    /// The legacy MySQL/MariaDB tables.
    Db,
}

/// Whether to tell the host's network daemon about changed files.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoffArg {
    /// Over D-Bus to systemd-networkd (Ubuntu) or NetworkManager (RHEL) when it is on the
    /// system bus; netlink and files only (and the report says so) when it is not.
    Auto,
    /// Netlink and files only.
    None,
}

/// Arguments of `multinic agent`; every one can also come from the environment.
#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// Run once as a Job or keep running as a service.
    #[arg(long, env = env::RUN_MODE, value_enum, default_value = "job")]
    pub mode: ModeArg,
    /// Apply the desired NICs or clean up everything multinic configured.
    #[arg(long, env = env::AGENT_ACTION, value_enum, default_value = "apply")]
    pub action: ActionArg,
    /// Source of the desired NICs (`nodecr` is accepted for `kube`).
    #[arg(long, env = env::DATA_SOURCE, value_enum, default_value = "spec")]
    pub source: SourceArg,
    /// File for `--source file` (YAML resource) or `--source spec` (JSON spec).
    #[arg(long, env = "MULTINIC_FILE", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// The node's spec as JSON, for `--source spec`.
    #[arg(long, env = env::NODE_SPEC, hide_env_values = true, value_name = "JSON")]
    pub node_spec: Option<String>,
    /// Generation of the inline spec.
    #[arg(long, env = env::GENERATION)]
    pub generation: Option<i64>,
    /// Namespace of the MultiNicNodeConfig for `--source kube`.
    #[arg(long, env = "MULTINIC_NAMESPACE", default_value = multinic_api::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Prefix of every host file path.
    #[arg(long, env = env::ROOT, default_value = "/")]
    pub root: PathBuf,
    /// OS flavor (ubuntu, rhel9, rhel8, rhel7); detected from <root>/etc/os-release if unset.
    #[arg(long = "os", env = env::OS, value_name = "FLAVOR")]
    pub os: Option<String>,
    /// Where the JSON report is written.
    #[arg(long, env = env::REPORT, default_value = "/dev/termination-log")]
    pub report: PathBuf,
    /// Print the plan and change nothing.
    #[arg(long, env = "MULTINIC_DRY_RUN")]
    pub dry_run: bool,
    /// Node this agent runs on: the Pod's `spec.nodeName` from the downward API in a Job, so
    /// the wrong-node check compares it with the spec's `nodeName` (two independent facts).
    /// Else NODE_NAME, MY_NODE_NAME, the short hostname.
    #[arg(long, env = "MULTINIC_NODE_NAME")]
    pub node_name: Option<String>,
    /// Fallback node name (what earlier Jobs set).
    #[arg(long = "node-name-fallback", env = env::NODE_NAME, hide = true)]
    pub node_name_env: Option<String>,
    /// Fallback node name (the earlier agent's variable).
    #[arg(long, env = "MY_NODE_NAME", hide = true)]
    pub my_node_name: Option<String>,
    /// How long to wait for another agent on this node (host lock) before giving up.
    #[arg(long, env = "MULTINIC_LOCK_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub lock_timeout: Duration,

    /// Routing and sysctl options.
    #[command(flatten)]
    pub net: super::net_args::NetArgs,

    /// Allow configuring the NIC that carries the default route or the node address.
    #[arg(long, env = "MULTINIC_ALLOW_PRIMARY")]
    pub allow_primary: bool,
    /// Never touch a NIC holding one of these addresses (the Node's addresses; comma-separated,
    /// repeatable), nor a device below it, nor a NIC whose network overlaps one of its networks.
    #[arg(
        long = "protected-addresses",
        alias = "protect-address",
        env = "MULTINIC_PROTECTED_ADDRESSES",
        value_delimiter = ',',
        value_name = "IP"
    )]
    pub protected_addresses: Vec<IpAddr>,
    /// The same list under the variable earlier charts set.
    #[arg(
        long = "protect-addresses-legacy",
        env = "MULTINIC_PROTECT_ADDRESSES",
        value_delimiter = ',',
        hide = true
    )]
    pub protect_addresses_legacy: Vec<IpAddr>,
    /// TCP endpoint (host:port) that must stay reachable after applying, else revert. Defaults
    /// to the API server (KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT) when those are set.
    #[arg(long, env = "MULTINIC_PROBE", value_name = "HOST:PORT")]
    pub probe: Option<String>,
    /// Do not probe connectivity after applying.
    #[arg(long, env = "MULTINIC_NO_PROBE", conflicts_with = "probe")]
    pub no_probe: bool,
    /// The API server's service address, set by the kubelet in every Pod.
    #[arg(long, env = "KUBERNETES_SERVICE_HOST", hide = true)]
    pub kubernetes_service_host: Option<String>,
    /// The API server's service port, set by the kubelet in every Pod.
    #[arg(long, env = "KUBERNETES_SERVICE_PORT", hide = true)]
    pub kubernetes_service_port: Option<u16>,

    /// Tell the host's network daemon about changed files over the system D-Bus: `auto`
    /// (systemd-networkd for Ubuntu, NetworkManager for RHEL, whichever is on the bus) or `none`.
    #[arg(long, env = "MULTINIC_HANDOFF", value_enum, default_value = "auto")]
    pub handoff: HandoffArg,
    /// D-Bus address of the host's system bus (the chart mounts the host's socket at the
    /// standard path).
    #[arg(
        long,
        env = "DBUS_SYSTEM_BUS_ADDRESS",
        default_value = multinic_agent::config::SYSTEM_BUS_ADDRESS,
        value_name = "ADDRESS"
    )]
    pub system_bus: String,

    /// Service mode: time between passes (e.g. 30s, 500ms, 2m).
    #[arg(long, env = "MULTINIC_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Service mode: longest wait between passes after repeated errors.
    #[arg(long, env = "MULTINIC_MAX_BACKOFF", default_value = "5m", value_parser = parse_duration)]
    pub max_backoff: Duration,
    /// Service mode: address of /healthz, /readyz and /metrics.
    #[arg(long, env = "MULTINIC_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,

    /// Database host, for `--source db`.
    #[arg(long, env = "DB_HOST")]
    pub db_host: Option<String>,
    /// Database port.
    #[arg(long, env = "DB_PORT")]
    pub db_port: Option<u16>,
    /// Database user.
    #[arg(long, env = "DB_USER")]
    pub db_user: Option<String>,
    /// Database password (prefer DB_PASSWORD or --db-credentials); never printed.
    #[arg(long, env = "DB_PASSWORD", hide_env_values = true, value_parser = parse_secret)]
    pub db_password: Option<Redacted>,
    /// Database name.
    #[arg(long, env = "DB_NAME")]
    pub db_name: Option<String>,
    /// File of `DB_HOST=`, `DB_PORT=`, `DB_USER=`, `DB_PASSWORD=`, `DB_NAME=` lines (a mounted
    /// Secret); flags and environment win over it.
    #[arg(long, env = "DB_CREDENTIALS_FILE", value_name = "PATH")]
    pub db_credentials: Option<PathBuf>,
    /// Give up connecting to the database after this long.
    #[arg(long, env = "DB_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub db_connect_timeout: Duration,
    /// Give up on one database query (the read of this node's rows, one write-back) after
    /// this long: a locked table or a stalled server fails the pass instead of hanging it.
    #[arg(long, env = "DB_QUERY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub db_query_timeout: Duration,
    /// File holding only the database password (a Secret's key mounted as a file; one
    /// trailing newline is ignored). Wins over DB_PASSWORD and --db-credentials.
    #[arg(long, env = "DB_PASSWORD_FILE", value_name = "PATH")]
    pub db_password_file: Option<PathBuf>,
    /// TLS to the database (default: verify-identity with --db-ca-file, else preferred).
    #[arg(long, env = "DB_TLS", value_enum)]
    pub db_tls: Option<DbTlsArg>,
    /// PEM file of the CA that signed the database server's certificate.
    #[arg(long, env = "DB_CA_FILE", value_name = "PATH")]
    pub db_ca_file: Option<PathBuf>,
}

/// TLS to the legacy database, as MySQL's `--ssl-mode`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbTlsArg {
    /// Plain TCP.
    Disabled,
    /// TLS when the server offers it, certificate not checked.
    Preferred,
    /// TLS or no connection, certificate not checked.
    Required,
    /// TLS; the certificate chains to --db-ca-file.
    VerifyCa,
    /// TLS; the certificate chains to --db-ca-file and names the host.
    VerifyIdentity,
}

/// Runs the agent; the exit code is the report's (0 all well, 2 some NIC failed, 1 nothing
/// could be done).
pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let config = config_from(args)?;
    // A Job run is one sequence of steps (its file staging goes to the blocking pool): one
    // thread, no worker threads to start and no wake-ups across threads. The service also
    // serves health and metrics while a pass runs.
    let mut builder = match config.mode {
        RunMode::Job => tokio::runtime::Builder::new_current_thread(),
        RunMode::Service => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(2);
            builder
        }
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let code = runtime.block_on(async {
        match config.mode {
            RunMode::Job => multinic_agent::run_job(&config).await,
            RunMode::Service => {
                multinic_agent::run_service(&config, multinic_agent::shutdown_signal()).await
            }
        }
    });
    // The run is over and its report written: do not wait for idle blocking-pool threads
    // (the file thread) to be woken and joined before the process exits.
    runtime.shutdown_background();
    Ok(ExitCode::from(code))
}

fn config_from(args: AgentArgs) -> anyhow::Result<AgentConfig> {
    let given = [&args.node_name, &args.node_name_env, &args.my_node_name]
        .into_iter()
        .flatten()
        .map(|name| name.trim())
        .find(|name| !name.is_empty());
    let node_name = match given {
        Some(name) => name.to_owned(),
        None => {
            short_hostname().context("no --node-name/NODE_NAME/MY_NODE_NAME and no hostname")?
        }
    };
    let source = match args.source {
        SourceArg::Spec => SourceConfig::Spec(InlineSpec {
            json: args.node_spec.clone(),
            file: args.file.clone(),
            generation: args.generation,
        }),
        SourceArg::Kube => SourceConfig::Kube {
            namespace: args.namespace.clone(),
        },
        SourceArg::File => match &args.file {
            Some(path) => SourceConfig::File(path.clone()),
            None => bail!("--source file needs --file PATH"),
        },
        SourceArg::Db => SourceConfig::Db(db_config(&args)?),
    };
    let guard = GuardConfig {
        allow_primary: args.allow_primary,
        protect_addresses: protected_addresses(&args),
        probe: probe_target(&args),
    };
    Ok(AgentConfig {
        mode: match args.mode {
            ModeArg::Job => RunMode::Job,
            ModeArg::Service => RunMode::Service,
        },
        action: match args.action {
            ActionArg::Apply => AgentAction::Apply,
            ActionArg::Cleanup => AgentAction::Cleanup,
        },
        source,
        node_name,
        lock_wait: args.lock_timeout,
        root: args.root,
        os: args.os,
        report_path: args.report,
        dry_run: args.dry_run,
        net: args.net.net_options(),
        guard,
        handoff: match args.handoff {
            HandoffArg::None => Handoff::None,
            HandoffArg::Auto => Handoff::Auto {
                bus_address: args.system_bus,
            },
        },
        service: ServiceConfig {
            interval: args.interval,
            max_backoff: args.max_backoff.max(args.interval),
            metrics_addr: args.metrics_addr,
        },
    })
}

/// Every protected address, from the current and the earlier variable, once each.
fn protected_addresses(args: &AgentArgs) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in args
        .protected_addresses
        .iter()
        .chain(&args.protect_addresses_legacy)
    {
        if !out.contains(ip) {
            out.push(*ip);
        }
    }
    out
}

/// `--probe`, else the API server's service endpoint from the Pod's environment (the probe
/// is on by default in a Job), unless `--no-probe`.
fn probe_target(args: &AgentArgs) -> Option<String> {
    if args.no_probe {
        return None;
    }
    if let Some(target) = &args.probe {
        return Some(target.clone());
    }
    let host = args.kubernetes_service_host.as_deref()?.trim();
    let port = args.kubernetes_service_port?;
    Some(match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{host}:{port}"),
    })
}

/// Database settings: flags/environment first, then the credentials file, then defaults.
fn db_config(args: &AgentArgs) -> anyhow::Result<DbConfig> {
    let file = match &args.db_credentials {
        Some(path) => parse_credentials(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading --db-credentials {}", path.display()))?,
        ),
        None => Vec::new(),
    };
    let from_file = |key: &str| file.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let port = match (args.db_port, from_file("DB_PORT")) {
        (Some(port), _) => port,
        (None, Some(text)) => text
            .parse()
            .with_context(|| format!("DB_PORT in --db-credentials: {text:?} is not a port"))?,
        (None, None) => 3306,
    };
    let user = args.db_user.clone().or_else(|| from_file("DB_USER"));
    let database = args.db_name.clone().or_else(|| from_file("DB_NAME"));
    let (Some(user), Some(database)) = (user, database) else {
        bail!("--source db needs DB_USER and DB_NAME (environment, flags or --db-credentials)");
    };
    let password_file = match &args.db_password_file {
        Some(path) => Some(Redacted::new(password_from_file(path)?)),
        None => None,
    };
    Ok(DbConfig {
        host: args
            .db_host
            .clone()
            .or_else(|| from_file("DB_HOST"))
            .unwrap_or_else(|| "127.0.0.1".into()),
        port,
        user,
        password: password_file
            .or_else(|| args.db_password.clone())
            .or_else(|| from_file("DB_PASSWORD").map(Redacted::new))
            .unwrap_or_default(),
        database,
        connect_timeout: args.db_connect_timeout,
        query_timeout: args.db_query_timeout,
        tls: db_tls(args.db_tls, args.db_ca_file.clone())?,
    })
}

/// The password file's text without its trailing newline (`kubectl create secret
/// --from-file` keeps one).
fn password_from_file(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --db-password-file {}", path.display()))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_owned())
}

/// A CA file means verification unless asked otherwise; verifying needs a CA.
fn db_tls(mode: Option<DbTlsArg>, ca_file: Option<PathBuf>) -> anyhow::Result<DbTls> {
    let mode = match (mode, &ca_file) {
        (None, Some(_)) => DbTlsMode::VerifyIdentity,
        (None, None) => DbTlsMode::Preferred,
        (Some(DbTlsArg::Disabled), _) => DbTlsMode::Disabled,
        (Some(DbTlsArg::Preferred), _) => DbTlsMode::Preferred,
        (Some(DbTlsArg::Required), _) => DbTlsMode::Required,
        (Some(DbTlsArg::VerifyCa), _) => DbTlsMode::VerifyCa,
        (Some(DbTlsArg::VerifyIdentity), _) => DbTlsMode::VerifyIdentity,
    };
    if matches!(mode, DbTlsMode::VerifyCa | DbTlsMode::VerifyIdentity) && ca_file.is_none() {
        bail!("--db-tls verify-ca and verify-identity need --db-ca-file (DB_CA_FILE)");
    }
    Ok(DbTls { mode, ca_file })
}

/// `KEY=VALUE` lines; blank lines and `#` comments ignored, optional quotes stripped.
fn parse_credentials(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            (k.trim().to_owned(), v.to_owned())
        })
        .collect()
}

fn short_hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().split('.').next().unwrap_or_default().to_owned())
        .find(|h| !h.is_empty())
}

fn parse_secret(text: &str) -> Result<Redacted, std::convert::Infallible> {
    Ok(Redacted::new(text))
}

/// Parses `500ms`, `30s`, `2m`, `1h` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 500ms, 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m, h)")),
    }
}

#[cfg(test)]
#[path = "agent_tests.rs"]
mod tests;
