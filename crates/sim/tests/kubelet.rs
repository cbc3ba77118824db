//! The node simulator: Node registration, Jobs whose Pods land on simulated nodes and run
//! through the instant runner or as real local processes (env, hostPath mapping, termination
//! message), Job status with backoffLimit, activeDeadlineSeconds and ttlSecondsAfterFinished,
//! nodes backed by network namespaces, and cleanup on shutdown.
//!
//! | Promise | Test |
//! |---|---|
//! | `--nodes N` registers Nodes: name, systemUUID, osImage alternating, Ready, InternalIP | `nodes_are_registered` |
//! | instant agent answers with a report computed from MULTINIC_NODE_SPEC | `instant_runner_completes_job_with_report` |
//! | pod command runs as a process with env, fieldRef, hostPath mapped into the node root, termination message in status | `process_runner_maps_env_paths_and_termination_message` |
//! | the image's `multinic` command maps to the configured agent binary | `multinic_command_runs_the_agent_binary` |
//! | backoffLimit: failed pods are retried, then the Job fails | `backoff_limit_retries_then_fails` |
//! | activeDeadlineSeconds fails the Job and stops its pod | `active_deadline_fails_the_job` |
//! | ttlSecondsAfterFinished deletes the finished Job and its Pods | `ttl_deletes_finished_jobs` |
//! | nodes backed by network namespaces with fa:16:3e veth NICs; gone after shutdown | `netns_nodes_have_veth_nics_and_vanish_on_shutdown` |
//! | shutdown ends every process it started and removes its directories | `shutdown_stops_running_pods` |

mod common;

use common::eventually;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use multinic_api::report::AgentReport;
use multinic_sim::{NodeSpec, RunnerChoice, Sim, SimConfig};
use serde_json::{Value, json};
use std::time::Duration;

fn job(name: &str, node: &str, container: Value, extra_spec: Value, volumes: Value) -> Job {
    let mut spec = json!({"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
        "nodeSelector": {"kubernetes.io/hostname": node}, "containers": [container], "volumes": volumes}}});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        s.extend(extra.clone());
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn condition(j: &Job, t: &str) -> Option<String> {
    let conds = j.status.as_ref()?.conditions.as_ref()?;
    conds
        .iter()
        .find(|c| c.type_ == t && c.status == "True")
        .map(|c| c.reason.clone().unwrap_or_default())
}

async fn finished(jobs: &Api<Job>, name: &str) -> (String, Job) {
    let jobs = jobs.clone();
    let name = name.to_string();
    eventually(30, "job finished", || {
        let (jobs, name) = (jobs.clone(), name.clone());
        async move {
            let j = jobs.get(&name).await.ok()?;
            condition(&j, "Complete")
                .map(|_| "Complete".to_string())
                .or_else(|| condition(&j, "Failed"))
                .map(|r| (r, j))
        }
    })
    .await
}

async fn pods_of(pods: &Api<Pod>, job: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .unwrap()
        .items
}

fn message(p: &Pod) -> String {
    let state = p
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap();
    state
        .terminated
        .as_ref()
        .unwrap()
        .message
        .clone()
        .unwrap_or_default()
}

#[tokio::test]
async fn nodes_are_registered() {
    let sim = Sim::start(SimConfig::with_nodes(3)).await.unwrap();
    let nodes: Api<Node> = Api::all(sim.kube_client().unwrap());
    let list = nodes.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(list.len(), 3);
    for (i, n) in list.iter().enumerate() {
        let want = NodeSpec::generate(i);
        let status = n.status.as_ref().unwrap();
        let info = status.node_info.as_ref().unwrap();
        assert_eq!(
            (
                n.metadata.name.as_deref(),
                info.system_uuid.as_str(),
                info.os_image.as_str()
            ),
            (
                Some(want.name.as_str()),
                want.system_uuid.as_str(),
                want.os_image.as_str()
            )
        );
        assert!(
            status
                .conditions
                .as_ref()
                .unwrap()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        );
        let ip = status
            .addresses
            .as_ref()
            .unwrap()
            .iter()
            .find(|a| a.type_ == "InternalIP")
            .unwrap();
        assert!(ip.address.starts_with("127."), "{}", ip.address);
        assert_eq!(
            n.metadata.labels.as_ref().unwrap()["kubernetes.io/hostname"],
            want.name
        );
    }
    assert_ne!(
        list[0]
            .status
            .as_ref()
            .unwrap()
            .node_info
            .as_ref()
            .unwrap()
            .os_image,
        list[1]
            .status
            .as_ref()
            .unwrap()
            .node_info
            .as_ref()
            .unwrap()
            .os_image
    );
}

