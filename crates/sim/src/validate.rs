//! The API server's own validation of what it stores, so product code that a real cluster
//! would refuse is refused here too: object names, labels, ownerReferences, Pod and Job specs,
//! core/v1 Events' namespace, and the fields of Pods and Jobs that are immutable after creation.

use crate::error::{ApiError, Cause};
use crate::meta;
use crate::registry::ResourceType;
use regex::Regex;
use serde_json::Value;
use std::sync::LazyLock;

static DNS_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("valid regex"));
static DNS_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        .expect("valid regex")
});
static QUALIFIED_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").expect("valid regex")
});

struct Causes(Vec<Cause>);

impl Causes {
    fn invalid(&mut self, field: &str, value: &str, why: &str) {
        self.0.push(Cause {
            field: field.into(),
            message: format!("Invalid value: {value:?}: {why}"),
            reason: "FieldValueInvalid",
        });
    }
    fn required(&mut self, field: &str) {
        self.0.push(Cause {
            field: field.into(),
            message: "Required value".into(),
            reason: "FieldValueRequired",
        });
    }
    fn unsupported(&mut self, field: &str, value: &str, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        self.0.push(Cause {
            field: field.into(),
            message: format!(
                "Unsupported value: {value:?}: supported values: {}",
                list.join(", ")
            ),
            reason: "FieldValueNotSupported",
        });
    }
    fn immutable(&mut self, field: &str) {
        self.0.push(Cause {
            field: field.into(),
            message: "field is immutable".into(),
            reason: "FieldValueInvalid",
        });
    }
    fn result(self, rt: &ResourceType, name: &str) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(&rt.group, &rt.kind, name, self.0))
        }
    }
}

