//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`): the `k8s\0`
//! envelope around a `runtime.Unknown`, decoded with the k8s-pb message types into the JSON
//! the store keeps.
//!
//! kubectl's typed clients (`create namespace`, `create configmap`, `create secret`,
//! `create serviceaccount`, `create deployment`, `create job`) send protobuf and offer JSON for the answer, so only decoding is
//! needed. Every field of a decoded message is moved out as it is converted; a kind that is not
//! converted, or a field that is set but not converted, is refused with 415 naming it instead of
//! being dropped silently, so a client can resend JSON.

use crate::error::ApiError;
use base64::Engine;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

mod workloads;

const MAGIC: &[u8] = b"k8s\0";

/// Decodes a protobuf request body into the object's JSON form.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("the body does not start with the k8s protobuf envelope"))?;
    let unknown = Unknown::decode(rest).map_err(|e| bad(&e.to_string()))?;
    let tm = unknown.type_meta.unwrap_or_default();
    let api_version = tm.api_version.unwrap_or_default();
    let kind = tm.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    if unknown.content_encoding.is_some_and(|e| !e.is_empty()) {
        return Err(unsupported("a content encoding inside the envelope"));
    }
    let mut obj = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => namespace(decode_msg(&raw)?)?,
        ("v1", "ConfigMap") => config_map(decode_msg(&raw)?)?,
        ("v1", "Secret") => secret(decode_msg(&raw)?)?,
        ("v1", "ServiceAccount") => service_account(decode_msg(&raw)?)?,
        ("apps/v1", "Deployment") => workloads::deployment(decode_msg(&raw)?)?,
        ("batch/v1", "Job") => workloads::job(decode_msg(&raw)?)?,
        _ => return Err(unsupported(&format!("{api_version} {kind}"))),
    };
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

fn decode_msg<M: Message + Default>(raw: &[u8]) -> Result<M, ApiError> {
    M::decode(raw).map_err(|e| bad(&e.to_string()))
}

fn bad(msg: &str) -> ApiError {
    ApiError::bad_request(format!("error decoding the protobuf body: {msg}"))
}

fn unsupported(what: &str) -> ApiError {
    ApiError::unsupported_media(format!(
        "protobuf is not served for {what}; send application/json"
    ))
}

/// Fails when anything is left in a message after its converted fields were taken out.
fn all_taken<M: Message + Default + PartialEq + std::fmt::Debug>(
    rest: &M,
    what: &str,
) -> Result<(), ApiError> {
    if *rest == M::default() {
        Ok(())
    } else {
        Err(unsupported(&format!("fields of {what} ({rest:?})")))
    }
}

/// Go encodes unset strings as "", so empty means absent.
fn put_str(m: &mut Map<String, Value>, key: &str, v: Option<String>) {
    if let Some(s) = v.filter(|s| !s.is_empty()) {
        m.insert(key.into(), json!(s));
    }
}

fn put_map<V: Into<Value>>(m: &mut Map<String, Value>, key: &str, v: BTreeMap<String, V>) {
    if !v.is_empty() {
        let o: Map<String, Value> = v.into_iter().map(|(k, v)| (k, v.into())).collect();
        m.insert(key.into(), Value::Object(o));
    }
}

fn put_bytes_map(m: &mut Map<String, Value>, key: &str, v: BTreeMap<String, Vec<u8>>) {
    let b64 = base64::engine::general_purpose::STANDARD;
    put_map(
        m,
        key,
        v.into_iter()
            .map(|(k, b)| (k, b64.encode(b)))
            .collect::<BTreeMap<_, _>>(),
    );
}

fn put_strings(m: &mut Map<String, Value>, key: &str, v: Vec<String>) {
    if !v.is_empty() {
        m.insert(key.into(), json!(v));
    }
}

fn time(t: Option<meta::Time>) -> Option<Value> {
    let t = t?;
    let secs = t.seconds.unwrap_or(0);
    // The zero time.Time (0001-01-01) and an absent one both mean "unset".
    if secs == 0 || secs == -62_135_596_800 {
        return None;
    }
    jiff::Timestamp::from_second(secs)
        .ok()
        .map(|ts| json!(ts.to_string()))
}

fn object_meta(m: Option<meta::ObjectMeta>) -> Result<Value, ApiError> {
    let mut m = m.unwrap_or_default();
    let mut out = Map::new();
    put_str(&mut out, "name", m.name.take());
    put_str(&mut out, "generateName", m.generate_name.take());
    put_str(&mut out, "namespace", m.namespace.take());
    put_str(&mut out, "uid", m.uid.take());
    put_str(&mut out, "resourceVersion", m.resource_version.take());
    if let Some(g) = m.generation.take().filter(|g| *g != 0) {
        out.insert("generation".into(), json!(g));
    }
    if let Some(t) = time(m.creation_timestamp.take()) {
        out.insert("creationTimestamp".into(), t);
    }
    if let Some(t) = time(m.deletion_timestamp.take()) {
        out.insert("deletionTimestamp".into(), t);
    }
    if let Some(s) = m.deletion_grace_period_seconds.take() {
        out.insert("deletionGracePeriodSeconds".into(), json!(s));
    }
    put_map(&mut out, "labels", std::mem::take(&mut m.labels));
    put_map(&mut out, "annotations", std::mem::take(&mut m.annotations));
    put_strings(&mut out, "finalizers", std::mem::take(&mut m.finalizers));
    let owners: Vec<Value> = std::mem::take(&mut m.owner_references)
        .into_iter()
        .map(|o| {
            let mut r = Map::new();
            put_str(&mut r, "apiVersion", o.api_version);
            put_str(&mut r, "kind", o.kind);
            put_str(&mut r, "name", o.name);
            put_str(&mut r, "uid", o.uid);
            if let Some(c) = o.controller {
                r.insert("controller".into(), json!(c));
            }
            if let Some(b) = o.block_owner_deletion {
                r.insert("blockOwnerDeletion".into(), json!(b));
            }
            Value::Object(r)
        })
        .collect();
    if !owners.is_empty() {
        out.insert("ownerReferences".into(), json!(owners));
    }
    // Clients never send managedFields worth keeping (the server records its own) and
    // selfLink is no longer served.
    m.managed_fields.clear();
    m.self_link = None;
    all_taken(&m, "metadata")?;
    Ok(Value::Object(out))
}

