//! Service-mode metrics (prometheus-client): passes by result, drift repairs, the time of the
//! last success and the state of every NIC.

use multinic_api::report::AgentReport;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// How one service pass ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassResult {
    /// Changes were applied and every NIC ended well.
    Applied,
    /// Nothing needed changing.
    Unchanged,
    /// Some NICs failed.
    Partial,
    /// The pass could not run (source, netlink, database).
    Error,
}

impl PassResult {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Unchanged => "unchanged",
            Self::Partial => "partial",
            Self::Error => "error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NicLabels {
    name: String,
    mac: String,
    reason: String,
}

/// The agent's metrics and the registry that encodes them.
pub struct AgentMetrics {
    registry: Registry,
    passes: Family<ResultLabels, Counter>,
    drift_repairs: Counter,
    last_success: Gauge,
    nic_state: Family<NicLabels, Gauge>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    /// Registers every metric under the `multinic_agent` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("multinic_agent");
        let passes = Family::<ResultLabels, Counter>::default();
        let drift_repairs = Counter::default();
        let last_success = Gauge::default();
        let nic_state = Family::<NicLabels, Gauge>::default();
        registry.register(
            "applies",
            "Service passes by result (applied, unchanged, partial, error)",
            passes.clone(),
        );
        registry.register(
            "drift_repairs",
            "Passes that re-applied because the host drifted from an unchanged spec",
            drift_repairs.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time of the last pass that ended with every NIC as desired",
            last_success.clone(),
        );
        registry.register(
            "nic_state",
            "1 for each NIC with the reason of its last outcome",
            nic_state.clone(),
        );
        Self {
            registry,
            passes,
            drift_repairs,
            last_success,
            nic_state,
        }
    }

    /// Counts a finished pass; a successful one also sets the last-success time.
    pub fn record_pass(&self, result: PassResult, now_unix: i64) {
        self.passes
            .get_or_create(&ResultLabels {
                result: result.as_str().into(),
            })
            .inc();
        if matches!(result, PassResult::Applied | PassResult::Unchanged) {
            self.last_success.set(now_unix);
        }
    }

    /// Counts a drift repair.
    pub fn record_drift_repair(&self) {
        self.drift_repairs.inc();
    }

    /// Replaces the per-NIC state with the NICs of `report`.
    pub fn record_nics(&self, report: &AgentReport) {
        self.nic_state.clear();
        for nic in &report.interfaces {
            self.nic_state
                .get_or_create(&NicLabels {
                    name: nic.name.clone().unwrap_or_default(),
                    mac: nic.mac_address.clone(),
                    reason: nic.reason.as_str().into(),
                })
                .set(1);
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use multinic_api::InterfaceReason;
    use multinic_api::report::{AgentAction, ReportInterface};

    #[test]
    fn encodes_passes_repairs_and_nics() {
        let metrics = AgentMetrics::new();
        metrics.record_pass(PassResult::Applied, 1_700_000_000);
        metrics.record_pass(PassResult::Error, 1_700_000_100);
        metrics.record_drift_repair();
        metrics.record_nics(&AgentReport {
            v: 1,
            node: "n".into(),
            generation: None,
            action: AgentAction::Apply,
            error: None,
            interfaces: vec![ReportInterface {
                id: Some(0),
                name: Some("multinic0".into()),
                mac_address: "fa:16:3e:00:00:01".into(),
                reason: InterfaceReason::Configured,
                message: String::new(),
            }],
            duration_ms: 1,
        });
        let text = metrics.encode();
        for line in [
            "multinic_agent_applies_total{result=\"applied\"} 1",
            "multinic_agent_applies_total{result=\"error\"} 1",
            "multinic_agent_drift_repairs_total 1",
            "multinic_agent_last_success_timestamp_seconds 1700000000",
            "multinic_agent_nic_state{name=\"multinic0\",mac=\"fa:16:3e:00:00:01\",reason=\"Configured\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
