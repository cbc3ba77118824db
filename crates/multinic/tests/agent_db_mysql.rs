//! `multinic agent --source db` against a real Oracle MySQL 9 (Debian sid's, unpacked by
//! `scripts/mysql-sid.sh`; `MULTINIC_MYSQL_ROOT` names it) whose user authenticates with
//! `caching_sha2_password`, MySQL 8's and 9's default, which MariaDB does not have:
//! - over TLS verified against the test's CA, the full authentication (the server's cache is
//!   empty: the password goes in clear inside TLS) and then the fast path (cached scramble);
//! - without TLS, the RSA path: the agent fetches the server's RSA public key and sends the
//!   password encrypted with it;
//! - a wrong password is refused, over TLS and over RSA, with the server's "Access denied".
//!
//! Which path the server takes is shown, not assumed: before each full authentication, sid's
//! mysql client without TLS and without the server's key is refused ("requires secure
//! connection", the server wants a full authentication); after the agent logged in, the same
//! client gets in (the agent's login filled the cache, so the next login takes the fast path).
//! The server's `Ssl_accepts` counter tells whether a run used TLS. Fails (never skips) without
//! the sid root or openssl.

mod agent_support;

use agent_support::mysql::{MySql, in_root, scratch, sid_root};
use agent_support::pki::make_pki;
use agent_support::{AgentRun, Netns, TempDir, legacy_tables, run_agent};
use std::path::Path;

const PASSWORD: &str = "Sha2-pw-8841";

const ROWS: &str = "
INSERT INTO multi_subnet VALUES ('net-a', '192.0.2.0/24');
INSERT INTO multi_interface VALUES
  (41, 'p41', 'net-a', 'fa:16:3e:00:09:01', 'worker-01', '192.0.2.41', 1450, NULL, NULL);
CREATE USER 'agent'@'127.0.0.1' IDENTIFIED WITH caching_sha2_password BY 'Sha2-pw-8841';
GRANT SELECT, UPDATE ON multinic_sha2.* TO 'agent'@'127.0.0.1';
";

/// A server with the legacy tables, the row and the `agent` user; the user's plugin checked.
fn server(ns: &Netns, root: &Path, options: &[String]) -> MySql {
    let db = MySql::start(ns, root, options);
    db.sql(&(legacy_tables("multinic_sha2") + ROWS));
    let plugin = db.sql("SELECT plugin FROM mysql.user WHERE user = 'agent'");
    assert_eq!(plugin.trim(), "caching_sha2_password");
    db
}

/// The agent with the database source; `env` adds the TLS settings.
fn agent(ns: &Netns, db: &MySql, dir: &TempDir, password: &str, env: &[(&str, &str)]) -> AgentRun {
    let password_file = dir.path().join("db-password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let port = db.port.to_string();
    let file = password_file.to_str().unwrap();
    let base = [
        ("NODE_NAME", "worker-01"),
        ("DB_HOST", "127.0.0.1"),
        ("DB_PORT", port.as_str()),
        ("DB_NAME", "multinic_sha2"),
        ("DB_USER", "agent"),
        ("DB_PASSWORD_FILE", file),
        ("DB_CONNECT_TIMEOUT", "10s"),
    ];
    let env: Vec<_> = base.iter().chain(env).copied().collect();
    run_agent(ns, dir.path(), &["--source", "db", "--os", "ubuntu"], &env)
}

/// The server's count of accepted TLS handshakes.
fn tls_accepts(db: &MySql) -> u64 {
    let row = db.sql("SHOW GLOBAL STATUS LIKE 'Ssl_accepts'");
    let value = row.split_whitespace().nth(1);
    value
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("Ssl_accepts: {row:?}"))
}

/// Asserts the server wants a full authentication of `agent`: sid's client without TLS and
/// without the server's RSA key may not send the password, and is refused.
fn assert_cache_empty(ns: &Netns, db: &MySql) {
    let refused = db
        .login(ns, "agent", PASSWORD, &["--ssl-mode=DISABLED"])
        .unwrap_err();
    assert!(refused.contains("requires secure connection"), "{refused}");
}

/// Asserts the server has `agent` cached: the same client gets in on the fast path.
fn assert_cached(ns: &Netns, db: &MySql) {
    let fast = db.login(ns, "agent", PASSWORD, &["--ssl-mode=DISABLED"]);
    assert_eq!(fast.as_deref().map(str::trim), Ok("agent@127.0.0.1"));
}

