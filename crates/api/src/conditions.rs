//! Names shared by everyone who reads or writes status: condition types, the reasons a
//! resource is in its state, and the reason codes an agent reports per interface.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Generates a string-valued enum with `as_str`, `Display`, `FromStr` and a list of all values.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The CamelCase name written to status and reports.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| format!("unknown {}: {s}", stringify!($name)))
            }
        }
    };
}

string_enum! {
    /// Condition types on a MultiNicNodeConfig.
    ConditionType {
        /// Every interface of the observed generation is configured.
        Ready,
        /// The controller is working on the observed generation.
        Progressing,
        /// The observed generation failed, fully or in part.
        Degraded,
    }
}

string_enum! {
    /// Why a resource is in its state; used as the Ready/Progressing/Degraded condition reason
    /// and as the reason of Events.
    StateReason {
        /// The spec failed validation; the message names the field.
        InvalidSpec,
        /// No Node with `spec.nodeName` exists (yet).
        NodeNotFound,
        /// `spec.instanceId` differs from the Node's systemUUID.
        InstanceIdMismatch,
        /// The Node's osImage is not one multinic knows how to configure.
        UnsupportedOS,
        /// Another, older resource names the same node and keeps it; this one gets no Job.
        NodeConflict,
        /// The Node is NotReady or unschedulable: no Job is started there until it recovers.
        NodeNotReady,
        /// Waiting for a free slot under the cluster-wide cap on running Jobs.
        WaitingForJobSlot,
        /// The rollout budget (`--max-failures`) is spent by resources failed since their
        /// last change and changes being applied: no Job starts for this resource until runs
        /// finish or failures clear, or `multinic.io/resume-rollout` is set on it.
        RolloutPaused,
        /// The API server refused the agent Job (validation, RBAC, quota or admission) or its
        /// Pod (PodSecurity, a Pod quota: found in the Job controller's `FailedCreate` Events);
        /// the message is the API's.
        JobRejected,
        /// An agent Job is applying this generation.
        Applying,
        /// The agent configured every interface.
        Configured,
        /// The agent finished but some interfaces failed.
        InterfacesFailed,
        /// The agent Job failed without a usable report.
        JobFailed,
        /// The generation failed as often as allowed; set `multinic.io/retry` to try again.
        RetriesExhausted,
        /// The resource is being deleted and its node cleaned up.
        CleaningUp,
        /// Cleanup on the node failed; the finalizer stays until it succeeds.
        CleanupFailed,
    }
}

string_enum! {
    /// Per-interface reason codes reported by the agent.
    InterfaceReason {
        /// Changed and verified.
        Configured,
        /// Already as specified; nothing written.
        Unchanged,
        /// Removed because it left the spec, or by cleanup.
        Removed,
        /// Not applied yet.
        Pending,
        /// The spec entry is invalid; the message names the field.
        InvalidSpec,
        /// No NIC with this MAC exists on the node.
        MacNotFound,
        /// The NIC carries the default route, a protected address or is enslaved.
        PrimaryInterfaceProtected,
        /// The target name is held by another NIC multinic cannot take it from.
        NameConflict,
        /// A kernel or file operation failed.
        ApplyFailed,
        /// The kernel state did not match the plan after applying.
        VerifyFailed,
        /// Applied, then reverted because something else in the run failed.
        RolledBack,
        /// The connectivity probe failed after applying; everything was reverted.
        ProbeFailed,
        /// The NIC's network overlaps a network of a protected NIC (the node's own); taking
        /// it would hijack the node's traffic, so the NIC is left alone.
        NetworkOverlap,
        /// Another host already holds the NIC's IPv6 address (duplicate address detection
        /// failed); the run was reverted.
        DuplicateAddress,
    }
}

impl StateReason {
    /// Whether the reason is a failure of an agent Job's run (what the rollout budget and
    /// the retry limit count).
    pub fn is_job_failure(self) -> bool {
        matches!(
            self,
            Self::JobFailed | Self::InterfacesFailed | Self::RetriesExhausted
        )
    }
}

impl InterfaceReason {
    /// Whether an interface with this reason counts as successfully handled.
    pub fn is_success(self) -> bool {
        matches!(self, Self::Configured | Self::Unchanged | Self::Removed)
    }
}

/// Condition status value `True`.
pub const STATUS_TRUE: &str = "True";
/// Condition status value `False`.
pub const STATUS_FALSE: &str = "False";
/// Condition status value `Unknown`.
pub const STATUS_UNKNOWN: &str = "Unknown";
