//! Cache trimming: the controller keeps only the fields it reads, so memory stays flat as
//! the number of objects grows (a real Node weighs 10-20 KB; what is kept of it, a few
//! hundred bytes).

use crate::decide::NodeFacts;
use k8s_openapi::api::core::v1::Node;
use multinic_api::MultiNicNodeConfig;

/// What the decision reads from a (trimmed) Node.
pub fn node_facts(node: &Node) -> NodeFacts {
    let status = node.status.as_ref();
    let info = status.and_then(|s| s.node_info.as_ref());
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    let addresses = status
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
        // Only IPs: the agent matches NICs by address (a hostname entry would mean nothing).
        .filter(|a| a.address.parse::<std::net::IpAddr>().is_ok())
        .map(|a| a.address.clone())
        .collect();
    NodeFacts {
        system_uuid: info
            .map(|i| i.system_uuid.clone())
            .filter(|s| !s.is_empty()),
        os_image: info.map(|i| i.os_image.clone()).filter(|s| !s.is_empty()),
        not_ready: ready.is_some_and(|r| r != "True"),
        unschedulable: node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
        addresses,
    }
}

/// Drops managedFields (they grow with every server-side apply) from a cached resource.
pub fn trim_config(obj: &mut MultiNicNodeConfig) {
    obj.metadata.managed_fields = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_facts_read_uuid_and_os_image() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "w1"},
            "status": {"nodeInfo": {"systemUUID": "ABC", "osImage": "Ubuntu 22.04.4 LTS",
                "kernelVersion": "", "machineID": "", "bootID": "", "containerRuntimeVersion": "",
                "kubeletVersion": "", "kubeProxyVersion": "", "operatingSystem": "", "architecture": ""}}
        }))
        .unwrap();
        let facts = node_facts(&node);
        assert_eq!(facts.system_uuid.as_deref(), Some("ABC"));
        assert!(!facts.not_ready && !facts.unschedulable);
        assert_eq!(facts.os_image.as_deref(), Some("Ubuntu 22.04.4 LTS"));
        assert_eq!(node_facts(&Node::default()), NodeFacts::default());
    }

    #[test]
    fn node_facts_read_readiness_cordon_and_own_addresses() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "w1"},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "Ready", "status": "Unknown"}],
                "addresses": [
                    {"type": "Hostname", "address": "w1"},
                    {"type": "InternalIP", "address": "192.0.2.10"},
                    {"type": "ExternalIP", "address": "2001:db8::10"},
                    {"type": "InternalDNS", "address": "w1.example"}
                ]
            }
        }))
        .unwrap();
        let facts = node_facts(&node);
        assert!(facts.not_ready && facts.unschedulable);
        assert_eq!(facts.addresses, vec!["192.0.2.10", "2001:db8::10"]);
    }
}
