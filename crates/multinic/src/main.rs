//! The one `multinic` binary: parses the command line once and hands each subcommand its config.

mod cmd;

use clap::{Parser, Subcommand};
use cmd::deferred::Deferred;
use std::process::ExitCode;

/// multinic configures the secondary NICs of Kubernetes nodes that are OpenStack VMs.
///
/// An external system writes one MultiNicNodeConfig per node (MACs, addresses, networks,
/// MTUs). The controller checks the node and runs a one-shot agent Job on it; the agent
/// configures the NICs now (netlink) and for every reboot (netplan, NetworkManager keyfile or
/// ifcfg), never touching the primary NIC, and rolls back if anything fails.
#[derive(Parser, Debug)]
#[command(name = "multinic", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Log filter in tracing's EnvFilter syntax, e.g. `info,multinic_agent=debug`.
    #[arg(long, global = true, env = "MULTINIC_LOG", default_value = "info")]
    log: String,

    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(
        long,
        global = true,
        env = "MULTINIC_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: cmd::LogFormat,
}

// The developer commands `sim`, `demo` and `bench` exist only with the `dev-tools` feature
// (the default for `cargo build`); the shipped image is built without it.
#[derive(Subcommand, Debug)]
enum Command {
    /// Print the MultiNicNodeConfig CustomResourceDefinition as YAML.
    Crd,
    /// Check MultiNicNodeConfig YAML files; one line per problem, exit 1 if any.
    Validate(Deferred<cmd::validate::ValidateArgs>),
    /// Configure this node's secondary NICs (job or service mode); see `multinic agent --help`.
    Agent(Deferred<Box<cmd::agent::AgentArgs>>),
    /// Print (or write under --root) the persistent network files for a MultiNicNodeConfig.
    Render(Deferred<cmd::render::RenderArgs>),
    /// Reconcile MultiNicNodeConfigs into agent Jobs and status (the in-cluster controller).
    Controller(Deferred<Box<cmd::controller::ControllerArgs>>),
    /// Run the whole system on this machine: simulator, controller, agents in network
    /// namespaces; configure, change and clean up NICs, showing each step.
    #[cfg(feature = "dev-tools")]
    Demo(Deferred<cmd::demo::DemoArgs>),
    /// Benchmarks, e.g. `multinic bench scale --nodes 1000,10000`.
    #[cfg(feature = "dev-tools")]
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
    /// Run an in-memory Kubernetes API server and node simulator on 127.0.0.1 until interrupted.
    #[cfg(feature = "dev-tools")]
    Sim(Deferred<cmd::sim::SimArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cmd::init_logging(&cli.log, cli.log_format);
    let result = match cli.command {
        Command::Crd => {
            print!("{}", multinic_api::crd_yaml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate(Deferred(args)) => cmd::validate::run(&args),
        Command::Agent(Deferred(args)) => cmd::agent::run(*args),
        Command::Render(Deferred(args)) => cmd::render::run(&args),
        Command::Controller(Deferred(args)) => cmd::controller::run(&args),
        #[cfg(feature = "dev-tools")]
        Command::Bench(command) => cmd::bench::run(&command),
        #[cfg(feature = "dev-tools")]
        Command::Demo(Deferred(args)) => cmd::demo::run(&args),
        #[cfg(feature = "dev-tools")]
        Command::Sim(Deferred(args)) => cmd::sim::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("multinic: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    #[test]
    fn a_deferred_subcommand_keeps_its_description_and_the_global_options() {
        let help = Cli::try_parse_from(["multinic", "agent", "--help"])
            .expect_err("--help stops parsing")
            .to_string();
        assert!(
            help.starts_with("Configure this node's secondary NICs"),
            "{help}"
        );
        assert!(help.contains("--log-format"), "{help}");
        let cli = Cli::try_parse_from(["multinic", "validate", "--log", "debug", "a.yaml"])
            .expect("a global option after the subcommand");
        assert_eq!(cli.log, "debug");
        let Command::Validate(Deferred(args)) = cli.command else {
            panic!("validate parsed as {:?}", cli.command);
        };
        assert_eq!(format!("{args:?}").matches("a.yaml").count(), 1, "{args:?}");
    }

    #[test]
    fn developer_commands_exist_only_with_dev_tools() {
        for command in ["sim", "demo", "bench"] {
            let kind = Cli::try_parse_from(["multinic", command, "--help"])
                .expect_err("--help stops parsing")
                .kind();
            let want = if cfg!(feature = "dev-tools") {
                ErrorKind::DisplayHelp
            } else {
                ErrorKind::InvalidSubcommand
            };
            assert_eq!(kind, want, "multinic {command}");
        }
    }
}
