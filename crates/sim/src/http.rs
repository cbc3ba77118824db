//! The HTTP front: routes each request to discovery or the store, speaks the wire formats
//! (JSON, YAML bodies, Table, PartialObjectMetadata) and counts requests by verb and resource.

use crate::error::ApiError;
use crate::gc::DeleteOptions;
use crate::meta;
use crate::patch;
use crate::patch_request::PatchRequest;
use crate::registry::ResourceType;
use crate::route::{self, ResourcePath, Route};
use crate::selectors::{FieldSelector, LabelSelector, Selectors};
use crate::store::{Store, Target};
use crate::{discovery, openapi, subresource, table, watch};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// API requests served, by `(verb, resource)`; `resource` includes `/status` for the
/// subresource.
#[derive(Debug, Default)]
pub struct RequestCounters(Mutex<BTreeMap<(String, String), u64>>);

impl RequestCounters {
    pub(crate) fn bump(&self, verb: &str, resource: &str) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((verb.to_string(), resource.to_string()))
            .or_default() += 1;
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Zeroes every counter (between benchmark phases).
    pub fn reset(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Shared state of the HTTP server.
#[derive(Clone)]
pub struct AppState {
    /// The object store.
    pub store: Arc<Store>,
    /// Request counters.
    pub counters: Arc<RequestCounters>,
    /// `host:port` clients reach the server at.
    pub server: String,
    /// Interval between watch bookmarks.
    pub bookmark_interval: Duration,
    /// Flips to true when the server shuts down; open watches end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Where the kubelet keeps per-pod directories (`<dir>/<ns>/<pod>/log`).
    pub pods_dir: std::path::PathBuf,
}

/// The router serving every path.
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(state)
}

pub(crate) fn json_response(code: u16, v: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(v).unwrap_or_default(),
    )
        .into_response()
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.to_status())
}

/// How the client wants objects rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Full,
    Table,
    Metadata,
}

fn shape(headers: &HeaderMap) -> Shape {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The first acceptable media type wins; we serve all three shapes.
    let first = accept.split(',').next().unwrap_or("");
    if first.contains("as=Table") {
        Shape::Table
    } else if first.contains("as=PartialObjectMetadata") {
        Shape::Metadata
    } else {
        Shape::Full
    }
}

async fn handle(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let registry = || st.store.registry();
    match route::parse(uri.path()) {
        Route::Version => json_response(200, &discovery::version()),
        Route::Health => (StatusCode::OK, "ok").into_response(),
        Route::CoreVersions => json_response(200, &discovery::core_versions(&st.server)),
        Route::GroupList => json_response(200, &discovery::group_list(&registry())),
        Route::Group(g) => match discovery::group(&registry(), &g) {
            Some(d) => json_response(200, &d),
            None => error_response(&ApiError::no_route(uri.path())),
        },
        Route::ResourceList { group, version } => {
            match discovery::resource_list(&registry(), &group, &version) {
                Some(d) => json_response(200, &d),
                None => error_response(&ApiError::no_route(uri.path())),
            }
        }
        // An empty protobuf message is an empty openapi_v2.Document: kubectl finds no schema
        // for any kind, so it skips client-side validation and the server validates instead.
        Route::OpenApiV2 => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
            )],
            Vec::<u8>::new(),
        )
            .into_response(),
        Route::OpenApiV3 => {
            json_response(200, &openapi::v3_index(&registry(), st.store.current_rv()))
        }
        Route::OpenApiV3GroupVersion { group, version } => {
            match openapi::v3_group_version(&registry(), &group, &version) {
                Some(d) => json_response(200, &d),
                None => error_response(&ApiError::no_route(uri.path())),
            }
        }
        Route::DebugRequests => {
            let counts: Vec<Value> = st
                .counters
                .snapshot()
                .into_iter()
                .map(
                    |((verb, resource), n)| json!({"verb": verb, "resource": resource, "count": n}),
                )
                .collect();
            json_response(200, &json!({"requests": counts}))
        }
        Route::Resource(path) => match resource(&st, &method, &path, &q, &headers, &body).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        },
        Route::Unknown => error_response(&ApiError::no_route(uri.path())),
    }
}

