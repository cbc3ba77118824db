//! The resource types the simulator serves: the built-in ones and those added by CRDs.

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Group + plural resource name: the key every stored object is filed under.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupResource {
    /// API group, empty for the core group.
    pub group: String,
    /// Plural resource name, e.g. `pods`.
    pub resource: String,
}

impl GroupResource {
    /// Builds a key from borrowed parts.
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_string(),
            resource: resource.to_string(),
        }
    }
}

/// One column of `kubectl get` output, from a CRD's additionalPrinterColumns.
#[derive(Clone, Debug, PartialEq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// OpenAPI type of the cell (`string`, `integer`, `date` ...).
    pub type_: String,
    /// JSONPath (simple subset) into the object.
    pub json_path: String,
    /// 0 = shown by default, higher = only with `-o wide`.
    pub priority: i64,
    /// Column description.
    pub description: String,
}

/// Which part of an object bumps `metadata.generation` when it changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenerationRule {
    /// Only `spec` (built-in types).
    Spec,
    /// Everything outside `metadata` and `status` (custom resources).
    AllButMetadataAndStatus,
    /// Everything outside `metadata` (custom resources without a status subresource).
    AllButMetadata,
}

/// Where a type keeps what its `/scale` subresource shows (JSON paths like `.spec.replicas`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePaths {
    /// Desired replicas.
    pub spec_replicas: String,
    /// Observed replicas.
    pub status_replicas: String,
    /// The label selector as a string, if the type keeps one there.
    pub label_selector: Option<String>,
}

/// A served resource type.
#[derive(Clone, Debug)]
pub struct ResourceType {
    /// API group, empty for core.
    pub group: String,
    /// The served version.
    pub version: String,
    /// Plural name.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names for kubectl.
    pub short_names: Vec<String>,
    /// Categories for kubectl.
    pub categories: Vec<String>,
    /// Whether `/status` is a separate subresource.
    pub status_subresource: bool,
    /// The `/scale` subresource, if served.
    pub scale: Option<ScalePaths>,
    /// The CRD's openAPIV3Schema, validated on every write.
    pub schema: Option<Value>,
    /// Extra `kubectl get` columns.
    pub printer_columns: Vec<PrinterColumn>,
    /// What bumps generation.
    pub generation_rule: GenerationRule,
}

impl ResourceType {
    /// `group/version`, or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The storage key of this type.
    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.plural)
    }

    fn builtin(group: &str, plural: &str, kind: &str, namespaced: bool, short: &[&str]) -> Self {
        Self {
            group: group.into(),
            version: "v1".into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            namespaced,
            short_names: short.iter().map(|s| s.to_string()).collect(),
            categories: Vec::new(),
            status_subresource: matches!(
                plural,
                "pods"
                    | "nodes"
                    | "jobs"
                    | "namespaces"
                    | "customresourcedefinitions"
                    | "daemonsets"
                    | "deployments"
            ),
            scale: (plural == "deployments").then(|| ScalePaths {
                spec_replicas: ".spec.replicas".into(),
                status_replicas: ".status.replicas".into(),
                label_selector: None,
            }),
            schema: None,
            printer_columns: Vec::new(),
            generation_rule: GenerationRule::Spec,
        }
    }

    /// Builds the served type a CRD object describes (its storage version), if it is well formed.
    pub fn from_crd(crd: &Value) -> Option<Self> {
        let spec = crd.get("spec")?;
        let names = spec.get("names")?;
        let versions = spec.get("versions")?.as_array()?;
        let version = versions
            .iter()
            .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .or_else(|| versions.first())?;
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(String::from);
        let printer_columns = version
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .filter_map(|c| {
                        Some(PrinterColumn {
                            name: text(c, "name")?,
                            type_: text(c, "type").unwrap_or_else(|| "string".into()),
                            json_path: text(c, "jsonPath")?,
                            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                            description: text(c, "description").unwrap_or_default(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let kind = text(names, "kind")?;
        Some(Self {
            group: text(spec, "group")?,
            version: text(version, "name")?,
            plural: text(names, "plural")?,
            singular: text(names, "singular").unwrap_or_else(|| kind.to_lowercase()),
            kind,
            namespaced: spec.get("scope").and_then(Value::as_str) != Some("Cluster"),
            short_names: strings(names.get("shortNames")),
            categories: strings(names.get("categories")),
            status_subresource: version.pointer("/subresources/status").is_some(),
            scale: version.pointer("/subresources/scale").and_then(|sc| {
                Some(ScalePaths {
                    spec_replicas: text(sc, "specReplicasPath")?,
                    status_replicas: text(sc, "statusReplicasPath")?,
                    label_selector: text(sc, "labelSelectorPath"),
                })
            }),
            schema: version.pointer("/schema/openAPIV3Schema").cloned(),
            printer_columns,
            generation_rule: if version.pointer("/subresources/status").is_some() {
                GenerationRule::AllButMetadataAndStatus
            } else {
                GenerationRule::AllButMetadata
            },
        })
    }
}

/// All served types, by group and plural.
#[derive(Clone, Debug)]
pub struct Registry {
    types: BTreeMap<GroupResource, Arc<ResourceType>>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut r = Self {
            types: BTreeMap::new(),
        };
        let builtins = [
            ResourceType::builtin("", "namespaces", "Namespace", false, &["ns"]),
            ResourceType::builtin("", "nodes", "Node", false, &["no"]),
            ResourceType::builtin("", "pods", "Pod", true, &["po"]),
            ResourceType::builtin("", "events", "Event", true, &["ev"]),
            ResourceType::builtin("", "configmaps", "ConfigMap", true, &["cm"]),
            ResourceType::builtin("", "secrets", "Secret", true, &[]),
            ResourceType::builtin("", "serviceaccounts", "ServiceAccount", true, &["sa"]),
            ResourceType::builtin("batch", "jobs", "Job", true, &[]),
            ResourceType::builtin("apps", "daemonsets", "DaemonSet", true, &["ds"]),
            ResourceType::builtin("apps", "deployments", "Deployment", true, &["deploy"]),
            ResourceType::builtin("events.k8s.io", "events", "Event", true, &["ev"]),
            ResourceType::builtin("coordination.k8s.io", "leases", "Lease", true, &[]),
            ResourceType::builtin(
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                "CustomResourceDefinition",
                false,
                &["crd", "crds"],
            ),
        ];
        for mut t in builtins {
            // `kubectl get all` lists the workload types.
            if matches!(
                t.plural.as_str(),
                "pods" | "jobs" | "daemonsets" | "deployments"
            ) {
                t.categories = vec!["all".into()];
            }
            r.insert(t);
        }
        r
    }
}

impl Registry {
    /// Adds or replaces a type.
    pub fn insert(&mut self, t: ResourceType) {
        self.types.insert(t.group_resource(), Arc::new(t));
    }

    /// Removes a type (its CRD went away).
    pub fn remove(&mut self, gr: &GroupResource) {
        self.types.remove(gr);
    }

    /// The type served at `group/version/plural`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .get(&GroupResource::new(group, plural))
            .filter(|t| t.version == version)
            .cloned()
    }

    /// The type stored under a key, whatever its version.
    pub fn get(&self, gr: &GroupResource) -> Option<Arc<ResourceType>> {
        self.types.get(gr).cloned()
    }

    /// Every served type.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.types.values()
    }
}
