//! Node apply engine: read kernel network state over netlink, plan, apply, persist files, verify, revert.
//!
//! ```text
//! desired (DesiredNode) + kernel state (netlink dumps) + multinic's files
//!     -> Plan (explicit changes; Display for dry-run/logs)
//!     -> apply (netlink writes, counted) -> verify (re-read, brief retries)
//!     -> files (atomic) -> host hand-off -> optional TCP probe
//!     -> on any failure: revert runtime state and files to the snapshot taken before
//! ```
//!
//! [`Engine::apply`] is idempotent: applying the same model twice makes zero netlink and zero
//! file writes the second time ([`ApplyOutcome::writes`]).
//!
//! ```no_run
//! # async fn demo(desired: multinic_netconf::DesiredNode) -> Result<(), multinic_engine::EngineError> {
//! use multinic_engine::{Engine, EngineConfig, HandoffSettings, SYSTEM_BUS_ADDRESS, handoff_for};
//! use multinic_netconf::OsFlavor;
//!
//! let config = EngineConfig::new("/host", OsFlavor::Rhel9);
//! let handoff = handoff_for(OsFlavor::Rhel9, HandoffSettings::new(SYSTEM_BUS_ADDRESS, "/host"));
//! let engine = Engine::connect(config, handoff)?;
//! print!("{}", engine.plan(&desired)?); // dry run
//! let outcome = engine.apply(&desired).await?;
//! for nic in &outcome.nics {
//!     println!("{} {} {}", nic.name, nic.reason, nic.message);
//! }
//! # Ok(())
//! # }
//! ```

mod apply;
mod claim;
pub mod config;
mod diff;
mod engine;
pub mod error;
mod file_batch;
mod files;
mod guard;
pub mod handoff;
mod interrupt;
mod netlink;
pub mod outcome;
pub mod plan;
mod probe;
mod recover;
mod revert;
pub mod state;
mod sysctl;
mod verify;

#[cfg(feature = "fault-injection")]
pub use config::FaultInjection;
pub use config::{EngineConfig, GuardConfig, ProbeConfig, VerifyConfig};
pub use engine::Engine;
pub use error::EngineError;
pub use handoff::{
    HandoffError, HandoffNic, HandoffSettings, HostHandoff, NoopHandoff, RecordingHandoff,
    SYSTEM_BUS_ADDRESS, handoff_for,
};
pub use interrupt::Interrupt;
pub use outcome::{ApplyOutcome, NicOutcome, WriteCounts};
pub use plan::{Change, FileChange, NicAction, NicPlan, Plan};
pub use state::{AddressState, Ipv6Conf, KernelState, LinkState, RouteEntry, RuleEntry};
