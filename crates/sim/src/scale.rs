//! The `/scale` subresource (autoscaling/v1 `Scale`): a view of an object's replica count that
//! `kubectl scale` and autoscalers read and write, for Deployments and custom resources whose
//! CRD declares `subresources.scale`.

use crate::error::{ApiError, Cause};
use crate::meta;
use crate::registry::{ResourceType, ScalePaths};
use serde_json::{Value, json};

/// `.spec.replicas` as a JSON pointer (`/spec/replicas`).
fn pointer(path: &str) -> String {
    path.trim_start_matches('.')
        .split('.')
        .map(|seg| format!("/{}", seg.replace('~', "~0").replace('/', "~1")))
        .collect()
}

fn paths(rt: &ResourceType) -> Result<&ScalePaths, ApiError> {
    rt.scale
        .as_ref()
        .ok_or_else(|| ApiError::no_route(&format!("{}/scale", rt.plural)))
}

/// A label selector's `matchLabels` in string form (`a=b,c=d`), as Deployments report it.
fn selector_string(sel: &Value) -> Option<String> {
    let labels = sel.get("matchLabels")?.as_object()?;
    Some(
        labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// The Scale an object shows.
pub fn view(rt: &ResourceType, obj: &Value) -> Result<Value, ApiError> {
    let p = paths(rt)?;
    let replicas = |path: &str| obj.pointer(&pointer(path)).cloned().unwrap_or(json!(0));
    let selector = match &p.label_selector {
        Some(path) => obj.pointer(&pointer(path)).cloned(),
        None => obj
            .pointer("/spec/selector")
            .and_then(selector_string)
            .map(Value::String),
    };
    let mut status = json!({"replicas": replicas(&p.status_replicas)});
    if let Some(s) = selector {
        status["selector"] = s;
    }
    let m = obj.get("metadata").cloned().unwrap_or(json!({}));
    let mut scale_meta = json!({});
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(k) {
            scale_meta[k] = v.clone();
        }
    }
    Ok(json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": scale_meta,
        "spec": {"replicas": replicas(&p.spec_replicas)}, "status": status,
    }))
}

/// The object with the replica count a written Scale asks for (its resourceVersion, if any,
/// is kept as the write's precondition).
pub fn apply(rt: &ResourceType, obj: &Value, scale: &Value) -> Result<Value, ApiError> {
    let p = paths(rt)?;
    let replicas = scale.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
    let invalid = |msg: String| {
        ApiError::invalid(
            "autoscaling",
            "Scale",
            meta::name(obj),
            vec![Cause {
                field: "spec.replicas".into(),
                message: msg,
                reason: "FieldValueInvalid",
            }],
        )
    };
    match replicas.as_i64() {
        Some(n) if n >= 0 && n <= i64::from(i32::MAX) => {}
        Some(n) => {
            return Err(invalid(format!(
                "Invalid value: {n}: must be greater than or equal to 0"
            )));
        }
        None => {
            return Err(invalid(format!(
                "Invalid value: {replicas}: must be an integer"
            )));
        }
    }
    let mut out = obj.clone();
    let ptr = pointer(&p.spec_replicas);
    let (parent, leaf) = ptr.rsplit_once('/').unwrap_or(("", &ptr));
    let mut cur = &mut out;
    for seg in parent.split('/').filter(|s| !s.is_empty()) {
        if !cur.get(seg).is_some_and(Value::is_object) {
            cur[seg] = json!({});
        }
        cur = &mut cur[seg];
    }
    cur[leaf] = replicas;
    match meta::meta_str(scale, "resourceVersion").filter(|rv| !rv.is_empty()) {
        Some(rv) => meta::meta_mut(&mut out).insert("resourceVersion".into(), json!(rv)),
        None => meta::meta_mut(&mut out).remove("resourceVersion"),
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn deployment_scale_round_trip() {
        let rt = Registry::default()
            .lookup("apps", "v1", "deployments")
            .unwrap();
        let d = json!({"metadata": {"name": "d", "namespace": "n", "resourceVersion": "7"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}}}});
        let s = view(&rt, &d).unwrap();
        assert_eq!(s["spec"]["replicas"], 1);
        assert_eq!(s["status"], json!({"replicas": 0, "selector": "app=d"}));
        let d2 = apply(&rt, &d, &json!({"spec": {"replicas": 3}})).unwrap();
        assert_eq!(d2["spec"]["replicas"], 3);
        assert!(d2["metadata"].get("resourceVersion").is_none());
        let e = apply(&rt, &d, &json!({"spec": {"replicas": -1}})).unwrap_err();
        assert_eq!(e.code, 422);
    }
}
