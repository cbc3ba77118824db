//! Where the desired NICs come from (inline spec, the API server, a file, the legacy
//! database) and the one check every source goes through before anything is applied.

mod db;
mod file;
mod kube;
mod spec;

pub use db::{DbError, DbSource, RowOutcome};

use crate::config::SourceConfig;
use multinic_api::report::ReportInterface;
use multinic_api::{InterfaceReason, MultiNicNodeConfigSpec, ValidInterface, check_spec};
use std::path::PathBuf;

/// Why a source produced nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The input is not a spec.
    #[error("{what}: {message}")]
    Parse {
        /// What was being parsed.
        what: String,
        /// The parser's complaint.
        message: String,
    },
    /// The source was not configured enough to be read.
    #[error("{0}")]
    Missing(String),
    /// The API server refused or failed.
    #[error("reading MultiNicNodeConfig {namespace}/{name}: {source}")]
    Kube {
        /// Namespace read.
        namespace: String,
        /// Object name (the node name).
        name: String,
        /// The cause.
        source: ::kube::Error,
    },
    /// The database refused or failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The spec is for another node; applying it here would misconfigure this one.
    #[error("spec.nodeName: {found:?} is not this node ({expected:?})")]
    WrongNode {
        /// Node the spec names.
        found: String,
        /// Node the agent runs on.
        expected: String,
    },
    /// `spec.instanceId` names another machine than the one the agent runs on (the host's
    /// SMBIOS product UUID): the resource was written for a VM this node is not.
    #[error(
        "spec.instanceId: {found:?} is not this machine (its product UUID is {expected:?}); nothing applied"
    )]
    WrongInstance {
        /// Instance id the spec names.
        found: String,
        /// The host's product UUID.
        expected: String,
    },
    /// A problem with the spec as a whole (not one interface).
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
}

/// A spec as a source delivered it, before validation.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedSpec {
    /// The node's desired interfaces.
    pub spec: MultiNicNodeConfigSpec,
    /// The generation it belongs to, when known.
    pub generation: Option<i64>,
    /// How each interface is named in messages when not `spec.interfaces[i]` (database rows:
    /// `multi_interface[id=17]`); same length as `spec.interfaces` when set.
    pub labels: Option<Vec<String>>,
}

/// A validated spec: what can be applied, and what is reported failed right away.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedSpec {
    /// Interfaces without problems, in source order.
    pub valid: Vec<ValidInterface>,
    /// One `InvalidSpec` entry per interface with problems, naming every bad field.
    pub invalid: Vec<(usize, ReportInterface)>,
    /// The generation the spec belongs to.
    pub generation: Option<i64>,
}

/// Longest MAC text copied from an invalid entry into the report, so garbage input cannot
/// grow the report's structure.
const MAX_REPORTED_MAC: usize = 32;

impl LoadedSpec {
    /// Runs the API crate's lenient check. Problems of the spec as a whole (another node's
    /// spec, too many interfaces, a malformed instance id) stop the run; problems of one
    /// interface only fail that interface.
    pub fn check(&self, node_name: &str) -> Result<CheckedSpec, SourceError> {
        if self.spec.node_name != node_name {
            return Err(SourceError::WrongNode {
                found: self.spec.node_name.clone(),
                expected: node_name.to_owned(),
            });
        }
        let check = check_spec(&self.spec);
        let spec_errors: Vec<String> = check
            .spec_errors()
            .map(|e| self.relabel(&e.to_string()))
            .collect();
        if !spec_errors.is_empty() {
            return Err(SourceError::InvalidSpec(spec_errors.join("; ")));
        }
        let invalid = (0..self.spec.interfaces.len())
            .filter_map(|index| {
                let messages: Vec<String> = check
                    .interface_errors(index)
                    .map(|e| self.relabel(&e.to_string()))
                    .collect();
                (!messages.is_empty()).then(|| (index, self.invalid_entry(index, &messages)))
            })
            .collect();
        Ok(CheckedSpec {
            valid: check.interfaces,
            invalid,
            generation: self.generation,
        })
    }

