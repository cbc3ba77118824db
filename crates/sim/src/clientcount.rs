//! The kubelet's own API client, counting every request it sends by (verb, resource) as the
//! API server's counters name them, and naming itself in `User-Agent` ([`USER_AGENT`]), so a
//! benchmark can tell the kubelet's traffic from the controller's on the same server (from
//! these counters, or from a real apiserver's audit log).

use crate::error::SimError;
use crate::route::{Route, parse};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The `User-Agent` of the kubelet's requests.
pub const USER_AGENT: &str = "multinic-sim-kubelet";

/// Requests sent, by (verb, resource).
#[derive(Debug, Default)]
pub struct Counters(Mutex<BTreeMap<(String, String), u64>>);

impl Counters {
    fn record(&self, method: &http::Method, uri: &http::Uri) {
        let Route::Resource(path) = parse(uri.path()) else {
            return;
        };
        let watch = uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
        let verb = match (method.as_str(), path.name.is_some()) {
            ("GET", true) => "get",
            ("GET", false) if watch => "watch",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => return,
        };
        let resource = match &path.subresource {
            Some(sub) => format!("{}/{sub}", path.plural),
            None => path.plural,
        };
        *crate::kubelet::lock(&self.0)
            .entry((verb.to_string(), resource))
            .or_default() += 1;
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        crate::kubelet::lock(&self.0).clone()
    }

    /// Zeroes every counter.
    pub fn reset(&self) {
        crate::kubelet::lock(&self.0).clear();
    }
}

/// A client for `config` whose requests are recorded in `counters`.
pub(crate) fn client(
    config: kube::Config,
    counters: std::sync::Arc<Counters>,
) -> Result<kube::Client, SimError> {
    let layer =
        tower::util::MapRequestLayer::new(move |mut req: http::Request<kube::client::Body>| {
            counters.record(req.method(), req.uri());
            req.headers_mut().insert(
                http::header::USER_AGENT,
                http::HeaderValue::from_static(USER_AGENT),
            );
            req
        });
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| SimError::Client(e.to_string()))?;
    Ok(builder.with_layer(&layer).build())
}
