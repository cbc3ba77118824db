//! The agent Job: its name, its shape (pinned to one node by name, hostNetwork, only
//! CAP_NET_ADMIN, RuntimeDefault seccomp, only the host paths the OS flavor writes plus the
//! D-Bus socket, the spec passed inline, the node's own addresses protected); how a Job in
//! the cache reads back as `JobFacts` is in `job_read.rs`.

use crate::config::{FIELD_MANAGER, JobConfig};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, EnvVar, EnvVarSource, HostPathVolumeSource,
    LocalObjectReference, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, SELinuxOptions,
    SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use multinic_api::MultiNicNodeConfig;
use multinic_api::report::{AgentAction, env};
use multinic_netconf::OsFlavor;
use std::collections::BTreeMap;

/// Label on every Job (and its Pod) the controller creates; the Job watch selects on it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Label with the Job's action (`apply` or `cleanup`).
pub const ACTION_LABEL: &str = "multinic.io/action";
/// Label on the Job's Pod naming its Job, to find the Pod and its report.
pub const JOB_NAME_LABEL: &str = "multinic.io/job-name";
/// Annotation with the generation a Job applies.
pub const GENERATION_ANNOTATION: &str = "multinic.io/generation";
/// Annotation with the attempt number at that generation.
pub const ATTEMPT_ANNOTATION: &str = "multinic.io/attempt";
/// Annotation with the node a Job runs on (names can exceed a label value's 63 characters).
pub const NODE_ANNOTATION: &str = "multinic.io/node-name";
/// The agent's runtime directory on the host (its host lock, its in-flight journal).
pub const AGENT_RUNTIME_DIR: &str = "/run/multinic";
/// The machine's DMI product UUID (the OpenStack instance id), read by the agent.
pub const PRODUCT_UUID: &str = "/sys/class/dmi/id/product_uuid";
/// Runtime units of systemd-networkd, which the D-Bus hand-off writes on Ubuntu (netplan).
pub const NETWORKD_RUNTIME_DIR: &str = "/run/systemd/network";
/// Where host paths are mounted inside the agent container.
pub const HOST_ROOT: &str = "/host";
/// The per-interface IPv6 sysctls, mounted writable under the root: a container's own
/// `/proc/sys` is read-only, and the agent sets managed NICs' `accept_ra`/`autoconf` through
/// this (CAP_NET_ADMIN is enough for network sysctls). Only `ipv6/conf`: the rest of the
/// host's network sysctls (forwarding, `net.core`) stay out of reach.
pub const PROC_SYS_NET: &str = "/proc/sys/net/ipv6/conf";
/// The agent's dry-run option, which agent Jobs never get.
const DRY_RUN_ENV: &str = "MULTINIC_DRY_RUN";
/// Name of the agent container.
pub const CONTAINER_NAME: &str = "agent";
/// Where the agent writes its report; Kubernetes copies it into the Pod status.
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// Longest Job name (a Job's name becomes a label value on its Pods).
pub const MAX_JOB_NAME: usize = 63;

/// Errors building a Job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The owner has no uid, name or namespace yet.
    #[error("resource has no {0}")]
    MissingMeta(&'static str),
    /// The spec could not be serialised.
    #[error("serialising the spec: {0}")]
    Spec(#[from] serde_json::Error),
}

/// The Job name for `action` on `node` at `generation`, attempt `attempt`, of the resource
/// with `uid`: at most 63 characters, a DNS-1123 label; long or dotted node names are
/// shortened and get a hash suffix so distinct nodes never share a name, and a short hash of
/// the uid keeps two resources naming one node (or a resource re-created under the same
/// name) from ever sharing a Job name.
pub fn job_name(
    node: &str,
    uid: &str,
    action: AgentAction,
    generation: i64,
    attempt: u32,
) -> String {
    let owner = format!("{:06x}", fnv1a(uid.as_bytes()) as u32 & 0xff_ffff);
    let tail = match action {
        AgentAction::Apply => format!("-{owner}-g{generation}-a{attempt}"),
        AgentAction::Cleanup => format!("-{owner}-cleanup-a{attempt}"),
    };
    let prefix = "multinic-";
    let clean: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let room = MAX_JOB_NAME - prefix.len() - tail.len();
    let node_part = if clean == node && clean.len() <= room {
        clean
    } else {
        let hash = format!("{:08x}", fnv1a(node.as_bytes()) as u32);
        let keep = room - hash.len() - 1;
        let head: String = clean.chars().take(keep).collect();
        format!("{}-{hash}", head.trim_end_matches('-'))
    };
    format!("{prefix}{node_part}{tail}")
}

/// What to build.
#[derive(Clone, Copy, Debug)]
pub struct JobRequest<'a> {
    /// The resource the Job works for (its owner).
    pub owner: &'a MultiNicNodeConfig,
    /// apply or cleanup.
    pub action: AgentAction,
    /// 1-based attempt number.
    pub attempt: u32,
    /// The node's OS flavor: decides the host paths and is passed to the agent.
    pub flavor: OsFlavor,
    /// The Node's own addresses (status.addresses), which the agent must never touch.
    pub protect: &'a [String],
}