    /// Refuses a spec whose `instanceId` differs from the host's product UUID, when both are
    /// known (compared without regard to case or surrounding space).
    pub fn check_instance(&self, host_uuid: Option<&str>) -> Result<(), SourceError> {
        let (Some(found), Some(expected)) = (self.spec.instance_id.as_deref(), host_uuid) else {
            return Ok(());
        };
        if found.trim().eq_ignore_ascii_case(expected.trim()) {
            return Ok(());
        }
        Err(SourceError::WrongInstance {
            found: found.to_owned(),
            expected: expected.trim().to_owned(),
        })
    }

    fn invalid_entry(&self, index: usize, messages: &[String]) -> ReportInterface {
        let iface = &self.spec.interfaces[index];
        let slot = iface
            .name
            .as_deref()
            .and_then(|n| multinic_api::parse_slot_name(n).ok())
            .or(iface.id.filter(|id| *id <= multinic_api::MAX_SLOT));
        ReportInterface {
            id: slot,
            name: slot.map(multinic_netconf::slot_name),
            mac_address: iface.mac_address.chars().take(MAX_REPORTED_MAC).collect(),
            reason: InterfaceReason::InvalidSpec,
            message: messages.join("; "),
        }
    }

    /// Rewrites `spec.interfaces[i]` into the source's own label for entry `i`.
    fn relabel(&self, message: &str) -> String {
        let Some(labels) = &self.labels else {
            return message.to_owned();
        };
        let mut out = message.to_owned();
        for (index, label) in labels.iter().enumerate() {
            out = out.replace(&format!("spec.interfaces[{index}]"), label);
        }
        out.replace("spec.interfaces", "multi_interface")
    }
}

/// Reads the desired spec from whichever source is configured (all but the database, which
/// keeps a connection and is read through [`DbSource`]).
pub async fn load(
    source: &SourceConfig,
    node_name: &str,
    kube_client: Option<&::kube::Client>,
) -> Result<LoadedSpec, SourceError> {
    match source {
        SourceConfig::Spec(inline) => spec::load(inline),
        SourceConfig::File(path) => file::load(path, node_name),
        SourceConfig::Kube { namespace } => {
            let client = kube_client.ok_or_else(|| {
                SourceError::Missing("no Kubernetes client for --source kube".into())
            })?;
            kube::load(client, namespace, node_name).await
        }
        SourceConfig::Db(_) => Err(SourceError::Missing(
            "the database source is read through DbSource".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(instance_id: Option<&str>) -> LoadedSpec {
        LoadedSpec {
            spec: MultiNicNodeConfigSpec {
                node_name: "worker-01".into(),
                instance_id: instance_id.map(str::to_owned),
                interfaces: Vec::new(),
            },
            generation: None,
            labels: None,
        }
    }

    #[test]
    fn instance_id_must_match_the_product_uuid_when_both_are_known() {
        let uuid = "8A3F5E2C-1B4D-4E6F-9A8B-7C6D5E4F3A2B";
        let spec = loaded(Some("8a3f5e2c-1b4d-4e6f-9a8b-7c6d5e4f3a2b"));
        assert!(spec.check_instance(Some(&format!(" {uuid}\n"))).is_ok());
        assert!(
            spec.check_instance(None).is_ok(),
            "unreadable UUID: no check"
        );
        assert!(loaded(None).check_instance(Some(uuid)).is_ok());
        let err = spec
            .check_instance(Some("00000000-1b4d-4e6f-9a8b-7c6d5e4f3a2b"))
            .unwrap_err();
        assert!(matches!(err, SourceError::WrongInstance { .. }));
        assert!(err.to_string().starts_with("spec.instanceId:"), "{err}");
    }
}
