//! Tests of the agent's flags: how the command line and environment become its config.

use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    agent: AgentArgs,
}

fn config(args: &[&str]) -> anyhow::Result<AgentConfig> {
    let cli = Cli::try_parse_from(std::iter::once("agent").chain(args.iter().copied()))?;
    config_from(cli.agent)
}

#[test]
fn nodecr_means_kube_and_flags_become_typed_config() {
    let c = config(&[
        "--node-name",
        "worker-01",
        "--source",
        "nodecr",
        "--namespace",
        "ns1",
        "--mode",
        "service",
        "--interval",
        "5s",
        "--policy-routing",
        "false",
        "--sysctls",
        "false",
        "--protected-addresses",
        "10.0.0.5,fd00::5",
        "--protect-address",
        "10.0.0.5",
        "--system-bus",
        "unix:path=/tmp/bus",
    ])
    .unwrap();
    assert_eq!(
        c.source,
        SourceConfig::Kube {
            namespace: "ns1".into()
        }
    );
    assert_eq!(c.mode, RunMode::Service);
    assert_eq!(c.service.interval, Duration::from_secs(5));
    assert!(!c.net.policy_routing);
    assert_eq!(c.net.sysctls, None);
    assert_eq!(c.guard.protect_addresses.len(), 2);
    assert_eq!(
        c.handoff,
        Handoff::Auto {
            bus_address: "unix:path=/tmp/bus".into()
        }
    );
    assert_eq!(c.report_path, PathBuf::from("/dev/termination-log"));
}

#[test]
fn probe_defaults_to_the_api_server_and_can_be_turned_off() {
    let base = ["--node-name", "n", "--kubernetes-service-host"];
    let c =
        config(&[&base[..], &["fd00::1", "--kubernetes-service-port", "443"]].concat()).unwrap();
    assert_eq!(c.guard.probe.as_deref(), Some("[fd00::1]:443"));
    let c = config(
        &[
            &base[..],
            &["10.96.0.1", "--kubernetes-service-port", "443"],
        ]
        .concat(),
    )
    .unwrap();
    assert_eq!(c.guard.probe.as_deref(), Some("10.96.0.1:443"));
    let c = config(
        &[
            &base[..],
            &[
                "10.96.0.1",
                "--kubernetes-service-port",
                "443",
                "--no-probe",
            ],
        ]
        .concat(),
    )
    .unwrap();
    assert_eq!(c.guard.probe, None);
    let c = config(&["--node-name", "n", "--probe", "api:6443"]).unwrap();
    assert_eq!(c.guard.probe.as_deref(), Some("api:6443"));
    assert_eq!(config(&["--node-name", "n"]).unwrap().guard.probe, None);
}

#[test]
fn downward_api_node_name_wins_over_the_fallbacks() {
    let c = config(&[
        "--node-name",
        "from-downward-api",
        "--node-name-fallback",
        "from-spec",
    ])
    .unwrap();
    assert_eq!(c.node_name, "from-downward-api");
    let c = config(&["--node-name-fallback", "from-spec"]).unwrap();
    assert_eq!(c.node_name, "from-spec");
}

#[test]
fn node_name_falls_back_past_empty_values() {
    let c = config(&[
        "--node-name",
        " ",
        "--my-node-name",
        "worker-07",
        "--source",
        "spec",
    ])
    .unwrap();
    assert_eq!(c.node_name, "worker-07");
}

#[test]
fn db_source_needs_user_and_database_and_hides_the_password() {
    let err = config(&["--node-name", "n", "--source", "db"]).unwrap_err();
    assert!(err.to_string().contains("DB_USER and DB_NAME"), "{err}");
    let c = config(&[
        "--node-name",
        "n",
        "--source",
        "db",
        "--db-user",
        "u",
        "--db-name",
        "d",
        "--db-password",
        "hunter2",
    ])
    .unwrap();
    let SourceConfig::Db(db) = &c.source else {
        panic!("not db")
    };
    assert_eq!(db.password.expose(), "hunter2");
    assert_eq!((db.host.as_str(), db.port), ("127.0.0.1", 3306));
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn db_password_file_and_tls_modes() {
    let dir = std::env::temp_dir().join(format!("mn-dbpw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("password");
    std::fs::write(&file, "s3cret=x\n").unwrap();
    let db = |extra: &[&str]| {
        let mut args = vec!["--node-name", "n", "--source", "db", "--db-user", "u"];
        args.extend(["--db-name", "d", "--db-password", "from-flag"]);
        args.extend_from_slice(extra);
        match config(&args).map(|c| c.source) {
            Ok(SourceConfig::Db(db)) => Ok(db),
            Ok(other) => panic!("not db: {other:?}"),
            Err(e) => Err(e.to_string()),
        }
    };
    let plain = db(&[]).unwrap();
    assert_eq!(plain.password.expose(), "from-flag");
    assert_eq!(plain.tls, DbTls::default());
    let path = file.to_str().unwrap();
    let with_file = db(&["--db-password-file", path, "--db-ca-file", path]).unwrap();
    assert_eq!(with_file.password.expose(), "s3cret=x");
    assert_eq!(with_file.tls.mode, DbTlsMode::VerifyIdentity);
    let err = db(&["--db-tls", "verify-ca"]).unwrap_err();
    assert!(err.contains("--db-ca-file"), "{err}");
    assert_eq!(
        db(&["--db-tls", "required"]).unwrap().tls.mode,
        DbTlsMode::Required
    );
    let missing = db(&["--db-password-file", "/nonexistent/pw"]).unwrap_err();
    assert!(missing.contains("--db-password-file"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn file_source_needs_a_file() {
    let err = config(&["--node-name", "n", "--source", "file"]).unwrap_err();
    assert!(err.to_string().contains("--file"), "{err}");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
    assert!(parse_duration("1d").is_err());
    assert!(parse_duration("s").is_err());
}

#[test]
fn credentials_file_lines() {
    let parsed = parse_credentials("# db\nDB_USER=agent\n\nDB_PASSWORD=\"p=w\"\n");
    assert_eq!(
        parsed,
        [
            ("DB_USER".to_owned(), "agent".to_owned()),
            ("DB_PASSWORD".to_owned(), "p=w".to_owned())
        ]
    );
}