fn namespace(mut ns: core::Namespace) -> Result<Value, ApiError> {
    let mut out = Map::new();
    out.insert("metadata".into(), object_meta(ns.metadata.take())?);
    if let Some(mut spec) = ns.spec.take() {
        let mut s = Map::new();
        put_strings(&mut s, "finalizers", std::mem::take(&mut spec.finalizers));
        all_taken(&spec, "Namespace.spec")?;
        out.insert("spec".into(), Value::Object(s));
    }
    // Status is set by the server on create; a client's is ignored, as the API server does.
    ns.status = None;
    all_taken(&ns, "Namespace")?;
    Ok(Value::Object(out))
}

fn config_map(mut cm: core::ConfigMap) -> Result<Value, ApiError> {
    let mut out = Map::new();
    out.insert("metadata".into(), object_meta(cm.metadata.take())?);
    put_map(&mut out, "data", std::mem::take(&mut cm.data));
    put_bytes_map(&mut out, "binaryData", std::mem::take(&mut cm.binary_data));
    if let Some(i) = cm.immutable.take() {
        out.insert("immutable".into(), json!(i));
    }
    all_taken(&cm, "ConfigMap")?;
    Ok(Value::Object(out))
}

fn secret(mut s: core::Secret) -> Result<Value, ApiError> {
    let mut out = Map::new();
    out.insert("metadata".into(), object_meta(s.metadata.take())?);
    put_bytes_map(&mut out, "data", std::mem::take(&mut s.data));
    put_map(&mut out, "stringData", std::mem::take(&mut s.string_data));
    put_str(&mut out, "type", s.r#type.take());
    if let Some(i) = s.immutable.take() {
        out.insert("immutable".into(), json!(i));
    }
    all_taken(&s, "Secret")?;
    Ok(Value::Object(out))
}

fn service_account(mut sa: core::ServiceAccount) -> Result<Value, ApiError> {
    let mut out = Map::new();
    out.insert("metadata".into(), object_meta(sa.metadata.take())?);
    let secrets: Vec<Value> = std::mem::take(&mut sa.secrets)
        .into_iter()
        .map(|r| {
            let mut o = Map::new();
            put_str(&mut o, "kind", r.kind);
            put_str(&mut o, "namespace", r.namespace);
            put_str(&mut o, "name", r.name);
            put_str(&mut o, "uid", r.uid);
            put_str(&mut o, "apiVersion", r.api_version);
            put_str(&mut o, "resourceVersion", r.resource_version);
            put_str(&mut o, "fieldPath", r.field_path);
            Value::Object(o)
        })
        .collect();
    if !secrets.is_empty() {
        out.insert("secrets".into(), json!(secrets));
    }
    let pulls: Vec<Value> = std::mem::take(&mut sa.image_pull_secrets)
        .into_iter()
        .map(|r| json!({"name": r.name.unwrap_or_default()}))
        .collect();
    if !pulls.is_empty() {
        out.insert("imagePullSecrets".into(), json!(pulls));
    }
    if let Some(a) = sa.automount_service_account_token.take() {
        out.insert("automountServiceAccountToken".into(), json!(a));
    }
    all_taken(&sa, "ServiceAccount")?;
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_pb::apimachinery::pkg::runtime::TypeMeta;

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let u = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut out = MAGIC.to_vec();
        out.extend(u.encode_to_vec());
        out
    }

    fn named(name: &str) -> Option<meta::ObjectMeta> {
        Some(meta::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(String::new()),
            creation_timestamp: Some(meta::Time::default()),
            labels: [("a".to_string(), "b".to_string())].into(),
            ..Default::default()
        })
    }

    #[test]
    fn secret_bytes_become_base64_and_empty_strings_vanish() {
        let s = core::Secret {
            metadata: named("s1"),
            data: [("k".to_string(), b"hello".to_vec())].into(),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let v = decode(&envelope("v1", "Secret", s.encode_to_vec())).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": "s1", "labels": {"a": "b"}}, "data": {"k": "aGVsbG8="}})
        );
    }

    #[test]
    fn unconverted_kinds_and_fields_are_415() {
        let e = decode(&envelope("apps/v1", "DaemonSet", Vec::new())).unwrap_err();
        assert_eq!(e.code, 415);
        assert!(e.message.contains("apps/v1 DaemonSet"), "{}", e.message);
        let ns = core::Namespace {
            metadata: named("n"),
            spec: Some(core::NamespaceSpec {
                finalizers: vec!["kubernetes".into()],
            }),
            ..Default::default()
        };
        let v = decode(&envelope("v1", "Namespace", ns.encode_to_vec())).unwrap();
        assert_eq!(v["spec"], json!({"finalizers": ["kubernetes"]}));
        let mut m = named("n").unwrap();
        m.deletion_timestamp = Some(meta::Time {
            seconds: Some(1_700_000_000),
            nanos: None,
        });
        let v = object_meta(Some(m)).unwrap();
        assert_eq!(v["deletionTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(decode(b"{}").unwrap_err().code, 400);
    }
}
