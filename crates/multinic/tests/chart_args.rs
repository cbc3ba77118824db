//! The chart's workloads against the programs they start: every argument and environment
//! variable the chart renders must be one the `multinic` binary reads, with a value its own
//! parser accepts, so no value can silently fail to reach the program.

mod chart_support;

use chart_support::{Cli, agent_env_args, container, dry_parse, env_of, of_kind, render, strings};

/// Checks a container's env against `cli` and returns the literal ones as arguments.
fn env_to_args(
    cli: &Cli,
    env: &[(String, Option<String>)],
    problems: &mut Vec<String>,
) -> Vec<String> {
    let mut args = Vec::new();
    for (name, value) in env {
        match value {
            Some(value) => match cli.env_as_args(name, value) {
                Ok(more) => args.extend(more),
                Err(problem) => problems.push(problem),
            },
            // From a fieldRef or a Secret: the value is not known here, the name must be read.
            None if cli.by_env(name).is_none() => problems.push(format!(
                "multinic {} reads no environment variable {name}",
                cli.subcommand
            )),
            None => {}
        }
    }
    args
}

#[test]
fn daemonset_arguments_and_environment_are_the_agents_own() {
    let agent = Cli::of("agent");
    let mut checked = 0;
    for case in ["daemonset", "full"] {
        let objects = render(case);
        for daemonset in of_kind(&objects, "DaemonSet") {
            let container = container(daemonset);
            assert_eq!(strings(&container["command"]), ["multinic"], "{case}");
            let mut problems = Vec::new();
            let mut argv = strings(&container["args"]);
            assert_eq!(argv.first().map(String::as_str), Some("agent"), "{case}");
            argv.extend(env_to_args(&agent, &env_of(container), &mut problems));
            assert!(problems.is_empty(), "{case}: {problems:#?}");
            dry_parse(&argv).unwrap_or_else(|e| panic!("{case}: {e}"));
            checked += 1;
        }
    }
    assert_eq!(checked, 2, "both cases render the DaemonSet");
}

#[test]
fn agent_options_handed_to_jobs_are_the_agents_own() {
    let agent = Cli::of("agent");
    for case in ["default", "full"] {
        let objects = render(case);
        let deployment = of_kind(&objects, "Deployment")[0];
        let pairs = agent_env_args(&strings(&container(deployment)["args"]));
        assert!(
            pairs.len() >= 8,
            "{case}: agent options reach the Jobs: {pairs:?}"
        );
        let mut problems = Vec::new();
        let mut argv = vec!["agent".to_string()];
        for (name, value) in &pairs {
            match agent.env_as_args(name, value) {
                Ok(more) => argv.extend(more),
                Err(problem) => problems.push(problem),
            }
        }
        assert!(problems.is_empty(), "{case}: {problems:#?}");
        dry_parse(&argv).unwrap_or_else(|e| panic!("{case}: {e}"));
    }
}

#[test]
fn agent_options_are_the_same_for_jobs_and_the_daemonset() {
    let objects = render("full");
    let deployment = of_kind(&objects, "Deployment")[0];
    let daemonset = of_kind(&objects, "DaemonSet")[0];
    let for_jobs = agent_env_args(&strings(&container(deployment)["args"]));
    let on_daemonset = env_of(container(daemonset));
    for (name, value) in &for_jobs {
        assert!(
            on_daemonset.contains(&(name.clone(), Some(value.clone()))),
            "{name}={value} reaches the Jobs but not the DaemonSet"
        );
    }
}

#[test]
fn the_harness_rejects_what_the_program_would() {
    let agent = Cli::of("agent");
    assert!(
        agent.options.len() > 20,
        "parsed {} agent options",
        agent.options.len()
    );
    assert!(dry_parse(&["agent".into(), "--no-such-flag".into()]).is_err());
    assert!(dry_parse(&["agent".into(), "--mode=sometimes".into()]).is_err());
    assert!(dry_parse(&["agent".into(), "--route-table-base=-1".into()]).is_err());
    assert!(dry_parse(&["agent".into(), "--mode=service".into()]).is_ok());
    assert!(agent.env_as_args("MULTINIC_NO_SUCH", "1").is_err());
    assert!(agent.env_as_args("MULTINIC_DRY_RUN", "yes please").is_err());
    assert_eq!(
        agent.env_as_args("MULTINIC_DRY_RUN", "true").unwrap(),
        ["--dry-run"]
    );
    assert_eq!(
        agent.env_as_args("DB_PORT", "3307").unwrap(),
        ["--db-port=3307"]
    );
}
