//! Protobuf Deployments and Jobs (`kubectl create deployment` / `create job`): the workload
//! spec and the pod template fields those commands and simple manifests use. Any other field
//! that is set is refused by name (415), never dropped.
//!
//! Go encodes non-pointer fields even when unset, so for those the zero value (`false`, `0`,
//! an empty struct) means absent; pointer fields keep whatever was sent.

use super::{all_taken, object_meta, put_map, put_str, put_strings};
use crate::error::ApiError;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use serde_json::{Map, Value, json};

fn put<T: Into<Value>>(m: &mut Map<String, Value>, key: &str, v: Option<T>) {
    if let Some(v) = v {
        m.insert(key.into(), v.into());
    }
}

/// A Go non-pointer bool or int: the zero value is "unset".
fn put_nonzero<T: Into<Value> + Default + PartialEq>(
    m: &mut Map<String, Value>,
    key: &str,
    v: Option<T>,
) {
    put(m, key, v.filter(|v| *v != T::default()));
}

fn selector(s: Option<meta::LabelSelector>) -> Result<Option<Value>, ApiError> {
    let Some(mut s) = s else { return Ok(None) };
    let mut out = Map::new();
    put_map(&mut out, "matchLabels", std::mem::take(&mut s.match_labels));
    let exprs: Vec<Value> = std::mem::take(&mut s.match_expressions)
        .into_iter()
        .map(|r| json!({"key": r.key.unwrap_or_default(), "operator": r.operator.unwrap_or_default(), "values": r.values}))
        .collect();
    if !exprs.is_empty() {
        out.insert("matchExpressions".into(), json!(exprs));
    }
    all_taken(&s, "selector")?;
    Ok(Some(Value::Object(out)))
}

fn container(mut c: core::Container) -> Result<Value, ApiError> {
    let mut out = Map::new();
    put_str(&mut out, "name", c.name.take());
    put_str(&mut out, "image", c.image.take());
    put_strings(&mut out, "command", std::mem::take(&mut c.command));
    put_strings(&mut out, "args", std::mem::take(&mut c.args));
    put_str(&mut out, "workingDir", c.working_dir.take());
    let env: Vec<Value> = std::mem::take(&mut c.env)
        .into_iter()
        .map(|mut e| {
            let mut o = Map::new();
            put_str(&mut o, "name", e.name.take());
            o.insert("value".into(), json!(e.value.take().unwrap_or_default()));
            all_taken(&e, "env (only name and value)")?;
            Ok(Value::Object(o))
        })
        .collect::<Result<_, ApiError>>()?;
    if !env.is_empty() {
        out.insert("env".into(), json!(env));
    }
    let ports: Vec<Value> = std::mem::take(&mut c.ports)
        .into_iter()
        .map(|mut p| {
            let mut o = Map::new();
            put_str(&mut o, "name", p.name.take());
            put(&mut o, "containerPort", p.container_port.take());
            put_nonzero(&mut o, "hostPort", p.host_port.take());
            put_str(&mut o, "protocol", p.protocol.take());
            put_str(&mut o, "hostIP", p.host_ip.take());
            all_taken(&p, "ports")?;
            Ok(Value::Object(o))
        })
        .collect::<Result<_, ApiError>>()?;
    if !ports.is_empty() {
        out.insert("ports".into(), json!(ports));
    }
    // `resources: {}` is what kubectl sends; requests and limits are not converted.
    if let Some(r) = c.resources.take() {
        all_taken(&r, "resources")?;
        out.insert("resources".into(), json!({}));
    }
    put_str(
        &mut out,
        "terminationMessagePath",
        c.termination_message_path.take(),
    );
    put_str(
        &mut out,
        "terminationMessagePolicy",
        c.termination_message_policy.take(),
    );
    put_str(&mut out, "imagePullPolicy", c.image_pull_policy.take());
    for (key, v) in [
        ("stdin", c.stdin.take()),
        ("stdinOnce", c.stdin_once.take()),
        ("tty", c.tty.take()),
    ] {
        put_nonzero(&mut out, key, v);
    }
    all_taken(&c, "container")?;
    Ok(Value::Object(out))
}

