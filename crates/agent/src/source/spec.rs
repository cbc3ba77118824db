//! The `spec` source: the controller hands a Job the node's spec as JSON (inline in the
//! environment or as a mounted file), so the Job applies exactly the generation it was made
//! for and needs no API credentials.

use super::{LoadedSpec, SourceError};
use crate::config::InlineSpec;
use multinic_api::MultiNicNodeConfigSpec;

pub(super) fn load(inline: &InlineSpec) -> Result<LoadedSpec, SourceError> {
    let (text, what) = match (&inline.json, &inline.file) {
        (Some(json), _) => (json.clone(), "inline spec".to_owned()),
        (None, Some(path)) => (
            std::fs::read_to_string(path).map_err(|source| SourceError::Read {
                path: path.clone(),
                source,
            })?,
            path.display().to_string(),
        ),
        (None, None) => {
            return Err(SourceError::Missing(format!(
                "--source spec needs the spec in {} or a spec file (--file)",
                multinic_api::report::env::NODE_SPEC
            )));
        }
    };
    parse(&text, &what, inline.generation)
}

/// Parses a spec, or a whole resource whose `spec` is taken (its `metadata.generation` is
/// used when no generation was given).
fn parse(text: &str, what: &str, generation: Option<i64>) -> Result<LoadedSpec, SourceError> {
    let parse_error = |e: serde_json::Error| SourceError::Parse {
        what: what.to_owned(),
        message: e.to_string(),
    };
    let mut value: serde_json::Value = serde_json::from_str(text).map_err(parse_error)?;
    let mut generation = generation;
    if let Some(spec) = value.get_mut("spec").map(serde_json::Value::take) {
        generation = generation.or_else(|| value["metadata"]["generation"].as_i64());
        value = spec;
    }
    let spec: MultiNicNodeConfigSpec = serde_json::from_value(value).map_err(parse_error)?;
    Ok(LoadedSpec {
        spec,
        generation,
        labels: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"{"nodeName":"worker-01","interfaces":[
        {"id":0,"macAddress":"fa:16:3e:00:00:01","address":"10.250.0.2","cidr":"10.250.0.0/24"}]}"#;

    #[test]
    fn reads_a_bare_spec_with_the_given_generation() {
        let loaded = parse(SPEC, "inline spec", Some(4)).unwrap();
        assert_eq!(loaded.spec.node_name, "worker-01");
        assert_eq!(loaded.spec.interfaces.len(), 1);
        assert_eq!(loaded.generation, Some(4));
    }

    #[test]
    fn reads_a_whole_resource_and_its_generation() {
        let text = format!(r#"{{"metadata":{{"generation":9}},"spec":{SPEC}}}"#);
        let loaded = parse(&text, "inline spec", None).unwrap();
        assert_eq!(loaded.generation, Some(9));
        assert_eq!(loaded.spec.interfaces[0].mac_address, "fa:16:3e:00:00:01");
    }

    #[test]
    fn names_what_failed_to_parse() {
        let err = parse(r#"{"interfaces":[]}"#, "inline spec", None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("inline spec: missing field `nodeName`"),
            "{err}"
        );
    }

    #[test]
    fn missing_spec_is_an_error() {
        let err = load(&InlineSpec {
            json: None,
            file: None,
            generation: None,
        })
        .unwrap_err();
        assert!(err.to_string().contains("MULTINIC_NODE_SPEC"), "{err}");
    }
}
