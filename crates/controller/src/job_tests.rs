//! Job names and shape.

use super::*;
use crate::config::JobConfig;
use crate::decide::JobPhase;
use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use multinic_api::MultiNicNodeConfigSpec;

fn owner() -> MultiNicNodeConfig {
    let spec: MultiNicNodeConfigSpec = serde_json::from_value(serde_json::json!({
        "nodeName": "worker-01",
        "interfaces": [{"id": 0, "macAddress": "fa:16:3e:00:00:01", "address": "10.0.0.5", "cidr": "10.0.0.0/24"}]
    }))
    .unwrap();
    let mut obj = MultiNicNodeConfig::new("worker-01", spec);
    obj.metadata.namespace = Some("multinic-system".into());
    obj.metadata.uid = Some("uid-1".into());
    obj.metadata.generation = Some(4);
    obj
}

fn request(owner: &MultiNicNodeConfig, flavor: OsFlavor) -> JobRequest<'_> {
    JobRequest {
        owner,
        action: AgentAction::Apply,
        attempt: 2,
        flavor,
        protect: &[],
    }
}

/// The agent container's environment, in order.
fn container_env(job: &Job) -> &[k8s_openapi::api::core::v1::EnvVar] {
    job.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .env
        .as_deref()
        .unwrap()
}

fn env_of(job: &Job) -> BTreeMap<String, String> {
    container_env(job)
        .iter()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

fn job_name(node: &str, action: AgentAction, generation: i64, attempt: u32) -> String {
    super::job_name(node, "uid-1", action, generation, attempt)
}

#[test]
fn names_are_short_labels_and_distinct() {
    let uid_hash = format!("{:06x}", fnv1a(b"uid-1") as u32 & 0xff_ffff);
    assert_eq!(
        job_name("worker-01", AgentAction::Apply, 3, 1),
        format!("multinic-worker-01-{uid_hash}-g3-a1")
    );
    assert_eq!(
        job_name("worker-01", AgentAction::Cleanup, 3, 2),
        format!("multinic-worker-01-{uid_hash}-cleanup-a2")
    );
    // Two resources naming one node never share a Job name.
    assert_ne!(
        super::job_name("worker-01", "uid-1", AgentAction::Apply, 1, 1),
        super::job_name("worker-01", "uid-2", AgentAction::Apply, 1, 1)
    );
    let long_a = format!("{}a", "n".repeat(80));
    let long_b = format!("{}b", "n".repeat(80));
    let (a, b) = (
        job_name(&long_a, AgentAction::Apply, 123_456, 10),
        job_name(&long_b, AgentAction::Apply, 123_456, 10),
    );
    assert!(
        a.len() <= MAX_JOB_NAME && b.len() <= MAX_JOB_NAME,
        "{a} {b}"
    );
    assert_ne!(a, b);
    assert!(a.ends_with("-g123456-a10"));
    let dotted = job_name("node.example.com", AgentAction::Apply, 1, 1);
    assert_ne!(
        dotted,
        job_name("node-example-com", AgentAction::Apply, 1, 1)
    );
    for name in [a, b, dotted] {
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name}"
        );
    }
}

