//! Reading a resource from YAML or JSON so that a type error names its field, like every
//! other validation error (`spec.interfaces[0].mtu: invalid type: string "x", expected u32`).

use crate::resource::MultiNicNodeConfig;
use crate::validate::FieldError;
use serde::Deserializer;

/// Deserializes a `MultiNicNodeConfig` from any serde format; on a type error the
/// [`FieldError`] carries the path of the offending field.
pub fn resource_from<'de, D>(deserializer: D) -> Result<MultiNicNodeConfig, FieldError>
where
    D: Deserializer<'de>,
    D::Error: std::fmt::Display,
{
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let interface = interface_index(&path);
        FieldError {
            // serde_path_to_error writes `.` for the document itself.
            path: if path == "." {
                "(resource)".into()
            } else {
                path
            },
            message: err.into_inner().to_string(),
            interface,
        }
    })
}

/// `spec.interfaces[3].mtu` -> `Some(3)`.
fn interface_index(path: &str) -> Option<usize> {
    let rest = path.strip_prefix("spec.interfaces[")?;
    rest.split_once(']')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(iface: serde_json::Value) -> serde_json::Value {
        json!({
            "apiVersion": "multinic.io/v1alpha1", "kind": "MultiNicNodeConfig",
            "metadata": {"name": "w1"},
            "spec": {"nodeName": "w1", "interfaces": [
                {"macAddress": "fa:16:3e:00:00:01", "address": "10.0.0.2", "cidr": "10.0.0.0/24"},
                iface,
            ]}
        })
    }

    #[test]
    fn a_type_error_names_its_field() {
        let bad = doc(
            json!({"macAddress": "fa:16:3e:00:00:02", "address": "10.0.1.2",
            "cidr": "10.0.1.0/24", "mtu": "1500"}),
        );
        let err = resource_from(bad).unwrap_err();
        assert_eq!(err.path, "spec.interfaces[1].mtu");
        assert!(err.message.contains("invalid type: string"), "{err}");
        assert_eq!(err.interface, Some(1));
        assert!(
            err.to_string()
                .starts_with("spec.interfaces[1].mtu: invalid type: string")
        );
    }

    #[test]
    fn a_missing_field_names_its_parent_and_yaml_works_too() {
        let yaml = "apiVersion: multinic.io/v1alpha1\nkind: MultiNicNodeConfig\nmetadata: {name: w1}\nspec:\n  nodeName: w1\n  interfaces:\n  - {address: 10.0.0.2, cidr: 10.0.0.0/24}\n";
        let value: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
        let err = resource_from(value).unwrap_err();
        assert_eq!(err.path, "spec.interfaces[0]");
        assert!(err.message.contains("macAddress"), "{err}");
        let ok = resource_from(doc(json!({"macAddress": "fa:16:3e:00:00:02",
            "address": "10.0.1.2", "cidr": "10.0.1.0/24", "mtu": 1500})))
        .unwrap();
        assert_eq!(ok.spec.interfaces[1].mtu, Some(1500));
    }
}
