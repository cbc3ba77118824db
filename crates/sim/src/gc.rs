//! Deletion: preconditions, finalizers and deletionTimestamp, ownerReference cascading
//! (background, foreground, orphan), namespace termination and CRD removal.

use crate::error::ApiError;
use crate::meta;
use crate::registry::{GroupResource, ResourceType};
use crate::store::{ChangeKind, Inner, Store, get_in};
use serde_json::{Value, json};

/// How dependents of a deleted object are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// Delete the owner now, dependents right after it.
    Background,
    /// Delete dependents first, then the owner.
    Foreground,
    /// Keep dependents, dropping their ownerReference.
    Orphan,
}

impl Propagation {
    /// Parses `propagationPolicy`.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "Background" => Ok(Self::Background),
            "Foreground" => Ok(Self::Foreground),
            "Orphan" => Ok(Self::Orphan),
            other => Err(ApiError::bad_request(format!(
                "unsupported propagationPolicy {other:?}: Background, Foreground or Orphan"
            ))),
        }
    }
}

/// The DeleteOptions of one request.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `propagationPolicy` (or `orphanDependents`); None means the type's default.
    pub propagation: Option<Propagation>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
}

impl DeleteOptions {
    /// Reads a DeleteOptions body (may be empty) plus the query's propagationPolicy.
    pub fn from_request(body: &Value, query_policy: Option<&str>) -> Result<Self, ApiError> {
        let policy = body
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .or(query_policy);
        let mut propagation = policy.map(Propagation::parse).transpose()?;
        if propagation.is_none() {
            propagation = match body.get("orphanDependents").and_then(Value::as_bool) {
                Some(true) => Some(Propagation::Orphan),
                Some(false) => Some(Propagation::Background),
                None => None,
            };
        }
        let pre = |k: &str| {
            body.pointer(&format!("/preconditions/{k}"))
                .and_then(Value::as_str)
                .map(String::from)
        };
        Ok(Self {
            propagation,
            uid: pre("uid"),
            resource_version: pre("resourceVersion"),
        })
    }
}

/// The API's default: batch/v1 Jobs orphan their Pods unless asked otherwise (kubectl asks
/// for Background); everything else is collected in the background.
fn default_propagation(gr: &GroupResource) -> Propagation {
    if gr.group == "batch" && gr.resource == "jobs" {
        Propagation::Orphan
    } else {
        Propagation::Background
    }
}