#[test]
fn job_is_pinned_least_privileged_and_carries_the_spec() {
    let obj = owner();
    let job = build_job(&JobConfig::default(), request(&obj, OsFlavor::Ubuntu)).unwrap();
    assert_eq!(
        job.metadata.name.as_deref(),
        Some(job_name("worker-01", AgentAction::Apply, 4, 2).as_str())
    );
    let owner_ref = &job.metadata.owner_references.as_ref().unwrap()[0];
    // No blockOwnerDeletion: the chart grants no multinicnodeconfigs/finalizers for it.
    assert_eq!(
        (
            owner_ref.uid.as_str(),
            owner_ref.controller,
            owner_ref.block_owner_deletion
        ),
        ("uid-1", Some(true), None)
    );
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(
        (
            spec.backoff_limit,
            spec.active_deadline_seconds,
            spec.ttl_seconds_after_finished
        ),
        (Some(0), Some(300), Some(3600))
    );
    let pod = spec.template.spec.as_ref().unwrap();
    // Pinned by the Node's name (matchFields), not by the hostname label.
    assert!(pod.node_selector.is_none());
    let terms = &pod
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .unwrap()
        .node_selector_terms;
    let field = &terms[0].match_fields.as_ref().unwrap()[0];
    assert_eq!(
        (
            field.key.as_str(),
            field.operator.as_str(),
            field.values.as_deref()
        ),
        ("metadata.name", "In", Some(&["worker-01".to_string()][..]))
    );
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    assert!(psc.se_linux_options.is_none());
    assert_eq!(
        (
            pod.host_network,
            pod.host_pid,
            pod.automount_service_account_token
        ),
        (Some(true), Some(false), Some(false))
    );
    let keys: Vec<_> = pod
        .tolerations
        .as_ref()
        .unwrap()
        .iter()
        .map(|t| t.key.clone().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "node-role.kubernetes.io/control-plane",
            "node-role.kubernetes.io/master"
        ]
    );
    let sc = pod.containers[0].security_context.as_ref().unwrap();
    assert_eq!(sc.privileged, Some(false));
    // docs/operations.md: root for the netlink and file writes, but a read-only image and no
    // way to gain more than NET_ADMIN.
    assert_eq!(
        (
            sc.run_as_user,
            sc.read_only_root_filesystem,
            sc.allow_privilege_escalation
        ),
        (Some(0), Some(true), Some(false))
    );
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.add.as_deref(), Some(&["NET_ADMIN".to_string()][..]));
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));

    let paths: Vec<_> = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .map(|v| {
            let hp = v.host_path.as_ref().unwrap();
            (hp.path.clone(), hp.type_.clone().unwrap())
        })
        .collect();
    let mut expected: Vec<_> = OsFlavor::Ubuntu
        .host_paths()
        .iter()
        .chain(&["/run/multinic", "/run/systemd/network"])
        .map(|p| (p.to_string(), "DirectoryOrCreate".to_string()))
        .collect();
    expected.push((PRODUCT_UUID.into(), "File".into()));
    expected.push(("/proc/sys/net/ipv6/conf".into(), "Directory".into()));
    expected.push(("/run/dbus/system_bus_socket".into(), "Socket".into()));
    assert_eq!(paths, expected);
    let mounts: Vec<_> = pod.containers[0]
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.mount_path.clone())
        .collect();
    let mut expected: Vec<_> = OsFlavor::Ubuntu
        .host_paths()
        .iter()
        .chain(&[
            "/run/multinic",
            "/run/systemd/network",
            PRODUCT_UUID,
            "/proc/sys/net/ipv6/conf",
        ])
        .map(|p| format!("/host{p}"))
        .collect();
    expected.push("/run/dbus/system_bus_socket".into());
    assert_eq!(mounts, expected);
    let read_only: Vec<_> = pod.containers[0]
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .filter(|m| m.read_only == Some(true))
        .map(|m| m.mount_path.as_str())
        .collect();
    assert_eq!(read_only, ["/host/sys/class/dmi/id/product_uuid"]);

    let env = env_of(&job);
    let inline: MultiNicNodeConfigSpec = serde_json::from_str(&env["MULTINIC_NODE_SPEC"]).unwrap();
    assert_eq!(inline, obj.spec);
    assert_eq!(env["MULTINIC_GENERATION"], "4");
    assert_eq!(env["MULTINIC_ROOT"], "/host");
    assert!(
        !env.contains_key("MULTINIC_DRY_RUN"),
        "a Job never runs dry"
    );
    assert_eq!(env["MULTINIC_OS"], "ubuntu");
    assert_eq!(env["AGENT_ACTION"], "apply");
    assert_eq!(env["DATA_SOURCE"], "spec");
    assert_eq!(
        env["DBUS_SYSTEM_BUS_ADDRESS"],
        "unix:path=/run/dbus/system_bus_socket"
    );
    assert!(!env.contains_key("MULTINIC_PROTECTED_ADDRESSES"));
    // The node name comes from the downward API, not from the spec.
    for name in ["MULTINIC_NODE_NAME", "NODE_NAME"] {
        let node_env = pod.containers[0]
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == name)
            .unwrap();
        assert_eq!(node_env.value, None);
        assert_eq!(
            node_env
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str()),
            Some("spec.nodeName")
        );
    }
}

#[test]
fn the_nodes_own_addresses_are_protected_and_selinux_is_an_option() {
    let obj = owner();
    let cfg = JobConfig {
        selinux_type: Some("spc_t".into()),
        dbus_socket: None,
        // The chart's extra addresses, and an option the Job sets itself.
        agent_env: vec![
            ("MULTINIC_PROTECTED_ADDRESSES".into(), "198.51.100.7".into()),
            ("MULTINIC_ROOT".into(), "/elsewhere".into()),
            ("MULTINIC_DRY_RUN".into(), "true".into()),
        ],
        ..JobConfig::default()
    };
    let protect = ["192.0.2.10".to_string(), "2001:db8::10".to_string()];
    let req = JobRequest {
        protect: &protect,
        ..request(&obj, OsFlavor::Rhel9)
    };
    let job = build_job(&cfg, req).unwrap();
    let env = env_of(&job);
    assert_eq!(
        env["MULTINIC_PROTECTED_ADDRESSES"], "192.0.2.10,2001:db8::10,198.51.100.7",
        "the Node's addresses and the chart's, in one variable"
    );
    assert_eq!(env["MULTINIC_ROOT"], "/host");
    assert!(
        !env.contains_key("MULTINIC_DRY_RUN"),
        "a Job never runs dry"
    );
    let names: Vec<&str> = container_env(&job)
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(names.len(), unique.len(), "no variable twice: {names:?}");
    assert!(!env.contains_key("DBUS_SYSTEM_BUS_ADDRESS"));
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let se = pod
        .security_context
        .as_ref()
        .and_then(|s| s.se_linux_options.as_ref())
        .unwrap();
    assert_eq!(se.type_.as_deref(), Some("spc_t"));
    assert!(
        pod.volumes.as_ref().unwrap().iter().all(|v| v
            .host_path
            .as_ref()
            .unwrap()
            .type_
            .as_deref()
            != Some("Socket"))
    );
}

