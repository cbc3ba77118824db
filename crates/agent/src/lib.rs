//! The node program behind `multinic agent`: reads the desired NICs from a source (inline
//! spec, the API server, a file, the legacy database), validates them, drives the apply
//! engine, and reports the outcome, once as a Job or continuously as a service.

pub mod config;
pub mod error;
pub mod lock;
pub mod metrics;
pub mod outcome;
pub mod source;

mod http;
mod job;
mod node;
mod runner;
mod service;

pub use error::AgentError;
pub use job::run_job;
pub use service::{run_service, shutdown_signal};
