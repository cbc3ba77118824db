//! The subresources of built-in kinds that are not the object itself: `pods/log`,
//! `pods/binding` (what a scheduler, or the simulated kubelet, uses to bind a Pod) and
//! `<workload>/scale`.

use crate::error::ApiError;
use crate::http::{AppState, content_type, decode_body, json_response};
use crate::meta;
use crate::patch::{self, PatchKind};
use crate::registry::ResourceType;
use crate::route::ResourcePath;
use crate::scale;
use crate::store::Target;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// One request for a subresource of object `name`.
struct SubRequest<'a> {
    st: &'a AppState,
    rt: &'a ResourceType,
    ns: Option<&'a str>,
    name: &'a str,
    method: &'a Method,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

/// The answer for `path` when it names one of these subresources, else `None`.
pub(crate) fn serve(
    st: &AppState,
    rt: &ResourceType,
    path: &ResourcePath,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Result<Response, ApiError>> {
    let (Some(sub), Some(name)) = (path.subresource.as_deref(), path.name.as_deref()) else {
        return None;
    };
    let ns = path.namespace.as_deref();
    let pods = rt.group.is_empty() && rt.plural == "pods";
    let req = SubRequest {
        st,
        rt,
        ns,
        name,
        method,
        headers,
        body,
    };
    match sub {
        "log" if pods => Some(pod_log(st, ns, name, method)),
        "binding" if pods => Some(pod_binding(&req)),
        "scale" if rt.scale.is_some() => Some(scale_subresource(&req)),
        _ => None,
    }
}

/// `pods/<name>/binding`: a POSTed Binding sets `spec.nodeName` once; a Pod already bound
/// answers 409, as the real server does.
fn pod_binding(req: &SubRequest<'_>) -> Result<Response, ApiError> {
    let (st, rt, ns, name, method) = (req.st, req.rt, req.ns, req.name, req.method);
    if *method != Method::POST {
        return Err(ApiError::method_not_allowed(
            "pods/binding only supports POST",
        ));
    }
    st.counters.bump("create", "pods/binding");
    let binding = decode_body(req.headers, req.body)?;
    let node = binding["target"]["name"].as_str().unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            name,
            vec![crate::error::Cause {
                field: "target.name".into(),
                message: "Required value".into(),
                reason: "FieldValueRequired",
            }],
        ));
    }
    st.store.modify(rt, ns, name, Target::Main, |pod| {
        if let Some(bound) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            return Err(ApiError::conflict(
                "",
                "pods",
                name,
                &format!("pod {name} is already assigned to node \"{bound}\""),
            ));
        }
        let mut pod = pod.clone();
        pod["spec"]["nodeName"] = json!(node);
        Ok(pod)
    })?;
    Ok(json_response(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// `pods/<name>/log`: the container's output as the process runner captured it.
fn pod_log(
    st: &AppState,
    ns: Option<&str>,
    name: &str,
    method: &Method,
) -> Result<Response, ApiError> {
    if *method != Method::GET {
        return Err(ApiError::method_not_allowed("pods/log only supports GET"));
    }
    st.counters.bump("get", "pods/log");
    let pods = st
        .store
        .lookup("", "v1", "pods")
        .ok_or_else(|| ApiError::no_route("pods"))?;
    let pod = st.store.get(&pods, ns, name)?;
    let path = st
        .pods_dir
        .join(meta::namespace(&pod))
        .join(name)
        .join("log");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], text).into_response())
}

/// `<resource>/<name>/scale`: read or write the replica count through an autoscaling/v1 Scale.
fn scale_subresource(req: &SubRequest<'_>) -> Result<Response, ApiError> {
    let (st, rt, ns, name, method) = (req.st, req.rt, req.ns, req.name, req.method);
    let counted = format!("{}/scale", rt.plural);
    let obj = match *method {
        Method::GET => {
            st.counters.bump("get", &counted);
            st.store.get(rt, ns, name)?
        }
        Method::PUT => {
            st.counters.bump("update", &counted);
            let want = decode_body(req.headers, req.body)?;
            st.store.modify(rt, ns, name, Target::Main, |cur| {
                scale::apply(rt, cur, &want)
            })?
        }
        Method::PATCH => {
            st.counters.bump("patch", &counted);
            let kind = PatchKind::from_content_type(content_type(req.headers).unwrap_or(""))?;
            let doc = patch::parse_body(kind, req.body)?;
            st.store.modify(rt, ns, name, Target::Main, |cur| {
                let want = patch::apply_patch(kind, &scale::view(rt, cur)?, &doc)?;
                scale::apply(rt, cur, &want)
            })?
        }
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "{method} is not allowed on {counted}"
            )));
        }
    };
    Ok(json_response(200, &scale::view(rt, &obj)?))
}
