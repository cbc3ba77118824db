//! The `file` source: a MultiNicNodeConfig YAML file, for nodes managed without Kubernetes.
//! A file with several documents is searched for the one whose `spec.nodeName` is this node.

use super::{LoadedSpec, SourceError};
use multinic_api::MultiNicNodeConfig;
use serde::Deserialize;
use std::path::Path;

pub(super) fn load(path: &Path, node_name: &str) -> Result<LoadedSpec, SourceError> {
    let text = std::fs::read_to_string(path).map_err(|source| SourceError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, &path.display().to_string(), node_name)
}

fn parse(text: &str, what: &str, node_name: &str) -> Result<LoadedSpec, SourceError> {
    let parse_error = |message: String| SourceError::Parse {
        what: what.to_owned(),
        message,
    };
    let mut resources = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| parse_error(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        if kind != "MultiNicNodeConfig" {
            return Err(parse_error(format!(
                "kind: expected MultiNicNodeConfig, got {kind:?}"
            )));
        }
        let resource: MultiNicNodeConfig =
            serde_yaml::from_value(value).map_err(|e| parse_error(e.to_string()))?;
        resources.push(resource);
    }
    // One document is taken as is (a wrong nodeName is then reported by the check); among
    // several, the one for this node.
    let resource = match resources.len() {
        0 => return Err(parse_error("holds no MultiNicNodeConfig".into())),
        1 => resources.remove(0),
        _ => resources
            .into_iter()
            .find(|r| r.spec.node_name == node_name)
            .ok_or_else(|| {
                parse_error(format!(
                    "holds no MultiNicNodeConfig for node {node_name:?}"
                ))
            })?,
    };
    Ok(LoadedSpec {
        generation: resource.metadata.generation,
        spec: resource.spec,
        labels: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(node: &str) -> String {
        format!(
            "apiVersion: multinic.io/v1alpha1\nkind: MultiNicNodeConfig\nmetadata:\n  name: {node}\n  generation: 3\nspec:\n  nodeName: {node}\n  interfaces:\n    - macAddress: fa:16:3e:00:00:01\n      address: 10.250.0.2\n      cidr: 10.250.0.0/24\n"
        )
    }

    #[test]
    fn picks_this_nodes_document() {
        let text = format!("{}---\n{}", doc("worker-01"), doc("worker-02"));
        let loaded = parse(&text, "f.yaml", "worker-02").unwrap();
        assert_eq!(loaded.spec.node_name, "worker-02");
        assert_eq!(loaded.generation, Some(3));
    }

    #[test]
    fn rejects_other_kinds_naming_the_field() {
        let err = parse("kind: ConfigMap\n", "f.yaml", "worker-01").unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.yaml: kind: expected MultiNicNodeConfig, got \"ConfigMap\""
        );
    }

    #[test]
    fn several_documents_none_for_this_node() {
        let text = format!("{}---\n{}", doc("worker-01"), doc("worker-02"));
        let err = parse(&text, "f.yaml", "worker-03").unwrap_err();
        assert!(err.to_string().contains("worker-03"), "{err}");
    }
}
