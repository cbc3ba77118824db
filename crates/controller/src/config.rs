//! The controller's configuration: what to watch, how agent Jobs look, retry and capacity
//! limits. Built once by the binary from its command line and passed down unchanged.

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Where the host's D-Bus system bus listens.
pub const DBUS_SYSTEM_SOCKET: &str = "/run/dbus/system_bus_socket";

/// Field manager of every write the controller makes (server-side apply).
pub const FIELD_MANAGER: &str = "multinic-controller";

/// How the controller learns about changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchMode {
    /// Long-lived watches (the default).
    Watch,
    /// Full lists at a fixed interval, for clusters where watches are unreliable.
    Poll(Duration),
}

/// Everything the controller needs to run.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Namespace of the resources (and their Jobs); `None` watches all namespaces.
    pub namespace: Option<String>,
    /// Watch or poll.
    pub mode: WatchMode,
    /// Shape of the agent Jobs.
    pub job: JobConfig,
    /// Cluster-wide cap on agent Jobs in flight.
    pub max_jobs_in_flight: usize,
    /// The rollout budget: resources failed since their last change plus changes in flight.
    pub max_failures: crate::fleet::MaxFailures,
    /// How failed generations are retried.
    pub retry: RetryPolicy,
    /// How often a resource whose Node is missing is looked at again (Node events also wake it).
    pub node_missing_recheck: Duration,
    /// Reconciles allowed to run at once (0 = unbounded).
    pub concurrency: u16,
    /// Name of this replica in Events and the Lease.
    pub instance: String,
    /// Lease-based leader election; `None` acts at once (single replica).
    pub leader_election: Option<LeaderConfig>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None` serves nothing.
    pub http_addr: Option<SocketAddr>,
}

/// How failed generations are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Jobs tried per generation before it stays Failed (until the spec changes or the
    /// `multinic.io/retry` annotation is set).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled for each further one.
    pub base_delay: Duration,
    /// Longest delay between attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// Delay before the attempt that follows `failed_attempts` failures (at least one).
    pub fn delay_after(&self, failed_attempts: u32) -> Duration {
        let doublings = failed_attempts.saturating_sub(1).min(20);
        self.base_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }
}

/// Lease-based leader election settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews.
    pub renew_interval: Duration,
    /// Longest a renewal may take, and longest the holder keeps acting without a successful
    /// one (shorter than `lease_duration`, so it stops before anyone else may take over).
    pub renew_deadline: Duration,
}

/// The agent Job template's knobs.
#[derive(Clone, Debug, PartialEq)]
pub struct JobConfig {
    /// Agent image.
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never`; `None` leaves the cluster default.
    pub pull_policy: Option<String>,
    /// Names of image pull Secrets.
    pub pull_secrets: Vec<String>,
    /// Command that starts the agent in the image.
    pub command: Vec<String>,
    /// Container resources.
    pub resources: Option<ResourceRequirements>,
    /// Tolerations of the Job's Pod.
    pub tolerations: Vec<Toleration>,
    /// Run the agent privileged (off: the agent gets only CAP_NET_ADMIN).
    pub privileged: bool,
    /// The Job's `backoffLimit` (the controller retries by itself, so 0 by default).
    pub backoff_limit: i32,
    /// The Job's `activeDeadlineSeconds`.
    pub active_deadline_seconds: i64,
    /// The Job's `ttlSecondsAfterFinished`, a safety net: the controller deletes finished Jobs.
    pub ttl_seconds_after_finished: i32,
    /// Extra environment handed to the agent (its options), in order.
    pub agent_env: Vec<(String, String)>,
    /// Priority class of the Pod, if any.
    pub priority_class: Option<String>,
    /// SELinux type of the Pod (`spc_t` on RHEL hosts with SELinux enforcing), if any.
    pub selinux_type: Option<String>,
    /// The host's D-Bus system socket, mounted at the same path for the hand-off to the
    /// host's network manager; `None` mounts nothing.
    pub dbus_socket: Option<String>,
}

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            image: "multinic:latest".into(),
            pull_policy: None,
            pull_secrets: Vec::new(),
            command: vec!["multinic".into(), "agent".into()],
            resources: None,
            tolerations: default_tolerations(),
            privileged: false,
            backoff_limit: 0,
            active_deadline_seconds: 300,
            ttl_seconds_after_finished: 3600,
            agent_env: Vec::new(),
            priority_class: None,
            selinux_type: None,
            dbus_socket: Some(DBUS_SYSTEM_SOCKET.into()),
        }
    }
}

