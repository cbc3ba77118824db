//! Network namespaces backing simulated nodes: created with `ip netns add`, given veth NICs with
//! the node's MACs (both ends stay inside the namespace), and deleted when the guard drops.

use crate::error::SimError;
use std::process::Command;

/// A network namespace that is deleted (with every link in it) on drop.
#[derive(Debug)]
pub struct NetnsGuard {
    name: String,
}

fn ip(node: &str, args: &[&str]) -> Result<(), SimError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| SimError::Node {
            node: node.to_string(),
            message: format!("running ip {}: {e}", args.join(" ")),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(SimError::Node {
            node: node.to_string(),
            message: format!(
                "ip {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

impl NetnsGuard {
    /// Creates namespace `name` for `node` with loopback up and one veth pair per MAC: the end
    /// named `eth<k+1>` carries the MAC, its peer `vpeer<k+1>` stays in the namespace too.
    pub fn create(name: &str, node: &str, macs: &[String]) -> Result<Self, SimError> {
        ip(node, &["netns", "add", name])?;
        // From here on the guard owns the namespace, so a failure below still removes it.
        let guard = Self {
            name: name.to_string(),
        };
        ip(node, &["-n", name, "link", "set", "lo", "up"])?;
        for (k, mac) in macs.iter().enumerate() {
            let nic = format!("eth{}", k + 1);
            let peer = format!("vpeer{}", k + 1);
            ip(
                node,
                &[
                    "-n", name, "link", "add", &nic, "address", mac, "type", "veth", "peer",
                    "name", &peer,
                ],
            )?;
            ip(node, &["-n", name, "link", "set", &peer, "up"])?;
        }
        Ok(guard)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
