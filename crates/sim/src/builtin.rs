//! What built-in types get from the server on create (initial status), and turning a CRD into
//! a served custom resource type.

use crate::error::{ApiError, Cause};
use crate::registry::{Registry, ResourceType};
use serde_json::{Value, json};

/// Fills in the status a fresh object of a built-in type starts with.
pub fn on_create(rt: &ResourceType, obj: &mut Value) {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "pods") => {
            obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            defaults(rt, obj);
        }
        ("batch", "jobs") | ("apps", "deployments") => {
            obj["status"] = json!({});
            defaults(rt, obj);
        }
        ("", "secrets") => defaults(rt, obj),
        ("apiextensions.k8s.io", _) => {
            let names = obj
                .pointer("/spec/names")
                .cloned()
                .unwrap_or_else(|| json!({}));
            let stored: Vec<Value> = obj
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .map(|vs| {
                    vs.iter()
                        .filter(|v| v["storage"] == json!(true))
                        .map(|v| v["name"].clone())
                        .collect()
                })
                .unwrap_or_default();
            let now = crate::meta::now();
            let cond = |t: &str, reason: &str, msg: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": msg});
            obj["status"] = json!({
                "acceptedNames": names,
                "storedVersions": stored,
                "conditions": [
                    cond("NamesAccepted", "NoConflicts", "no conflicts found"),
                    cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                ],
            });
        }
        _ => {}
    }
}

/// Fills in the spec defaults of Pods and Jobs (on create and on every update, as the API
/// server does, so re-sending what was sent before changes nothing).
pub fn defaults(rt: &ResourceType, obj: &mut Value) {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => default_pod_spec(obj.get_mut("spec")),
        ("apps", "deployments") => default_deployment(obj),
        ("", "secrets") => default_secret(obj),
        ("batch", "jobs") => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.entry("backoffLimit").or_insert(json!(6));
                spec.entry("completions").or_insert(json!(1));
                spec.entry("parallelism").or_insert(json!(1));
                spec.entry("completionMode").or_insert(json!("NonIndexed"));
                spec.entry("suspend").or_insert(json!(false));
            }
            default_pod_spec(obj.pointer_mut("/spec/template/spec"));
            let (name, uid) = (
                crate::meta::name(obj).to_string(),
                crate::meta::uid(obj).to_string(),
            );
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.entry("selector")
                    .or_insert(json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}));
            }
            if let Some(template) = obj
                .pointer_mut("/spec/template")
                .and_then(Value::as_object_mut)
            {
                let meta = template.entry("metadata").or_insert(json!({}));
                let labels = &mut meta["labels"];
                if !labels.is_object() {
                    *labels = json!({});
                }
                labels["batch.kubernetes.io/controller-uid"] = json!(uid);
                labels["batch.kubernetes.io/job-name"] = json!(name);
                labels["controller-uid"] = json!(uid);
                labels["job-name"] = json!(name);
            }
        }
        _ => {}
    }
}

/// A Secret's type defaults to Opaque, and `stringData` is a write-only convenience: its
/// entries are stored base64-encoded in `data` (winning over the same keys there).
fn default_secret(obj: &mut Value) {
    use base64::Engine;
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    if o.get("type")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        o.insert("type".into(), json!("Opaque"));
    }
    if let Some(Value::Object(strings)) = o.remove("stringData") {
        let data = o.entry("data").or_insert(json!({}));
        if !data.is_object() {
            *data = json!({});
        }
        for (k, v) in strings {
            let text = v.as_str().unwrap_or_default();
            data[k.as_str()] = json!(base64::engine::general_purpose::STANDARD.encode(text));
        }
    }
}

fn default_deployment(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.entry("replicas").or_insert(json!(1));
        spec.entry("revisionHistoryLimit").or_insert(json!(10));
        spec.entry("progressDeadlineSeconds").or_insert(json!(600));
    }
    default_pod_spec(obj.pointer_mut("/spec/template/spec"));
}

fn default_pod_spec(spec: Option<&mut Value>) {
    let Some(spec) = spec.and_then(Value::as_object_mut) else {
        return;
    };
    spec.entry("restartPolicy").or_insert(json!("Always"));
    spec.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
    spec.entry("terminationGracePeriodSeconds")
        .or_insert(json!(30));
    spec.entry("schedulerName")
        .or_insert(json!("default-scheduler"));
    if let Some(containers) = spec.get_mut("containers").and_then(Value::as_array_mut) {
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            c.entry("terminationMessagePath")
                .or_insert(json!("/dev/termination-log"));
            c.entry("terminationMessagePolicy").or_insert(json!("File"));
            c.entry("imagePullPolicy").or_insert(json!("IfNotPresent"));
        }
    }
}

/// An events.k8s.io/v1 Event in its core/v1 form.
pub fn event_to_core(e: &Value) -> Value {
    let get = |k: &str| e.get(k).cloned().unwrap_or(Value::Null);
    let series_count = e.pointer("/series/count").cloned();
    let last_seen = e.pointer("/series/lastObservedTime").cloned();
    let source = match e.get("deprecatedSource") {
        Some(s) => s.clone(),
        None => json!({"component": get("reportingController")}),
    };
    let mut core = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": get("metadata"),
        "involvedObject": get("regarding"),
        "related": get("related"),
        "reason": get("reason"),
        "message": get("note"),
        "type": get("type"),
        "action": get("action"),
        "eventTime": get("eventTime"),
        "reportingComponent": get("reportingController"),
        "reportingInstance": get("reportingInstance"),
        "series": get("series"),
        "source": source,
        "firstTimestamp": e.get("deprecatedFirstTimestamp").cloned().unwrap_or_else(|| get("eventTime")),
        "lastTimestamp": e.get("deprecatedLastTimestamp").cloned().or(last_seen).unwrap_or_else(|| get("eventTime")),
        "count": e.get("deprecatedCount").cloned().or(series_count).unwrap_or(json!(1)),
    });
    if let Some(m) = core.as_object_mut() {
        m.retain(|_, v| !v.is_null());
    }
    core
}

/// Checks a CRD and serves (or re-serves) the type it defines.
pub fn register_crd(registry: &mut Registry, crd: &Value) -> Result<(), ApiError> {
    let name = crate::meta::name(crd).to_string();
    let invalid = |field: &str, message: &str| {
        ApiError::invalid(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            &name,
            vec![Cause {
                field: field.into(),
                message: message.into(),
                reason: "FieldValueInvalid",
            }],
        )
    };
    let Some(t) = ResourceType::from_crd(crd) else {
        return Err(invalid(
            "spec",
            "Required value: spec.group, spec.names.plural, spec.names.kind and spec.versions are required",
        ));
    };
    let expected = format!("{}.{}", t.plural, t.group);
    if name != expected {
        return Err(invalid(
            "metadata.name",
            &format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    if t.group.is_empty() || !t.group.contains('.') {
        return Err(invalid(
            "spec.group",
            "Invalid value: should be a domain with at least one dot",
        ));
    }
    registry.insert(t);
    Ok(())
}