fn dns_label(c: &mut Causes, field: &str, v: &str) {
    if v.len() > 63 || !DNS_LABEL.is_match(v) {
        c.invalid(field, v, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', start and end with an alphanumeric character, and be at most 63 characters");
    }
}

fn dns_subdomain(c: &mut Causes, field: &str, v: &str) {
    if v.len() > 253 || !DNS_SUBDOMAIN.is_match(v) {
        c.invalid(field, v, "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character");
    }
}

fn labels(c: &mut Causes, field: &str, map: Option<&Value>) {
    for (k, v) in map.and_then(Value::as_object).into_iter().flatten() {
        let (prefix, name) = k.rsplit_once('/').map_or(("", k.as_str()), |(p, n)| (p, n));
        if !prefix.is_empty() {
            dns_subdomain(c, field, prefix);
        }
        if name.len() > 63 || !QUALIFIED_NAME.is_match(name) {
            c.invalid(field, k, "name part must consist of alphanumeric characters, '-', '_' or '.', start and end with an alphanumeric character, and be at most 63 characters");
        }
        let value = v.as_str().unwrap_or_default();
        if value.len() > 63 || !(value.is_empty() || QUALIFIED_NAME.is_match(value)) {
            c.invalid(field, value, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', start and end with an alphanumeric character, and be at most 63 characters");
        }
    }
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn pod_spec(c: &mut Causes, path: &str, spec: &Value, job: bool) {
    let volumes = arr(spec, "volumes");
    let mut volume_names = Vec::new();
    for (i, v) in volumes.iter().enumerate() {
        let name = text(v, "name");
        let field = format!("{path}.volumes[{i}].name");
        if name.is_empty() {
            c.required(&field);
        } else if volume_names.contains(&name) {
            c.0.push(Cause {
                field,
                message: format!("Duplicate value: {name:?}"),
                reason: "FieldValueDuplicate",
            });
        } else {
            dns_label(c, &field, name);
            volume_names.push(name);
        }
        if v.get("hostPath").is_some() && text(&v["hostPath"], "path").is_empty() {
            c.required(&format!("{path}.volumes[{i}].hostPath.path"));
        }
    }
    let containers = arr(spec, "containers");
    if containers.is_empty() {
        c.required(&format!("{path}.containers"));
    }
    for (i, ctr) in containers.iter().enumerate() {
        let at = format!("{path}.containers[{i}]");
        match text(ctr, "name") {
            "" => c.required(&format!("{at}.name")),
            n => dns_label(c, &format!("{at}.name"), n),
        }
        if text(ctr, "image").is_empty() {
            c.required(&format!("{at}.image"));
        }
        for (j, e) in arr(ctr, "env").iter().enumerate() {
            if text(e, "name").is_empty() {
                c.required(&format!("{at}.env[{j}].name"));
            }
        }
        for (j, m) in arr(ctr, "volumeMounts").iter().enumerate() {
            let name = text(m, "name");
            if !volume_names.contains(&name) {
                c.0.push(Cause {
                    field: format!("{at}.volumeMounts[{j}].name"),
                    message: format!("Not found: {name:?}"),
                    reason: "FieldValueNotFound",
                });
            }
            if text(m, "mountPath").is_empty() {
                c.required(&format!("{at}.volumeMounts[{j}].mountPath"));
            }
        }
    }
    let policy = text(spec, "restartPolicy");
    let allowed: &[&str] = if job {
        &["OnFailure", "Never"]
    } else {
        &["Always", "OnFailure", "Never"]
    };
    if !allowed.contains(&policy) {
        c.unsupported(&format!("{path}.restartPolicy"), policy, allowed);
    }
}

fn non_negative(c: &mut Causes, spec: &Value, key: &str, min: i64) {
    if let Some(n) = spec.get(key).and_then(Value::as_i64)
        && n < min
    {
        c.invalid(
            &format!("spec.{key}"),
            &n.to_string(),
            &format!("must be greater than or equal to {min}"),
        );
    }
}

/// Validates an object about to be stored (create or update).
pub fn object(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let mut c = Causes(Vec::new());
    let name = meta::name(obj);
    if rt.group.is_empty() && rt.plural == "namespaces" {
        dns_label(&mut c, "metadata.name", name);
    } else {
        dns_subdomain(&mut c, "metadata.name", name);
    }
    labels(&mut c, "metadata.labels", obj.pointer("/metadata/labels"));
    for (i, r) in obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        for key in ["apiVersion", "kind", "name", "uid"] {
            if text(r, key).is_empty() {
                c.required(&format!("metadata.ownerReferences[{i}].{key}"));
            }
        }
    }
    let spec = obj.get("spec").cloned().unwrap_or_default();
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => pod_spec(&mut c, "spec", &spec, false),
        ("batch", "jobs") => {
            match spec.pointer("/template/spec") {
                Some(t) => pod_spec(&mut c, "spec.template.spec", t, true),
                None => c.required("spec.template.spec"),
            }
            labels(
                &mut c,
                "spec.template.labels",
                spec.pointer("/template/metadata/labels"),
            );
            non_negative(&mut c, &spec, "backoffLimit", 0);
            non_negative(&mut c, &spec, "ttlSecondsAfterFinished", 0);
            non_negative(&mut c, &spec, "activeDeadlineSeconds", 1);
            non_negative(&mut c, &spec, "parallelism", 0);
            non_negative(&mut c, &spec, "completions", 0);
        }
        ("", "events") => {
            // An Event lives in its object's namespace; one about a cluster-scoped object
            // lives in `default` (or nowhere), as the API server's validation demands.
            let ns = meta::namespace(obj);
            let involved = obj
                .pointer("/involvedObject/namespace")
                .and_then(Value::as_str)
                .unwrap_or("");
            let matches = if involved.is_empty() {
                ns.is_empty() || ns == "default"
            } else {
                ns == involved
            };
            if !matches {
                c.invalid(
                    "involvedObject.namespace",
                    involved,
                    "does not match event.namespace",
                );
            }
        }
        _ => {}
    }
    c.result(rt, name)
}

/// Refuses updates that change fields the API makes immutable, and new finalizers on an object
/// being deleted.
pub fn immutable(rt: &ResourceType, old: &Value, new: &Value) -> Result<(), ApiError> {
    let mut c = Causes(Vec::new());
    if meta::is_deleting(old) {
        let before = meta::finalizers(old);
        if meta::finalizers(new).iter().any(|f| !before.contains(f)) {
            c.0.push(Cause {
                field: "metadata.finalizers".into(),
                message: "Forbidden: no new finalizers can be added if the object is being deleted"
                    .into(),
                reason: "FieldValueForbidden",
            });
        }
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("batch", "jobs") => {
            for key in ["template", "selector", "completionMode"] {
                if old.pointer(&format!("/spec/{key}")) != new.pointer(&format!("/spec/{key}")) {
                    c.immutable(&format!("spec.{key}"));
                }
            }
        }
        ("", "pods") => {
            // Binding (nodeName set once), images, activeDeadlineSeconds and tolerations may change.
            let strip = |v: &Value| {
                let mut s = v.get("spec").cloned().unwrap_or_default();
                if let Some(m) = s.as_object_mut() {
                    for k in [
                        "activeDeadlineSeconds",
                        "tolerations",
                        "terminationGracePeriodSeconds",
                    ] {
                        m.remove(k);
                    }
                    if let Some(cs) = m.get_mut("containers").and_then(Value::as_array_mut) {
                        cs.iter_mut()
                            .filter_map(Value::as_object_mut)
                            .for_each(|c| {
                                c.remove("image");
                            });
                    }
                }
                s
            };
            let (mut before, after) = (strip(old), strip(new));
            if text(&before, "nodeName").is_empty()
                && let Some(n) = after.get("nodeName")
            {
                before["nodeName"] = n.clone();
            }
            if before != after {
                c.0.push(Cause {
                    field: "spec".into(),
                    message: "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations) or `spec.terminationGracePeriodSeconds`".into(),
                    reason: "FieldValueForbidden",
                });
            }
        }
        _ => {}
    }
    c.result(rt, meta::name(new))
}