/// The request's `Content-Type`, when it has a readable one.
pub(crate) fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

pub(crate) fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = content_type(headers).unwrap_or("application/json");
    if ct.contains("protobuf") {
        return crate::protobuf::decode(body);
    }
    let parsed = if ct.contains("yaml") {
        serde_yaml::from_slice::<Value>(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| ApiError::bad_request(format!("error decoding the request body: {e}")))
}

/// Whether a write is a server-side dry run: `dryRun=All` in the query, or for deletes in the
/// DeleteOptions body (where kubectl puts it).
fn dry_run(
    method: &Method,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<bool, ApiError> {
    let check = |v: &str| match v {
        "" => Ok(false),
        "All" => Ok(true),
        other => Err(ApiError::bad_request(format!(
            "dryRun: Unsupported value: {other:?}: supported values: \"All\""
        ))),
    };
    let mut dry = check(q.get("dryRun").map_or("", String::as_str))?;
    if *method == Method::DELETE && !body.is_empty() {
        let opts = decode_body(headers, body)?;
        for v in opts["dryRun"].as_array().into_iter().flatten() {
            dry |= check(v.as_str().unwrap_or("?"))?;
        }
    }
    Ok(dry)
}

fn selectors(q: &HashMap<String, String>) -> Result<Selectors, ApiError> {
    Ok(Selectors {
        labels: LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))?,
        fields: FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str))?,
    })
}

fn flag(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key).is_some_and(|v| v == "true" || v == "1")
}

fn render(obj: &Value, shape: Shape) -> Value {
    match shape {
        Shape::Metadata => meta::partial_metadata(obj),
        _ => obj.clone(),
    }
}

async fn resource(
    st: &AppState,
    method: &Method,
    path: &ResourcePath,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    // A server-side dry run writes to a detached copy of the store: every check runs, nothing
    // is kept or seen by watchers, controllers or nodes.
    let dry_state;
    let st = if *method != Method::GET && dry_run(method, q, headers, body)? {
        dry_state = AppState {
            store: Arc::new(st.store.dry_run_copy()),
            ..st.clone()
        };
        &dry_state
    } else {
        st
    };
    let store = &st.store;
    let rt = store
        .lookup(&path.group, &path.version, &path.plural)
        .ok_or_else(|| {
            ApiError::no_route(&format!("{}/{}/{}", path.group, path.version, path.plural))
        })?;
    if path.namespace.is_some() && !rt.namespaced {
        return Err(ApiError::no_route(&path.plural));
    }
    if let Some(response) = subresource::serve(st, &rt, path, method, headers, body) {
        return response;
    }
    let target = match path.subresource.as_deref() {
        None => Target::Main,
        Some("status") if rt.status_subresource => Target::Status,
        Some(other) => return Err(ApiError::no_route(&format!("{}/{other}", path.plural))),
    };
    let counted = match target {
        Target::Main => rt.plural.clone(),
        Target::Status => format!("{}/status", rt.plural),
    };
    let ns = path.namespace.as_deref();
    let shape = shape(headers);
    let Some(name) = path.name.as_deref() else {
        return collection(st, &rt, method, ns, q, headers, body, shape, &counted).await;
    };
    let verb = match *method {
        Method::GET => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "{method} is not allowed on {}",
                rt.plural
            )));
        }
    };
    st.counters.bump(verb, &counted);
    let obj = match *method {
        Method::GET => store.get(&rt, ns, name)?,
        Method::PUT => store.update(&rt, ns, name, target, decode_body(headers, body)?)?,
        Method::PATCH => {
            let request = PatchRequest {
                content_type: content_type(headers).unwrap_or(""),
                manager: q.get("fieldManager").map(String::as_str),
                force: flag(q, "force"),
                body,
            };
            request.run(&st.store, &rt, ns, name, target)?
        }
        _ => {
            let opts_body = if body.is_empty() {
                json!({})
            } else {
                decode_body(headers, body)?
            };
            let opts = DeleteOptions::from_request(
                &opts_body,
                q.get("propagationPolicy").map(String::as_str),
            )?;
            store.delete(&rt, ns, name, &opts)?
        }
    };
    let obj = match shape {
        Shape::Table => table::render(&rt, std::slice::from_ref(&obj), &json!({}), q),
        other => render(&obj, other),
    };
    Ok(json_response(200, &obj))
}

