//! Subcommand implementations and the process-wide setup they share (logging).

use std::io::IsTerminal;

pub mod agent;
#[cfg(feature = "dev-tools")]
pub mod bench;
pub mod controller;
pub mod deferred;
#[cfg(feature = "dev-tools")]
pub mod demo;
pub mod net_args;
pub mod render;
#[cfg(feature = "dev-tools")]
pub mod sim;
pub mod validate;

/// How log lines are written to stderr.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global tracing subscriber; logs go to stderr so stdout stays for output.
pub fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: a Pod's stderr is a pipe, and `kubectl logs`
    // would show the escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
