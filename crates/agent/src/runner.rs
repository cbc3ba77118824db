//! What a job run and a service pass share: the OS flavor, the source connections (API
//! server, database), the engine, and the steps load -> check -> build -> apply -> write back.

use crate::config::{AgentConfig, SourceConfig};
use crate::error::AgentError;
use crate::node::Node;
use crate::outcome::{Desired, NicResult, row_outcomes};
use crate::source::{self, DbSource, LoadedSpec};
use multinic_engine::Interrupt;
use multinic_netconf::OsFlavor;
use std::collections::HashMap;
use std::path::Path;

/// Long-lived pieces of a run; the service keeps one across passes.
pub(crate) struct Runner<'a> {
    pub(crate) config: &'a AgentConfig,
    flavor: OsFlavor,
    kube: Option<kube::Client>,
    db: Option<DbSource>,
    node: Option<Node>,
    /// The machine's SMBIOS product UUID, when the root exposes it.
    host_uuid: Option<String>,
    /// Stops a running apply (SIGTERM in job mode).
    interrupt: Interrupt,
}

impl<'a> Runner<'a> {
    /// Resolves the OS flavor and prepares the source's client; connects nothing yet.
    pub(crate) fn new(config: &'a AgentConfig) -> Result<Self, AgentError> {
        let flavor = resolve_flavor(config.os.as_deref(), &config.root)?;
        let db = match &config.source {
            SourceConfig::Db(db) => Some(DbSource::new(db)),
            _ => None,
        };
        Ok(Self {
            config,
            flavor,
            kube: None,
            db,
            node: None,
            host_uuid: host_uuid(&config.root),
            interrupt: Interrupt::default(),
        })
    }

    /// Lets `interrupt` stop this runner's applies: they revert what they changed and return.
    pub(crate) fn stop_on(&mut self, interrupt: Interrupt) {
        self.interrupt = interrupt;
    }

    /// The engine, connected on first use (and again after a failed connect).
    pub(crate) async fn node(&mut self) -> Result<&Node, AgentError> {
        if self.node.is_none() {
            self.node = Some(Node::connect(self.config, self.flavor, &self.interrupt).await?);
        }
        Ok(self.node.as_ref().expect("just connected"))
    }

    /// Reads and checks the source, then builds the desired node with sticky slots.
    pub(crate) async fn desired(&mut self) -> Result<Desired, AgentError> {
        let loaded = self.load().await?;
        let checked = loaded.check(&self.config.node_name)?;
        loaded.check_instance(self.host_uuid.as_deref())?;
        // The slots NICs hold now place interfaces the spec gives no slot, and name the NICs
        // an invalid entry may describe (kept as they are); when every entry is valid and has
        // its slot, the kernel state is not read twice.
        let all_placed = !checked.valid.is_empty()
            && checked.invalid.is_empty()
            && checked.valid.iter().all(|v| v.requested_slot.is_some());
        let slots = if all_placed {
            HashMap::new()
        } else {
            self.node().await?.current_slots()?
        };
        Ok(Desired::build(checked, &self.config.net, &slots))
    }

    async fn load(&mut self) -> Result<LoadedSpec, AgentError> {
        let node_name = &self.config.node_name;
        if let Some(db) = &mut self.db {
            return Ok(db
                .load(node_name)
                .await
                .map_err(source::SourceError::from)?);
        }
        if matches!(self.config.source, SourceConfig::Kube { .. }) && self.kube.is_none() {
            self.kube = Some(
                kube::Client::try_default()
                    .await
                    .map_err(AgentError::KubeClient)?,
            );
        }
        Ok(source::load(&self.config.source, node_name, self.kube.as_ref()).await?)
    }

    /// Applies the desired node; the result holds every entry (failed ones included).
    pub(crate) async fn apply(&mut self, desired: &Desired) -> Result<Vec<NicResult>, AgentError> {
        let mut results = desired.failed.clone();
        let applied = self.node().await?.apply(&desired.node).await?;
        results.extend(applied.into_iter().filter(|r| !desired.holds(r)));
        Ok(results)
    }

    /// Sets `netplan_success` of database rows; a no-op for other sources.
    pub(crate) async fn write_back(&self, results: &[NicResult]) {
        let Some(db) = &self.db else { return };
        match db.write_back(&row_outcomes(&db.row_ids(), results)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "netplan_success written"),
            Err(e) => tracing::error!(error = %e, "netplan_success not written"),
        }
    }

    /// Drops the engine so the next pass reconnects (after an engine-level failure).
    pub(crate) fn reset_node(&mut self) {
        self.node = None;
    }
}

/// Where the kernel shows the SMBIOS product UUID (the VM's instance id on OpenStack/KVM).
const PRODUCT_UUID: &str = "sys/class/dmi/id/product_uuid";

/// `<root>/sys/class/dmi/id/product_uuid`, when readable and not empty.
fn host_uuid(root: &Path) -> Option<String> {
    let path = root.join(PRODUCT_UUID);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "no product UUID; instanceId not checked");
            None
        }
    }
}

/// The flavor given, else the one `<root>/etc/os-release` names.
pub(crate) fn resolve_flavor(given: Option<&str>, root: &Path) -> Result<OsFlavor, AgentError> {
    if let Some(name) = given {
        return name
            .parse::<OsFlavor>()
            .map_err(|e| AgentError::Os(e.to_string()));
    }
    let path = root.join("etc/os-release");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        AgentError::Os(format!(
            "no --os given and {} unreadable: {e}",
            path.display()
        ))
    })?;
    OsFlavor::from_os_release(&text).map_err(|e| AgentError::Os(format!("{}: {e}", path.display())))
}
