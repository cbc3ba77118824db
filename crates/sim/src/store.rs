//! The object store: one cluster-wide resourceVersion, create/get/list/update with the API's
//! metadata rules (uid, creationTimestamp, generation, optimistic concurrency, status
//! subresource), the change history watches resume from, and the live change feed.

use crate::error::ApiError;
pub use crate::list::ListPage;
use crate::meta;
use crate::registry::{GroupResource, Registry, ResourceType};
use crate::update::check_schema;

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created.
    Added,
    /// Updated.
    Modified,
    /// Removed.
    Deleted,
}

/// One committed write, as watches see it.
#[derive(Clone, Debug)]
pub struct Change {
    /// resourceVersion the write produced.
    pub rv: u64,
    /// Type of the object.
    pub gr: GroupResource,
    /// Added, Modified or Deleted.
    pub kind: ChangeKind,
    /// The object after the write (before removal for Deleted).
    pub object: Value,
    /// The object before the write, for Modified (selector enter/leave).
    pub previous: Option<Value>,
}

/// Which part of an object a write targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The main resource: status is kept from the stored object.
    Main,
    /// The `/status` subresource: only status changes.
    Status,
}

/// Changes to replay, the resourceVersion the feed starts after, and the feed.
pub type Resumed = (Vec<Arc<Change>>, u64, broadcast::Receiver<Arc<Change>>);

pub(crate) type Bucket = BTreeMap<(String, String), Value>;

pub(crate) struct Inner {
    pub(crate) rv: u64,
    /// Newest resourceVersion that fell out of the history; older watches get 410.
    pub(crate) compacted_rv: u64,
    pub(crate) registry: Registry,
    pub(crate) objects: HashMap<GroupResource, Bucket>,
    /// Uids of every stored object, for the garbage collector's "does the owner exist".
    pub(crate) uids: std::collections::HashSet<String>,
    /// Dependents by owner uid and keys by label, kept in step with `objects`.
    pub(crate) indexes: crate::index::Indexes,
    /// The simulator's own controllers (kubelet, Job controller): they must never miss a change.
    internal: Vec<tokio::sync::mpsc::UnboundedSender<Arc<Change>>>,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
}

/// The in-memory store behind the API server.
pub struct Store {
    pub(crate) inner: Mutex<Inner>,
    feed: broadcast::Sender<Arc<Change>>,
}

pub(crate) fn key(ns: &str, name: &str) -> (String, String) {
    (ns.to_string(), name.to_string())
}

impl Store {
    /// A store keeping the last `history_limit` changes for watch resumption.
    pub fn new(history_limit: usize) -> Self {
        let (feed, _) = broadcast::channel(history_limit.clamp(1024, 65536));
        Self {
            inner: Mutex::new(Inner {
                rv: 1,
                compacted_rv: 0,
                registry: Registry::default(),
                objects: HashMap::new(),
                uids: Default::default(),
                indexes: Default::default(),
                internal: Vec::new(),
                history: VecDeque::new(),
                history_limit: history_limit.max(1),
            }),
            feed,
        }
    }

    /// A detached copy of the current objects for a server-side dry run (`dryRun=All`): writes
    /// to it run every check and default but reach no watcher, controller or node.
    pub fn dry_run_copy(&self) -> Store {
        let inner = self.lock();
        let (feed, _) = broadcast::channel(1);
        Store {
            inner: Mutex::new(Inner {
                rv: inner.rv,
                compacted_rv: inner.rv,
                registry: inner.registry.clone(),
                objects: inner.objects.clone(),
                uids: inner.uids.clone(),
                indexes: inner.indexes.clone(),
                internal: Vec::new(),
                history: VecDeque::new(),
                history_limit: 1,
            }),
            feed,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A snapshot of the served types.
    pub fn registry(&self) -> Registry {
        self.lock().registry.clone()
    }

    /// The type served at `group/version/plural`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.lock().registry.lookup(group, version, plural)
    }

    /// The current resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// Subscribes to the live feed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.feed.subscribe()
    }

