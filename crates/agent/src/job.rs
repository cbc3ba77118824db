//! Job mode: one apply (or cleanup) run, its report written to the termination log and
//! logged, and an exit code the controller can read: 0 all well, 2 some NIC failed, 1 nothing
//! could be done.

use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::lock::{self, HostLock};
use crate::outcome::{self, NicResult};
use crate::runner::Runner;
use multinic_api::report::{AgentAction, AgentReport, encode_report};
use multinic_engine::Interrupt;
use std::path::Path;
use std::time::Instant;

/// Runs once and returns the process exit code. SIGTERM (the Job deleted, the node drained)
/// stops the run where it is: it reverts what it changed, and the report is still written.
pub async fn run_job(config: &AgentConfig) -> u8 {
    let started = Instant::now();
    let stop = Interrupt::default();
    stop_on_sigterm(&stop);
    let (generation, results, error) = match config.action {
        AgentAction::Apply => apply(config, &stop).await,
        AgentAction::Cleanup => cleanup(config, &stop).await,
    };
    if stop.is_set() {
        tracing::warn!("SIGTERM received: the run stopped making changes and reverted them");
    }
    let report = outcome::report(
        &config.node_name,
        config.action,
        generation,
        results,
        error.map(|e| e.to_string()),
        started,
    );
    let code = outcome::exit_code(&report);
    if config.dry_run {
        if let Some(error) = &report.error {
            eprintln!("multinic agent: {error}");
        }
        return code;
    }
    publish(config, &report);
    code
}

/// Writes the report to `--report` and logs it.
pub(crate) fn publish(config: &AgentConfig, report: &AgentReport) {
    let text = encode_report(report);
    if report.succeeded() {
        tracing::info!(report = %text, "agent report");
    } else {
        tracing::warn!(report = %text, "agent report");
    }
    if let Err(e) = write_report(&config.report_path, &text) {
        tracing::error!(path = %config.report_path.display(), error = %e, "report not written");
    }
}

fn write_report(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

type RunResult = (Option<i64>, Vec<NicResult>, Option<AgentError>);

/// Sets `stop` when SIGTERM arrives. The handler only sets the flag, so it is set even
/// while the run's single thread is busy in a blocking call, with no thread or second
/// runtime standing by for a signal that rarely comes.
fn stop_on_sigterm(stop: &Interrupt) {
    use signal_hook::{consts::SIGTERM, flag};
    if let Err(e) = flag::register(SIGTERM, stop.flag()) {
        tracing::error!(error = %e, "cannot handle SIGTERM");
    }
}

/// What every run does first: its runner, stopping on `stop`, and the host lock it holds
/// until it returns.
async fn prepare<'a>(
    config: &'a AgentConfig,
    stop: &Interrupt,
) -> Result<(Runner<'a>, Option<HostLock>), AgentError> {
    let mut runner = Runner::new(config)?;
    runner.stop_on(stop.clone());
    let lock = host_lock(config).await?;
    Ok((runner, lock))
}

async fn apply(config: &AgentConfig, stop: &Interrupt) -> RunResult {
    let (mut runner, _lock) = match prepare(config, stop).await {
        Ok(prepared) => prepared,
        Err(e) => return (None, Vec::new(), Some(e)),
    };
    let desired = match runner.desired().await {
        Ok(d) => d,
        Err(e) => return (None, Vec::new(), Some(e)),
    };
    tracing::debug!(nics = desired.node.nics.len(), "desired state built");
    if config.dry_run {
        return match runner.node().await {
            Ok(node) => match node.plan(&desired.node) {
                Ok(plan) => {
                    print_plan(&plan);
                    (desired.generation, desired.failed, None)
                }
                Err(e) => (desired.generation, desired.failed, Some(e)),
            },
            Err(e) => (desired.generation, desired.failed, Some(e)),
        };
    }
    match runner.apply(&desired).await {
        Ok(results) => {
            runner.write_back(&results).await;
            (desired.generation, results, None)
        }
        Err(e) => {
            let mut results = desired.failed.clone();
            results.extend(outcome::pending(&desired.node, &e.to_string()));
            runner.write_back(&results).await;
            (desired.generation, results, Some(e))
        }
    }
}

async fn cleanup(config: &AgentConfig, stop: &Interrupt) -> RunResult {
    let (mut runner, _lock) = match prepare(config, stop).await {
        Ok(prepared) => prepared,
        Err(e) => return (None, Vec::new(), Some(e)),
    };
    let node = match runner.node().await {
        Ok(node) => node,
        Err(e) => return (None, Vec::new(), Some(e)),
    };
    if config.dry_run {
        return match node.plan_cleanup() {
            Ok(plan) => {
                print_plan(&plan);
                (None, Vec::new(), None)
            }
            Err(e) => (None, Vec::new(), Some(e)),
        };
    }
    match node.cleanup().await {
        Ok(results) => (None, results, None),
        Err(e) => (None, Vec::new(), Some(e)),
    }
}

/// The host lock for a run that may write; a dry run changes nothing and takes none.
async fn host_lock(config: &AgentConfig) -> Result<Option<HostLock>, AgentError> {
    if config.dry_run {
        return Ok(None);
    }
    lock::acquire(&config.root, config.lock_wait)
        .await
        .map(Some)
}

fn print_plan(plan: &multinic_engine::Plan) {
    if plan.is_empty() {
        println!("nothing to change");
    } else {
        println!("{plan}");
    }
}
