//! One PATCH request against the store: the content type picks the patch kind, a server-side
//! apply needs a field manager and fails on conflicts unless forced, managers take ownership
//! of the fields they set, and an apply to a missing object creates it.

use crate::error::ApiError;
use crate::meta;
use crate::patch::{self, PatchKind};
use crate::registry::ResourceType;
use crate::store::{Store, Target};
use serde_json::{Value, json};

/// What the HTTP front took from a PATCH request.
pub(crate) struct PatchRequest<'a> {
    /// `Content-Type`: which patch format the body is.
    pub content_type: &'a str,
    /// `?fieldManager=`.
    pub manager: Option<&'a str>,
    /// `?force=true`: an apply takes conflicting fields over.
    pub force: bool,
    /// The patch document.
    pub body: &'a [u8],
}

impl PatchRequest<'_> {
    /// Patches `name` (creating it for a server-side apply that finds nothing) and returns
    /// the object as stored.
    pub(crate) fn run(
        &self,
        store: &Store,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        target: Target,
    ) -> Result<Value, ApiError> {
        let kind = PatchKind::from_content_type(self.content_type)?;
        let patch_doc = patch::parse_body(kind, self.body)?;
        let apply = kind == PatchKind::Apply;
        let manager = self.manager;
        if apply && manager.is_none_or(str::is_empty) {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                vec![crate::error::Cause {
                    field: "fieldManager".into(),
                    message: "Required value: is required for apply patch".into(),
                    reason: "FieldValueRequired",
                }],
            ));
        }
        let status = target == Target::Status;
        let result = store.modify(rt, ns, name, target, |cur| {
            let conflicts = if apply {
                patch::apply_conflicts(cur, manager.unwrap_or_default(), status, &patch_doc)
            } else {
                Vec::new()
            };
            if !conflicts.is_empty() && !self.force {
                return Err(ApiError::apply_conflict(
                    &rt.group, &rt.plural, name, &conflicts,
                ));
            }
            let mut o = patch::apply_patch(kind, cur, &patch_doc)?;
            if let Some(m) = manager {
                patch::take_ownership(&mut o, m, status, &conflicts);
                let fields = if apply {
                    patch::drop_released_fields(&mut o, cur, m, status, &patch_doc);
                    patch::field_set(&patch_doc)
                } else {
                    json!({})
                };
                patch::record_manager(&mut o, m, apply, status, fields);
            }
            Ok(o)
        });
        match result {
            Err(e) if apply && e.code == 404 && target == Target::Main => {
                // Server-side apply creates what does not exist yet.
                let mut obj = patch_doc;
                let m = meta::meta_mut(&mut obj);
                m.insert("name".into(), json!(name));
                m.remove("resourceVersion");
                if let Some(m) = manager {
                    let fields = patch::field_set(&obj);
                    patch::record_manager(&mut obj, m, true, false, fields);
                }
                store.create(rt, ns, obj)
            }
            other => other,
        }
    }
}
