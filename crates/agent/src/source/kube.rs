//! The `kube` source: this node's MultiNicNodeConfig, read by name (the node name) from the
//! API server, for service mode.

use super::{LoadedSpec, SourceError};
use multinic_api::MultiNicNodeConfig;

pub(super) async fn load(
    client: &::kube::Client,
    namespace: &str,
    node_name: &str,
) -> Result<LoadedSpec, SourceError> {
    let api: ::kube::Api<MultiNicNodeConfig> = ::kube::Api::namespaced(client.clone(), namespace);
    let resource = api
        .get(node_name)
        .await
        .map_err(|source| SourceError::Kube {
            namespace: namespace.to_owned(),
            name: node_name.to_owned(),
            source,
        })?;
    Ok(LoadedSpec {
        generation: resource.metadata.generation,
        spec: resource.spec,
        labels: None,
    })
}
