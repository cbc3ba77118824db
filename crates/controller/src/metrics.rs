//! Prometheus metrics (reconciles by result, their durations, Jobs in flight, resources by
//! state, failures by reason) and the `/metrics`, `/healthz`, `/readyz` endpoints (axum).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use kube::runtime::reflector::Store;
use multinic_api::{MultiNicNodeConfig, NodeConfigState};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

type Labels = Vec<(&'static str, String)>;

/// The controller's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<Labels, Counter>,
    durations: Histogram,
    jobs_in_flight: Gauge,
    rollout_paused: Gauge,
    resources: Family<Labels, Gauge>,
    failures: Family<Labels, Counter>,
    /// Set once this replica leads and its caches are filled.
    pub ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("multinic_controller");
        let reconciles = Family::<Labels, Counter>::default();
        let durations = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let jobs_in_flight = Gauge::default();
        let rollout_paused = Gauge::default();
        let resources = Family::<Labels, Gauge>::default();
        let failures = Family::<Labels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by result (ok, waiting or an error kind)",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            durations.clone(),
        );
        registry.register(
            "jobs_in_flight",
            "Agent Jobs created and not yet deleted",
            jobs_in_flight.clone(),
        );
        registry.register(
            "rollout_paused",
            "Changed resources held back because too many failed (--max-failures)",
            rollout_paused.clone(),
        );
        registry.register(
            "resources",
            "MultiNicNodeConfig resources by status.state",
            resources.clone(),
        );
        registry.register(
            "failures",
            "Failures recorded in status or Events, by reason",
            failures.clone(),
        );
        Self {
            registry,
            reconciles,
            durations,
            jobs_in_flight,
            rollout_paused,
            resources,
            failures,
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// Counts one reconcile with its `result` and duration.
    pub fn reconciled(&self, result: &str, took: Duration) {
        self.reconciles
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
        self.durations.observe(took.as_secs_f64());
    }

    /// Counts one failure by its reason.
    pub fn failure(&self, reason: &str) {
        self.failures
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    /// Sets the Jobs-in-flight gauge.
    pub fn set_jobs_in_flight(&self, n: usize) {
        self.jobs_in_flight
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets the gauge of resources held back by the rollout budget.
    pub fn set_rollout_paused(&self, n: usize) {
        self.rollout_paused
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The text exposition, with resources by state counted from `store` now.
    pub fn render(&self, store: &Store<MultiNicNodeConfig>) -> String {
        let mut counts = [0i64; 5];
        for obj in store.state() {
            let slot = match obj.status.as_ref().and_then(|s| s.state) {
                Some(NodeConfigState::Pending) => 0,
                Some(NodeConfigState::InProgress) => 1,
                Some(NodeConfigState::Configured) => 2,
                Some(NodeConfigState::Failed) => 3,
                None => 4,
            };
            counts[slot] += 1;
        }
        for (state, n) in ["Pending", "InProgress", "Configured", "Failed", "None"]
            .iter()
            .zip(counts)
        {
            self.resources
                .get_or_create(&vec![("state", (*state).to_string())])
                .set(n);
        }
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[derive(Clone)]
struct HttpState {
    metrics: Arc<Metrics>,
    store: Store<MultiNicNodeConfig>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    store: Store<MultiNicNodeConfig>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(HttpState { metrics, store });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    Ok(tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(%err, "metrics server stopped");
        }
    }))
}

async fn metrics_handler(
    State(state): State<HttpState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(&state.store),
    )
}

async fn ready_handler(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if state.metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not leading or caches not synced",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_lists_every_family() {
        let m = Metrics::default();
        m.reconciled("ok", Duration::from_millis(3));
        m.failure("JobFailed");
        m.set_jobs_in_flight(4);
        m.set_rollout_paused(2);
        let (_, writer) = kube::runtime::reflector::store::<MultiNicNodeConfig>();
        let text = m.render(&writer.as_reader());
        for needle in [
            "multinic_controller_reconciles_total{result=\"ok\"} 1",
            "multinic_controller_failures_total{reason=\"JobFailed\"} 1",
            "multinic_controller_jobs_in_flight 4",
            "multinic_controller_rollout_paused 2",
            "multinic_controller_resources{state=\"Configured\"} 0",
            "multinic_controller_reconcile_duration_seconds_count 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