    /// An unbounded feed for the simulator's own controllers, which must not lag behind (API
    /// watchers use the bounded [`Store::subscribe`] and get 410 when they fall behind).
    pub(crate) fn subscribe_internal(&self) -> tokio::sync::mpsc::UnboundedReceiver<Arc<Change>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.lock().internal.push(tx);
        rx
    }

    /// Records a write: bumps the resourceVersion, stores or removes the object, keeps history
    /// and tells watchers. Returns the object as committed.
    pub(crate) fn commit(
        &self,
        inner: &mut Inner,
        gr: &GroupResource,
        kind: ChangeKind,
        mut obj: Value,
        previous: Option<Value>,
    ) -> Value {
        inner.rv += 1;
        let rv = inner.rv;
        meta::meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        let k = key(meta::namespace(&obj), meta::name(&obj));
        let bucket = inner.objects.entry(gr.clone()).or_default();
        if kind == ChangeKind::Deleted {
            let stored = bucket.remove(&k);
            inner.indexes.replace(gr, &k, stored.as_ref(), None);
            inner.uids.remove(meta::uid(&obj));
        } else {
            let stored = bucket.insert(k.clone(), obj.clone());
            inner.indexes.replace(gr, &k, stored.as_ref(), Some(&obj));
            inner.uids.insert(meta::uid(&obj).to_string());
        }
        let change = Arc::new(Change {
            rv,
            gr: gr.clone(),
            kind,
            object: obj.clone(),
            previous,
        });
        inner.history.push_back(change.clone());
        while inner.history.len() > inner.history_limit {
            if let Some(old) = inner.history.pop_front() {
                inner.compacted_rv = old.rv;
            }
        }
        inner.internal.retain(|tx| tx.send(change.clone()).is_ok());
        let _ = self.feed.send(change);
        if gr.group == "events.k8s.io" && gr.resource == "events" {
            self.mirror_event(inner, kind, &obj, &k);
        }
        obj
    }

    /// events.k8s.io/v1 and core/v1 Events are one resource in the API server: every write of
    /// the former shows in the latter too (so `kubectl describe` lists what kube-runtime's
    /// Recorder published).
    fn mirror_event(
        &self,
        inner: &mut Inner,
        kind: ChangeKind,
        event: &Value,
        k: &(String, String),
    ) {
        let core = GroupResource::new("", "events");
        let previous = inner.objects.get(&core).and_then(|b| b.get(k)).cloned();
        let kind = match (kind, &previous) {
            (ChangeKind::Deleted, None) => return,
            (ChangeKind::Deleted, Some(_)) => ChangeKind::Deleted,
            (_, Some(_)) => ChangeKind::Modified,
            (_, None) => ChangeKind::Added,
        };
        let mirror = crate::builtin::event_to_core(event);
        self.commit(inner, &core, kind, mirror, previous);
    }

    /// Changes after `rv` of one type, or 410 when some of them are no longer kept; plus a feed
    /// subscription taken under the same lock so nothing falls between the two, and the
    /// resourceVersion the feed starts after.
    pub fn changes_since(&self, gr: &GroupResource, rv: u64) -> Result<Resumed, ApiError> {
        let inner = self.lock();
        if rv < inner.compacted_rv {
            return Err(ApiError::gone(rv, inner.compacted_rv + 1));
        }
        let rx = self.feed.subscribe();
        let replay = inner
            .history
            .iter()
            .filter(|c| c.rv > rv && &c.gr == gr)
            .cloned()
            .collect();
        Ok((replay, inner.rv, rx))
    }

    /// Current objects of a type (in a namespace or all) as synthetic ADDED changes, the
    /// current resourceVersion, and a feed subscription taken under the same lock.
    pub fn snapshot(
        &self,
        gr: &GroupResource,
        ns: Option<&str>,
    ) -> (Vec<Value>, u64, broadcast::Receiver<Arc<Change>>) {
        let inner = self.lock();
        let rx = self.feed.subscribe();
        let items = inner
            .objects
            .get(gr)
            .map(|b| {
                b.values()
                    .filter(|o| ns.is_none_or(|n| meta::namespace(o) == n))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        (items, inner.rv, rx)
    }

    /// Sets the history size (tests force 410 with a tiny one).
    pub fn set_history_limit(&self, limit: usize) {
        let mut inner = self.lock();
        inner.history_limit = limit.max(1);
        while inner.history.len() > inner.history_limit {
            if let Some(old) = inner.history.pop_front() {
                inner.compacted_rv = old.rv;
            }
        }
    }

    /// Creates an object.
    pub fn create(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let gr = rt.group_resource();
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        let ns = if rt.namespaced {
            ns.unwrap_or("default")
        } else {
            ""
        };
        let body_ns = meta::namespace(&obj).to_string();
        if rt.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if meta::meta_str(&obj, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let mut name = meta::name(&obj).to_string();
        if name.is_empty() {
            match meta::meta_str(&obj, "generateName") {
                Some(prefix) if !prefix.is_empty() => {
                    name = format!("{prefix}{}", meta::name_suffix())
                }
                _ => {
                    return Err(ApiError::invalid(
                        &rt.group,
                        &rt.kind,
                        "",
                        vec![crate::error::Cause {
                            field: "metadata.name".into(),
                            message: "Required value: name or generateName is required".into(),
                            reason: "FieldValueRequired",
                        }],
                    ));
                }
            }
        }
        if rt.namespaced {
            match inner
                .objects
                .get(&GroupResource::new("", "namespaces"))
                .and_then(|b| b.get(&key("", ns)))
            {
                None => return Err(ApiError::not_found("", "namespaces", ns)),
                Some(n) if meta::is_deleting(n) => {
                    return Err(ApiError {
                        code: 403,
                        reason: "Forbidden",
                        message: format!(
                            "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                            rt.plural
                        ),
                        details: None,
                    });
                }
                Some(_) => {}
            }
        }
        if inner
            .objects
            .get(&gr)
            .is_some_and(|b| b.contains_key(&key(ns, &name)))
        {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        let m = meta::meta_mut(&mut obj);
        m.insert("name".into(), json!(name));
        if rt.namespaced {
            m.insert("namespace".into(), json!(ns));
        } else {
            m.remove("namespace");
        }
        m.insert("uid".into(), json!(meta::new_uid()));
        m.insert("creationTimestamp".into(), json!(meta::now()));
        m.insert("generation".into(), json!(1));
        for k in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
            "selfLink",
        ] {
            m.remove(k);
        }
        // Create ignores status where a status subresource exists; Nodes keep theirs (the
        // kubelet registers a Node with its status, as the API server allows).
        let is_node = rt.group.is_empty() && rt.plural == "nodes";
        if rt.status_subresource
            && !is_node
            && let Some(o) = obj.as_object_mut()
        {
            o.remove("status");
        }
        crate::builtin::on_create(rt, &mut obj);
        crate::validate::object(rt, &obj)?;
        check_schema(rt, &mut obj)?;
        if rt.group == "apiextensions.k8s.io" {
            crate::builtin::register_crd(&mut inner.registry, &obj)?;
        }
        let created = self.commit(&mut inner, &gr, ChangeKind::Added, obj, None);
        // The garbage collector removes what is created for owners that no longer exist.
        let owners = meta::owner_uids(&created);
        if !owners.is_empty() && owners.iter().all(|u| !inner.uids.contains(u)) {
            self.delete_in(
                &mut inner,
                &gr,
                created.clone(),
                crate::gc::Propagation::Background,
            );
        }
        Ok(created)
    }

    /// Reads one object.
    pub fn get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let inner = self.lock();
        get_in(&inner, rt, ns, name).cloned()
    }

    /// Replaces an object (PUT) or its status.
    pub fn update(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        target: Target,
        new: Value,
    ) -> Result<Value, ApiError> {
        self.modify(rt, ns, name, target, |_| Ok(new))
    }

    /// Reads, transforms and writes an object under one lock (patches).
    pub fn modify(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        target: Target,
        f: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let old = get_in(&inner, rt, ns, name)?.clone();
        let new = f(&old)?;
        self.write(&mut inner, rt, old, new, target)
    }
}

pub(crate) fn get_in<'a>(
    inner: &'a Inner,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
) -> Result<&'a Value, ApiError> {
    let ns = if rt.namespaced {
        ns.unwrap_or("default")
    } else {
        ""
    };
    inner
        .objects
        .get(&rt.group_resource())
        .and_then(|b| b.get(&key(ns, name)))
        .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
}
