//! The Node cache: only what the controller reads from each Node (systemUUID, osImage,
//! Ready, cordon, own addresses), a few hundred bytes instead of a Node object, fed by the Node watch (or poll).
//! It also tells which Nodes changed in a way that matters, so heartbeats wake nobody.

use crate::decide::NodeFacts;
use crate::trim;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::runtime::watcher;
use std::collections::HashMap;
use std::sync::RwLock;
use tokio::sync::watch;

/// What is kept per Node: the decision's facts (Ready and cordon included).
type Entry = NodeFacts;

#[derive(Default)]
struct Maps {
    current: HashMap<String, Entry>,
    /// A re-list in progress (between Init and InitDone).
    relist: Option<HashMap<String, Entry>>,
}

/// Facts of every Node, by name.
pub struct NodeCache {
    maps: RwLock<Maps>,
    ready: watch::Sender<bool>,
}

impl Default for NodeCache {
    fn default() -> Self {
        Self {
            maps: RwLock::default(),
            ready: watch::channel(false).0,
        }
    }
}

fn entry(node: &Node) -> Entry {
    trim::node_facts(node)
}

impl NodeCache {
    /// The facts of Node `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<NodeFacts> {
        let maps = self.maps.read().unwrap_or_else(|p| p.into_inner());
        maps.current.get(name).cloned()
    }

    /// Number of Nodes known.
    pub fn len(&self) -> usize {
        self.maps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .current
            .len()
    }

    /// Whether no Node is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves once the first full list was applied.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// Applies one watch event; returns the names of Nodes that appeared, went, or changed
    /// systemUUID, osImage, Ready, cordon or addresses.
    pub fn apply(&self, event: watcher::Event<Node>) -> Vec<String> {
        let mut maps = self.maps.write().unwrap_or_else(|p| p.into_inner());
        let mut changed = Vec::new();
        match event {
            watcher::Event::Apply(node) => {
                let name = node.name_any();
                let new = entry(&node);
                if maps.current.get(&name) != Some(&new) {
                    maps.current.insert(name.clone(), new);
                    changed.push(name);
                }
            }
            watcher::Event::Delete(node) => {
                let name = node.name_any();
                if maps.current.remove(&name).is_some() {
                    changed.push(name);
                }
            }
            watcher::Event::Init => maps.relist = Some(HashMap::new()),
            watcher::Event::InitApply(node) => {
                let new = entry(&node);
                maps.relist
                    .get_or_insert_with(HashMap::new)
                    .insert(node.name_any(), new);
            }
            watcher::Event::InitDone => {
                let fresh = maps.relist.take().unwrap_or_default();
                for (name, new) in &fresh {
                    if maps.current.get(name) != Some(new) {
                        changed.push(name.clone());
                    }
                }
                changed.extend(
                    maps.current
                        .keys()
                        .filter(|n| !fresh.contains_key(*n))
                        .cloned(),
                );
                maps.current = fresh;
                self.ready.send_replace(true);
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, uuid: &str, ready: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {
                "nodeInfo": {"systemUUID": uuid, "osImage": "Ubuntu 22.04.4 LTS", "machineID": "",
                    "bootID": "", "kernelVersion": "", "containerRuntimeVersion": "",
                    "kubeletVersion": "", "kubeProxyVersion": "", "operatingSystem": "",
                    "architecture": ""},
                "conditions": [{"type": "Ready", "status": ready}]
            }
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn changes_that_matter_are_reported_and_heartbeats_are_not() {
        let cache = NodeCache::default();
        assert!(cache.apply(watcher::Event::Init).is_empty());
        cache.apply(watcher::Event::InitApply(node("a", "U1", "True")));
        assert_eq!(cache.apply(watcher::Event::InitDone), vec!["a".to_string()]);
        cache.wait_ready().await;
        assert_eq!(cache.get("a").unwrap().system_uuid.as_deref(), Some("U1"));
        assert!(
            cache
                .apply(watcher::Event::Apply(node("a", "U1", "True")))
                .is_empty()
        );
        assert_eq!(
            cache.apply(watcher::Event::Apply(node("a", "U1", "False"))),
            vec!["a"]
        );
        assert_eq!(
            cache.apply(watcher::Event::Apply(node("a", "U2", "False"))),
            vec!["a"]
        );
        assert_eq!(
            cache.apply(watcher::Event::Delete(node("a", "U2", "False"))),
            vec!["a"]
        );
        assert!(cache.get("a").is_none());
        // A re-list that misses a Node reports it gone.
        cache.apply(watcher::Event::Apply(node("b", "U3", "True")));
        cache.apply(watcher::Event::Init);
        assert_eq!(cache.apply(watcher::Event::InitDone), vec!["b".to_string()]);
        assert!(cache.is_empty());
    }
}
