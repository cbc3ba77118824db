//! The engine's error type: what can stop a whole run (as opposed to one NIC's outcome).

use std::path::PathBuf;

/// An error that stops a plan, apply or cleanup as a whole. Per-NIC problems (missing MAC,
/// protected NIC, a failed write that was rolled back) are not errors: they are outcomes.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    /// A netlink request failed.
    #[error("netlink {op}: {source}")]
    Netlink {
        /// What was being done, e.g. `dump links`.
        op: String,
        /// The error rtnetlink returned.
        #[source]
        source: rtnetlink::Error,
    },
    /// A request on the engine's own netlink socket (the link dump) failed.
    #[error("netlink {op}: {source}")]
    NetlinkSocket {
        /// What was being done, e.g. `dump links`.
        op: &'static str,
        /// The socket's error.
        #[source]
        source: std::io::Error,
    },
    /// A file under the root could not be read, written or removed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration or the model asks for something the engine refuses to do.
    #[error("configuration: {0}")]
    Config(String),
    /// A test-only fault injected through [`crate::FaultInjection`].
    #[cfg(feature = "fault-injection")]
    #[error("injected fault after {0} writes")]
    InjectedFault(u64),
    /// The run was interrupted (SIGTERM) and stopped writing.
    #[error("interrupted after {writes} writes")]
    Interrupted {
        /// Writes made before the interruption.
        writes: u64,
    },
    /// The host's network manager refused the hand-off.
    #[error("host hand-off: {0}")]
    Handoff(#[from] crate::handoff::HandoffError),
}

impl EngineError {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Netlink { .. } | Self::NetlinkSocket { .. } => "netlink",
            Self::Io { .. } => "io",
            Self::Config(_) => "config",
            Self::Interrupted { .. } => "interrupted",
            #[cfg(feature = "fault-injection")]
            Self::InjectedFault(_) => "injected",
            Self::Handoff(_) => "handoff",
        }
    }

    pub(crate) fn netlink(op: impl Into<String>, source: rtnetlink::Error) -> Self {
        Self::Netlink {
            op: op.into(),
            source,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
