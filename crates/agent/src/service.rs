//! Service mode: keep the node converged. Every interval the source is re-read and the
//! engine asked for a plan; a non-empty plan is applied (counted as a drift repair when the
//! spec itself did not change). Errors back off exponentially. Health and metrics are served
//! until SIGTERM/SIGINT, then the loop and the server stop gracefully.

use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::http::{Health, router, unix_now};
use crate::job::publish;
use crate::lock;
use crate::metrics::PassResult;
use crate::outcome::{self, Desired, NicResult};
use crate::runner::Runner;
use multinic_api::InterfaceReason;
use multinic_api::report::{AgentAction, ReportInterface};
use multinic_engine::{NicAction, Plan};
use multinic_netconf::DesiredNode;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs until `shutdown` completes; returns the process exit code (0 after a clean stop, 1
/// when the service could not start).
pub async fn run_service(config: &AgentConfig, shutdown: impl Future<Output = ()>) -> u8 {
    match serve(config, shutdown).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "agent service stopped");
            1
        }
    }
}

/// A future that completes on SIGTERM or SIGINT. The handlers are installed at once (call it
/// inside the runtime, before the first pass), so a signal that arrives while a pass runs is
/// not lost: the pass finishes, then the service stops.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received, stopping"),
            _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
        }
    }
}

async fn serve(config: &AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    if config.action == AgentAction::Cleanup {
        return Err(AgentError::Usage(
            "cleanup runs once: use --mode job with --action cleanup".into(),
        ));
    }
    let mut runner = Runner::new(config)?;
    let addr = config.service.metrics_addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AgentError::Serve { addr, source })?;
    let stall_after =
        config.service.max_backoff + config.service.interval * 3 + Duration::from_secs(60);
    let health = Arc::new(Health::new(stall_after));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(
        axum::serve(listener, router(health.clone()))
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            })
            .into_future(),
    );
    tracing::info!(%addr, interval = ?config.service.interval, source = config.source.kind(), "agent service started");

    let mut converged = Converged::default();
    let mut failures = 0u32;
    tokio::pin!(shutdown);
    loop {
        let result = pass(&mut runner, &health, &mut converged).await;
        health.tick();
        health
            .metrics
            .record_pass(result, i64::try_from(unix_now()).unwrap_or(i64::MAX));
        let wait = if matches!(result, PassResult::Applied | PassResult::Unchanged) {
            health.set_ready();
            failures = 0;
            config.service.interval
        } else {
            failures = failures.saturating_add(1);
            backoff(
                config.service.interval,
                config.service.max_backoff,
                failures,
            )
        };
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    tracing::info!("agent service stopped");
    Ok(())
}

/// Wait after `failures` failed passes in a row: the interval doubled per failure, capped.
fn backoff(interval: Duration, max: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.min(16));
    interval.saturating_mul(factor).min(max)
}

/// The desired node the last successful pass made true; a non-empty plan for the same
/// desired node means the host drifted.
#[derive(Default)]
struct Converged(Option<DesiredNode>);

async fn pass(runner: &mut Runner<'_>, health: &Health, converged: &mut Converged) -> PassResult {
    let started = Instant::now();
    let desired = match runner.desired().await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "pass failed");
            if matches!(e, AgentError::Engine(_)) {
                runner.reset_node();
            }
            return PassResult::Error;
        }
    };
    let plan = match runner.node().await {
        Ok(node) => node.plan(&desired.node),
        Err(e) => Err(e),
    };
    let plan = match plan {
        Ok(plan) => plan,
        Err(e) => {
            tracing::error!(error = %e, "planning failed");
            runner.reset_node();
            return PassResult::Error;
        }
    };
    if runner.config.dry_run && !plan.is_empty() {
        // A dry-run service only says what it would do, every pass.
        tracing::info!("dry run, would apply:\n{plan}");
        return PassResult::Partial;
    }
    let (results, applied) = if plan.is_empty() {
        (unchanged(&desired, &plan), false)
    } else {
        let drifted = converged.0.as_ref() == Some(&desired.node);
        // Another agent (a Job) may be changing the node: wait for it, or try next pass.
        let _lock = match lock::acquire(&runner.config.root, runner.config.lock_wait).await {
            Ok(lock) => lock,
            Err(e) => {
                tracing::error!(error = %e, "not applying");
                return PassResult::Error;
            }
        };
        tracing::info!(drifted, "applying:\n{plan}");
        match runner.apply(&desired).await {
            Ok(results) => {
                if drifted {
                    health.metrics.record_drift_repair();
                }
                (results, true)
            }
            Err(e) => {
                tracing::error!(error = %e, "apply failed");
                runner.reset_node();
                return PassResult::Error;
            }
        }
    };
    runner.write_back(&results).await;
    let report = outcome::report(
        &runner.config.node_name,
        AgentAction::Apply,
        desired.generation,
        results,
        None,
        started,
    );
    health.metrics.record_nics(&report);
    if applied {
        publish(runner.config, &report);
    }
    if report.succeeded() {
        converged.0 = Some(desired.node);
        if applied {
            PassResult::Applied
        } else {
            PassResult::Unchanged
        }
    } else {
        converged.0 = None;
        PassResult::Partial
    }
}

/// Report entries of a pass that found nothing to change, from the engine's own view of each
/// NIC: configured ones are Unchanged, skipped ones keep the engine's reason (a missing MAC
/// makes no change, but is no success either).
fn unchanged(desired: &Desired, plan: &Plan) -> Vec<NicResult> {
    let mut results = desired.failed.clone();
    results.extend(plan.nics.iter().map(|nic| {
        let (reason, message) = match &nic.action {
            NicAction::Configure => (InterfaceReason::Unchanged, String::new()),
            NicAction::Remove => (InterfaceReason::Removed, String::new()),
            NicAction::Skip { reason, message } => (*reason, message.clone()),
        };
        NicResult {
            source_index: nic.source_index,
            entry: ReportInterface {
                id: Some(nic.slot),
                name: Some(nic.name.clone()),
                mac_address: nic.mac.clone(),
                reason,
                message,
            },
        }
    }));
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(10), s(300), 1), s(20));
        assert_eq!(backoff(s(10), s(300), 3), s(80));
        assert_eq!(backoff(s(10), s(300), 30), s(300));
    }
}
