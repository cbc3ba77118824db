//! Service-mode HTTP endpoints: `/healthz` (the loop is alive), `/readyz` (a pass has
//! succeeded) and `/metrics` (Prometheus text).

use crate::metrics::AgentMetrics;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// State the loop updates and the endpoints read.
pub(crate) struct Health {
    pub(crate) metrics: AgentMetrics,
    ready: AtomicBool,
    last_tick_unix: AtomicU64,
    /// A loop silent for longer than this is reported unhealthy.
    stall_after: Duration,
}

impl Health {
    pub(crate) fn new(stall_after: Duration) -> Self {
        Self {
            metrics: AgentMetrics::new(),
            ready: AtomicBool::new(false),
            last_tick_unix: AtomicU64::new(unix_now()),
            stall_after,
        }
    }

    /// The loop finished a pass (of any result).
    pub(crate) fn tick(&self) {
        self.last_tick_unix.store(unix_now(), Ordering::Relaxed);
    }

    /// A pass succeeded: the node is converged.
    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn healthz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    let silent = unix_now().saturating_sub(health.last_tick_unix.load(Ordering::Relaxed));
    if silent <= health.stall_after.as_secs() {
        (StatusCode::OK, "ok\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no pass finished for {silent}s\n"),
        )
    }
}

async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    if health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no successful pass yet\n")
    }
}

async fn metrics(State(health): State<Arc<Health>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        health.metrics.encode(),
    )
}
