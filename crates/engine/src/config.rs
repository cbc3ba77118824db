//! Everything that shapes one engine: where files go, which OS flavor they are rendered for,
//! what the guard protects, the optional connectivity probe, verify retries and the test-only
//! fault hook. Parsed by the caller once and handed in.

use crate::error::EngineError;
use multinic_api::MAX_SLOT;
use multinic_netconf::{NetOptions, OsFlavor};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

/// Configuration of an [`crate::Engine`].
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Every host path the renderers produce (e.g. `/etc/netplan/...`) is written under this
    /// directory; `/` on a node, a host mount such as `/host` in a container, a temp dir in tests.
    pub root: PathBuf,
    /// Which persistent files to render and which directories hold multinic's own files.
    pub flavor: OsFlavor,
    /// What the engine must never touch.
    pub guard: GuardConfig,
    /// Connectivity check after applying; a failure reverts the run.
    pub probe: Option<ProbeConfig>,
    /// How hard to look before declaring the kernel state wrong.
    pub verify: VerifyConfig,
    /// First route table multinic owns; it owns `route_table_base ..= route_table_base + 9`
    /// (slot N uses `route_table_base + N`). Must equal `NetOptions::route_table_base` of the
    /// model, so cleanup without a model finds the same tables.
    pub route_table_base: u32,
    /// Where the kernel's sysctls are (`/proc/sys`): IPv6 `accept_ra`/`autoconf` of managed
    /// NICs are written there.
    pub proc_sys: PathBuf,
    /// Pin `accept_ra=0`/`autoconf=0` on managed NICs at runtime. [`crate::Engine::connect`]
    /// turns it off (with a warning) where `/proc/sys` is read-only, as in an unprivileged
    /// container; the persistent files still say so and the host's manager applies them.
    pub ipv6_runtime: bool,
    /// Test-only fault injection.
    #[cfg(feature = "fault-injection")]
    pub fault: FaultInjection,
}

impl EngineConfig {
    /// Defaults: guard on, no probe, 5 verify retries 20 ms apart, the default route tables.
    pub fn new(root: impl Into<PathBuf>, flavor: OsFlavor) -> Self {
        Self {
            root: root.into(),
            flavor,
            guard: GuardConfig::default(),
            probe: None,
            verify: VerifyConfig::default(),
            route_table_base: NetOptions::default().route_table_base,
            proc_sys: PathBuf::from("/proc/sys"),
            ipv6_runtime: true,
            #[cfg(feature = "fault-injection")]
            fault: FaultInjection::default(),
        }
    }

    /// The route tables multinic owns.
    pub fn owned_tables(&self) -> RangeInclusive<u32> {
        self.route_table_base..=self.route_table_base.saturating_add(u32::from(MAX_SLOT))
    }

    /// Refuses configurations that would make multinic own a table the kernel or the host
    /// uses (unspec 0, default 253, main 254, local 255): cleanup empties owned tables.
    pub(crate) fn check(&self) -> Result<(), EngineError> {
        let tables = self.owned_tables();
        if let Some(t) = RESERVED_TABLES.iter().find(|t| tables.contains(t)) {
            return Err(EngineError::Config(format!(
                "route_table_base {}: owned tables {}..={} include reserved table {t}",
                self.route_table_base,
                tables.start(),
                tables.end()
            )));
        }
        Ok(())
    }
}

/// Route tables multinic must never own.
pub(crate) const RESERVED_TABLES: [u32; 4] = [0, 253, 254, 255];

/// The primary-NIC guard. A NIC that carries the default route (main table), holds one of
/// `protected_addresses` or is enslaved to a bond/bridge is refused with
/// `PrimaryInterfaceProtected` unless `allow_primary` is set.
#[derive(Clone, Debug, Default)]
pub struct GuardConfig {
    /// Touch such NICs anyway.
    pub allow_primary: bool,
    /// Addresses that mark a NIC as the node's own, e.g. the Node's InternalIP.
    pub protected_addresses: Vec<IpAddr>,
}

/// A TCP connect after applying, e.g. to the API server.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// Where to connect.
    pub target: SocketAddr,
    /// How long one connect may take.
    pub timeout: Duration,
}

/// Verification by re-reading the kernel state.
#[derive(Clone, Copy, Debug)]
pub struct VerifyConfig {
    /// Re-reads after the first one before giving up.
    pub retries: u32,
    /// Pause between re-reads.
    pub interval: Duration,
    /// How long to wait for duplicate address detection of the IPv6 addresses a run added
    /// (the kernel needs one to two seconds); one still tentative after that (a NIC without
    /// carrier cannot run DAD) is accepted.
    pub dad_timeout: Duration,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            retries: 5,
            interval: Duration::from_millis(20),
            dad_timeout: Duration::from_secs(5),
        }
    }
}

/// Test-only fault hook: make the engine fail on purpose to exercise the revert path.
#[cfg(feature = "fault-injection")]
#[derive(Clone, Debug, Default)]
pub struct FaultInjection {
    /// Fail the write that would come after this many successful writes (netlink + file)
    /// of the apply phase. Revert writes are never failed.
    pub fail_after_writes: Option<u64>,
    /// Fail every kernel read while verifying, as a netlink error would.
    pub fail_verify_reads: bool,
    /// Before the write that would come after this many, create this file and stop there
    /// until the run is interrupted (or the process killed): lets a test kill the agent at
    /// an exact point of a run.
    pub pause_after_writes: Option<(u64, PathBuf)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_tables_never_include_the_kernel_tables() {
        let mut config = EngineConfig::new("/", OsFlavor::Ubuntu);
        assert!(config.check().is_ok());
        assert_eq!(config.owned_tables(), 1000..=1009);
        for base in [0, 245, 250, 254, 255] {
            config.route_table_base = base;
            let err = config.check().unwrap_err().to_string();
            assert!(err.contains("reserved table"), "{base}: {err}");
        }
        config.route_table_base = 100;
        assert!(config.check().is_ok());
    }
}
