//! API errors as the Kubernetes `Status` objects clients expect, and the crate's own errors.

use serde_json::{Value, json};

/// One invalid field, reported in `Status.details.causes`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cause {
    /// Path of the field, e.g. `spec.interfaces[0].mtu`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
    /// `FieldValueInvalid`, `FieldValueRequired` ...
    pub reason: &'static str,
}

/// An API request that failed; rendered as a `Status` with the matching HTTP code.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid` ...).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `details`: name, group, kind, causes.
    pub details: Option<Value>,
}

impl ApiError {
    fn with(code: u16, reason: &'static str, message: String) -> Self {
        Self {
            code,
            reason,
            message,
            details: None,
        }
    }

    fn named(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.details = Some(json!({"name": name, "group": group, "kind": kind}));
        self
    }

    /// 404 for a missing object.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        let gr = qualified(group, resource);
        Self::with(404, "NotFound", format!("{gr} \"{name}\" not found"))
            .named(group, resource, name)
    }

    /// 404 for a path the server does not serve.
    pub fn no_route(path: &str) -> Self {
        Self::with(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// 409 for a create of an existing name.
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        let gr = qualified(group, resource);
        Self::with(
            409,
            "AlreadyExists",
            format!("{gr} \"{name}\" already exists"),
        )
        .named(group, resource, name)
    }

    /// 409 for a write based on a stale resourceVersion or a failed precondition.
    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let gr = qualified(group, resource);
        Self::with(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {gr} \"{name}\": {why}"),
        )
        .named(group, resource, name)
    }

    /// 409 for a server-side apply that would take fields owned by other appliers.
    pub fn apply_conflict(
        group: &str,
        resource: &str,
        name: &str,
        conflicts: &[(String, String)],
    ) -> Self {
        let list: Vec<String> = conflicts
            .iter()
            .map(|(m, f)| format!("conflict with {m:?}: {f}"))
            .collect();
        let message = format!(
            "Apply failed with {} conflict{}: {}",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            list.join("; ")
        );
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(m, f)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {m:?}"), "field": f}))
            .collect();
        let mut err = Self::with(409, "Conflict", message).named(group, resource, name);
        if let Some(d) = err.details.as_mut() {
            d["causes"] = Value::Array(causes);
        }
        err
    }

    /// 422 with one cause per invalid field.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let list: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let message = format!(
            "{} \"{name}\" is invalid: {}",
            qualified(group, kind),
            list.join(", ")
        );
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        let mut err = Self::with(422, "Invalid", message).named(group, kind, name);
        if let Some(d) = err.details.as_mut() {
            d["causes"] = Value::Array(causes);
        }
        err
    }

    /// 400 for a malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::with(400, "BadRequest", message.into())
    }

    /// 405 for a verb the resource does not support.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::with(405, "MethodNotAllowed", message.into())
    }

    /// 410 for a watch or list from a resourceVersion older than the kept history.
    pub fn gone(rv: u64, oldest: u64) -> Self {
        Self::with(
            410,
            "Expired",
            format!("too old resource version: {rv} ({oldest})"),
        )
    }

    /// 415 for a patch type the server does not understand.
    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Self::with(415, "UnsupportedMediaType", message.into())
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::with(500, "InternalError", message.into())
    }

    /// The `Status` object of this error.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

/// Errors starting or running the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding or serving the HTTP port failed.
    #[error("serving the API on 127.0.0.1:{port}: {source}")]
    Serve {
        /// The requested port.
        port: u16,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Writing the kubeconfig or a node directory failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Building the kube client failed.
    #[error("building a kube client: {0}")]
    Client(String),
    /// Setting up a node's network namespace failed.
    #[error("node {node}: {message}")]
    Node {
        /// Node name.
        node: String,
        /// What failed.
        message: String,
    },
    /// An API call made by the simulator itself failed.
    #[error(transparent)]
    Api(#[from] ApiError),
}
