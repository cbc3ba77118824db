//! The `db` source: the legacy MySQL/MariaDB tables (`multi_interface` joined with
//! `multi_subnet`). Rows carry database ids, not slots; after applying, each row's
//! `netplan_success` is set to whether its NIC ended configured. The password is never
//! shown: it lives in a [`Redacted`] and is scrubbed from every driver error. The connection
//! is TLS (rustls) as [`DbTls`] asks, verified against the given CA; MySQL 8's
//! `caching_sha2_password` works over TLS and, without TLS, through the server's RSA key.
//! Reads are bounded: more than [`MAX_ROWS`] rows for one node is an error, not a huge read.

use super::LoadedSpec;
use crate::config::{DbConfig, DbTls, DbTlsMode, Redacted};
use multinic_api::{InterfaceSpec, MultiNicNodeConfigSpec};
use sqlx::Row;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlSslMode};

/// Most rows one node may have. A node has at most ten multinic NICs; a few stale rows are
/// tolerated, thousands mean a wrong table or a broken join.
const MAX_ROWS: usize = 64;

/// The read query of the earlier agent; the casts make it independent of the column types
/// an installation chose (ids may be integers or strings).
const SELECT_ROWS: &str = "SELECT CAST(mi.id AS CHAR) AS id, mi.macaddress, mi.address, \
     CAST(mi.mtu AS SIGNED) AS mtu, ms.cidr, CAST(mi.netplan_success AS SIGNED) AS netplan_success \
     FROM multi_interface mi LEFT JOIN multi_subnet ms ON mi.subnet_id = ms.subnet_id \
     WHERE mi.attached_node_name = ? ORDER BY mi.id LIMIT ?";

const UPDATE_SUCCESS: &str =
    "UPDATE multi_interface SET netplan_success = ?, modified_at = NOW() WHERE id = ?";

/// A database failure, with the password scrubbed from the driver's text.
#[derive(Debug, thiserror::Error)]
#[error("database {action}: {message}")]
pub struct DbError {
    /// What was being done (`reading rows of node x`, `updating row 17`).
    pub action: String,
    /// The driver's message, password removed.
    pub message: String,
}

/// One `multi_interface` row as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbRow {
    /// Database id (as text).
    pub id: String,
    /// MAC address column.
    pub mac: Option<String>,
    /// Address column.
    pub address: Option<String>,
    /// MTU column.
    pub mtu: Option<i64>,
    /// `multi_subnet.cidr`, absent when the subnet row is missing.
    pub cidr: Option<String>,
    /// Current `netplan_success`.
    pub netplan_success: Option<i64>,
}

/// What happened to one row, to be written back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowOutcome {
    /// Database id.
    pub id: String,
    /// Whether its NIC ended configured.
    pub success: bool,
}

/// A connection pool to the legacy database plus the rows last read.
pub struct DbSource {
    pool: MySqlPool,
    query_timeout: std::time::Duration,
    password: Redacted,
    rows: Vec<DbRow>,
}

impl DbSource {
    /// Prepares a pool; the first query connects.
    pub fn new(config: &DbConfig) -> Self {
        let options = tls_options(
            MySqlConnectOptions::new()
                .host(&config.host)
                .port(config.port)
                .username(&config.user)
                .password(config.password.expose())
                .database(&config.database),
            &config.tls,
        );
        let pool = MySqlPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(config.connect_timeout)
            .connect_lazy_with(options);
        Self {
            pool,
            query_timeout: config.query_timeout,
            password: config.password.clone(),
            rows: Vec::new(),
        }
    }

    /// Reads this node's rows and maps them to a spec; entry `i` is labelled
    /// `multi_interface[id=<id>]` in messages.
    pub async fn load(&mut self, node_name: &str) -> Result<LoadedSpec, DbError> {
        // One row past the limit tells "exactly the limit" from "too many".
        let action = format!("reading rows of node {node_name:?}");
        let read = sqlx::query(SELECT_ROWS)
            .bind(node_name)
            .bind(MAX_ROWS as u64 + 1)
            .fetch_all(&self.pool);
        let rows = self
            .bounded(&action, read)
            .await?
            .map_err(|e| self.error(action.clone(), e))?;
        if rows.len() > MAX_ROWS {
            return Err(DbError {
                action: format!("reading rows of node {node_name:?}"),
                message: format!(
                    "more than {MAX_ROWS} multi_interface rows name this node; refusing to \
                     apply a read that may be cut short"
                ),
            });
        }
        self.rows = rows
            .iter()
            .map(|row| -> Result<DbRow, sqlx::Error> {
                Ok(DbRow {
                    id: row.try_get::<Option<String>, _>("id")?.unwrap_or_default(),
                    mac: row.try_get("macaddress")?,
                    address: row.try_get("address")?,
                    mtu: row.try_get("mtu")?,
                    cidr: row.try_get("cidr")?,
                    netplan_success: row.try_get("netplan_success")?,
                })
            })
            .collect::<Result<_, _>>()
            .map_err(|e| self.error(format!("decoding rows of node {node_name:?}"), e))?;
        Ok(rows_to_spec(node_name, &self.rows))
    }

