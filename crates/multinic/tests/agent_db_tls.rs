//! `multinic agent --source db` over TLS against a real MariaDB whose user may only log in over
//! TLS (`REQUIRE SSL`): a CA and a server certificate for 127.0.0.1 are made with openssl for
//! the test; the agent verifies the server against that CA (and its name), refuses a server
//! its CA did not sign, and cannot log in without TLS. The password comes from a file, as the
//! chart mounts it from the Secret. Fails (never skips) without MariaDB or openssl.

mod agent_support;

use agent_support::pki::make_pki;
use agent_support::{AgentRun, MariaDb, Netns, TempDir, legacy_tables, run_agent};

const PASSWORD: &str = "Tls-pw-5531";

const ROWS: &str = "
INSERT INTO multi_subnet VALUES ('net-a', '192.0.2.0/24');
INSERT INTO multi_interface VALUES
  (31, 'p31', 'net-a', 'fa:16:3e:00:07:01', 'worker-01', '192.0.2.31', 1450, NULL, NULL);
CREATE USER 'agent'@'127.0.0.1' IDENTIFIED BY 'Tls-pw-5531' REQUIRE SSL;
GRANT SELECT, UPDATE ON multinic_tls.* TO 'agent'@'127.0.0.1';
";

fn tls_agent(ns: &Netns, db: &MariaDb, root: &TempDir, extra_env: &[(&str, &str)]) -> AgentRun {
    let port = db.port.to_string();
    let password_file = root.path().join("db-password");
    // As a Secret key mounted as a file: `kubectl create secret --from-file` keeps a newline.
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let mut env = vec![
        ("NODE_NAME", "worker-01"),
        ("DB_HOST", "127.0.0.1"),
        ("DB_PORT", port.as_str()),
        ("DB_NAME", "multinic_tls"),
        ("DB_USER", "agent"),
        ("DB_PASSWORD_FILE", password_file.to_str().unwrap()),
        ("DB_CONNECT_TIMEOUT", "5s"),
    ];
    env.extend_from_slice(extra_env);
    run_agent(ns, root.path(), &["--source", "db", "--os", "ubuntu"], &env)
}

#[test]
fn tls_verified_against_the_ca_and_refused_otherwise() {
    let ns = Netns::new();
    ns.add_nic("0", "fa:16:3e:00:07:01");
    let certs = TempDir::new("db-pki");
    let pki = make_pki(certs.path(), "server");
    let other = make_pki(certs.path(), "other");
    let db = MariaDb::start_with(
        &ns,
        &[
            format!("--ssl-ca={}", pki.ca.display()),
            format!("--ssl-cert={}", pki.cert.display()),
            format!("--ssl-key={}", pki.key.display()),
        ],
    );
    db.sql(&(legacy_tables("multinic_tls") + ROWS));
    let root = TempDir::new("db-tls");
    let ca = pki.ca.to_str().unwrap();

    // Verified against the CA, name checked: the row is applied and written back.
    let run = tls_agent(&ns, &db, &root, &[("DB_CA_FILE", ca)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.reasons().len(), 1, "{}", run.report_text);
    assert_eq!(ns.addresses("multinic0"), ["192.0.2.31/24"]);
    assert_eq!(
        db.sql("SELECT netplan_success FROM multinic_tls.multi_interface WHERE id = 31")
            .trim(),
        "1"
    );

    // A CA that did not sign the server's certificate: no connection, nothing changed.
    let wrong_ca = other.ca.to_str().unwrap();
    let refused = tls_agent(&ns, &db, &root, &[("DB_CA_FILE", wrong_ca)]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    let error = refused.report()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("database"), "{error}");
    assert!(
        error.to_lowercase().contains("certificate"),
        "not a certificate error: {error}"
    );

    // The server reached by a name its certificate does not carry (`localhost`; the
    // certificate names 127.0.0.1): the default with a CA, verify-identity, refuses it.
    let as_localhost = [("DB_CA_FILE", ca), ("DB_HOST", "localhost")];
    let misnamed = tls_agent(&ns, &db, &root, &as_localhost);
    assert_eq!(misnamed.code, 1, "{}", misnamed.stderr);
    let error = misnamed.report()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains(r#"certificate not valid for name "localhost""#),
        "not a name error: {error}"
    );

    // verify-ca only: the name is not checked, the chain still is.
    let verify_ca = tls_agent(
        &ns,
        &db,
        &root,
        &[as_localhost[0], as_localhost[1], ("DB_TLS", "verify-ca")],
    );
    assert_eq!(verify_ca.code, 0, "{}", verify_ca.stderr);

    // The user may only log in over TLS: without it the server says no.
    let plain = tls_agent(&ns, &db, &root, &[("DB_TLS", "disabled")]);
    assert_eq!(plain.code, 1, "{}", plain.stderr);
    let error = plain.report()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("Access denied"), "{error}");

    for run in [&run, &refused, &misnamed, &verify_ca, &plain] {
        for output in [&run.stderr, &run.stdout, &run.report_text] {
            assert!(!output.contains(PASSWORD), "password leaked: {output}");
        }
    }
}
