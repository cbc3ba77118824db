//! The agent library's error type: everything that stops a run as a whole.

use crate::source::SourceError;

/// Why a run (or a service pass) could not be done at all.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The desired NICs could not be read or are unusable as a whole.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The OS flavor is unknown or could not be detected.
    #[error("OS flavor: {0}")]
    Os(String),
    /// No Kubernetes client could be built (no in-cluster config, no kubeconfig).
    #[error("Kubernetes client: {0}")]
    KubeClient(#[source] kube::Error),
    /// The apply engine failed as a whole (no netlink access, a failed revert ...).
    #[error("engine: {0}")]
    Engine(String),
    /// The host lock could not be taken: another agent is changing this node, or the lock
    /// file under the root is unusable.
    #[error("host lock {}: {detail}", path.display())]
    Lock {
        /// The lock file.
        path: std::path::PathBuf,
        /// Why it could not be taken.
        detail: String,
    },
    /// The health/metrics endpoint could not be served.
    #[error("serving {addr}: {source}")]
    Serve {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The requested combination makes no sense (service mode with cleanup ...).
    #[error("{0}")]
    Usage(String),
}