#[tokio::test]
async fn instant_runner_completes_job_with_report() {
    let sim = Sim::start(SimConfig::with_nodes(2)).await.unwrap();
    let client = sim.kube_client().unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let spec = json!({"nodeName": "sim-node-1", "interfaces": [
        {"macAddress": "FA:16:3E:00:00:01", "address": "11.11.11.5", "cidr": "11.11.11.0/24"},
        {"id": 3, "macAddress": "fa:16:3e:00:00:02", "address": "12.0.0.5", "cidr": "12.0.0.0/24"}]});
    let container = json!({"name": "agent", "image": "multinic:test", "command": ["multinic", "agent"], "env": [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "AGENT_ACTION", "value": "apply"}, {"name": "MULTINIC_GENERATION", "value": "3"},
        {"name": "MULTINIC_NODE_SPEC", "value": spec.to_string()}]});
    jobs.create(
        &PostParams::default(),
        &job("apply-1", "sim-node-1", container, json!({}), json!([])),
    )
    .await
    .unwrap();
    let (outcome, j) = finished(&jobs, "apply-1").await;
    assert_eq!(outcome, "Complete");
    let status = j.status.unwrap();
    assert_eq!((status.succeeded, status.active), (Some(1), Some(0)));
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    let pods = pods_of(&Api::namespaced(client, "default"), "apply-1").await;
    assert_eq!(pods.len(), 1);
    let pod = &pods[0];
    assert_eq!(
        pod.spec.as_ref().unwrap().node_name.as_deref(),
        Some("sim-node-1")
    );
    assert_eq!(
        pod.metadata.owner_references.as_ref().unwrap()[0].uid,
        j.metadata.uid.unwrap()
    );
    let report: AgentReport = serde_json::from_str(&message(pod)).unwrap();
    assert_eq!(
        (report.node.as_str(), report.generation),
        ("sim-node-1", Some(3))
    );
    let names: Vec<_> = report
        .interfaces
        .iter()
        .map(|i| i.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["multinic0", "multinic3"]);
    assert!(report.succeeded());
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
}

#[tokio::test]
async fn process_runner_maps_env_paths_and_termination_message() {
    let config = SimConfig {
        runner: RunnerChoice::Process {
            agent_binary: "/bin/false".into(),
        },
        ..SimConfig::with_nodes(1)
    };
    let sim = Sim::start(config).await.unwrap();
    let client = sim.kube_client().unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let script = "echo \"$NODE_NAME\" > \"$OUT\" && printf 'report-from-%s' \"$NODE_NAME\" > /dev/termination-log";
    let container = json!({"name": "c", "image": "busybox", "command": ["sh", "-c", script],
        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "OUT", "value": "/host/etc/netplan/out.txt"}],
        "volumeMounts": [{"name": "netplan", "mountPath": "/host/etc/netplan"}]});
    let volumes = json!([{"name": "netplan", "hostPath": {"path": "/etc/netplan", "type": "DirectoryOrCreate"}}]);
    jobs.create(
        &PostParams::default(),
        &job("proc", "sim-node-0", container, json!({}), volumes),
    )
    .await
    .unwrap();
    let (outcome, _) = finished(&jobs, "proc").await;
    assert_eq!(outcome, "Complete");
    let written =
        std::fs::read_to_string(sim.node_root("sim-node-0").join("etc/netplan/out.txt")).unwrap();
    assert_eq!(written.trim(), "sim-node-0");
    let pods = pods_of(&Api::namespaced(client, "default"), "proc").await;
    assert_eq!(message(&pods[0]), "report-from-sim-node-0");
    let term = pods[0]
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(
        (term.exit_code, term.reason.as_deref()),
        (0, Some("Completed"))
    );
}

