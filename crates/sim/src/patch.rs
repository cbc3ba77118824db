//! PATCH bodies: JSON patch (RFC 6902, including `test`), JSON merge patch (RFC 7386),
//! strategic merge patch (treated as a merge patch: lists are replaced), and server-side apply:
//! the applied object is merged over the live one, fields this manager applied before and
//! now omits are removed (unless another applier owns them), and managedFields records each
//! applier's field set in FieldsV1 form (lists are atomic). Without `force`, an apply that
//! changes a field another applier owns is a 409 Conflict naming the field and the owner.

use crate::error::ApiError;
use crate::meta;
use serde_json::{Value, json};

/// The patch flavours, by Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml`.
    Apply,
}

impl PatchKind {
    /// The kind a Content-Type header names.
    pub fn from_content_type(ct: &str) -> Result<Self, ApiError> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Self::Apply),
            other => Err(ApiError::unsupported_media(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"
            ))),
        }
    }
}

/// Parses a patch body (YAML is accepted for apply, which also covers JSON).
pub fn parse_body(kind: PatchKind, body: &[u8]) -> Result<Value, ApiError> {
    let parsed = if kind == PatchKind::Apply {
        serde_yaml::from_slice::<Value>(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// Applies a patch to `current`, returning the patched object.
pub fn apply_patch(kind: PatchKind, current: &Value, patch: &Value) -> Result<Value, ApiError> {
    let mut doc = current.clone();
    match kind {
        PatchKind::Json => {
            // The API server's JSON patch treats a missing path as null for `test` (kube-rs's
            // finalizer helper relies on it: `test /metadata/finalizers null`); drop such ops.
            let mut patch = patch.clone();
            if let Some(ops) = patch.as_array_mut() {
                ops.retain(|op| {
                    let path = op.get("path").and_then(Value::as_str).unwrap_or("");
                    !(op.get("op").and_then(Value::as_str) == Some("test")
                        && op.get("value") == Some(&Value::Null)
                        && doc.pointer(path).is_none_or(Value::is_null))
                });
            }
            let ops: json_patch::Patch = serde_json::from_value(patch)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            // Like the API server, a failed `test` or a bad path makes the whole patch invalid.
            json_patch::patch(&mut doc, &ops).map_err(|e| ApiError {
                code: 422,
                reason: "Invalid",
                message: format!(
                    "the server rejected our request due to an error in our request: {e}"
                ),
                details: None,
            })?;
        }
        PatchKind::Merge | PatchKind::Strategic | PatchKind::Apply => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            let mut patch = patch.clone();
            strip_directives(&mut patch);
            json_patch::merge(&mut doc, &patch);
        }
    }
    Ok(doc)
}

/// Drops strategic-merge `$patch`/`$setElementOrder`-style directives we do not implement.
fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            m.values_mut().for_each(strip_directives);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

/// Identity fields that are not part of an applier's field set.
const IDENTITY: [&str; 7] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "managedFields",
    "creationTimestamp",
    "generation",
];

/// The field set of an applied document in FieldsV1 form: object keys become `f:<key>` and
/// recurse; scalars and lists are leaves (`{}`).
pub fn field_set(applied: &Value) -> Value {
    fn walk(v: &Value) -> Value {
        match v {
            Value::Object(m) if !m.is_empty() => {
                Value::Object(m.iter().map(|(k, v)| (format!("f:{k}"), walk(v))).collect())
            }
            _ => json!({}),
        }
    }
    let mut doc = applied.clone();
    if let Some(o) = doc.as_object_mut() {
        o.remove("apiVersion");
        o.remove("kind");
        if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            IDENTITY.iter().for_each(|k| {
                m.remove(*k);
            });
            if m.is_empty() {
                o.remove("metadata");
            }
        }
    }
    walk(&doc)
}

fn leaf_paths(set: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match set.as_object() {
        Some(m) if !m.is_empty() => {
            for (k, v) in m {
                prefix.push(k.trim_start_matches("f:").to_string());
                leaf_paths(v, prefix, out);
                prefix.pop();
            }
        }
        _ if !prefix.is_empty() => out.push(prefix.clone()),
        _ => {}
    }
}

/// Whether a field set covers `path` (the path itself, a descendant or an atomic ancestor).
/// An empty set at the root covers nothing.
fn covers(set: &Value, path: &[String]) -> bool {
    let mut node = set;
    for (depth, key) in path.iter().enumerate() {
        let Some(m) = node.as_object() else {
            return false;
        };
        if depth > 0 && m.is_empty() {
            return true;
        }
        match m.get(&format!("f:{key}")) {
            Some(next) => node = next,
            None => return false,
        }
    }
    true
}

