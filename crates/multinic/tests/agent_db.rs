//! `multinic agent --source db` against a real MariaDB server started for the test inside the
//! test's network namespace (on its 127.0.0.1): rows are read, NICs configured, a row with bad
//! data is reported by its database id without stopping the rest (and the NIC it names stays
//! as configured), `netplan_success` is written back, more rows than the limit are refused
//! without touching anything, and the password never shows. Fails (never skips) without
//! MariaDB.

mod agent_support;

use agent_support::{AgentRun, MariaDb, Netns, TempDir, legacy_tables, run_agent, wait_for};
use std::time::Duration;

const PASSWORD: &str = "S3cret-pw-7781";

const SCHEMA: &str = "
CREATE DATABASE multinic_test;
USE multinic_test;
CREATE TABLE multi_subnet (subnet_id VARCHAR(64) PRIMARY KEY, cidr VARCHAR(64));
CREATE TABLE multi_interface (
  id INT PRIMARY KEY, port_id VARCHAR(64), subnet_id VARCHAR(64), macaddress VARCHAR(32),
  attached_node_name VARCHAR(255), address VARCHAR(64), mtu INT,
  netplan_success TINYINT(1), modified_at DATETIME NULL);
INSERT INTO multi_subnet VALUES ('net-a', '192.0.2.0/24'), ('net-b', '198.51.100.0/24');
INSERT INTO multi_interface VALUES
  (17, 'p17', 'net-a', 'FA:16:3E:00:03:01', 'worker-01', '192.0.2.10', 1400, NULL, '2000-01-01'),
  (18, 'p18', 'net-b', 'fa:16:3e:00:03:02', 'worker-01', '198.51.100.20', 1450, 0, '2000-01-01'),
  (19, 'p19', 'net-a', 'fa:16:3e:00:03:03', 'worker-01', 'not-an-ip', 1450, 1, '2000-01-01'),
  (20, 'p20', 'net-a', 'fa:16:3e:00:03:04', 'worker-02', '192.0.2.99', 1450, 1, '2000-01-01'),
  (21, 'p21', 'gone',  'fa:16:3e:00:03:05', 'worker-01', '203.0.113.5', 1450, NULL, '2000-01-01');
CREATE USER 'agent'@'127.0.0.1' IDENTIFIED BY 'S3cret-pw-7781';
GRANT SELECT, UPDATE ON multinic_test.* TO 'agent'@'127.0.0.1';
";

