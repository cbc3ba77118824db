//! The one place the agent talks to the apply engine (`multinic-engine`): connect with the
//! agent's configuration, read the slots NICs hold now, plan, apply, clean up; engine
//! outcomes become report entries here.

use crate::config::{AgentConfig, Handoff};
use crate::error::AgentError;
use crate::outcome::NicResult;
use multinic_api::MacAddress;
use multinic_engine::{
    ApplyOutcome, Engine, EngineConfig, EngineError, GuardConfig, HandoffSettings, Interrupt,
    NoopHandoff, Plan, ProbeConfig, handoff_for,
};
use multinic_netconf::{DesiredNode, OsFlavor};
use std::collections::HashMap;
use std::time::Duration;

/// How long the post-apply connectivity probe may take to connect.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connected engine.
pub(crate) struct Node {
    engine: Engine,
}

impl Node {
    /// Opens netlink in the current network namespace.
    pub(crate) async fn connect(
        config: &AgentConfig,
        flavor: OsFlavor,
        interrupt: &Interrupt,
    ) -> Result<Self, AgentError> {
        let mut engine_config = EngineConfig::new(config.root.clone(), flavor);
        engine_config.guard = GuardConfig {
            allow_primary: config.guard.allow_primary,
            protected_addresses: config.guard.protect_addresses.clone(),
        };
        engine_config.route_table_base = config.net.route_table_base;
        engine_config.proc_sys = proc_sys(&config.root);
        if let Some(target) = &config.guard.probe {
            engine_config.probe = Some(ProbeConfig {
                target: resolve(target).await?,
                timeout: PROBE_TIMEOUT,
            });
        }
        let handoff = match &config.handoff {
            Handoff::None => Box::new(NoopHandoff),
            Handoff::Auto { bus_address } => handoff_for(
                flavor,
                HandoffSettings::new(bus_address.clone(), config.root.clone()),
            ),
        };
        #[cfg(feature = "fault-injection")]
        test_hooks::install(&mut engine_config);
        let engine = Engine::connect(engine_config, handoff)
            .map_err(engine_error)?
            .with_interrupt(interrupt.clone());
        Ok(Self { engine })
    }

    /// MAC -> slot of the NICs already named `multinicN`.
    pub(crate) fn current_slots(&self) -> Result<HashMap<MacAddress, u8>, AgentError> {
        self.engine.current_slots().map_err(engine_error)
    }

    /// What applying `desired` would change; empty when the node matches it.
    pub(crate) fn plan(&self, desired: &DesiredNode) -> Result<Plan, AgentError> {
        self.engine.plan(desired).map_err(engine_error)
    }

    /// What cleanup would change.
    pub(crate) fn plan_cleanup(&self) -> Result<Plan, AgentError> {
        self.plan(&empty())
    }

    /// Makes the node match `desired`.
    pub(crate) async fn apply(&self, desired: &DesiredNode) -> Result<Vec<NicResult>, AgentError> {
        let outcome = self.engine.apply(desired).await.map_err(engine_error)?;
        Ok(results(&outcome))
    }

    /// Removes everything multinic owns on the node.
    pub(crate) async fn cleanup(&self) -> Result<Vec<NicResult>, AgentError> {
        let outcome = self.engine.cleanup().await.map_err(engine_error)?;
        Ok(results(&outcome))
    }
}

fn empty() -> DesiredNode {
    DesiredNode {
        nics: Vec::new(),
        sysctls: None,
        noprefixroute: false,
        held: Vec::new(),
    }
}

fn results(outcome: &ApplyOutcome) -> Vec<NicResult> {
    if let Some(failure) = &outcome.failure {
        tracing::warn!(
            rolled_back = outcome.rolled_back,
            failure,
            "engine run failed"
        );
    }
    outcome
        .nics
        .iter()
        .map(|nic| NicResult {
            source_index: nic.source_index,
            entry: nic.to_report(),
        })
        .collect()
}

fn engine_error(e: EngineError) -> AgentError {
    AgentError::Engine(e.to_string())
}

/// Resolves `host:port` (an address or a name) to the first address, within the probe's
/// timeout (a name lookup can hang as long as the resolver does).
async fn resolve(target: &str) -> Result<std::net::SocketAddr, AgentError> {
    let bad = |detail: String| AgentError::Usage(format!("--probe {target:?}: {detail}"));
    tokio::time::timeout(PROBE_TIMEOUT, tokio::net::lookup_host(target))
        .await
        .map_err(|_| {
            bad(format!(
                "no answer from the resolver within {PROBE_TIMEOUT:?}"
            ))
        })?
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("resolves to no address".into()))
}

/// Where the IPv6 sysctls of managed NICs are written. A container's own `/proc/sys` is
/// read-only, so the Job mounts the host's `/proc/sys/net/ipv6/conf` under the root (writable:
/// CAP_NET_ADMIN is enough for network sysctls); without that mount, the agent's own
/// `/proc/sys`.
fn proc_sys(root: &std::path::Path) -> std::path::PathBuf {
    let under_root = root.join("proc/sys");
    // `conf/default` tells the mounted procfs from an empty directory standing in for it
    // (the simulator's kubelet makes one for every hostPath).
    if root != std::path::Path::new("/") && under_root.join("net/ipv6/conf/default").is_dir() {
        under_root
    } else {
        std::path::PathBuf::from("/proc/sys")
    }
}

/// Test-only hooks, compiled only with the `fault-injection` feature (the agent's end-to-end
/// tests): pause a run after N writes so a test can signal or kill the agent right there.
#[cfg(feature = "fault-injection")]
mod test_hooks {
    use multinic_engine::EngineConfig;

    /// `N:/path/of/marker`: stop before write N+1, after creating the marker file.
    const PAUSE_ENV: &str = "MULTINIC_TEST_PAUSE_AFTER_WRITES";

    pub(super) fn install(config: &mut EngineConfig) {
        let Ok(value) = std::env::var(PAUSE_ENV) else {
            return;
        };
        let (n, marker) = value
            .split_once(':')
            .unwrap_or_else(|| panic!("{PAUSE_ENV}={value:?}: expected N:/path"));
        let n = n
            .parse()
            .unwrap_or_else(|e| panic!("{PAUSE_ENV}={value:?}: {e}"));
        config.fault.pause_after_writes = Some((n, marker.into()));
    }
}
