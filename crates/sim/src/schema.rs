//! Structural-schema handling for custom resources, as the API server does it: prune unknown
//! fields and nulls, apply defaults, then validate (type, properties, required, items,
//! additionalProperties, pattern, minimum/maximum, minLength/maxLength, minItems/maxItems, enum,
//! nullable, x-kubernetes-int-or-string, x-kubernetes-preserve-unknown-fields).

use crate::error::Cause;
use regex::Regex;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

static PATTERNS: LazyLock<Mutex<HashMap<String, Option<Regex>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn pattern_matches(pattern: &str, s: &str) -> bool {
    let mut cache = PATTERNS.lock().unwrap_or_else(|e| e.into_inner());
    let re = cache
        .entry(pattern.to_string())
        .or_insert_with(|| Regex::new(pattern).ok());
    re.as_ref().is_none_or(|re| re.is_match(s))
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

/// Removes unknown fields and nulls of non-nullable fields, and fills in defaults.
/// `metadata` at the root is left alone (the server owns its shape).
pub fn prune_and_default(schema: &Value, value: &mut Value, root: bool) {
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
            if let Some(props) = props {
                for (key, sub) in props {
                    if !map.contains_key(key)
                        && let Some(d) = sub.get("default")
                    {
                        map.insert(key.clone(), d.clone());
                    }
                }
            }
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let sub = props.and_then(|p| p.get(&key)).or(additional);
                match sub {
                    Some(sub) => {
                        let is_null = map.get(&key).is_some_and(Value::is_null);
                        if is_null && !flag(sub, "nullable") {
                            map.remove(&key);
                        } else if let Some(v) = map.get_mut(&key) {
                            prune_and_default(sub, v, false);
                        }
                    }
                    None if preserve => {}
                    None => {
                        map.remove(&key);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prune_and_default(item_schema, item, false);
                }
            }
        }
        _ => {}
    }
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn invalid(out: &mut Vec<Cause>, path: &str, v: &Value, what: String) {
    out.push(Cause {
        field: path.to_string(),
        message: format!("Invalid value: {}: {what}", short(v)),
        reason: "FieldValueInvalid",
    });
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Validates `value` (at `path`, `""` for the root) against `schema`, appending one cause per
/// problem. At the root, `metadata`, `apiVersion` and `kind` are skipped.
pub fn validate(schema: &Value, value: &Value, path: &str, out: &mut Vec<Cause>) {
    if value.is_null() {
        if !flag(schema, "nullable") && schema.get("type").is_some() {
            invalid(
                out,
                path,
                value,
                format!("{path} in body must be of type {}", ty(schema)),
            );
        }
        return;
    }
    let actual = type_name(value);
    let want = ty(schema);
    let int_or_string = flag(schema, "x-kubernetes-int-or-string");
    let type_ok = match want {
        "" => true,
        _ if int_or_string => matches!(actual, "integer" | "string"),
        "number" => matches!(actual, "integer" | "number"),
        w => w == actual,
    };
    if !type_ok {
        let want = if int_or_string {
            "integer or string"
        } else {
            want
        };
        invalid(
            out,
            path,
            value,
            format!(
                "{path} in body must be of type {want}: {}",
                short(&Value::String(actual.into()))
            ),
        );
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(short).collect();
        out.push(Cause {
            field: path.to_string(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                short(value),
                list.join(", ")
            ),
            reason: "FieldValueNotSupported",
        });
    }
    match value {
        Value::Object(map) => validate_object(schema, map, path, out),
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && n > max
            {
                out.push(Cause {
                    field: path.to_string(),
                    message: format!("Too many: {n}: must have at most {max} items"),
                    reason: "FieldValueTooMany",
                });
            }
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && n < min
            {
                invalid(
                    out,
                    path,
                    value,
                    format!("{path} in body should have at least {min} items"),
                );
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                out.push(Cause {
                    field: path.to_string(),
                    message: format!("Too long: may not be more than {max} bytes"),
                    reason: "FieldValueTooLong",
                });
            }
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                invalid(
                    out,
                    path,
                    value,
                    format!("{path} in body should be at least {min} chars long"),
                );
            }
            if let Some(p) = schema.get("pattern").and_then(Value::as_str)
                && !pattern_matches(p, s)
            {
                invalid(
                    out,
                    path,
                    value,
                    format!("{path} in body should match '{p}'"),
                );
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                let excl = flag(schema, "exclusiveMinimum");
                if x < min || (excl && x == min) {
                    let op = if excl {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    invalid(
                        out,
                        path,
                        value,
                        format!("{path} in body should be {op} {min}"),
                    );
                }
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                let excl = flag(schema, "exclusiveMaximum");
                if x > max || (excl && x == max) {
                    let op = if excl {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    invalid(
                        out,
                        path,
                        value,
                        format!("{path} in body should be {op} {max}"),
                    );
                }
            }
        }
        _ => {}
    }
}

/// CRD transition rules (`x-kubernetes-validations`) of the one form the simulator evaluates,
/// `self == oldSelf` (immutability): on an update, a field carrying it that exists before and
/// after must not change. Other CEL rules are not evaluated (docs/sim.md lists the difference).
pub fn transition_rules(
    schema: &Value,
    old: &Value,
    new: &Value,
    path: &str,
    out: &mut Vec<Cause>,
) {
    let rules = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for rule in rules {
        let text: String = rule["rule"]
            .as_str()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        if text == "self==oldSelf" && old != new {
            let message = rule["message"]
                .as_str()
                .map_or_else(|| "failed rule: self == oldSelf".to_string(), String::from);
            out.push(Cause {
                field: path.to_string(),
                message: format!("Invalid value: {}: {message}", short(new)),
                reason: "FieldValueInvalid",
            });
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    if let (Some(props), Some(o), Some(n)) = (props, old.as_object(), new.as_object()) {
        for (key, sub) in props {
            if path.is_empty() && key == "metadata" {
                continue;
            }
            if let (Some(ov), Some(nv)) = (o.get(key), n.get(key)) {
                transition_rules(sub, ov, nv, &join(path, key), out);
            }
        }
    }
}

fn ty(schema: &Value) -> &str {
    schema.get("type").and_then(Value::as_str).unwrap_or("")
}

fn validate_object(schema: &Value, map: &Map<String, Value>, path: &str, out: &mut Vec<Cause>) {
    let root = path.is_empty();
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for key in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(key) {
                out.push(Cause {
                    field: join(path, key),
                    message: "Required value".into(),
                    reason: "FieldValueRequired",
                });
            }
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (key, v) in map {
        if root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(sub) = props.and_then(|p| p.get(key)).or(additional) {
            validate(sub, v, &join(path, key), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                "mtu": {"type": "integer", "minimum": 68, "maximum": 9000, "default": 1500},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "list": {"type": "array", "maxItems": 2, "items": {"type": "integer"}},
                "opt": {"type": "string", "nullable": true}}}}})
    }

    fn causes(obj: Value) -> (Value, Vec<String>) {
        let mut obj = obj;
        prune_and_default(&schema(), &mut obj, true);
        let mut out = Vec::new();
        validate(&schema(), &obj, "", &mut out);
        (
            obj,
            out.into_iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect(),
        )
    }

    #[test]
    fn defaults_and_prunes() {
        let (obj, errs) =
            causes(json!({"metadata": {"x": 1}, "spec": {"name": "ab", "junk": 1, "opt": null}}));
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(obj["spec"], json!({"name": "ab", "mtu": 1500, "opt": null}));
        assert_eq!(obj["metadata"], json!({"x": 1}));
    }

    #[test]
    fn reports_each_field() {
        let (_, errs) = causes(
            json!({"spec": {"name": "ABCDEFG", "mtu": 10, "mode": "c", "list": [1, "x", 3]}}),
        );
        let fields: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            fields,
            [
                "spec.list",
                "spec.list[1]",
                "spec.mode",
                "spec.mtu",
                "spec.name",
                "spec.name"
            ],
            "{errs:?}"
        );
        let (_, errs) = causes(json!({"spec": {}}));
        assert_eq!(errs, ["spec.name: Required value"]);
    }
}
