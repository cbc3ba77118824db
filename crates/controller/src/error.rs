//! The controller's error type, with a short label per kind for metrics.

use kube::runtime::finalizer;

/// Everything a reconcile (or the controller's setup) can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("{action}: {source}")]
    Kube {
        /// What the controller was doing.
        action: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A Job could not be built.
    #[error("building the agent Job: {0}")]
    Job(#[from] crate::job::JobError),
    /// The finalizer machinery failed, or the apply/cleanup inside it did.
    #[error(transparent)]
    Finalizer(Box<finalizer::Error<Error>>),
    /// Cleanup is under way (a Job runs or waits for a slot): the finalizer must stay.
    #[error("cleanup in progress: {0}")]
    CleanupPending(String),
    /// The cleanup Job failed; it is retried with backoff.
    #[error("cleanup failed: {0}")]
    CleanupFailed(String),
    /// Leader election failed or leadership was lost.
    #[error("leader election: {0}")]
    Leader(String),
    /// The metrics/health server could not start.
    #[error("http server: {0}")]
    Http(#[from] std::io::Error),
    /// A cache never became ready.
    #[error("cache of {0} never became ready")]
    CacheNotReady(&'static str),
}

impl Error {
    /// Wraps an API error with what was being done.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            action: action.into(),
            source,
        }
    }

    /// The innermost error of the controller's own (through the finalizer wrapper).
    pub fn inner(&self) -> &Error {
        match self {
            Self::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => {
                    inner.inner()
                }
                _ => self,
            },
            other => other,
        }
    }

    /// Whether this is a wait rather than a failure (cleanup still running).
    pub fn is_waiting(&self) -> bool {
        matches!(self.inner(), Self::CleanupPending(_))
    }

    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self.inner() {
            Self::Kube { source, .. } => match source {
                kube::Error::Api(status) if status.code == 409 => "conflict",
                kube::Error::Api(status) if status.code == 404 => "not_found",
                kube::Error::Api(_) => "api",
                _ => "transport",
            },
            Self::Job(_) => "job_build",
            Self::Finalizer(e) => match e.as_ref() {
                finalizer::Error::AddFinalizer(_) => "add_finalizer",
                finalizer::Error::RemoveFinalizer(_) => "remove_finalizer",
                _ => "finalizer",
            },
            Self::CleanupPending(_) => "cleanup_pending",
            Self::CleanupFailed(_) => "cleanup_failed",
            Self::Leader(_) => "leader",
            Self::Http(_) => "http",
            Self::CacheNotReady(_) => "cache",
        }
    }
}

/// Whether an API error is the given HTTP status.
pub fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == code)
}