#[tokio::test]
async fn multinic_command_runs_the_agent_binary() {
    let dir = std::env::temp_dir().join(format!("sim-agent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let agent = dir.join("fake-multinic");
    std::fs::write(
        &agent,
        "#!/bin/sh\nprintf 'ran %s' \"$*\" > \"$MULTINIC_REPORT\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = SimConfig {
        runner: RunnerChoice::Process {
            agent_binary: agent,
        },
        ..SimConfig::with_nodes(1)
    };
    let sim = Sim::start(config).await.unwrap();
    let client = sim.kube_client().unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let container = json!({"name": "agent", "image": "multinic:test", "command": ["/usr/local/bin/multinic"], "args": ["agent", "--once"],
        "env": [{"name": "MULTINIC_REPORT", "value": "/dev/termination-log"}]});
    jobs.create(
        &PostParams::default(),
        &job("agent", "sim-node-0", container, json!({}), json!([])),
    )
    .await
    .unwrap();
    assert_eq!(finished(&jobs, "agent").await.0, "Complete");
    let pods = pods_of(&Api::namespaced(client, "default"), "agent").await;
    assert_eq!(message(&pods[0]), "ran agent --once");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn backoff_limit_retries_then_fails() {
    let config = SimConfig {
        runner: RunnerChoice::Process {
            agent_binary: "/bin/false".into(),
        },
        ..SimConfig::with_nodes(1)
    };
    let sim = Sim::start(config).await.unwrap();
    let client = sim.kube_client().unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let container = json!({"name": "c", "image": "x", "command": ["sh", "-c", "echo boom >&2; exit 3"], "terminationMessagePolicy": "FallbackToLogsOnError"});
    jobs.create(
        &PostParams::default(),
        &job(
            "flaky",
            "sim-node-0",
            container,
            json!({"backoffLimit": 2}),
            json!([]),
        ),
    )
    .await
    .unwrap();
    let (reason, j) = finished(&jobs, "flaky").await;
    assert_eq!(reason, "BackoffLimitExceeded");
    assert_eq!(j.status.unwrap().failed, Some(3));
    let pods = pods_of(&Api::namespaced(client, "default"), "flaky").await;
    assert_eq!(pods.len(), 3, "one pod per attempt");
    let term = pods[0]
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (
            term.exit_code,
            term.reason.as_deref(),
            term.message.as_deref()
        ),
        (3, Some("Error"), Some("boom"))
    );
}

#[tokio::test]
async fn active_deadline_fails_the_job() {
    let config = SimConfig {
        runner: RunnerChoice::Process {
            agent_binary: "/bin/false".into(),
        },
        ..SimConfig::with_nodes(1)
    };
    let sim = Sim::start(config).await.unwrap();
    let client = sim.kube_client().unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let container = json!({"name": "c", "image": "x", "command": ["sleep", "30"]});
    jobs.create(
        &PostParams::default(),
        &job(
            "slow",
            "sim-node-0",
            container,
            json!({"activeDeadlineSeconds": 1}),
            json!([]),
        ),
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let (reason, _) = finished(&jobs, "slow").await;
    assert_eq!(reason, "DeadlineExceeded");
    assert!(started.elapsed() < Duration::from_secs(10));
    let pods: Api<Pod> = Api::namespaced(client, "default");
    eventually(10, "the running pod is removed", || {
        let pods = pods.clone();
        async move { pods_of(&pods, "slow").await.is_empty().then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn ttl_deletes_finished_jobs() {
    let sim = Sim::start(SimConfig::with_nodes(1)).await.unwrap();
    let client = sim.kube_client().unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let container = json!({"name": "c", "image": "x"});
    jobs.create(
        &PostParams::default(),
        &job(
            "short",
            "sim-node-0",
            container,
            json!({"ttlSecondsAfterFinished": 1}),
            json!([]),
        ),
    )
    .await
    .unwrap();
    assert_eq!(finished(&jobs, "short").await.0, "Complete");
    eventually(10, "job collected", || {
        let jobs = jobs.clone();
        async move { jobs.get_opt("short").await.unwrap().is_none().then_some(()) }
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    eventually(5, "pods collected", || {
        let pods = pods.clone();
        async move { pods_of(&pods, "short").await.is_empty().then_some(()) }
    })
    .await;
}

fn netns_list() -> String {
    String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

#[tokio::test]
async fn netns_nodes_have_veth_nics_and_vanish_on_shutdown() {
    let config = SimConfig {
        netns: true,
        runner: RunnerChoice::Process {
            agent_binary: "/bin/false".into(),
        },
        ..SimConfig::with_nodes(2)
    };
    let sim = Sim::start(config).await.unwrap();
    let ns = sim.node_netns("sim-node-1").expect("node has a namespace");
    assert!(netns_list().contains(&ns));
    let client = sim.kube_client().unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let container = json!({"name": "c", "image": "x", "command": ["sh", "-c", "ip -o link show > /dev/termination-log"]});
    jobs.create(
        &PostParams::default(),
        &job("links", "sim-node-1", container, json!({}), json!([])),
    )
    .await
    .unwrap();
    assert_eq!(finished(&jobs, "links").await.0, "Complete");
    let links = message(&pods_of(&Api::namespaced(client, "default"), "links").await[0]);
    for mac in NodeSpec::generate(1).macs {
        assert!(
            links.contains(&mac),
            "{mac} missing from the pod's view: {links}"
        );
    }
    assert!(
        !links.contains(&NodeSpec::generate(0).macs[0]),
        "only the node's own NICs are visible"
    );
    sim.shutdown().await;
    assert!(!netns_list().contains(&ns), "namespace removed on shutdown");
}

/// Processes whose environment carries `marker` (children inherit it, so none can hide).
fn processes_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("environ")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(marker))
        .count()
}

#[tokio::test]
async fn shutdown_stops_running_pods() {
    let config = SimConfig {
        runner: RunnerChoice::Process {
            agent_binary: "/bin/false".into(),
        },
        ..SimConfig::with_nodes(1)
    };
    let sim = Sim::start(config).await.unwrap();
    let client = sim.kube_client().unwrap();
    let marker = format!("sim-marker-{}", std::process::id());
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    // A background child and a foreground one: both must go.
    let container = json!({"name": "c", "image": "x", "command": ["sh", "-c", "sleep 301 & sleep 300; echo done"],
        "env": [{"name": "SIM_MARKER", "value": marker}]});
    jobs.create(
        &PostParams::default(),
        &job("sleeper", "sim-node-0", container, json!({}), json!([])),
    )
    .await
    .unwrap();
    eventually(10, "the pod's process runs", || {
        let m = marker.clone();
        async move { (processes_with(&m) >= 3).then_some(()) }
    })
    .await;
    let work_dir = sim.work_dir.clone();
    sim.shutdown().await;
    eventually(5, "the process is gone", || {
        let m = marker.clone();
        async move { (processes_with(&m) == 0).then_some(()) }
    })
    .await;
    assert!(!work_dir.exists(), "the work directory is removed");
}