    /// Writes `netplan_success` for every row whose value changes (so a converged node
    /// causes no writes).
    pub async fn write_back(&self, outcomes: &[RowOutcome]) -> Result<usize, DbError> {
        let mut written = 0;
        for outcome in outcomes {
            let want = i64::from(outcome.success);
            let current = self
                .rows
                .iter()
                .find(|r| r.id == outcome.id)
                .and_then(|r| r.netplan_success);
            if current == Some(want) {
                continue;
            }
            let action = format!("updating row {}", outcome.id);
            let update = sqlx::query(UPDATE_SUCCESS)
                .bind(want)
                .bind(&outcome.id)
                .execute(&self.pool);
            self.bounded(&action, update)
                .await?
                .map_err(|e| self.error(action.clone(), e))?;
            written += 1;
        }
        Ok(written)
    }

    /// Runs one query, failing after the query timeout (a locked table or a stalled server
    /// must not hang the pass).
    async fn bounded<T>(
        &self,
        action: &str,
        query: impl std::future::Future<Output = T>,
    ) -> Result<T, DbError> {
        tokio::time::timeout(self.query_timeout, query)
            .await
            .map_err(|_| DbError {
                action: action.to_owned(),
                message: format!("no answer within {:?}", self.query_timeout),
            })
    }

    /// Database ids of the rows last read, in spec order.
    pub fn row_ids(&self) -> Vec<String> {
        self.rows.iter().map(|r| r.id.clone()).collect()
    }

    fn error(&self, action: String, e: sqlx::Error) -> DbError {
        let mut message = e.to_string();
        let secret = self.password.expose();
        if !secret.is_empty() {
            message = message.replace(secret, "<redacted>");
        }
        DbError { action, message }
    }
}

/// Applies the TLS settings; sqlx reads the CA file when it connects.
fn tls_options(options: MySqlConnectOptions, tls: &DbTls) -> MySqlConnectOptions {
    let options = options.ssl_mode(match tls.mode {
        DbTlsMode::Disabled => MySqlSslMode::Disabled,
        DbTlsMode::Preferred => MySqlSslMode::Preferred,
        DbTlsMode::Required => MySqlSslMode::Required,
        DbTlsMode::VerifyCa => MySqlSslMode::VerifyCa,
        DbTlsMode::VerifyIdentity => MySqlSslMode::VerifyIdentity,
    });
    match &tls.ca_file {
        Some(ca) => options.ssl_ca(ca),
        None => options,
    }
}

/// Maps rows to a spec. Missing columns become empty strings so validation reports them
/// (`multi_interface[id=17].cidr: "" is not a network ...`) instead of dropping the row.
pub fn rows_to_spec(node_name: &str, rows: &[DbRow]) -> LoadedSpec {
    let interfaces = rows
        .iter()
        .map(|row| InterfaceSpec {
            id: None,
            name: None,
            port_id: None,
            mac_address: row.mac.clone().unwrap_or_default().trim().to_owned(),
            address: row.address.clone().unwrap_or_default().trim().to_owned(),
            cidr: row.cidr.clone().unwrap_or_default().trim().to_owned(),
            // An out-of-range MTU becomes one validation rejects, never a silent default.
            mtu: row.mtu.map(|m| u32::try_from(m).unwrap_or(u32::MAX)),
        })
        .collect();
    LoadedSpec {
        spec: MultiNicNodeConfigSpec {
            node_name: node_name.to_owned(),
            instance_id: None,
            interfaces,
        },
        generation: None,
        labels: Some(
            rows.iter()
                .map(|r| format!("multi_interface[id={}]", r.id))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, cidr: Option<&str>) -> DbRow {
        DbRow {
            id: id.into(),
            mac: Some("FA:16:3E:00:00:01 ".into()),
            address: Some("10.250.0.2".into()),
            mtu: Some(1450),
            cidr: cidr.map(Into::into),
            netplan_success: None,
        }
    }

    #[test]
    fn bad_rows_are_reported_by_database_id() {
        let loaded = rows_to_spec(
            "worker-01",
            &[row("17", None), row("18", Some("10.250.1.0/24"))],
        );
        let checked = loaded.check("worker-01").unwrap();
        assert_eq!(checked.invalid.len(), 2, "{checked:?}");
        let (index, entry) = &checked.invalid[0];
        assert_eq!(*index, 0);
        assert!(
            entry.message.starts_with("multi_interface[id=17].cidr: "),
            "{}",
            entry.message
        );
        // The second row's address lies outside its network.
        assert!(
            checked.invalid[1]
                .1
                .message
                .contains("multi_interface[id=18].address")
        );
    }

    #[test]
    fn clashes_name_both_rows_by_id() {
        let mut second = row("18", Some("10.250.0.0/24"));
        second.address = Some("10.250.0.3".into());
        let loaded = rows_to_spec("worker-01", &[row("17", Some("10.250.0.0/24")), second]);
        let checked = loaded.check("worker-01").unwrap();
        assert_eq!(checked.valid.len(), 1);
        assert_eq!(
            checked.invalid[0].1.message,
            "multi_interface[id=18].macAddress: duplicates multi_interface[id=17].macAddress"
        );
    }

    #[test]
    fn redacted_password_never_prints() {
        let secret = Redacted::new("hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "<redacted> <redacted>");
    }
}