/// Resets the row's written-back flag, so a run that logs in and applies writes it again.
fn reset_success(db: &MySql) {
    db.sql("UPDATE multinic_sha2.multi_interface SET netplan_success = NULL WHERE id = 41");
}

/// Asserts the run applied the row and wrote its success back.
fn assert_applied(ns: &Netns, db: &MySql, run: &AgentRun) {
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, db.log());
    assert_eq!(run.reasons().len(), 1, "{}", run.report_text);
    assert_eq!(ns.addresses("multinic0"), ["192.0.2.41/24"]);
    let written = db.sql("SELECT netplan_success FROM multinic_sha2.multi_interface WHERE id = 41");
    assert_eq!(written.trim(), "1");
}

/// Runs the agent twice with `env`, asserting it used TLS or not as `tls` says: first with the
/// server's cache empty (the full authentication), then with `agent` cached (the fast path).
fn full_then_fast(ns: &Netns, db: &MySql, dir: &TempDir, env: &[(&str, &str)], tls: bool) {
    assert_cache_empty(ns, db);
    for path in ["full authentication", "fast path"] {
        reset_success(db);
        let accepts = tls_accepts(db);
        let run = agent(ns, db, dir, PASSWORD, env);
        assert_applied(ns, db, &run);
        let used_tls = tls_accepts(db) > accepts;
        assert_eq!(used_tls, tls, "{path}: TLS used {used_tls}, expected {tls}");
        assert_cached(ns, db);
    }
}

#[test]
fn caching_sha2_full_then_fast_path_over_tls_verified_against_the_ca() {
    let root = sid_root();
    let ns = Netns::new();
    ns.add_nic("0", "fa:16:3e:00:09:01");
    let certs = scratch(&root, "mysql-pki");
    let pki = make_pki(certs.path(), "server");
    let db = server(
        &ns,
        &root,
        &[
            format!("--ssl-ca={}", in_root(&root, &pki.ca)),
            format!("--ssl-cert={}", in_root(&root, &pki.cert)),
            format!("--ssl-key={}", in_root(&root, &pki.key)),
        ],
    );
    let dir = TempDir::new("db-sha2-tls");
    // DB_CA_FILE alone means verify-identity: the chain and the name 127.0.0.1 are checked.
    let tls = [("DB_CA_FILE", pki.ca.to_str().unwrap())];

    // A wrong password first: refused, and the cache stays empty.
    let wrong = agent(&ns, &db, &dir, "Not-the-pw-1", &tls);
    wrong.assert_login_refused("Access denied for user 'agent'", "Not-the-pw-1");

    // Full authentication (nothing cached since the server started), then the fast path.
    full_then_fast(&ns, &db, &dir, &tls, true);

    // FLUSH PRIVILEGES empties the cache: the full authentication again, over TLS.
    db.sql("FLUSH PRIVILEGES");
    full_then_fast(&ns, &db, &dir, &tls, true);

    // A server certificate the CA did not sign is still refused (the CA is what is checked).
    let other = make_pki(certs.path(), "other");
    let other_ca = [("DB_CA_FILE", other.ca.to_str().unwrap())];
    let unverified = agent(&ns, &db, &dir, PASSWORD, &other_ca);
    assert_eq!(unverified.code, 1, "{}", unverified.stderr);
    let error = unverified.report()["error"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert!(
        error.contains("certificate"),
        "not a certificate error: {error}"
    );
}

#[test]
fn caching_sha2_rsa_path_without_tls() {
    let root = sid_root();
    let ns = Netns::new();
    ns.add_nic("0", "fa:16:3e:00:09:01");
    // No certificates given: the server still makes its own and its RSA key pair
    // (caching_sha2_password_auto_generate_rsa_keys), which the RSA path needs.
    let db = server(&ns, &root, &[]);
    let dir = TempDir::new("db-sha2-rsa");
    let plain = [("DB_TLS", "disabled")];

    let wrong = agent(&ns, &db, &dir, "Not-the-pw-2", &plain);
    wrong.assert_login_refused("Access denied for user 'agent'", "Not-the-pw-2");

    // The cache is empty, TLS is off: only the RSA-encrypted password can log in.
    full_then_fast(&ns, &db, &dir, &plain, false);
}
