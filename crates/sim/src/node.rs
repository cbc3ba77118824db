//! Simulated nodes: what each one looks like (name, systemUUID, OS image, InternalIP, NIC MACs)
//! and the Node object registered for it.

use serde_json::{Value, json};
use std::net::Ipv4Addr;

/// The OS images nodes alternate between.
pub const OS_IMAGES: [&str; 2] = ["Ubuntu 22.04.4 LTS", "Rocky Linux 9.3 (Blue Onyx)"];

/// Annotation on each simulated Node naming the network namespace that backs it.
pub const NETNS_ANNOTATION: &str = "sim.multinic.io/netns";

/// NICs each generated node gets (besides none: the primary NIC is not simulated).
pub const NICS_PER_NODE: usize = 3;

/// One simulated node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// Node name (also `kubernetes.io/hostname`).
    pub name: String,
    /// `status.nodeInfo.systemUUID` (the OpenStack instance id).
    pub system_uuid: String,
    /// `status.nodeInfo.osImage`.
    pub os_image: String,
    /// `InternalIP` address.
    pub internal_ip: Ipv4Addr,
    /// MACs of the secondary NICs created in the node's network namespace (`--netns`).
    pub macs: Vec<String>,
}

impl NodeSpec {
    /// The `i`-th generated node: `sim-node-<i>`, OS alternating Ubuntu / Rocky Linux,
    /// InternalIP `127.1.x.y`, NICs `fa:16:3e:..`.
    pub fn generate(i: usize) -> Self {
        let n = i as u32;
        let macs = (0..NICS_PER_NODE)
            .map(|k| {
                format!(
                    "fa:16:3e:{:02x}:{:02x}:{:02x}",
                    (n >> 12) & 0xff,
                    (n >> 4) & 0xff,
                    ((n & 0xf) << 4) | k as u32
                )
            })
            .collect();
        Self {
            name: format!("sim-node-{i}"),
            system_uuid: format!("{:08x}-0000-4000-8000-{:012x}", 0x5111_0000u32 + n, i),
            os_image: OS_IMAGES[i % 2].to_string(),
            internal_ip: Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8),
            macs,
        }
    }

    /// The Node object the kubelet registers: metadata (with [`NETNS_ANNOTATION`] when a
    /// namespace backs it), spec and status (a Node's status is kept on create).
    pub fn object(&self, netns: Option<&str>) -> Value {
        let mut node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "node-role.kubernetes.io/worker": "",
                },
            },
            "spec": {"providerID": format!("openstack:///{}", self.system_uuid)},
            "status": self.status(),
        });
        if let Some(ns) = netns {
            node["metadata"]["annotations"] = json!({ NETNS_ANNOTATION: ns });
        }
        node
    }

    /// `/etc/os-release` matching [`NodeSpec::os_image`], as the node's root holds it.
    pub fn os_release(&self) -> String {
        let (name, id, like, version) = if self.os_image.starts_with("Ubuntu") {
            ("Ubuntu", "ubuntu", "debian", "22.04")
        } else {
            ("Rocky Linux", "rocky", "rhel centos fedora", "9.3")
        };
        format!(
            "NAME=\"{name}\"\nID={id}\nID_LIKE=\"{like}\"\nVERSION_ID=\"{version}\"\nPRETTY_NAME=\"{}\"\n",
            self.os_image
        )
    }

    /// Directories the node's OS has for network configuration.
    pub fn config_dirs(&self) -> &'static [&'static str] {
        if self.os_image.starts_with("Ubuntu") {
            &["etc/netplan", "etc/systemd/network"]
        } else {
            &[
                "etc/NetworkManager/system-connections",
                "etc/sysconfig/network-scripts",
                "etc/systemd/network",
            ]
        }
    }

    /// The status the kubelet reports: Ready, addresses and nodeInfo.
    pub fn status(&self) -> Value {
        let now = crate::meta::now();
        let resources =
            json!({"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "40Gi"});
        json!({
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": now, "lastTransitionTime": now,
            }],
            "addresses": [
                {"type": "InternalIP", "address": self.internal_ip.to_string()},
                {"type": "Hostname", "address": self.name},
            ],
            "nodeInfo": {
                "systemUUID": self.system_uuid,
                "machineID": self.system_uuid.replace('-', ""),
                "bootID": crate::meta::new_uid(),
                "osImage": self.os_image,
                "kernelVersion": "6.1.0-sim",
                "kubeletVersion": "v1.33.0-sim",
                "kubeProxyVersion": "",
                "containerRuntimeVersion": "sim://1.0",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "capacity": resources,
            "allocatable": resources,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_nodes_differ_and_alternate() {
        let a = NodeSpec::generate(0);
        let b = NodeSpec::generate(1);
        assert_ne!(a.system_uuid, b.system_uuid);
        assert_ne!(a.internal_ip, b.internal_ip);
        assert!(a.os_image.starts_with("Ubuntu") && b.os_image.starts_with("Rocky"));
        let all: std::collections::HashSet<String> =
            (0..5000).flat_map(|i| NodeSpec::generate(i).macs).collect();
        assert_eq!(all.len(), 5000 * NICS_PER_NODE);
        assert!(a.macs.iter().all(|m| m.starts_with("fa:16:3e:")));
    }
}
