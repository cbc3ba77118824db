//! Turns a Pod's first container into a [`PodRun`]: env (values, `fieldRef`s, `$(VAR)`
//! expansion), and the path mapping that stands in for mounts.
//!
//! A local process has no mount namespace of its own, so container paths are rewritten
//! instead: each volumeMount's `mountPath` maps to `<pod dir>/mounts/<volume>`, a symlink to
//! `<node root>/<hostPath>` for hostPath volumes (a plain directory for other volumes), and
//! the container's `terminationMessagePath` (default `/dev/termination-log`) maps to
//! `<pod dir>/termination-log`. Every occurrence of one of those paths in an arg or env value
//! is rewritten when it stands on its own: at the start or after a separator (space, `=`,
//! quote, `:`, `,`, `>`, `<`, `(`), and at the end or before `/` or a separator. So
//! `--report=/dev/termination-log`, `/host/etc/netplan/x.yaml` and `sh -c "echo > /dev/termination-log"`
//! are all mapped; the longest mountPath wins.

use crate::runner::{PodRun, StopSignal};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The node a pod runs on, as the kubelet knows it.
#[derive(Clone, Debug)]
pub struct NodeContext {
    /// Node name.
    pub name: String,
    /// The node's network namespace, if any.
    pub netns: Option<String>,
    /// Root directory standing in for the node's `/`.
    pub root: PathBuf,
    /// The node's InternalIP.
    pub ip: String,
}

