//! The connectivity probe: one TCP connect (e.g. to the API server) after applying. A failure
//! reverts the run, like nmstate's checkpoint probes.

use crate::config::ProbeConfig;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// `Ok` when a TCP connection to the target opens within the timeout.
pub(crate) async fn probe(config: &ProbeConfig) -> Result<(), String> {
    match timeout(config.timeout, TcpStream::connect(config.target)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("TCP connect to {} failed: {e}", config.target)),
        Err(_) => Err(format!(
            "TCP connect to {} timed out after {:?}",
            config.target, config.timeout
        )),
    }
}
