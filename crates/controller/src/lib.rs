//! Reconciles MultiNicNodeConfig resources into agent Jobs and truthful status.
//!
//! The state transition is the pure [`decide::decide`]; status is computed apart from sending
//! it ([`status`]); [`reconcile`] and [`cleanup`] only perform the step they are handed;
//! [`run`] wires kube-runtime's `Controller`, the trimmed caches, leader election and the
//! metrics/health endpoints.

pub mod cleanup;
pub mod config;
pub mod decide;
pub mod error;
pub mod expect;
pub mod fleet;
pub mod job;
pub mod launch;
pub mod leader;
pub mod metrics;
pub mod nodes;
pub mod poll;
pub mod rbac;
pub mod reconcile;
pub mod report;
pub mod run;
pub mod slots;
pub mod status;
pub mod trim;

pub use config::{ControllerConfig, JobConfig, LeaderConfig, RetryPolicy, WatchMode};
pub use error::Error;
pub use run::run;