/// Builds the agent Job for `req`.
pub fn build_job(cfg: &JobConfig, req: JobRequest<'_>) -> Result<Job, JobError> {
    let owner = req.owner;
    let node = owner.spec.node_name.as_str();
    let generation = owner.metadata.generation.unwrap_or(0);
    let uid = owner.uid().ok_or(JobError::MissingMeta("uid"))?;
    let name = job_name(node, &uid, req.action, generation, req.attempt);
    let namespace = owner
        .namespace()
        .ok_or(JobError::MissingMeta("namespace"))?;
    // A controller reference without blockOwnerDeletion: setting it would need `update` on
    // multinicnodeconfigs/finalizers wherever OwnerReferencesPermissionEnforcement runs
    // (OpenShift, hardened clusters), and the cleanup finalizer already orders deletion.
    let owner_ref = owner
        .controller_owner_ref(&())
        .ok_or(JobError::MissingMeta("uid"))?;
    let action = action_str(req.action);

    let mut labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), FIELD_MANAGER.to_string()),
        (
            "app.kubernetes.io/name".to_string(),
            "multinic-agent".to_string(),
        ),
        (ACTION_LABEL.to_string(), action.to_string()),
    ]);
    let annotations = BTreeMap::from([
        (GENERATION_ANNOTATION.to_string(), generation.to_string()),
        (ATTEMPT_ANNOTATION.to_string(), req.attempt.to_string()),
        (NODE_ANNOTATION.to_string(), node.to_string()),
    ]);
    let job_meta = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(namespace),
        labels: Some(labels.clone()),
        annotations: Some(annotations.clone()),
        owner_references: Some(vec![owner_ref]),
        ..ObjectMeta::default()
    };
    labels.insert(JOB_NAME_LABEL.to_string(), name.clone());

    // The node name comes from the downward API, not the spec: the agent's wrong-node check
    // then compares two independent facts.
    let mut env_vars: Vec<(String, String)> = vec![
        (env::RUN_MODE.into(), "job".into()),
        (env::AGENT_ACTION.into(), action.into()),
        (env::DATA_SOURCE.into(), "spec".into()),
        (env::NODE_SPEC.into(), serde_json::to_string(&owner.spec)?),
        (env::GENERATION.into(), generation.to_string()),
        (env::ROOT.into(), HOST_ROOT.into()),
        (env::OS.into(), req.flavor.as_str().into()),
        (env::REPORT.into(), TERMINATION_LOG.into()),
    ];
    if !req.protect.is_empty() {
        env_vars.push((env::PROTECTED_ADDRESSES.into(), req.protect.join(",")));
    }
    if let Some(socket) = &cfg.dbus_socket {
        env_vars.push((
            "DBUS_SYSTEM_BUS_ADDRESS".into(),
            format!("unix:path={socket}"),
        ));
    }
    // The chart's agent options. Its extra protected addresses join the Node's own in one
    // variable (a second entry of a name replaces the first in the container); the Job's own
    // variables above are never overridden.
    for (name, value) in &cfg.agent_env {
        if name == DRY_RUN_ENV {
            // A Job must apply and report: a dry run leaves its resource without a result,
            // and a dry cleanup would let the finalizer go with the node still configured.
            tracing::warn!(name, "agent option ignored: agent Jobs never run dry");
            continue;
        }
        match env_vars.iter_mut().find(|(n, _)| n == name) {
            Some((_, own)) if name == env::PROTECTED_ADDRESSES => {
                own.push(',');
                own.push_str(value);
            }
            Some(_) => tracing::warn!(name, "agent option ignored: the Job sets it itself"),
            None => env_vars.push((name.clone(), value.clone())),
        }
    }

    let host_volume = |path: &str, type_: &str, mount_path: String, read_only: bool| {
        let vol = format!("host{}", path.replace(['/', '.', '_'], "-")).to_ascii_lowercase();
        (
            Volume {
                name: vol.clone(),
                host_path: Some(HostPathVolumeSource {
                    path: path.to_string(),
                    type_: Some(type_.into()),
                }),
                ..Volume::default()
            },
            VolumeMount {
                name: vol,
                mount_path,
                read_only: read_only.then_some(true),
                ..VolumeMount::default()
            },
        )
    };
    let (mut volumes, mut mounts): (Vec<Volume>, Vec<VolumeMount>) = req
        .flavor
        .host_paths()
        .iter()
        .chain(std::iter::once(&AGENT_RUNTIME_DIR))
        .chain(handoff_dirs(cfg, req.flavor))
        .map(|path| {
            host_volume(
                path,
                "DirectoryOrCreate",
                format!("{HOST_ROOT}{path}"),
                false,
            )
        })
        .unzip();
    // The machine's id, read-only, for the agent's instanceId check.
    let (v, m) = host_volume(
        PRODUCT_UUID,
        "File",
        format!("{HOST_ROOT}{PRODUCT_UUID}"),
        true,
    );
    volumes.push(v);
    mounts.push(m);
    let (v, m) = host_volume(
        PROC_SYS_NET,
        "Directory",
        format!("{HOST_ROOT}{PROC_SYS_NET}"),
        false,
    );
    volumes.push(v);
    mounts.push(m);
    // The host's system bus, for the hand-off to NetworkManager / systemd-networkd.
    if let Some(socket) = &cfg.dbus_socket {
        let (v, m) = host_volume(socket, "Socket", socket.clone(), false);
        volumes.push(v);
        mounts.push(m);
    }

    // The agent reads MULTINIC_NODE_NAME; NODE_NAME (its fallback) is what the simulator's
    // in-process runner reads.
    let node_from_downward_api = |name: &str| EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: "spec.nodeName".into(),
            }),
            ..EnvVarSource::default()
        }),
    };
    let container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(cfg.image.clone()),
        image_pull_policy: cfg.pull_policy.clone(),
        command: Some(cfg.command.clone()),
        env: Some(
            [env::JOB_NODE_NAME, env::NODE_NAME]
                .into_iter()
                .map(node_from_downward_api)
                .chain(env_vars.into_iter().map(|(name, value)| EnvVar {
                    name,
                    value: Some(value),
                    value_from: None,
                }))
                .collect(),
        ),
        resources: cfg.resources.clone(),
        security_context: Some(SecurityContext {
            privileged: Some(cfg.privileged),
            allow_privilege_escalation: Some(cfg.privileged),
            read_only_root_filesystem: Some(true),
            run_as_user: Some(0),
            capabilities: (!cfg.privileged).then(|| Capabilities {
                add: Some(vec!["NET_ADMIN".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            ..SecurityContext::default()
        }),
        termination_message_path: Some(TERMINATION_LOG.into()),
        termination_message_policy: Some("File".into()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };

    // Pinned by the Node's name: the hostname label is not the node name on every cluster,
    // and label values stop at 63 characters where node names may have 253.
    let pinned = Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_fields: Some(vec![NodeSelectorRequirement {
                        key: "metadata.name".into(),
                        operator: "In".into(),
                        values: Some(vec![node.to_string()]),
                    }]),
                    match_expressions: None,
                }],
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    };
    let pod = PodSpec {
        affinity: Some(pinned),
        security_context: Some(PodSecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            se_linux_options: cfg.selinux_type.as_ref().map(|t| SELinuxOptions {
                type_: Some(t.clone()),
                ..SELinuxOptions::default()
            }),
            ..PodSecurityContext::default()
        }),
        tolerations: Some(cfg.tolerations.clone()),
        host_network: Some(true),
        host_pid: Some(false),
        dns_policy: Some("ClusterFirstWithHostNet".into()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        restart_policy: Some("Never".into()),
        priority_class_name: cfg.priority_class.clone(),
        image_pull_secrets: Some(
            cfg.pull_secrets
                .iter()
                .map(|s| LocalObjectReference { name: s.clone() })
                .collect(),
        )
        .filter(|v: &Vec<_>| !v.is_empty()),
        containers: vec![container],
        volumes: Some(volumes),
        ..PodSpec::default()
    };

    Ok(Job {
        metadata: job_meta,
        spec: Some(JobSpec {
            backoff_limit: Some(cfg.backoff_limit),
            active_deadline_seconds: Some(cfg.active_deadline_seconds),
            ttl_seconds_after_finished: Some(cfg.ttl_seconds_after_finished),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

/// The host directories the hand-off writes for `flavor` (none without the D-Bus socket:
/// then there is no hand-off).
fn handoff_dirs(cfg: &JobConfig, flavor: OsFlavor) -> &'static [&'static str] {
    match (cfg.dbus_socket.is_some(), flavor) {
        (true, OsFlavor::Ubuntu) => &[NETWORKD_RUNTIME_DIR],
        _ => &[],
    }
}

fn action_str(action: AgentAction) -> &'static str {
    match action {
        AgentAction::Apply => "apply",
        AgentAction::Cleanup => "cleanup",
    }
}

/// FNV-1a: a stable, dependency-free hash for name suffixes (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[path = "job_read.rs"]
mod read;
pub use read::{job_facts, job_failure_detail, job_node, job_phase, trim_job};

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