#[allow(clippy::too_many_arguments)]
async fn collection(
    st: &AppState,
    rt: &Arc<ResourceType>,
    method: &Method,
    ns: Option<&str>,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
    shape: Shape,
    counted: &str,
) -> Result<Response, ApiError> {
    let store = &st.store;
    let sel = selectors(q)?;
    match *method {
        Method::GET if flag(q, "watch") => {
            st.counters.bump("watch", counted);
            let rv = match q.get("resourceVersion").map(String::as_str) {
                None | Some("") | Some("0") => None,
                Some(s) => Some(s.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {s:?}"))
                })?),
            };
            let timeout = q
                .get("timeoutSeconds")
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(1800);
            let req = watch::WatchRequest {
                namespace: ns.map(String::from),
                resource_version: rv,
                send_initial_events: flag(q, "sendInitialEvents"),
                bookmarks: flag(q, "allowWatchBookmarks"),
                timeout: Duration::from_secs(timeout),
                selectors: sel,
                metadata_only: shape == Shape::Metadata,
                table: (shape == Shape::Table).then(|| q.clone()),
                bookmark_interval: st.bookmark_interval,
            };
            let rx = watch::start(store.clone(), rt.clone(), req, st.shutdown.clone());
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), rx))
            });
            Ok(Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(stream))
                .map_err(|e| ApiError::internal(e.to_string()))?)
        }
        Method::GET => {
            st.counters.bump("list", counted);
            let limit = q.get("limit").and_then(|s| s.parse::<usize>().ok());
            let page = store.list(rt, ns, &sel, limit, q.get("continue").map(String::as_str))?;
            let mut list_meta = json!({"resourceVersion": page.rv.to_string()});
            if let Some(c) = &page.continue_token {
                list_meta["continue"] = json!(c);
            }
            if let Some(n) = page.remaining {
                list_meta["remainingItemCount"] = json!(n);
            }
            let doc = match shape {
                Shape::Table => table::render(rt, &page.items, &list_meta, q),
                Shape::Metadata => json!({
                    "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
                    "items": page.items.iter().map(meta::partial_metadata).collect::<Vec<_>>(),
                }),
                Shape::Full => json!({
                    "kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": list_meta,
                    "items": page.items,
                }),
            };
            Ok(json_response(200, &doc))
        }
        Method::POST => {
            st.counters.bump("create", counted);
            if rt.namespaced && ns.is_none() {
                return Err(ApiError::method_not_allowed(format!(
                    "create {} needs a namespace in the path",
                    rt.plural
                )));
            }
            let mut obj = decode_body(headers, body)?;
            if let Some(m) = q.get("fieldManager") {
                obj["apiVersion"] = json!(rt.api_version());
                patch::record_manager(&mut obj, m, false, false, json!({}));
            }
            let created = store.create(rt, ns, obj)?;
            Ok(json_response(201, &render(&created, shape)))
        }
        Method::DELETE => {
            st.counters.bump("deletecollection", counted);
            let opts_body = if body.is_empty() {
                json!({})
            } else {
                decode_body(headers, body)?
            };
            let opts = DeleteOptions::from_request(
                &opts_body,
                q.get("propagationPolicy").map(String::as_str),
            )?;
            let page = store.list(rt, ns, &sel, None, None)?;
            let mut deleted = Vec::new();
            for o in &page.items {
                match store.delete(rt, Some(meta::namespace(o)), meta::name(o), &opts) {
                    Ok(d) => deleted.push(d),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let doc = json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(),
                "metadata": {"resourceVersion": store.current_rv().to_string()}, "items": deleted});
            Ok(json_response(200, &doc))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "{method} is not allowed on the {} collection",
            rt.plural
        ))),
    }
}