fn remove_path(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = obj;
    for key in parents {
        match node.get_mut(key.as_str()) {
            Some(next) => node = next,
            None => return,
        }
    }
    if let Some(m) = node.as_object_mut() {
        m.remove(last);
    }
}

fn apply_entries(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["operation"] == json!("Apply"))
        .collect()
}

fn value_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |node, key| node.get(key.as_str()))
}

/// Fields the applied document would change that another applier owns, as
/// `(owner, ".path.to.field")`.
pub fn apply_conflicts(
    live: &Value,
    manager: &str,
    status: bool,
    applied: &Value,
) -> Vec<(String, String)> {
    let mut paths = Vec::new();
    leaf_paths(&field_set(applied), &mut Vec::new(), &mut paths);
    let mut out = Vec::new();
    for e in apply_entries(live) {
        if e["manager"] == json!(manager) || e.get("subresource").is_some() != status {
            continue;
        }
        for path in paths.iter().filter(|p| covers(&e["fieldsV1"], p)) {
            if value_at(live, path) != value_at(applied, path) {
                out.push((
                    e["manager"].as_str().unwrap_or_default().to_string(),
                    format!(".{}", path.join(".")),
                ));
            }
        }
    }
    out
}

/// Removes one field from a FieldsV1 set, dropping parents left empty (an empty map below the
/// root would read as "owns the whole parent").
fn remove_from_set(set: &mut Value, keys: &[String]) {
    let Some((first, rest)) = keys.split_first() else {
        return;
    };
    let Some(map) = set.as_object_mut() else {
        return;
    };
    if rest.is_empty() {
        map.remove(first);
        return;
    }
    if let Some(child) = map.get_mut(first) {
        remove_from_set(child, rest);
        if child.as_object().is_some_and(|m| m.is_empty()) {
            map.remove(first);
        }
    }
}

/// A forced apply takes the fields it conflicted on: they leave the other appliers' sets.
pub fn take_ownership(
    obj: &mut Value,
    manager: &str,
    status: bool,
    conflicts: &[(String, String)],
) {
    let Some(entries) = obj
        .pointer_mut("/metadata/managedFields")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for e in entries.iter_mut() {
        let owner = e["manager"].as_str().unwrap_or_default().to_string();
        if owner == manager
            || e["operation"] != json!("Apply")
            || e.get("subresource").is_some() != status
        {
            continue;
        }
        for (_, field) in conflicts.iter().filter(|(m, _)| *m == owner) {
            let keys: Vec<String> = field
                .trim_start_matches('.')
                .split('.')
                .map(|k| format!("f:{k}"))
                .collect();
            remove_from_set(&mut e["fieldsV1"], &keys);
        }
    }
}

/// After an apply by `manager`: removes from `merged` the fields that manager's previous apply
/// (as recorded in `live`) owned, that the new apply omits and no other applier owns.
pub fn drop_released_fields(
    merged: &mut Value,
    live: &Value,
    manager: &str,
    status: bool,
    applied: &Value,
) {
    let new_set = field_set(applied);
    let entries = apply_entries(live);
    let mine =
        |e: &&Value| e["manager"] == json!(manager) && e.get("subresource").is_some() == status;
    let Some(previous) = entries.iter().find(mine) else {
        return;
    };
    let others: Vec<&Value> = entries
        .iter()
        .filter(|e| !mine(e))
        .map(|e| &e["fieldsV1"])
        .collect();
    let mut paths = Vec::new();
    leaf_paths(&previous["fieldsV1"], &mut Vec::new(), &mut paths);
    for path in paths {
        if !covers(&new_set, &path) && !others.iter().any(|o| covers(o, &path)) {
            remove_path(merged, &path);
        }
    }
}