/// Tolerations for the control-plane and legacy master NoSchedule taints.
pub fn default_tolerations() -> Vec<Toleration> {
    [
        "node-role.kubernetes.io/control-plane",
        "node-role.kubernetes.io/master",
    ]
    .into_iter()
    .map(|key| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some("NoSchedule".into()),
        ..Toleration::default()
    })
    .collect()
}

/// Parses a toleration written `key[=value][:Effect]`, e.g.
/// `node-role.kubernetes.io/control-plane:NoSchedule` or `dedicated=net:NoExecute`.
/// Without a value the operator is `Exists`; `*` alone tolerates everything.
pub fn parse_toleration(text: &str) -> Result<Toleration, String> {
    let text = text.trim();
    if text == "*" {
        return Ok(Toleration {
            operator: Some("Exists".into()),
            ..Toleration::default()
        });
    }
    let (selector, effect) = match text.rsplit_once(':') {
        Some((s, e)) => (s, Some(e)),
        None => (text, None),
    };
    if let Some(effect) = effect
        && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect)
    {
        return Err(format!(
            "toleration {text:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute, got {effect:?}"
        ));
    }
    let (key, value) = match selector.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (selector, None),
    };
    if key.is_empty() {
        return Err(format!("toleration {text:?}: the key is empty"));
    }
    Ok(Toleration {
        key: Some(key.into()),
        operator: Some(if value.is_some() { "Equal" } else { "Exists" }.into()),
        value: value.map(Into::into),
        effect: effect.map(Into::into),
        ..Toleration::default()
    })
}

/// Parses `name=quantity` pairs separated by commas (`cpu=10m,memory=32Mi`).
pub fn parse_quantities(text: &str) -> Result<BTreeMap<String, Quantity>, String> {
    let mut out = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, qty) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?}: expected name=quantity, e.g. cpu=10m"))?;
        if name.is_empty() || qty.is_empty() {
            return Err(format!(
                "{pair:?}: expected name=quantity, e.g. memory=32Mi"
            ));
        }
        out.insert(name.to_string(), Quantity(qty.to_string()));
    }
    Ok(out)
}

/// Parses `KEY=VALUE` (an agent option handed to the Job's environment).
pub fn parse_env_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{text:?}: expected KEY=VALUE")),
    }
}

/// Parses a duration written `500ms`, `15s`, `2m`, `1h` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: expected a duration such as 15s, 500ms, 2m or 1h"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!(
            "{text:?}: unknown unit {unit:?}; use ms, s, m or h"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2d").unwrap_err().contains("unit"));
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            max_attempts: 9,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
        };
        let delays: Vec<u64> = (1..=5).map(|n| p.delay_after(n).as_secs()).collect();
        assert_eq!(delays, vec![10, 20, 40, 60, 60]);
    }

    #[test]
    fn tolerations_parse() {
        let t = parse_toleration("dedicated=net:NoExecute").unwrap();
        assert_eq!(t.key.as_deref(), Some("dedicated"));
        assert_eq!(t.operator.as_deref(), Some("Equal"));
        assert_eq!(t.value.as_deref(), Some("net"));
        assert_eq!(t.effect.as_deref(), Some("NoExecute"));
        let t = parse_toleration("node-role.kubernetes.io/master:NoSchedule").unwrap();
        assert_eq!(t.operator.as_deref(), Some("Exists"));
        assert!(
            parse_toleration("a:Sometimes")
                .unwrap_err()
                .contains("effect")
        );
        assert!(parse_toleration(":NoSchedule").is_err());
    }

    #[test]
    fn quantities_parse() {
        let q = parse_quantities("cpu=10m, memory=32Mi").unwrap();
        assert_eq!(q["cpu"].0, "10m");
        assert_eq!(q["memory"].0, "32Mi");
        assert!(parse_quantities("cpu").is_err());
    }
}
