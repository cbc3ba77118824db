//! The one place the agent talks to the apply engine (`multinic-engine`): connect, read the
//! slots NICs hold now, plan, apply, clean up; engine outcomes become report entries here.

use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::outcome::NicResult;
use multinic_api::MacAddress;
use multinic_netconf::{DesiredNode, OsFlavor};
use std::collections::HashMap;

/// A connected engine.
pub(crate) struct Node {
    _flavor: OsFlavor,
}

impl Node {
    pub(crate) async fn connect(
        _config: &AgentConfig,
        flavor: OsFlavor,
    ) -> Result<Self, AgentError> {
        Err::<Self, _>(AgentError::Engine(format!(
            "engine not yet available for {flavor}"
        )))
    }

    pub(crate) async fn current_slots(&self) -> Result<HashMap<MacAddress, u8>, AgentError> {
        Ok(HashMap::new())
    }

    pub(crate) async fn plan(&self, _desired: &DesiredNode) -> Result<Vec<String>, AgentError> {
        Ok(Vec::new())
    }

    pub(crate) async fn plan_cleanup(&self) -> Result<Vec<String>, AgentError> {
        Ok(Vec::new())
    }

    pub(crate) async fn apply(&self, _desired: &DesiredNode) -> Result<Vec<NicResult>, AgentError> {
        Ok(Vec::new())
    }

    pub(crate) async fn cleanup(&self) -> Result<Vec<NicResult>, AgentError> {
        Ok(Vec::new())
    }
}