fn pod_spec(mut s: core::PodSpec) -> Result<Value, ApiError> {
    let mut out = Map::new();
    let containers: Vec<Value> = std::mem::take(&mut s.containers)
        .into_iter()
        .map(container)
        .collect::<Result<_, _>>()?;
    out.insert("containers".into(), json!(containers));
    put_str(&mut out, "restartPolicy", s.restart_policy.take());
    put(
        &mut out,
        "terminationGracePeriodSeconds",
        s.termination_grace_period_seconds.take(),
    );
    put(
        &mut out,
        "activeDeadlineSeconds",
        s.active_deadline_seconds.take(),
    );
    put_str(&mut out, "dnsPolicy", s.dns_policy.take());
    put_map(
        &mut out,
        "nodeSelector",
        std::mem::take(&mut s.node_selector),
    );
    put_str(
        &mut out,
        "serviceAccountName",
        s.service_account_name.take(),
    );
    put_str(&mut out, "serviceAccount", s.service_account.take());
    put(
        &mut out,
        "automountServiceAccountToken",
        s.automount_service_account_token.take(),
    );
    put_str(&mut out, "nodeName", s.node_name.take());
    for (key, v) in [
        ("hostNetwork", s.host_network.take()),
        ("hostPID", s.host_pid.take()),
        ("hostIPC", s.host_ipc.take()),
    ] {
        put_nonzero(&mut out, key, v);
    }
    put_str(&mut out, "schedulerName", s.scheduler_name.take());
    put_str(&mut out, "hostname", s.hostname.take());
    put_str(&mut out, "subdomain", s.subdomain.take());
    put_str(&mut out, "priorityClassName", s.priority_class_name.take());
    if s.security_context.as_ref() == Some(&core::PodSecurityContext::default()) {
        s.security_context = None;
        out.insert("securityContext".into(), json!({}));
    }
    all_taken(&s, "the pod spec")?;
    Ok(Value::Object(out))
}

fn template(t: Option<core::PodTemplateSpec>) -> Result<Value, ApiError> {
    let mut t = t.unwrap_or_default();
    let mut out = Map::new();
    let m = object_meta(t.metadata.take())?;
    if m.as_object().is_some_and(|o| !o.is_empty()) {
        out.insert("metadata".into(), m);
    }
    out.insert("spec".into(), pod_spec(t.spec.take().unwrap_or_default())?);
    all_taken(&t, "the pod template")?;
    Ok(Value::Object(out))
}

/// An apps/v1 Deployment.
pub(super) fn deployment(mut d: apps::Deployment) -> Result<Value, ApiError> {
    let mut out = Map::new();
    out.insert("metadata".into(), object_meta(d.metadata.take())?);
    let mut s = d.spec.take().unwrap_or_default();
    let mut spec = Map::new();
    put(&mut spec, "replicas", s.replicas.take());
    put(&mut spec, "selector", selector(s.selector.take())?);
    spec.insert("template".into(), template(s.template.take())?);
    if let Some(mut st) = s.strategy.take() {
        let mut o = Map::new();
        put_str(&mut o, "type", st.r#type.take());
        if let Some(mut ru) = st.rolling_update.take() {
            let int_or_string =
                |v: Option<k8s_pb::apimachinery::pkg::util::intstr::IntOrString>| {
                    v.map(|v| match v.r#type {
                        Some(1) => json!(v.str_val.unwrap_or_default()),
                        _ => json!(v.int_val.unwrap_or_default()),
                    })
                };
            let mut r = Map::new();
            put(
                &mut r,
                "maxUnavailable",
                int_or_string(ru.max_unavailable.take()),
            );
            put(&mut r, "maxSurge", int_or_string(ru.max_surge.take()));
            all_taken(&ru, "strategy.rollingUpdate")?;
            o.insert("rollingUpdate".into(), Value::Object(r));
        }
        all_taken(&st, "strategy")?;
        if !o.is_empty() {
            spec.insert("strategy".into(), Value::Object(o));
        }
    }
    put_nonzero(&mut spec, "minReadySeconds", s.min_ready_seconds.take());
    put(
        &mut spec,
        "revisionHistoryLimit",
        s.revision_history_limit.take(),
    );
    put_nonzero(&mut spec, "paused", s.paused.take());
    put(
        &mut spec,
        "progressDeadlineSeconds",
        s.progress_deadline_seconds.take(),
    );
    all_taken(&s, "Deployment.spec")?;
    out.insert("spec".into(), Value::Object(spec));
    // Status is the server's; a client's is ignored.
    d.status = None;
    all_taken(&d, "Deployment")?;
    Ok(Value::Object(out))
}

/// A batch/v1 Job.
pub(super) fn job(mut j: batch::Job) -> Result<Value, ApiError> {
    let mut out = Map::new();
    out.insert("metadata".into(), object_meta(j.metadata.take())?);
    let mut s = j.spec.take().unwrap_or_default();
    let mut spec = Map::new();
    put(&mut spec, "parallelism", s.parallelism.take());
    put(&mut spec, "completions", s.completions.take());
    put(
        &mut spec,
        "activeDeadlineSeconds",
        s.active_deadline_seconds.take(),
    );
    put(&mut spec, "backoffLimit", s.backoff_limit.take());
    put(&mut spec, "selector", selector(s.selector.take())?);
    put(&mut spec, "manualSelector", s.manual_selector.take());
    spec.insert("template".into(), template(s.template.take())?);
    put(
        &mut spec,
        "ttlSecondsAfterFinished",
        s.ttl_seconds_after_finished.take(),
    );
    put_str(&mut spec, "completionMode", s.completion_mode.take());
    put(&mut spec, "suspend", s.suspend.take());
    all_taken(&s, "Job.spec")?;
    out.insert("spec".into(), Value::Object(spec));
    j.status = None;
    all_taken(&j, "Job")?;
    Ok(Value::Object(out))
}
