//! Watch streams: initial state or resumption from a resourceVersion (410 Gone as an ERROR
//! event once it is older than the kept history), selector enter/leave as ADDED/DELETED,
//! BOOKMARK events, `sendInitialEvents`, server-side timeouts, and metadata-only or Table
//! objects.

use crate::error::ApiError;
use crate::meta;
use crate::registry::ResourceType;
use crate::selectors::Selectors;
use crate::store::{Change, ChangeKind, Store};
use axum::body::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// What one watch request asked for.
#[derive(Clone, Debug)]
pub struct WatchRequest {
    /// Namespace, or all.
    pub namespace: Option<String>,
    /// `resourceVersion`; None for unset or "0" (start from the current state).
    pub resource_version: Option<u64>,
    /// `sendInitialEvents=true`.
    pub send_initial_events: bool,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout: Duration,
    /// Label and field selectors.
    pub selectors: Selectors,
    /// Objects as PartialObjectMetadata.
    pub metadata_only: bool,
    /// Objects as one-row Tables (`kubectl get -w`); the query's `includeObject` applies.
    pub table: Option<std::collections::HashMap<String, String>>,
    /// How often to send a BOOKMARK.
    pub bookmark_interval: Duration,
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

struct Emitter {
    rt: Arc<ResourceType>,
    req: WatchRequest,
    tx: mpsc::Sender<Bytes>,
    last_rv: u64,
}

impl Emitter {
    async fn send(&self, kind: &str, object: &Value) -> bool {
        let object = if let Some(q) = &self.req.table {
            let rv = meta::meta_str(object, "resourceVersion").unwrap_or_default();
            crate::table::render(
                &self.rt,
                std::slice::from_ref(object),
                &json!({"resourceVersion": rv}),
                q,
            )
        } else if self.req.metadata_only {
            meta::partial_metadata(object)
        } else {
            object.clone()
        };
        self.tx.send(event_line(kind, &object)).await.is_ok()
    }

    fn in_scope(&self, obj: &Value) -> bool {
        self.req
            .namespace
            .as_deref()
            .is_none_or(|ns| meta::namespace(obj) == ns)
            && self.req.selectors.matches(obj)
    }

    /// Sends what a change means to this watcher; false once the client is gone.
    async fn change(&mut self, c: &Change) -> bool {
        if c.rv <= self.last_rv {
            return true;
        }
        self.last_rv = c.rv;
        if c.gr != self.rt.group_resource() {
            return true;
        }
        let now = self.in_scope(&c.object);
        let kind = match c.kind {
            ChangeKind::Added if now => "ADDED",
            ChangeKind::Deleted if now => "DELETED",
            ChangeKind::Modified => {
                let before = c.previous.as_ref().is_none_or(|p| self.in_scope(p));
                match (before, now) {
                    (true, true) => "MODIFIED",
                    (false, true) => "ADDED",
                    (true, false) => "DELETED",
                    (false, false) => return true,
                }
            }
            _ => return true,
        };
        self.send(kind, &c.object).await
    }

    async fn bookmark(&self, initial_end: bool) -> bool {
        let mut metadata = json!({"resourceVersion": self.last_rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": metadata});
        self.tx.send(event_line("BOOKMARK", &obj)).await.is_ok()
    }
}

/// Starts a watch; the returned channel yields newline-delimited watch events until the
/// timeout, the client leaving, an error or `shutdown`.
pub fn start(
    store: Arc<Store>,
    rt: Arc<ResourceType>,
    req: WatchRequest,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        let gr = rt.group_resource();
        let from_state = req.resource_version.is_none() || req.send_initial_events;
        let mut em = Emitter {
            rt,
            req,
            tx,
            last_rv: 0,
        };
        let mut feed = if from_state {
            let (items, rv, feed) = store.snapshot(&gr, em.req.namespace.as_deref());
            for o in items.iter().filter(|o| em.req.selectors.matches(o)) {
                if !em.send("ADDED", o).await {
                    return;
                }
            }
            em.last_rv = rv;
            if em.req.send_initial_events && !em.bookmark(true).await {
                return;
            }
            feed
        } else {
            let rv = em.req.resource_version.unwrap_or(0);
            match store.changes_since(&gr, rv) {
                Ok((replay, now, feed)) => {
                    em.last_rv = rv;
                    for c in &replay {
                        if !em.change(c).await {
                            return;
                        }
                    }
                    em.last_rv = em.last_rv.max(now);
                    feed
                }
                Err(gone) => {
                    let _ = em.tx.send(event_line("ERROR", &gone.to_status())).await;
                    return;
                }
            }
        };
        let deadline = tokio::time::sleep(em.req.timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(em.req.bookmark_interval);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = shutdown.changed() => return,
                _ = em.tx.closed() => return,
                _ = tick.tick(), if em.req.bookmarks => {
                    if !em.bookmark(false).await { return; }
                }
                got = feed.recv() => match got {
                    Ok(c) => if !em.change(&c).await { return; },
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let gone = ApiError::gone(em.last_rv, store.current_rv());
                        let _ = em.tx.send(event_line("ERROR", &gone.to_status())).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    });
    rx
}
