//! The agent's typed configuration: everything the command line and environment decide,
//! parsed once by the binary and handed to [`crate::run_job`] / [`crate::run_service`].

use multinic_api::report::AgentAction;
use multinic_netconf::NetOptions;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// How long the agent lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// Apply once, write the report, exit.
    Job,
    /// Keep the node converged until told to stop.
    Service,
}

/// Where the desired NICs come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceConfig {
    /// The spec as JSON, inline (from the controller) or in a mounted file.
    Spec(InlineSpec),
    /// This node's MultiNicNodeConfig read from the API server.
    Kube {
        /// Namespace holding the resource.
        namespace: String,
    },
    /// A MultiNicNodeConfig YAML file.
    File(PathBuf),
    /// The legacy MySQL/MariaDB tables.
    Db(DbConfig),
}

impl SourceConfig {
    /// Short name used in logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Spec(_) => "spec",
            Self::Kube { .. } => "kube",
            Self::File(_) => "file",
            Self::Db(_) => "db",
        }
    }
}

/// The inline spec handed over by the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InlineSpec {
    /// The spec JSON itself (env `MULTINIC_NODE_SPEC`), if given.
    pub json: Option<String>,
    /// A file holding the spec JSON, used when `json` is absent.
    pub file: Option<PathBuf>,
    /// The generation the spec belongs to.
    pub generation: Option<i64>,
}

/// A secret string that never shows itself in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Redacted(String);

impl Redacted {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself; call only where it is handed to the database driver.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How to reach the legacy database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbConfig {
    /// Server host name or address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password (redacted in every log line and error).
    pub password: Redacted,
    /// Database name.
    pub database: String,
    /// Give up connecting after this long.
    pub connect_timeout: Duration,
    /// Give up on one query after this long.
    pub query_timeout: Duration,
    /// TLS to the server.
    pub tls: DbTls,
}

/// TLS to the legacy database (rustls).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbTls {
    /// How much TLS is required and checked.
    pub mode: DbTlsMode,
    /// PEM file of the CA(s) the server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
}

/// TLS modes, named as MySQL's `--ssl-mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DbTlsMode {
    /// Plain TCP.
    Disabled,
    /// TLS when the server offers it, without checking its certificate.
    #[default]
    Preferred,
    /// TLS or no connection; the certificate is not checked.
    Required,
    /// TLS with a certificate that chains to the CA.
    VerifyCa,
    /// As `VerifyCa`, and the certificate names the host connected to.
    VerifyIdentity,
}

/// What protects the node from the agent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuardConfig {
    /// Allow touching the NIC with the default route / node address.
    pub allow_primary: bool,
    /// Addresses whose NICs are never touched (the Node's InternalIP/ExternalIP).
    pub protect_addresses: Vec<IpAddr>,
    /// TCP endpoint that must stay reachable after applying (`host:port`); reverted if not.
    /// The API server's service address from the Pod's environment unless set otherwise.
    pub probe: Option<String>,
}

/// The standard system bus address, the default of [`Handoff::Auto`].
pub use multinic_engine::SYSTEM_BUS_ADDRESS;

/// How the host's network manager is told about changed files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handoff {
    /// Over the system D-Bus to the flavor's daemon (systemd-networkd for Ubuntu,
    /// NetworkManager for RHEL) when it is on the bus; netlink and files only otherwise.
    Auto {
        /// D-Bus address of the host's system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else
        /// `unix:path=/run/dbus/system_bus_socket`).
        bus_address: String,
    },
    /// Nothing: no network manager runs, or the files are not the host's (tests, `--root`
    /// pointing at a scratch directory).
    None,
}

/// Service-mode timing and endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Time between two passes when all is well.
    pub interval: Duration,
    /// Longest wait between passes after repeated errors.
    pub max_backoff: Duration,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub metrics_addr: SocketAddr,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            max_backoff: Duration::from_secs(300),
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 9090)),
        }
    }
}

/// Everything one agent process needs to know.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Job or service.
    pub mode: RunMode,
    /// Apply or cleanup.
    pub action: AgentAction,
    /// Where the desired NICs come from.
    pub source: SourceConfig,
    /// Node this agent runs on (from the downward API in a Job), compared with the spec's
    /// `nodeName`.
    pub node_name: String,
    /// How long to wait for another agent on this node to finish before giving up.
    pub lock_wait: Duration,
    /// Prefix of every host file path (`/` on a real node).
    pub root: PathBuf,
    /// OS flavor override (`ubuntu`, `rhel9`, ...); detected from `<root>/etc/os-release` if unset.
    pub os: Option<String>,
    /// Where the report is written.
    pub report_path: PathBuf,
    /// Print the plan, change nothing.
    pub dry_run: bool,
    /// Shape of the desired configuration.
    pub net: NetOptions,
    /// What must never be touched.
    pub guard: GuardConfig,
    /// How the host's network manager learns about changed files.
    pub handoff: Handoff,
    /// Service-mode settings.
    pub service: ServiceConfig,
}
