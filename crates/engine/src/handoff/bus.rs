//! The system bus client of the hand-off: one zbus connection, and method calls and property
//! reads that each give up after the configured timeout and name what they were doing when they
//! fail (`NetworkManager.ActivateConnection: ...`).

use super::HandoffError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::time::Duration;
use zbus::Connection;
use zbus::zvariant::{DynamicType, OwnedValue, Type};

/// `org.freedesktop.DBus`, the bus itself.
const DBUS: &str = "org.freedesktop.DBus";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";

/// A connection to the system bus with a per-call timeout.
#[derive(Clone, Debug)]
pub(crate) struct Bus {
    conn: Connection,
    timeout: Duration,
}

impl Bus {
    /// Connects to `address` (a D-Bus address such as `unix:path=/run/dbus/system_bus_socket`)
    /// and says hello, within `timeout`.
    pub async fn connect(address: &str, timeout: Duration) -> Result<Self, HandoffError> {
        let op = format!("connect to the system bus at {address}");
        // No zbus method timeout: every call goes through `within`, whose error names the
        // call and the limit ("no answer within 10s"), where zbus's own says "I/O error:
        // timed out".
        let builder =
            zbus::connection::Builder::address(address).map_err(|e| HandoffError::new(&op, e))?;
        let conn = within(&op, timeout, builder.build()).await?;
        Ok(Self { conn, timeout })
    }

    /// Whether some process owns `name` on the bus right now.
    pub async fn has_owner(&self, name: &str) -> Result<bool, HandoffError> {
        self.call(
            DBUS,
            "/org/freedesktop/DBus",
            DBUS,
            "NameHasOwner",
            &(name,),
        )
        .await
    }

    /// Calls `interface.method` on `destination`'s object `path` and decodes the reply.
    pub async fn call<B, R>(
        &self,
        destination: &str,
        path: &str,
        interface: &str,
        method: &str,
        body: &B,
    ) -> Result<R, HandoffError>
    where
        B: Serialize + DynamicType,
        R: DeserializeOwned + Type,
    {
        let op = format!("{}.{method} {path}", short(interface));
        let reply = within(
            &op,
            self.timeout,
            self.conn
                .call_method(Some(destination), path, Some(interface), method, body),
        )
        .await?;
        reply
            .body()
            .deserialize::<R>()
            .map_err(|e| HandoffError::new(&op, e))
    }

    /// Reads property `name` of `interface` on `destination`'s object `path`.
    pub async fn get<T>(
        &self,
        destination: &str,
        path: &str,
        interface: &str,
        name: &str,
    ) -> Result<T, HandoffError>
    where
        T: TryFrom<OwnedValue>,
        T::Error: std::fmt::Display,
    {
        let value: OwnedValue = self
            .call(destination, path, PROPERTIES, "Get", &(interface, name))
            .await?;
        T::try_from(value)
            .map_err(|e| HandoffError::new(format!("{}.{name} of {path}", short(interface)), e))
    }
}

/// Runs `future`, failing with a timeout error naming `op` after `limit`.
async fn within<T, E: std::fmt::Display>(
    op: &str,
    limit: Duration,
    future: impl Future<Output = Result<T, E>>,
) -> Result<T, HandoffError> {
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result.map_err(|e| HandoffError::new(op, e)),
        Err(_) => Err(HandoffError::new(op, format!("no answer within {limit:?}"))),
    }
}

/// `org.freedesktop.NetworkManager.Settings` -> `NetworkManager.Settings`: errors stay short.
fn short(interface: &str) -> &str {
    interface
        .strip_prefix("org.freedesktop.")
        .unwrap_or(interface)
}

/// True when `error` says the object or name is gone (a profile deleted meanwhile, a daemon
/// that left the bus), which callers that clean up treat as done.
pub(crate) fn is_gone(error: &HandoffError) -> bool {
    [
        "UnknownObject",
        "UnknownMethod",
        "NotFound",
        "ServiceUnknown",
    ]
    .iter()
    .any(|s| error.detail.contains(s))
}