/// Records (replacing any earlier entry of the same manager, operation and subresource) that
/// `manager` wrote this object; `fields` is the FieldsV1 set for an apply, `{}` otherwise.
pub fn record_manager(obj: &mut Value, manager: &str, apply: bool, status: bool, fields: Value) {
    let operation = if apply { "Apply" } else { "Update" };
    let api_version = obj.get("apiVersion").cloned().unwrap_or(Value::Null);
    let mut entry = json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": meta::now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    });
    if status {
        entry["subresource"] = json!("status");
    }
    let m = meta::meta_mut(obj);
    let list = m.entry("managedFields").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    let arr = list.as_array_mut().expect("made an array above");
    let same = |e: &Value| {
        e["manager"] == json!(manager)
            && e["operation"] == json!(operation)
            && e.get("subresource").is_some() == status
    };
    // An unchanged field set keeps its entry (and time), so a repeated apply is a no-op.
    if arr.iter().any(|e| {
        same(e) && e["fieldsV1"] == entry["fieldsV1"] && e["apiVersion"] == entry["apiVersion"]
    }) {
        return;
    }
    arr.retain(|e| !same(e));
    arr.push(entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_patch_test_op_guards() {
        let cur = json!({"spec": {"a": 1}});
        let ok = json!([{"op": "test", "path": "/spec/a", "value": 1}, {"op": "replace", "path": "/spec/a", "value": 2}]);
        assert_eq!(
            apply_patch(PatchKind::Json, &cur, &ok).unwrap()["spec"]["a"],
            2
        );
        let bad = json!([{"op": "test", "path": "/spec/a", "value": 5}, {"op": "replace", "path": "/spec/a", "value": 2}]);
        assert_eq!(
            apply_patch(PatchKind::Json, &cur, &bad).unwrap_err().code,
            422
        );
    }

    #[test]
    fn test_of_a_missing_path_against_null_passes() {
        // kube-runtime's finalizer helper adds the first finalizer with exactly this patch.
        let cur = json!({"metadata": {"name": "x"}});
        let p = json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["a/b"]}]);
        assert_eq!(
            apply_patch(PatchKind::Json, &cur, &p).unwrap()["metadata"]["finalizers"],
            json!(["a/b"])
        );
        let set = json!({"metadata": {"finalizers": ["c/d"]}});
        assert_eq!(
            apply_patch(PatchKind::Json, &set, &p).unwrap_err().code,
            422
        );
    }

    #[test]
    fn merge_removes_nulls_and_replaces_lists() {
        let cur = json!({"spec": {"a": 1, "b": [1, 2], "c": 3}});
        let p = json!({"spec": {"a": null, "b": [3], "$patch": "x"}});
        let out = apply_patch(PatchKind::Strategic, &cur, &p).unwrap();
        assert_eq!(out, json!({"spec": {"b": [3], "c": 3}}));
    }

    #[test]
    fn managers_are_recorded_once() {
        let mut o = json!({"apiVersion": "v1", "metadata": {}});
        record_manager(&mut o, "ctl", true, false, json!({}));
        record_manager(&mut o, "ctl", true, false, json!({}));
        record_manager(&mut o, "ctl", true, true, json!({}));
        assert_eq!(o["metadata"]["managedFields"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn apply_releases_fields_the_manager_dropped() {
        let first = json!({"apiVersion": "v1", "metadata": {"name": "x"}, "spec": {"a": 1, "b": 2, "list": [1]}});
        assert_eq!(
            field_set(&first),
            json!({"f:spec": {"f:a": {}, "f:b": {}, "f:list": {}}})
        );
        let mut live = apply_patch(PatchKind::Apply, &json!({"spec": {"c": 3}}), &first).unwrap();
        record_manager(&mut live, "me", true, false, field_set(&first));
        record_manager(
            &mut live,
            "other",
            true,
            false,
            json!({"f:spec": {"f:b": {}}}),
        );
        let second = json!({"spec": {"a": 5}});
        let mut merged = apply_patch(PatchKind::Apply, &live, &second).unwrap();
        drop_released_fields(&mut merged, &live, "me", false, &second);
        assert_eq!(
            merged["spec"],
            json!({"a": 5, "b": 2, "c": 3}),
            "list released; b kept (other owns it); c never applied"
        );
    }

    #[test]
    fn conflicts_name_owner_and_field() {
        let mut live = json!({"spec": {"a": 1, "b": 2}});
        record_manager(
            &mut live,
            "other",
            true,
            false,
            json!({"f:spec": {"f:a": {}}}),
        );
        let same = json!({"spec": {"a": 1, "b": 3}});
        assert!(
            apply_conflicts(&live, "me", false, &same).is_empty(),
            "same value: no conflict"
        );
        let changed = json!({"spec": {"a": 5}});
        assert_eq!(
            apply_conflicts(&live, "me", false, &changed),
            vec![("other".to_string(), ".spec.a".to_string())]
        );
        assert!(
            apply_conflicts(&live, "other", false, &changed).is_empty(),
            "own fields never conflict"
        );
    }
}
