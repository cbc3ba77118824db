//! The `MultiNicNodeConfig` custom resource: spec written by the external producer, status
//! written only by the controller. Doc comments here become `kubectl explain` text.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired secondary NICs of one Kubernetes node (an OpenStack VM).
///
/// The external producer names the object after the node and writes only `metadata` and
/// `spec`; multinic configures the NICs inside the guest and reports per-interface status.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "multinic.io",
    version = "v1alpha1",
    kind = "MultiNicNodeConfig",
    plural = "multinicnodeconfigs",
    singular = "multinicnodeconfig",
    shortname = "mnnc",
    category = "multinic",
    doc = "Secondary NICs of one node: the producer writes spec, the multinic controller writes status.",
    namespaced,
    status = "MultiNicNodeConfigStatus",
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.nodeName","description":"Node whose NICs this resource describes"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state","description":"Pending, InProgress, Configured or Failed"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.interfacesReady","description":"Configured interfaces out of those in the spec"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","description":"Why the resource is or is not Ready"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
// A resource cannot move: once set, the instance id may be neither changed nor removed
// (the API server skips a field's own transition rule when the field is removed).
#[x_kube(validation = Rule::new(
    "!has(oldSelf.instanceId) || (has(self.instanceId) && self.instanceId == oldSelf.instanceId)"
).message("spec.instanceId is immutable once set"))]
pub struct MultiNicNodeConfigSpec {
    /// Name of the Kubernetes Node these interfaces belong to (a DNS-1123 subdomain).
    /// Immutable: delete the resource and create another to describe a different node.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.nodeName is immutable"))]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub node_name: String,

    /// OpenStack instance UUID of the VM. When set, the controller refuses to act unless it
    /// matches the Node's `status.nodeInfo.systemUUID` (case-insensitive). Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.instanceId is immutable"))]
    #[schemars(regex(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ))]
    pub instance_id: Option<String>,

    /// The secondary NICs the node must have, at most ten (`multinic0` .. `multinic9`).
    /// The node's primary NIC is never listed here and never touched. An empty list is valid
    /// and means the node keeps no multinic NICs: everything multinic configured there is removed.
    #[serde(default)]
    #[schemars(length(max = 10))]
    pub interfaces: Vec<InterfaceSpec>,
}

/// One secondary NIC, identified on the node by its MAC address.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceSpec {
    /// Slot number 0..9; the NIC is named `multinic<id>`. When absent, the name decides the
    /// slot, else the lowest free slot is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 9))]
    pub id: Option<u8>,

    /// Interface name on the node, `multinic0` .. `multinic9`; must agree with `id` when both
    /// are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^multinic[0-9]$"))]
    pub name: Option<String>,

    /// Neutron port id this NIC was created from (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), regex(pattern = r"^[0-9A-Za-z._-]*$"))]
    pub port_id: Option<String>,

    /// MAC address of the NIC, six colon-separated hex octets (any case), e.g.
    /// `fa:16:3e:fb:9b:68`. The NIC is found by this address.
    #[schemars(regex(pattern = r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"))]
    pub mac_address: String,

    /// The host address to assign, IPv4 (`11.11.11.132`) or IPv6 (`fd00:11::132`), without a
    /// prefix length. It must lie inside `cidr`.
    #[schemars(length(min = 2, max = 45), regex(pattern = r"^[0-9A-Fa-f.:]+$"))]
    pub address: String,

    /// The network the address belongs to, in network form (`11.11.11.0/24`) or host form
    /// (`11.11.11.132/24`); both mean the network.
    #[schemars(
        length(min = 4, max = 49),
        regex(pattern = r"^[0-9A-Fa-f.:]+/[0-9]{1,3}$")
    )]
    pub cidr: String,

    /// MTU in bytes, 68..9000 (at least 1280 for IPv6). When absent the NIC keeps the MTU
    /// the hypervisor gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 68, max = 9000))]
    pub mtu: Option<u32>,
}

/// Lifecycle of a whole resource, summarised for `kubectl get`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum NodeConfigState {
    /// Accepted, waiting for the node or for a free Job slot.
    Pending,
    /// An agent Job is applying the current generation.
    InProgress,
    /// Every interface of the current generation is configured.
    Configured,
    /// The current generation failed; see conditions and interfaceStatuses.
    Failed,
}

impl NodeConfigState {
    /// The state's name as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::InProgress => "InProgress",
            Self::Configured => "Configured",
            Self::Failed => "Failed",
        }
    }
}

/// Outcome of one interface.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum InterfaceState {
    /// Not applied yet.
    Pending,
    /// Present on the node exactly as specified.
    Configured,
    /// Could not be configured; `reason` says why.
    Failed,
}

/// Observed state written by the controller only.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultiNicNodeConfigStatus {
    /// Pending, InProgress, Configured or Failed, for the generation in `observedGeneration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<NodeConfigState>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Configured interfaces out of those in the spec, e.g. `3/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interfaces_ready: Option<String>,

    /// Standard conditions: Ready, Progressing and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Per-interface outcome of the last agent run, in spec order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interface_statuses: Vec<InterfaceStatus>,

    /// Failed attempts at the current generation; reset when the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,

    /// Name of the most recent agent Job created for this resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job_name: Option<String>,

    /// When the controller last changed this status (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
}

/// A Kubernetes-style condition (see the API conventions).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, Progressing or Degraded.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// CamelCase machine-readable reason for the last transition.
    #[serde(default)]
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The `metadata.generation` this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Outcome for one interface of the spec.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceStatus {
    /// Slot number (0..9) the interface was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u8>,
    /// Interface name on the node, e.g. `multinic0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// MAC address from the spec.
    pub mac_address: String,
    /// Host address from the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Network from the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// MTU from the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Pending, Configured or Failed.
    pub status: InterfaceState,
    /// Machine-readable reason, e.g. Configured, MacNotFound, PrimaryInterfaceProtected.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When this entry last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
}
