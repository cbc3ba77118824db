//! Writes to existing objects: the update rules of the API (status subresource, server-owned
//! metadata, optimistic concurrency, schema validation, generation, no-op detection, deletion
//! once the last finalizer goes).

use crate::error::ApiError;
use crate::meta;
use crate::registry::{GenerationRule, ResourceType};
use crate::schema;
use crate::store::{ChangeKind, Inner, Store, Target};
use serde_json::{Value, json};

/// Whether a write changes the part of the object its generation counts; compared in place
/// (no copies of the objects, which every write used to make twice).
fn generation_changed(rule: GenerationRule, old: &Value, new: &Value) -> bool {
    match rule {
        GenerationRule::Spec => {
            old.get("spec").unwrap_or(&Value::Null) != new.get("spec").unwrap_or(&Value::Null)
        }
        GenerationRule::AllButMetadataAndStatus | GenerationRule::AllButMetadata => {
            let keep_status = rule == GenerationRule::AllButMetadata;
            let counted = |k: &String| {
                !matches!(k.as_str(), "metadata" | "apiVersion" | "kind")
                    && (keep_status || k != "status")
            };
            match (old.as_object(), new.as_object()) {
                (Some(a), Some(b)) => {
                    a.keys().filter(|k| counted(k)).count()
                        != b.keys().filter(|k| counted(k)).count()
                        || a.iter()
                            .filter(|(k, _)| counted(k))
                            .any(|(k, v)| b.get(k) != Some(v))
                }
                _ => old != new,
            }
        }
    }
}

/// Metadata fields only the server sets; writes cannot change them.
const SYSTEM_FIELDS: [&str; 7] = [
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "namespace",
    "name",
];

impl Store {
    /// Applies the update rules to `new` over `old` and commits the result.
    pub(crate) fn write(
        &self,
        inner: &mut Inner,
        rt: &ResourceType,
        old: Value,
        new: Value,
        target: Target,
    ) -> Result<Value, ApiError> {
        let name = meta::name(&old).to_string();
        if !new.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        let new_name = meta::name(&new);
        if !new_name.is_empty() && new_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({new_name}) does not match the name on the URL ({name})"
            )));
        }
        if let Some(want) = meta::meta_str(&new, "resourceVersion").filter(|s| !s.is_empty())
            && Some(want) != meta::meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                &name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let mut result = match target {
            Target::Status => {
                let mut r = old.clone();
                match new.get("status") {
                    Some(s) => r["status"] = s.clone(),
                    None => {
                        r.as_object_mut().map(|o| o.remove("status"));
                    }
                }
                // A status write still records who wrote it.
                if let Some(mf) = new.pointer("/metadata/managedFields") {
                    meta::meta_mut(&mut r).insert("managedFields".into(), mf.clone());
                }
                r
            }
            Target::Main => {
                let mut r = new;
                if rt.status_subresource {
                    match old.get("status") {
                        Some(s) => r["status"] = s.clone(),
                        None => {
                            r.as_object_mut().map(|o| o.remove("status"));
                        }
                    }
                }
                r
            }
        };
        result["apiVersion"] = json!(rt.api_version());
        result["kind"] = json!(rt.kind);
        let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let m = meta::meta_mut(&mut result);
        for f in SYSTEM_FIELDS {
            match old_meta.get(f) {
                Some(v) => m.insert(f.into(), v.clone()),
                None => m.remove(f),
            };
        }
        if m.get("managedFields")
            .is_none_or(|v| v.as_array().is_none_or(Vec::is_empty))
            && let Some(mf) = old_meta.get("managedFields")
        {
            m.insert("managedFields".into(), mf.clone());
        }
        m.insert(
            "resourceVersion".into(),
            old_meta["resourceVersion"].clone(),
        );
        if target == Target::Main {
            crate::builtin::defaults(rt, &mut result);
            crate::validate::object(rt, &result)?;
            crate::validate::immutable(rt, &old, &result)?;
        }
        check_schema(rt, &mut result)?;
        if let Some(schema) = &rt.schema {
            let mut causes = Vec::new();
            schema::transition_rules(schema, &old, &result, "", &mut causes);
            if !causes.is_empty() {
                return Err(ApiError::invalid(&rt.group, &rt.kind, &name, causes));
            }
        }
        if generation_changed(rt.generation_rule, &old, &result) {
            let g = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                + 1;
            meta::meta_mut(&mut result).insert("generation".into(), json!(g));
        }
        if result == old {
            return Ok(old);
        }
        if rt.group == "apiextensions.k8s.io" {
            crate::builtin::register_crd(&mut inner.registry, &result)?;
        }
        let gr = rt.group_resource();
        if meta::is_deleting(&result) && meta::finalizers(&result).is_empty() {
            return Ok(self.remove(inner, &gr, result, crate::gc::Propagation::Background));
        }
        Ok(self.commit(inner, &gr, ChangeKind::Modified, result, Some(old)))
    }
}

pub(crate) fn check_schema(rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    let Some(schema) = &rt.schema else {
        return Ok(());
    };
    schema::prune_and_default(schema, obj, true);
    let mut causes = Vec::new();
    schema::validate(schema, obj, "", &mut causes);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            &rt.group,
            &rt.kind,
            meta::name(obj),
            causes,
        ))
    }
}
