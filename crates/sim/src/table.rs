//! Server-side `Table` rendering for `kubectl get`: a CRD's additionalPrinterColumns (through a
//! simple JSONPath subset) or a few fixed columns for built-in types.

use crate::meta;
use crate::registry::{PrinterColumn, ResourceType};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Evaluates a simple JSONPath (`.a.b`, `.a[0]`, `.a[*].b`, `.a[?(@.k=="v")].b`, optional
/// `{}`) and returns every match.
pub fn eval(path: &str, obj: &Value) -> Vec<Value> {
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let mut current = vec![obj.clone()];
    let mut rest = path;
    while !rest.is_empty() {
        let (step, tail) = next_step(rest);
        rest = tail;
        current = current.iter().flat_map(|v| apply_step(step, v)).collect();
    }
    current
}

fn next_step(s: &str) -> (&str, &str) {
    if s.starts_with('[') {
        let end = s.find(']').map_or(s.len(), |i| i + 1);
        (&s[..end], &s[end..])
    } else {
        let s = s.strip_prefix('.').unwrap_or(s);
        let end = s.find(['.', '[']).unwrap_or(s.len());
        (&s[..end], &s[end..])
    }
}

fn apply_step(step: &str, v: &Value) -> Vec<Value> {
    let Some(inner) = step.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
        return v.get(step).cloned().into_iter().collect();
    };
    let items = v.as_array().cloned().unwrap_or_default();
    if inner == "*" {
        return items;
    }
    if let Ok(i) = inner.parse::<usize>() {
        return items.get(i).cloned().into_iter().collect();
    }
    let Some(cond) = inner.strip_prefix("?(@.").and_then(|c| c.strip_suffix(')')) else {
        return Vec::new();
    };
    let Some((field, want)) = cond.split_once("==") else {
        return items
            .into_iter()
            .filter(|i| i.get(cond).is_some())
            .collect();
    };
    let want = want.trim().trim_matches(['"', '\'']);
    items
        .into_iter()
        .filter(|i| match i.get(field.trim()) {
            Some(Value::String(s)) => s == want,
            Some(other) => other.to_string().as_str() == want,
            None => false,
        })
        .collect()
}

/// Kubernetes' short human durations ("45s", "3m2s", "5h", "2d3h").
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 && s % 60 != 0 => format!("{m}m{}s", s % 60),
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 && m % 60 != 0 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if h < 192 && h % 24 != 0 => format!("{d}d{}h", h % 24),
        _ => format!("{d}d"),
    }
}

fn age(ts: &str) -> String {
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

/// Cells kubectl shows for Pods that no single JSONPath gives.
fn pod_cell(which: &str, pod: &Value) -> Value {
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match which {
        "@ready" => {
            let total = pod
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses
                .iter()
                .filter(|c| c["ready"] == json!(true))
                .count();
            json!(format!("{ready}/{total}"))
        }
        "@restarts" => json!(
            statuses
                .iter()
                .filter_map(|c| c["restartCount"].as_i64())
                .sum::<i64>()
        ),
        _ => {
            // STATUS: the terminated reason once the container ended, else the phase.
            let reason = statuses
                .first()
                .and_then(|c| c.pointer("/state/terminated/reason"))
                .and_then(Value::as_str);
            let phase = pod
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("Unknown");
            json!(reason.unwrap_or(if phase == "Running" { "Running" } else { phase }))
        }
    }
}

fn cell(col: &PrinterColumn, obj: &Value) -> Value {
    if col.json_path.starts_with('@') {
        return pod_cell(&col.json_path, obj);
    }
    let found = eval(&col.json_path, obj);
    if col.json_path == NODE_READY {
        let ready = found.first().and_then(Value::as_str) == Some("True");
        return json!(if ready { "Ready" } else { "NotReady" });
    }
    if found.is_empty() {
        return Value::Null;
    }
    if col.type_ == "date" {
        return json!(found[0].as_str().map(age).unwrap_or_default());
    }
    if found.len() == 1 && !found[0].is_object() && !found[0].is_array() {
        return found[0].clone();
    }
    let parts: Vec<String> = found
        .iter()
        .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
        .collect();
    json!(parts.join(","))
}

fn col(name: &str, type_: &str, json_path: &str) -> PrinterColumn {
    PrinterColumn {
        name: name.into(),
        type_: type_.into(),
        json_path: json_path.into(),
        priority: 0,
        description: String::new(),
    }
}

const NODE_READY: &str = ".status.conditions[?(@.type==\"Ready\")].status";

fn builtin_columns(rt: &ResourceType) -> Vec<PrinterColumn> {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "nodes") => vec![
            col(
                "Status",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].status",
            ),
            col("Version", "string", ".status.nodeInfo.kubeletVersion"),
            col("OS-Image", "string", ".status.nodeInfo.osImage"),
        ],
        ("", "pods") => vec![
            col("Ready", "string", "@ready"),
            col("Status", "string", "@status"),
            col("Restarts", "integer", "@restarts"),
            col("Node", "string", ".spec.nodeName"),
        ],
        ("", "namespaces") => vec![col("Status", "string", ".status.phase")],
        ("batch", "jobs") => vec![
            col("Succeeded", "integer", ".status.succeeded"),
            col("Failed", "integer", ".status.failed"),
            col("Active", "integer", ".status.active"),
        ],
        _ => Vec::new(),
    }
}

/// Renders objects as a `meta.k8s.io/v1` Table (`includeObject`: None, Metadata or Object).
pub fn render(
    rt: &ResourceType,
    items: &[Value],
    list_meta: &Value,
    q: &HashMap<String, String>,
) -> Value {
    let mut cols = if rt.printer_columns.is_empty() {
        builtin_columns(rt)
    } else {
        rt.printer_columns.clone()
    };
    let has_age = cols.iter().any(|c| c.name == "Age");
    if !has_age {
        cols.push(col("Age", "date", ".metadata.creationTimestamp"));
    }
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name of the object", "priority": 0}),
    ];
    defs.extend(cols.iter().map(|c| {
        json!({"name": c.name, "type": if c.type_ == "date" { "string" } else { c.type_.as_str() },
        "format": "", "description": c.description, "priority": c.priority})
    }));
    let include = q.get("includeObject").map_or("Metadata", String::as_str);
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![json!(meta::name(o))];
            cells.extend(cols.iter().map(|c| cell(c, o)));
            let mut row = json!({"cells": cells});
            match include {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => row["object"] = meta::partial_metadata(o),
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_subset() {
        let o = json!({"spec": {"nodeName": "n1", "list": [{"a": 1}, {"a": 2}]},
            "status": {"conditions": [{"type": "Ready", "reason": "Ok"}, {"type": "X", "reason": "No"}]}});
        assert_eq!(eval(".spec.nodeName", &o), vec![json!("n1")]);
        assert_eq!(eval("{.spec.list[1].a}", &o), vec![json!(2)]);
        assert_eq!(eval(".spec.list[*].a", &o), vec![json!(1), json!(2)]);
        assert_eq!(
            eval(".status.conditions[?(@.type==\"Ready\")].reason", &o),
            vec![json!("Ok")]
        );
        assert!(eval(".status.missing", &o).is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(185), "3m5s");
        assert_eq!(human_duration(3600 * 5), "5h");
        assert_eq!(human_duration(86400 * 3 + 3600), "3d1h");
    }
}