/// How the agent gets its credentials.
enum Credentials<'a> {
    /// `DB_USER` / `DB_PASSWORD` in the environment.
    Env(&'a str),
    /// A mounted-Secret style file of `KEY=VALUE` lines.
    File(&'a std::path::Path),
}

fn db_agent(ns: &Netns, db: &MariaDb, root: &TempDir, credentials: Credentials) -> AgentRun {
    db_agent_with(ns, db, root, credentials, &[])
}

fn db_agent_with(
    ns: &Netns,
    db: &MariaDb,
    root: &TempDir,
    credentials: Credentials,
    extra: &[(&str, &str)],
) -> AgentRun {
    let port = db.port.to_string();
    let mut env = vec![
        ("NODE_NAME", "worker-01"),
        ("DB_HOST", "127.0.0.1"),
        ("DB_PORT", port.as_str()),
        ("DB_NAME", "multinic_test"),
        ("DB_CONNECT_TIMEOUT", "5s"),
    ];
    let file;
    match credentials {
        Credentials::Env(password) => {
            env.extend([("DB_USER", "agent"), ("DB_PASSWORD", password)]);
        }
        Credentials::File(path) => {
            file = path.to_str().unwrap().to_owned();
            env.push(("DB_CREDENTIALS_FILE", file.as_str()));
        }
    }
    env.extend_from_slice(extra);
    run_agent(ns, root.path(), &["--source", "db", "--os", "ubuntu"], &env)
}

/// `id netplan_success modified_at` of every row, one line each.
fn rows(db: &MariaDb) -> String {
    db.sql(
        "SELECT id, IFNULL(netplan_success, 'NULL'), modified_at FROM multinic_test.multi_interface ORDER BY id",
    )
}

/// The legacy tables with subnet `net-a` (192.0.2.0/24), the given `multi_interface` rows and
/// the agent's user.
fn net_a_with_rows(rows: &str) -> String {
    format!(
        "{}
         INSERT INTO multi_subnet VALUES ('net-a', '192.0.2.0/24');
         INSERT INTO multi_interface VALUES {rows};
         CREATE USER 'agent'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';
         GRANT SELECT, UPDATE ON multinic_test.* TO 'agent'@'127.0.0.1';",
        legacy_tables("multinic_test")
    )
}

#[test]
fn rows_are_applied_bad_rows_reported_and_success_written_back() {
    let ns = Netns::new();
    for (tag, mac) in [
        ("0", "fa:16:3e:00:03:01"),
        ("1", "fa:16:3e:00:03:02"),
        ("2", "fa:16:3e:00:03:03"),
    ] {
        ns.add_nic(tag, mac);
    }
    let db = MariaDb::start(&ns);
    db.sql(SCHEMA);
    let root = TempDir::new("db");

    let run = db_agent(&ns, &db, &root, Credentials::Env(PASSWORD));
    assert_eq!(run.code, 2, "{}", run.stderr);
    let report = run.report();
    let nics = report["interfaces"].as_array().unwrap();
    assert_eq!(nics.len(), 4, "rows of worker-01 only: {report}");
    // Database ids are not slots: the valid rows get the lowest free slots in row order.
    assert_eq!(
        (nics[0]["name"].as_str(), nics[0]["reason"].as_str()),
        (Some("multinic0"), Some("Configured"))
    );
    assert_eq!(
        (nics[1]["name"].as_str(), nics[1]["reason"].as_str()),
        (Some("multinic1"), Some("Configured"))
    );
    assert_eq!(nics[2]["reason"], "InvalidSpec");
    let bad_address = nics[2]["message"].as_str().unwrap();
    assert!(
        bad_address.starts_with("multi_interface[id=19].address: "),
        "{bad_address}"
    );
    assert_eq!(nics[3]["reason"], "InvalidSpec");
    let no_subnet = nics[3]["message"].as_str().unwrap();
    assert!(
        no_subnet.starts_with("multi_interface[id=21].cidr: "),
        "{no_subnet}"
    );
    assert_eq!(ns.addresses("multinic0"), ["192.0.2.10/24"]);
    assert_eq!(ns.mtu("multinic0"), 1400);
    assert_eq!(ns.addresses("multinic1"), ["198.51.100.20/24"]);

    let after = rows(&db);
    let status: Vec<(&str, &str)> = after
        .lines()
        .map(|l| {
            let mut cols = l.split('\t');
            (cols.next().unwrap(), cols.next().unwrap())
        })
        .collect();
    assert_eq!(
        status,
        [
            ("17", "1"),
            ("18", "1"),
            ("19", "0"),
            ("20", "1"),
            ("21", "0")
        ],
        "{after}"
    );
    for line in after.lines() {
        let changed = !line.starts_with("20\t");
        assert_eq!(
            !line.ends_with("2000-01-01 00:00:00"),
            changed,
            "modified_at: {line}"
        );
    }

    // Converged: the second run (credentials from a file this time) changes nothing, on the
    // node or in the database.
    db.sql("UPDATE multinic_test.multi_interface SET modified_at = '2000-01-01'");
    let secret = root.path().join("db-credentials");
    std::fs::write(
        &secret,
        format!("# mounted Secret\nDB_USER=agent\nDB_PASSWORD=\"{PASSWORD}\"\n"),
    )
    .unwrap();
    let again = db_agent(&ns, &db, &root, Credentials::File(&secret));
    assert_eq!(again.code, 2, "{}", again.stderr);
    let reasons: Vec<String> = again.reasons().into_iter().map(|(_, r)| r).collect();
    assert_eq!(
        reasons,
        ["Unchanged", "Unchanged", "InvalidSpec", "InvalidSpec"]
    );
    assert!(
        rows(&db)
            .lines()
            .all(|l| l.ends_with("2000-01-01 00:00:00")),
        "no writes when nothing changed: {}",
        rows(&db)
    );
    for output in [&run.stderr, &run.stdout, &run.report_text, &again.stderr] {
        assert!(!output.contains(PASSWORD), "password leaked: {output}");
    }
}

#[test]
fn a_query_that_does_not_answer_fails_the_run_after_the_query_timeout() {
    let ns = Netns::new();
    let db = MariaDb::start(&ns);
    db.sql(SCHEMA);
    // Another session holds the table: the agent's read waits for it.
    let mut holder = std::process::Command::new("mariadb")
        .arg("--no-defaults")
        .arg(format!("--socket={}", db.socket.display()))
        .args(["-uroot", "-e"])
        .arg("LOCK TABLES multinic_test.multi_interface WRITE; SELECT SLEEP(120);")
        .spawn()
        .unwrap();
    let locked = wait_for(Duration::from_secs(20), || {
        db.sql(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP%'",
        )
        .trim()
            == "1"
    });
    let root = TempDir::new("db-stalled");
    let run = locked.map(|_| {
        db_agent_with(
            &ns,
            &db,
            &root,
            Credentials::Env(PASSWORD),
            &[("DB_QUERY_TIMEOUT", "1s")],
        )
    });
    let _ = holder.kill();
    let _ = holder.wait();
    let run = run.expect("the table lock was never taken");
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = run.report()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("reading rows") && error.contains("no answer within 1s"),
        "{error}"
    );
}