#[test]
fn rhel_gets_only_its_own_paths_and_config_is_honoured() {
    let obj = owner();
    let cfg = JobConfig {
        privileged: true,
        pull_secrets: vec!["regcred".into()],
        agent_env: vec![("MULTINIC_POLICY_ROUTING".into(), "false".into())],
        ..JobConfig::default()
    };
    let job = build_job(&cfg, request(&obj, OsFlavor::Rhel9)).unwrap();
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let paths: Vec<_> = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .map(|v| v.host_path.as_ref().unwrap().path.clone())
        .collect();
    // The flavor's own, then /run/multinic, product_uuid, /proc/sys/net and the bus socket.
    assert_eq!(&paths[..paths.len() - 4], OsFlavor::Rhel9.host_paths());
    assert!(
        !paths.iter().any(|p| p == "/run/systemd/network"),
        "networkd is Ubuntu's"
    );
    assert!(!paths.iter().any(|p| p.contains("netplan")));
    let sc = pod.containers[0].security_context.as_ref().unwrap();
    assert_eq!(
        (sc.privileged, sc.capabilities.is_none()),
        (Some(true), true)
    );
    assert_eq!(pod.image_pull_secrets.as_ref().unwrap()[0].name, "regcred");
    assert_eq!(env_of(&job)["MULTINIC_POLICY_ROUTING"], "false");
}

#[test]
fn facts_read_back_from_a_cached_job() {
    let obj = owner();
    let mut job = build_job(&JobConfig::default(), request(&obj, OsFlavor::Ubuntu)).unwrap();
    let facts = job_facts(&job).unwrap();
    assert_eq!(
        (facts.action, facts.generation, facts.attempt, facts.phase),
        (AgentAction::Apply, Some(4), 2, JobPhase::Running)
    );
    assert_eq!(job_node(&job), Some("worker-01"));
    job.status = Some(JobStatus {
        conditions: Some(vec![JobCondition {
            type_: "Failed".into(),
            status: "True".into(),
            reason: Some("DeadlineExceeded".into()),
            message: Some("Job was active longer than specified deadline".into()),
            ..Default::default()
        }]),
        ..Default::default()
    });
    trim_job(&mut job);
    assert!(job.spec.is_none());
    assert_eq!(job_phase(&job), JobPhase::Failed);
    assert!(job_failure_detail(&job).starts_with("DeadlineExceeded: Job was active"));
}

#[test]
fn a_started_job_without_any_pod_is_told_apart() {
    let obj = owner();
    let mut job = build_job(&JobConfig::default(), request(&obj, OsFlavor::Ubuntu)).unwrap();
    // Not synced by the Job controller yet: no timer needed, its sync is an event.
    assert_eq!(job_facts(&job).unwrap().no_pod_since, None);
    let started: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    job.status = Some(JobStatus {
        start_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            started,
        )),
        active: Some(0),
        ..Default::default()
    });
    assert_eq!(job_facts(&job).unwrap().no_pod_since, Some(started));
    // A Pod counted (Pending counts as active) or a finished Job: nothing to look for.
    job.status.as_mut().unwrap().active = Some(1);
    assert_eq!(job_facts(&job).unwrap().no_pod_since, None);
    let status = job.status.as_mut().unwrap();
    status.active = None;
    status.failed = Some(1);
    assert_eq!(job_facts(&job).unwrap().no_pod_since, None);
    // A finished Pod still being recorded: every counter 0, the Pod in uncountedTerminatedPods.
    let status = job.status.as_mut().unwrap();
    status.failed = None;
    status.uncounted_terminated_pods = Some(k8s_openapi::api::batch::v1::UncountedTerminatedPods {
        succeeded: Some(vec!["pod-uid".into()]),
        failed: None,
    });
    assert_eq!(job_facts(&job).unwrap().no_pod_since, None);
}
