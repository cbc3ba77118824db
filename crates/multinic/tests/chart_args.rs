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
        // A Job must apply and report; only the DaemonSet may print plans.
        assert!(
            !pairs.iter().any(|(name, _)| name == "MULTINIC_DRY_RUN"),
            "{case}: dry run reaches the Jobs"
        );
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
    // What the chart emits for `agent.probe: none`.
    assert_eq!(
        agent.env_as_args("MULTINIC_NO_PROBE", "true").unwrap(),
        ["--no-probe"]
    );
    assert_eq!(
        agent.env_as_args("DB_PORT", "3307").unwrap(),
        ["--db-port=3307"]
    );
}

/// The value of `--name=value` in `args`.
fn arg_value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let prefix = format!("{name}=");
    args.iter().find_map(|a| a.strip_prefix(prefix.as_str()))
}

#[test]
fn controller_arguments_and_environment_are_the_controllers_own() {
    let controller = Cli::of("controller");
    for case in ["default", "full"] {
        let objects = render(case);
        let deployment = of_kind(&objects, "Deployment")[0];
        let container = container(deployment);
        assert_eq!(strings(&container["command"]), ["multinic"], "{case}");
        let mut argv = strings(&container["args"]);
        assert_eq!(
            argv.first().map(String::as_str),
            Some("controller"),
            "{case}"
        );
        let mut problems = Vec::new();
        argv.extend(env_to_args(&controller, &env_of(container), &mut problems));
        assert!(problems.is_empty(), "{case}: {problems:#?}");
        dry_parse(&argv).unwrap_or_else(|e| panic!("{case}: {e}"));
    }
}

#[test]
fn controller_arguments_agree_with_the_objects_around_it() {
    for case in ["default", "full"] {
        let objects = render(case);
        let deployment = of_kind(&objects, "Deployment")[0];
        let container = container(deployment);
        let args = strings(&container["args"]);

        // The probes and the Service reach the port the controller serves on.
        let addr: std::net::SocketAddr = arg_value(&args, "--http-addr")
            .expect("--http-addr")
            .parse()
            .expect("--http-addr is host:port");
        let http_port = container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "http")
            .expect("a port named http")["containerPort"]
            .as_u64();
        assert_eq!(http_port, Some(u64::from(addr.port())), "{case}");
        assert_eq!(container["readinessProbe"]["httpGet"]["port"], "http");
        assert_eq!(container["livenessProbe"]["httpGet"]["port"], "http");

        // The agent Jobs run the controller's own image.
        assert_eq!(
            arg_value(&args, "--job-image"),
            container["image"].as_str(),
            "{case}"
        );

        // The Role that grants the MultiNicNodeConfigs lives in the namespace it watches, the
        // leader-election Role where the Lease is (the Pod's namespace, POD_NAMESPACE).
        let watched = arg_value(&args, "--namespace").expect("--namespace");
        let roles = of_kind(&objects, "Role");
        let grants = |resource: &str| {
            roles
                .iter()
                .find(|r| {
                    r["rules"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|rule| strings(&rule["resources"]).contains(&resource.to_string()))
                })
                .map(|r| r["metadata"]["namespace"].as_str().unwrap().to_string())
        };
        assert_eq!(
            grants("multinicnodeconfigs").as_deref(),
            Some(watched),
            "{case}"
        );
        assert_eq!(grants("jobs").as_deref(), Some(watched), "{case}");
        let pod_namespace = env_of(container)
            .iter()
            .any(|(name, value)| name == "POD_NAMESPACE" && value.is_none());
        assert!(
            pod_namespace,
            "{case}: POD_NAMESPACE comes from the Pod's own namespace"
        );
        assert_eq!(
            grants("leases").as_deref(),
            deployment["metadata"]["namespace"].as_str(),
            "{case}"
        );
    }
}