impl Store {
    /// Deletes an object: sets deletionTimestamp while finalizers remain, else removes it and
    /// cascades to its dependents. Returns the object as of the deletion.
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let obj = get_in(&inner, rt, ns, name)?.clone();
        let fail = |why: String| Err(ApiError::conflict(&rt.group, &rt.plural, name, &why));
        if let Some(uid) = &opts.uid
            && uid != meta::uid(&obj)
        {
            return fail(format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta::uid(&obj)
            ));
        }
        if let Some(rv) = &opts.resource_version
            && Some(rv.as_str()) != meta::meta_str(&obj, "resourceVersion")
        {
            return fail(format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta::meta_str(&obj, "resourceVersion").unwrap_or("")
            ));
        }
        let gr = rt.group_resource();
        let policy = opts.propagation.unwrap_or_else(|| default_propagation(&gr));
        Ok(self.delete_in(&mut inner, &gr, obj, policy))
    }

    pub(crate) fn delete_in(
        &self,
        inner: &mut Inner,
        gr: &GroupResource,
        obj: Value,
        policy: Propagation,
    ) -> Value {
        if gr.group.is_empty() && gr.resource == "namespaces" {
            return self.terminate_namespace(inner, obj);
        }
        if policy == Propagation::Foreground {
            for (dgr, dep) in dependents(inner, &obj) {
                self.delete_in(inner, &dgr, dep, Propagation::Foreground);
            }
        }
        if meta::finalizers(&obj).is_empty() {
            return self.remove(inner, gr, obj, policy);
        }
        if meta::is_deleting(&obj) {
            return obj;
        }
        let previous = obj.clone();
        let mut marked = obj;
        let m = meta::meta_mut(&mut marked);
        m.insert("deletionTimestamp".into(), json!(meta::now()));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
        self.commit(inner, gr, ChangeKind::Modified, marked, Some(previous))
    }

    /// Removes an object for good and cascades.
    pub(crate) fn remove(
        &self,
        inner: &mut Inner,
        gr: &GroupResource,
        obj: Value,
        policy: Propagation,
    ) -> Value {
        let removed = self.commit(inner, gr, ChangeKind::Deleted, obj, None);
        if gr.group == "apiextensions.k8s.io"
            && let Some(t) = ResourceType::from_crd(&removed)
        {
            let cr_gr = t.group_resource();
            inner.registry.remove(&cr_gr);
            let all: Vec<Value> = inner
                .objects
                .get(&cr_gr)
                .map(|b| b.values().cloned().collect())
                .unwrap_or_default();
            for o in all {
                self.commit(inner, &cr_gr, ChangeKind::Deleted, o, None);
            }
        }
        for (dgr, dep) in dependents(inner, &removed) {
            if policy == Propagation::Orphan {
                let previous = dep.clone();
                let mut orphan = dep;
                let uid = meta::uid(&removed).to_string();
                if let Some(refs) = orphan
                    .pointer_mut("/metadata/ownerReferences")
                    .and_then(Value::as_array_mut)
                {
                    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid.as_str()));
                }
                self.commit(inner, &dgr, ChangeKind::Modified, orphan, Some(previous));
            } else {
                self.delete_in(inner, &dgr, dep, Propagation::Background);
            }
        }
        let ns = meta::namespace(&removed).to_string();
        if !ns.is_empty() {
            self.finish_namespace_if_empty(inner, &ns);
        }
        removed
    }

    fn terminate_namespace(&self, inner: &mut Inner, ns_obj: Value) -> Value {
        let ns = meta::name(&ns_obj).to_string();
        let gr = GroupResource::new("", "namespaces");
        let marked = if meta::is_deleting(&ns_obj) {
            ns_obj
        } else {
            let previous = ns_obj.clone();
            let mut marked = ns_obj;
            meta::meta_mut(&mut marked).insert("deletionTimestamp".into(), json!(meta::now()));
            marked["status"] = json!({"phase": "Terminating"});
            self.commit(inner, &gr, ChangeKind::Modified, marked, Some(previous))
        };
        let contents: Vec<(GroupResource, Value)> = inner
            .objects
            .iter()
            .flat_map(|(g, b)| {
                b.iter()
                    .filter(|((o_ns, _), _)| *o_ns == ns)
                    .map(|(_, o)| (g.clone(), o.clone()))
            })
            .collect();
        for (g, o) in contents {
            // An earlier cascade may already have removed it.
            let still_there = inner
                .objects
                .get(&g)
                .is_some_and(|b| b.contains_key(&(ns.clone(), meta::name(&o).to_string())));
            if still_there {
                self.delete_in(inner, &g, o, Propagation::Background);
            }
        }
        if self.finish_namespace_if_empty(inner, &ns) {
            let mut gone = marked;
            gone["status"] = json!({"phase": "Terminating"});
            return gone;
        }
        marked
    }

    /// Removes a terminating namespace once nothing is left in it; true when it did.
    fn finish_namespace_if_empty(&self, inner: &mut Inner, ns: &str) -> bool {
        let gr = GroupResource::new("", "namespaces");
        let Some(ns_obj) = inner
            .objects
            .get(&gr)
            .and_then(|b| b.get(&(String::new(), ns.to_string())))
            .cloned()
        else {
            return false;
        };
        if !meta::is_deleting(&ns_obj) {
            return false;
        }
        let empty = inner
            .objects
            .values()
            .all(|b| !b.keys().any(|(o_ns, _)| o_ns == ns));
        if empty {
            self.commit(inner, &gr, ChangeKind::Deleted, ns_obj, None);
        }
        empty
    }
}

/// Objects whose ownerReferences name `owner` (same namespace, or any for a cluster-scoped owner),
/// found through the owner index rather than by scanning every stored object.
fn dependents(inner: &Inner, owner: &Value) -> Vec<(GroupResource, Value)> {
    let uid = meta::uid(owner);
    if uid.is_empty() {
        return Vec::new();
    }
    let owner_ns = meta::namespace(owner);
    inner
        .indexes
        .owned_by(uid)
        .filter(|(_, ns, _)| owner_ns.is_empty() || ns == owner_ns)
        .filter_map(|(g, ns, name)| {
            let obj = inner.objects.get(g)?.get(&(ns.clone(), name.clone()))?;
            Some((g.clone(), obj.clone()))
        })
        .collect()
}