#[test]
fn wrong_password_exits_1_without_showing_it() {
    let ns = Netns::new();
    let db = MariaDb::start(&ns);
    db.sql(SCHEMA);
    let root = TempDir::new("db-denied");
    let wrong = "Wrong-pw-4242";
    let run = db_agent(&ns, &db, &root, Credentials::Env(wrong));
    run.assert_login_refused("Access denied", wrong);
}

#[test]
fn a_row_that_turns_invalid_leaves_its_nic_as_configured() {
    let ns = Netns::new();
    ns.add_nic("0", "fa:16:3e:00:04:01");
    ns.add_nic("1", "fa:16:3e:00:04:02");
    let db = MariaDb::start(&ns);
    db.sql(&net_a_with_rows(
        "(41, 'p41', 'net-a', 'fa:16:3e:00:04:01', 'worker-01', '192.0.2.41', 1450, NULL, NULL),
         (42, 'p42', 'net-a', 'fa:16:3e:00:04:02', 'worker-01', '192.0.2.42', 1400, NULL, NULL)",
    ));
    let root = TempDir::new("db-held");
    let first = db_agent(&ns, &db, &root, Credentials::Env(PASSWORD));
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(ns.addresses("multinic1"), ["192.0.2.42/24"]);
    let files = |root: &TempDir| {
        let mut names: Vec<String> = std::fs::read_dir(root.path().join("etc/netplan"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let configured_files = files(&root);
    assert_eq!(configured_files.len(), 2, "{configured_files:?}");

    // Row 42 goes bad: it is reported by id, and its NIC keeps address, MTU and file.
    db.sql("UPDATE multinic_test.multi_interface SET address = '192.0.2.999' WHERE id = 42");
    let held = db_agent(&ns, &db, &root, Credentials::Env(PASSWORD));
    assert_eq!(held.code, 2, "{}", held.stderr);
    let report = held.report();
    let nics = report["interfaces"].as_array().unwrap();
    assert_eq!(nics.len(), 2, "one entry per row: {report}");
    assert_eq!(nics[0]["reason"], "Unchanged", "{report}");
    assert_eq!(nics[1]["reason"], "InvalidSpec", "{report}");
    let message = nics[1]["message"].as_str().unwrap();
    assert!(
        message.starts_with("multi_interface[id=42].address: "),
        "{message}"
    );
    assert_eq!(ns.addresses("multinic1"), ["192.0.2.42/24"]);
    assert_eq!(ns.mtu("multinic1"), 1400);
    assert_eq!(files(&root), configured_files);
    assert_eq!(
        db.sql("SELECT netplan_success FROM multinic_test.multi_interface WHERE id = 42")
            .trim(),
        "0"
    );

    // Fixed again: nothing had to be rebuilt.
    db.sql("UPDATE multinic_test.multi_interface SET address = '192.0.2.42' WHERE id = 42");
    let fixed = db_agent(&ns, &db, &root, Credentials::Env(PASSWORD));
    assert_eq!(fixed.code, 0, "{}", fixed.stderr);
    let reasons: Vec<String> = fixed.reasons().into_iter().map(|(_, r)| r).collect();
    assert_eq!(reasons, ["Unchanged", "Unchanged"]);

    // A row whose MAC cannot be read may describe any NIC: none is taken down.
    db.sql("UPDATE multinic_test.multi_interface SET macaddress = 'not-a-mac' WHERE id = 42");
    let unreadable = db_agent(&ns, &db, &root, Credentials::Env(PASSWORD));
    assert_eq!(unreadable.code, 2, "{}", unreadable.stderr);
    assert_eq!(
        ns.addresses("multinic1"),
        ["192.0.2.42/24"],
        "{}",
        unreadable.report_text
    );
    assert_eq!(ns.mtu("multinic1"), 1400);
    assert_eq!(files(&root), configured_files);
    // Every row unreadable: still nothing is taken down.
    db.sql("UPDATE multinic_test.multi_interface SET macaddress = 'garbage'");
    let none_readable = db_agent(&ns, &db, &root, Credentials::Env(PASSWORD));
    assert_eq!(none_readable.code, 2, "{}", none_readable.stderr);
    assert_eq!(
        (ns.addresses("multinic0"), ns.addresses("multinic1")),
        (
            vec!["192.0.2.41/24".to_string()],
            vec!["192.0.2.42/24".to_string()]
        ),
        "{}",
        none_readable.report_text
    );
    assert_eq!(files(&root), configured_files);
    db.sql(
        "UPDATE multinic_test.multi_interface SET macaddress = 'fa:16:3e:00:04:01' WHERE id = 41",
    );
    db.sql(
        "UPDATE multinic_test.multi_interface SET macaddress = 'fa:16:3e:00:04:02' WHERE id = 42",
    );

    // A row that is gone (not invalid) still takes its NIC with it.
    db.sql("DELETE FROM multinic_test.multi_interface WHERE id = 42");
    let removed = db_agent(&ns, &db, &root, Credentials::Env(PASSWORD));
    assert_eq!(removed.code, 0, "{}", removed.stderr);
    assert!(!ns.has_link("multinic1") || ns.addresses("multinic1").is_empty());
    assert_eq!(files(&root).len(), 1);
}

#[test]
fn more_rows_than_the_limit_fail_the_run_and_leave_every_nic_as_configured() {
    const LIMIT: u32 = 64;
    let ns = Netns::new();
    ns.add_nic("0", "fa:16:3e:00:05:01");
    let db = MariaDb::start(&ns);
    db.sql(&net_a_with_rows(
        "(51, 'p51', 'net-a', 'fa:16:3e:00:05:01', 'worker-01', '192.0.2.51', 1400, NULL, NULL)",
    ));
    let root = TempDir::new("db-bounded");
    let first = db_agent(&ns, &db, &root, Credentials::Env(PASSWORD));
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(ns.addresses("multinic0"), ["192.0.2.51/24"]);
    let netplan_files = || {
        std::fs::read_dir(root.path().join("etc/netplan"))
            .unwrap()
            .count()
    };
    let configured_files = netplan_files();

    // Rows for NICs not attached yet, one past the limit in all: the read is refused whole,
    // since a cut-short read would look like rows that are gone and take their NICs down.
    let extra: Vec<String> = (1..=LIMIT)
        .map(|i| {
            format!(
                "({id}, 'p{id}', 'net-a', 'fa:16:3e:00:06:{i:02x}', 'worker-01', '192.0.2.{host}', 1450, NULL, NULL)",
                id = 100 + i,
                host = 100 + i,
            )
        })
        .collect();
    db.sql(&format!(
        "INSERT INTO multinic_test.multi_interface VALUES {};",
        extra.join(",")
    ));
    let refused = db_agent(&ns, &db, &root, Credentials::Env(PASSWORD));
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    let error = refused.report()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains(&format!(
            "more than {LIMIT} multi_interface rows name this node"
        )),
        "{error}"
    );
    assert_eq!(ns.addresses("multinic0"), ["192.0.2.51/24"]);
    assert_eq!(ns.mtu("multinic0"), 1400);
    assert_eq!(netplan_files(), configured_files);

    // Exactly the limit is read; the spec's own bound (10 NICs a node) then refuses it, with
    // its own error, and again nothing is touched.
    db.sql(&format!(
        "DELETE FROM multinic_test.multi_interface WHERE id = {}",
        100 + LIMIT
    ));
    let at_limit = db_agent(&ns, &db, &root, Credentials::Env(PASSWORD));
    assert_eq!(at_limit.code, 1, "{}", at_limit.stderr);
    let error = at_limit.report()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains(&format!("at most 10 interfaces are allowed, got {LIMIT}")),
        "{error}"
    );
    assert_eq!(ns.addresses("multinic0"), ["192.0.2.51/24"]);
    assert_eq!(netplan_files(), configured_files);
}
