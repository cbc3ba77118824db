//! Cache trimming: the controller keeps only the fields it reads, so memory stays flat as
//! the number of Nodes grows (a real Node weighs 10-20 KB; its trimmed copy a few hundred
//! bytes).

use crate::decide::NodeFacts;
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use multinic_api::MultiNicNodeConfig;
use std::hash::{Hash, Hasher};

/// Keeps a Node's name, systemUUID, osImage and Ready condition (without heartbeat times).
pub fn trim_node(node: &mut Node) {
    let info = node.status.as_ref().and_then(|s| s.node_info.as_ref());
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| NodeCondition {
            type_: c.type_.clone(),
            status: c.status.clone(),
            ..NodeCondition::default()
        });
    let status = NodeStatus {
        node_info: info.map(|i| NodeSystemInfo {
            system_uuid: i.system_uuid.clone(),
            os_image: i.os_image.clone(),
            ..NodeSystemInfo::default()
        }),
        conditions: ready.map(|c| vec![c]),
        ..NodeStatus::default()
    };
    *node = Node {
        metadata: ObjectMeta {
            name: node.metadata.name.take(),
            uid: node.metadata.uid.take(),
            resource_version: node.metadata.resource_version.take(),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(status),
    };
}

/// What the decision reads from a (trimmed) Node.
pub fn node_facts(node: &Node) -> NodeFacts {
    let info = node.status.as_ref().and_then(|s| s.node_info.as_ref());
    NodeFacts {
        system_uuid: info
            .map(|i| i.system_uuid.clone())
            .filter(|s| !s.is_empty()),
        os_image: info.map(|i| i.os_image.clone()).filter(|s| !s.is_empty()),
    }
}

/// A hash of the Node fields that matter, so heartbeats do not wake any resource.
pub fn node_fingerprint(node: &Node) -> Option<u64> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let facts = node_facts(node);
    facts.system_uuid.hash(&mut hasher);
    facts.os_image.hash(&mut hasher);
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone());
    ready.hash(&mut hasher);
    Some(hasher.finish())
}

/// Drops managedFields (they grow with every server-side apply) from a cached resource.
pub fn trim_config(obj: &mut MultiNicNodeConfig) {
    obj.metadata.managed_fields = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimmed_node_keeps_only_what_is_read() {
        let json = serde_json::json!({
            "metadata": {"name": "w1", "uid": "u", "resourceVersion": "7",
                          "labels": {"a": "b"}, "annotations": {"big": "x".repeat(4000)}},
            "status": {
                "nodeInfo": {"systemUUID": "ABC", "osImage": "Ubuntu 22.04.4 LTS",
                             "kernelVersion": "6.1", "machineID": "m", "bootID": "b",
                             "containerRuntimeVersion": "c", "kubeletVersion": "v",
                             "kubeProxyVersion": "", "operatingSystem": "linux",
                             "architecture": "amd64"},
                "conditions": [{"type": "MemoryPressure", "status": "False"},
                               {"type": "Ready", "status": "True",
                                "lastHeartbeatTime": "2024-01-01T00:00:00Z"}],
                "images": [{"names": ["x".repeat(2000)], "sizeBytes": 1}]
            }
        });
        let mut node: Node = serde_json::from_value(json).unwrap();
        let before = node_fingerprint(&node);
        trim_node(&mut node);
        assert_eq!(node_fingerprint(&node), before);
        let size = serde_json::to_string(&node).unwrap().len();
        assert!(size < 600, "trimmed node is {size} bytes");
        let facts = node_facts(&node);
        assert_eq!(facts.system_uuid.as_deref(), Some("ABC"));
        assert_eq!(facts.os_image.as_deref(), Some("Ubuntu 22.04.4 LTS"));
        let cond = &node.status.unwrap().conditions.unwrap()[0];
        assert_eq!(
            (cond.type_.as_str(), cond.last_heartbeat_time.is_none()),
            ("Ready", true)
        );
    }
}