fn field_ref(pod: &Value, node: &NodeContext, path: &str) -> String {
    let s = |p: &str| {
        pod.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    match path {
        "spec.nodeName" => node.name.clone(),
        "metadata.name" => s("/metadata/name"),
        "metadata.namespace" => s("/metadata/namespace"),
        "metadata.uid" => s("/metadata/uid"),
        "spec.serviceAccountName" => s("/spec/serviceAccountName"),
        "status.hostIP" | "status.podIP" => node.ip.clone(),
        other => {
            if let Some(key) = other
                .strip_prefix("metadata.labels['")
                .and_then(|k| k.strip_suffix("']"))
            {
                pod.pointer("/metadata/labels")
                    .and_then(|l| l.get(key))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            } else if let Some(key) = other
                .strip_prefix("metadata.annotations['")
                .and_then(|k| k.strip_suffix("']"))
            {
                pod.pointer("/metadata/annotations")
                    .and_then(|l| l.get(key))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            } else {
                String::new()
            }
        }
    }
}

/// Expands `$(NAME)` references to earlier variables, as the kubelet does.
fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find(')') {
            Some(end) => {
                let name = &after[..end];
                match env.iter().rev().find(|(k, _)| k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 3 + end]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Characters that may stand right before a path inside a larger value (`--x=/p`, `> /p`).
const BEFORE: &[char] = &[' ', '=', '"', '\'', ':', ',', '>', '<', '(', '\n', '\t'];
/// Characters that may stand right after a path (or its end).
const AFTER: &[char] = &[
    '/', ' ', '"', '\'', ',', ':', ';', ')', '\n', '\t', '&', '|',
];

/// Rewrites container paths in one value (see the module docs): every occurrence of a mapped
/// path that starts the value or follows a separator, and ends the value or is followed by `/`
/// or a separator, is replaced; the longest mapped path wins at each position.
pub fn rewrite(value: &str, mapping: &[(String, PathBuf)]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    'scan: while i < value.len() {
        let boundary_before = i == 0 || value[..i].ends_with(BEFORE);
        if boundary_before {
            for (from, to) in mapping {
                let from = from.trim_end_matches('/');
                if from.is_empty() || !value[i..].starts_with(from) {
                    continue;
                }
                let end = i + from.len();
                if end == value.len() || value[end..].starts_with(AFTER) {
                    out.push_str(&to.display().to_string());
                    i = end;
                    continue 'scan;
                }
            }
        }
        let c = value[i..].chars().next().expect("i is on a char boundary");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

fn host_path_target(root: &Path, host_path: &Value) -> std::io::Result<PathBuf> {
    let path = host_path.get("path").and_then(Value::as_str).unwrap_or("/");
    let target = root.join(path.trim_start_matches('/'));
    let kind = host_path.get("type").and_then(Value::as_str).unwrap_or("");
    if matches!(kind, "File" | "FileOrCreate") {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if !target.exists() {
            std::fs::write(&target, b"")?;
        }
    } else if !target.exists() {
        std::fs::create_dir_all(&target)?;
    }
    Ok(target)
}

/// Prepares the first container of `pod` to run on `node`, creating `pod_dir` and its mount
/// links; `stop` is how the kubelet will ask the container to end.
pub fn prepare(
    pod: &Value,
    node: &NodeContext,
    pod_dir: &Path,
    stop: StopSignal,
) -> Result<PodRun, String> {
    let container = pod
        .pointer("/spec/containers/0")
        .ok_or("the pod has no containers")?;
    let io = |e: std::io::Error| format!("preparing {}: {e}", pod_dir.display());
    std::fs::create_dir_all(pod_dir.join("mounts")).map_err(io)?;
    let volumes = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut mapping: Vec<(String, PathBuf)> = Vec::new();
    for m in container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(vol), Some(mount_path)) = (
            m.get("name").and_then(Value::as_str),
            m.get("mountPath").and_then(Value::as_str),
        ) else {
            continue;
        };
        let link = pod_dir.join("mounts").join(vol);
        if !link.exists() {
            match volumes
                .iter()
                .find(|v| v.get("name").and_then(Value::as_str) == Some(vol))
                .and_then(|v| v.get("hostPath"))
            {
                Some(hp) => {
                    let target = host_path_target(&node.root, hp).map_err(io)?;
                    std::os::unix::fs::symlink(&target, &link).map_err(io)?;
                }
                None => std::fs::create_dir_all(&link).map_err(io)?,
            }
        }
        let sub = m.get("subPath").and_then(Value::as_str).unwrap_or("");
        mapping.push((
            mount_path.to_string(),
            if sub.is_empty() { link } else { link.join(sub) },
        ));
    }
    // A directory that holds hostPath mounts at their host paths (`/host` for mounts
    // `/host/etc/netplan` <- hostPath `/etc/netplan`) stands for the node's root, so a program
    // told `--root=/host` lands in the node root and never on the real host.
    for m in container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mount_path = m.get("mountPath").and_then(Value::as_str).unwrap_or("");
        let host_path = volumes
            .iter()
            .find(|v| v.get("name") == m.get("name"))
            .and_then(|v| v.pointer("/hostPath/path"))
            .and_then(Value::as_str)
            .map(|p| p.trim_end_matches('/'))
            .unwrap_or("");
        if let Some(prefix) = mount_path
            .trim_end_matches('/')
            .strip_suffix(host_path)
            .filter(|p| {
                !host_path.is_empty() && p.len() > 1 && !mapping.iter().any(|(f, _)| f == p)
            })
        {
            mapping.push((prefix.to_string(), node.root.clone()));
        }
    }
    let term_path = container
        .get("terminationMessagePath")
        .and_then(Value::as_str)
        .unwrap_or("/dev/termination-log");
    let termination_log = pod_dir.join("termination-log");
    std::fs::write(&termination_log, b"").map_err(io)?;
    mapping.push((term_path.to_string(), termination_log.clone()));
    mapping.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));

    let mut env: Vec<(String, String)> = Vec::new();
    for e in container
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = e.get("name").and_then(Value::as_str) else {
            continue;
        };
        let value = if let Some(v) = e.get("value").and_then(Value::as_str) {
            expand(v, &env)
        } else if let Some(p) = e
            .pointer("/valueFrom/fieldRef/fieldPath")
            .and_then(Value::as_str)
        {
            field_ref(pod, node, p)
        } else {
            String::new()
        };
        env.push((name.to_string(), rewrite(&value, &mapping)));
    }
    let strings = |k: &str| -> Vec<String> {
        container
            .get(k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect()
    };
    let command: Vec<String> = strings("command")
        .into_iter()
        .chain(strings("args"))
        .map(|a| rewrite(&expand(&a, &env), &mapping))
        .collect();
    Ok(PodRun {
        pod: crate::meta::name(pod).to_string(),
        namespace: crate::meta::namespace(pod).to_string(),
        node: node.name.clone(),
        netns: node.netns.clone(),
        command,
        env,
        pod_dir: pod_dir.to_path_buf(),
        termination_log,
        node_root: node.root.clone(),
        stop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_mounts_env_and_termination_log() {
        let dir = std::env::temp_dir().join(format!("podspec-test-{}", std::process::id()));
        let node = NodeContext {
            name: "n1".into(),
            netns: None,
            root: dir.join("root"),
            ip: "127.1.0.1".into(),
        };
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {
            "volumes": [{"name": "etc", "hostPath": {"path": "/etc/netplan", "type": "DirectoryOrCreate"}}],
            "containers": [{"name": "c", "command": ["multinic", "agent"],
                "args": ["--root=/host/etc", "$(NODE_NAME)", "/dev/termination-log"],
                "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                        {"name": "MULTINIC_ROOT", "value": "/host"}],
                "volumeMounts": [{"name": "etc", "mountPath": "/host/etc"}]}]}});
        let run = prepare(&pod, &node, &dir.join("pod"), StopSignal::new().1).unwrap();
        let link = dir.join("pod/mounts/etc");
        assert_eq!(
            run.command,
            vec![
                "multinic".to_string(),
                "agent".into(),
                format!("--root={}", link.display()),
                "n1".into(),
                dir.join("pod/termination-log").display().to_string()
            ]
        );
        assert_eq!(run.env[0], ("NODE_NAME".to_string(), "n1".to_string()));
        assert_eq!(run.env[1].1, "/host", "unmapped paths stay as they are");
        let map = vec![
            ("/host/etc".to_string(), PathBuf::from("/m/etc")),
            ("/dev/termination-log".to_string(), PathBuf::from("/p/t")),
        ];
        assert_eq!(
            rewrite(
                "echo x > /dev/termination-log; cat /host/etc/a '/host/etc'",
                &map
            ),
            "echo x > /p/t; cat /m/etc/a '/m/etc'"
        );
        assert_eq!(
            rewrite("/host/etcetera /x/host/etc", &map),
            "/host/etcetera /x/host/etc"
        );
        std::fs::write(link.join("x.yaml"), "hi").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("root/etc/netplan/x.yaml")).unwrap(),
            "hi"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
