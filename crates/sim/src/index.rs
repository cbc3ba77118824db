//! Secondary indexes over the stored objects, kept in step with every commit: dependents by
//! owner uid (garbage collection) and objects by label (label-selector lists). Without them
//! each delete and each selector list scanned every stored object, which made the simulator
//! quadratic in the number of objects.

use crate::meta;
use crate::registry::GroupResource;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// `(namespace, name)`: an object's key inside its type's bucket.
pub(crate) type ObjKey = (String, String);

/// One stored object anywhere: its type and key.
pub(crate) type ObjRef = (GroupResource, String, String);

type LabelIndex = HashMap<(String, String), BTreeSet<ObjKey>>;

/// The indexes; [`Indexes::replace`] is called for every stored, changed or removed object.
#[derive(Clone, Default)]
pub(crate) struct Indexes {
    /// Objects by the uid each of their ownerReferences names.
    by_owner: HashMap<String, BTreeSet<ObjRef>>,
    /// Per type: object keys by `(label key, label value)`.
    by_label: HashMap<GroupResource, LabelIndex>,
}

fn labels(obj: &Value) -> Option<&serde_json::Map<String, Value>> {
    obj.get("metadata")?.get("labels")?.as_object()
}

fn owner_refs(obj: &Value) -> Option<&Vec<Value>> {
    obj.get("metadata")?.get("ownerReferences")?.as_array()
}

impl Indexes {
    /// Moves the index entries of the object at `key` from `old` (what was stored) to `new`
    /// (what is stored now; None once removed).
    pub(crate) fn replace(
        &mut self,
        gr: &GroupResource,
        key: &ObjKey,
        old: Option<&Value>,
        new: Option<&Value>,
    ) {
        let (old_labels, new_labels) = (old.and_then(labels), new.and_then(labels));
        if old_labels != new_labels {
            let index = self.by_label.entry(gr.clone()).or_default();
            for (k, v) in old_labels.into_iter().flatten() {
                let entry = (k.clone(), v.as_str().unwrap_or_default().to_string());
                if let Some(set) = index.get_mut(&entry) {
                    set.remove(key);
                    if set.is_empty() {
                        index.remove(&entry);
                    }
                }
            }
            for (k, v) in new_labels.into_iter().flatten() {
                let entry = (k.clone(), v.as_str().unwrap_or_default().to_string());
                index.entry(entry).or_default().insert(key.clone());
            }
        }
        if old.and_then(owner_refs) != new.and_then(owner_refs) {
            let obj_ref = (gr.clone(), key.0.clone(), key.1.clone());
            for uid in old.map(meta::owner_uids).unwrap_or_default() {
                if let Some(set) = self.by_owner.get_mut(&uid) {
                    set.remove(&obj_ref);
                    if set.is_empty() {
                        self.by_owner.remove(&uid);
                    }
                }
            }
            for uid in new.map(meta::owner_uids).unwrap_or_default() {
                self.by_owner
                    .entry(uid)
                    .or_default()
                    .insert(obj_ref.clone());
            }
        }
    }

    /// Objects with an ownerReference naming `uid`.
    pub(crate) fn owned_by(&self, uid: &str) -> impl Iterator<Item = &ObjRef> {
        self.by_owner.get(uid).into_iter().flatten()
    }

    /// Keys of the objects of type `gr` labelled `key=value`, in key order.
    pub(crate) fn labelled(&self, gr: &GroupResource, key: &str, value: &str) -> &BTreeSet<ObjKey> {
        static EMPTY: BTreeSet<ObjKey> = BTreeSet::new();
        self.by_label
            .get(gr)
            .and_then(|i| i.get(&(key.to_string(), value.to_string())))
            .unwrap_or(&EMPTY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value, owner: &str) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "labels": labels,
            "ownerReferences": [{"uid": owner}]}})
    }

    #[test]
    fn entries_follow_the_stored_object_and_go_with_it() {
        let gr = GroupResource::new("", "pods");
        let key = ("ns".to_string(), "p".to_string());
        let mut ix = Indexes::default();
        let first = pod(json!({"app": "a"}), "u1");
        ix.replace(&gr, &key, None, Some(&first));
        assert!(ix.labelled(&gr, "app", "a").contains(&key));
        assert_eq!(ix.owned_by("u1").count(), 1);

        let second = pod(json!({"app": "b"}), "u2");
        ix.replace(&gr, &key, Some(&first), Some(&second));
        assert!(ix.labelled(&gr, "app", "a").is_empty());
        assert!(ix.labelled(&gr, "app", "b").contains(&key));
        assert_eq!(ix.owned_by("u1").count(), 0);
        assert_eq!(ix.owned_by("u2").count(), 1);

        ix.replace(&gr, &key, Some(&second), None);
        assert!(ix.labelled(&gr, "app", "b").is_empty());
        assert_eq!(ix.owned_by("u2").count(), 0);
        assert!(ix.by_label.get(&gr).is_none_or(HashMap::is_empty));
        assert!(ix.by_owner.is_empty());
    }
}
