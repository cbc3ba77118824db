//! OpenAPI documents: an empty v2 document (kubectl then leaves validation to the server) and
//! v3 documents built from CRD schemas, so `kubectl explain` shows a custom resource's field
//! docs.

use crate::registry::{Registry, ResourceType};
use serde_json::{Map, Value, json};

/// The schema key of a type, e.g. `io.multinic.v1alpha1.MultiNicNodeConfig`.
fn schema_name(t: &ResourceType) -> String {
    let reversed: Vec<&str> = t.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), t.version, t.kind)
}

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// `/openapi/v3`: one entry per group-version that has schemas (the custom resources).
pub fn v3_index(registry: &Registry, rv: u64) -> Value {
    let mut paths = Map::new();
    for t in registry.all().filter(|t| t.schema.is_some()) {
        let gv = format!("apis/{}/{}", t.group, t.version);
        paths.insert(
            gv.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={rv:016X}")}),
        );
    }
    json!({"paths": paths})
}

/// `/openapi/v3/apis/<group>/<version>`, if some custom resource is served there.
pub fn v3_group_version(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut schemas = Map::new();
    let mut paths = Map::new();
    for t in registry
        .all()
        .filter(|t| t.group == group && t.version == version)
    {
        let Some(schema) = &t.schema else { continue };
        // kubectl explain finds a resource's kind through the GET operations of its paths.
        let base = if t.namespaced {
            format!(
                "/apis/{group}/{version}/namespaces/{{namespace}}/{}",
                t.plural
            )
        } else {
            format!("/apis/{group}/{version}/{}", t.plural)
        };
        let gvk_op = |action: &str, schema_ref: String| {
            json!({"get": {
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": {"group": t.group, "version": t.version, "kind": t.kind},
                "responses": {"200": {"content": {"application/json": {"schema": {"$ref": schema_ref}}}}},
            }})
        };
        paths.insert(
            base.clone(),
            gvk_op(
                "list",
                format!("#/components/schemas/{}List", schema_name(t)),
            ),
        );
        paths.insert(
            format!("{base}/{{name}}"),
            gvk_op("get", format!("#/components/schemas/{}", schema_name(t))),
        );
        let mut s = schema.clone();
        let gvk = json!([{"group": t.group, "version": t.version, "kind": t.kind}]);
        s["x-kubernetes-group-version-kind"] = gvk.clone();
        if let Some(props) = s.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
            props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
            props.insert("metadata".into(), json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}], "default": {},
                "description": "Standard object's metadata."}));
        }
        let name = schema_name(t);
        schemas.insert(format!("{name}List"), json!({
            "type": "object", "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "items": {"type": "array", "items": {"allOf": [{"$ref": format!("#/components/schemas/{name}")}], "default": {}}},
                "metadata": {"type": "object"},
            },
            "x-kubernetes-group-version-kind": [{"group": t.group, "version": t.version, "kind": format!("{}List", t.kind)}],
        }));
        schemas.insert(name, s);
    }
    if schemas.is_empty() {
        return None;
    }
    schemas.insert(OBJECT_META.into(), json!({
        "type": "object",
        "description": "ObjectMeta is metadata that all persisted resources must have.",
        "properties": {
            "name": {"type": "string", "description": "Name must be unique within a namespace."},
            "namespace": {"type": "string", "description": "Namespace defines the space within which each name must be unique."},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Map of string keys and values that can be used to organize and categorize objects."},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Annotations is an unstructured key value map."},
            "finalizers": {"type": "array", "items": {"type": "string"}, "description": "Must be empty before the object is deleted from the registry."},
            "generation": {"type": "integer", "format": "int64", "description": "A sequence number representing a specific generation of the desired state."},
            "resourceVersion": {"type": "string", "description": "An opaque value that represents the internal version of this object."},
            "uid": {"type": "string", "description": "UID is the unique in time and space value for this object."},
        },
    }));
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0-multinic-sim"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
