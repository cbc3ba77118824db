//! Table-driven checks of both validation layers: every file in `testdata/invalid/` must be
//! rejected by `check_spec` at the field its header names, and by the generated CRD's
//! OpenAPI schema too where the header says the schema can express the rule; every example
//! must pass both.

mod corpus_files;
use corpus_files::{header, yaml_files};
use multinic_api::{MultiNicNodeConfig, check_spec, resource_from, validate_spec};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The CRD's structural schema, as the API server would enforce it.
fn crd_schema_validator() -> jsonschema::Validator {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(MultiNicNodeConfig::crd()).expect("crd to json");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    assert!(schema.is_object(), "generated CRD has no openAPIV3Schema");
    jsonschema::validator_for(schema).expect("openAPIV3Schema compiles as JSON schema")
}

/// `spec.interfaces[1].cidr` -> `/spec/interfaces/1/cidr`.
fn json_pointer(path: &str) -> String {
    path.replace('[', ".")
        .replace(']', "")
        .split('.')
        .fold(String::new(), |acc, part| acc + "/" + part)
}

#[test]
fn invalid_corpus_is_rejected_at_the_named_field_by_both_layers() {
    let validator = crd_schema_validator();
    let files = yaml_files(&repo_root().join("testdata/invalid"));
    assert!(files.len() >= 30, "corpus has only {} files", files.len());
    let mut schema_rejections = 0;
    for file in &files {
        let name = file.display();
        let text = std::fs::read_to_string(file).expect("read corpus file");
        let expect = header(&text, "expect");
        let schema_verdict = header(&text, "schema");

        let doc: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        match resource_from(doc.clone()) {
            // A type error: reading the resource already names the field.
            Err(err) => assert_eq!(err.path, expect, "{name}: {err}"),
            Ok(resource) => {
                let check = check_spec(&resource.spec);
                let paths: Vec<&str> = check.errors.iter().map(|e| e.path.as_str()).collect();
                assert!(
                    paths.contains(&expect.as_str()),
                    "{name}: expected an error at {expect}, got {paths:?}"
                );
                assert!(
                    validate_spec(&resource.spec).is_err(),
                    "{name}: strict validation passed"
                );
            }
        }

        let schema_paths: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| e.instance_path().to_string())
            .collect();
        match schema_verdict.as_str() {
            "rejects" => {
                schema_rejections += 1;
                let want = json_pointer(&expect);
                assert!(
                    schema_paths.iter().any(|p| p == &want),
                    "{name}: CRD schema should reject {want}, it reported {schema_paths:?}"
                );
            }
            "accepts" => assert!(
                schema_paths.is_empty(),
                "{name}: header says only the validation function catches this, but the schema reported {schema_paths:?}"
            ),
            other => panic!("{name}: unknown schema verdict {other}"),
        }
    }
    assert!(
        schema_rejections >= 15,
        "only {schema_rejections} cases exercise the schema"
    );
}

#[test]
fn examples_and_the_domain_sample_pass_both_layers() {
    let validator = crd_schema_validator();
    let mut docs = Vec::new();
    for file in yaml_files(&repo_root().join("examples")) {
        let text = std::fs::read_to_string(&file).expect("read example");
        docs.push((file.display().to_string(), text));
    }
    // The sample from shared/domain.md, as the producer writes it.
    docs.push(("domain.md sample".into(), DOMAIN_SAMPLE.into()));
    assert!(docs.len() >= 6);
    for (name, text) in docs {
        let doc: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: schema errors {errors:?}");
        let resource: MultiNicNodeConfig = serde_json::from_value(doc).expect("deserialize");
        let valid = validate_spec(&resource.spec).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            valid.interfaces.len(),
            resource.spec.interfaces.len(),
            "{name}"
        );
    }
}

/// `interfaces: []` is a valid spec: the node keeps no multinic NICs.
#[test]
fn an_empty_interface_list_passes_both_layers() {
    let text = "apiVersion: multinic.io/v1alpha1\nkind: MultiNicNodeConfig\nmetadata: {name: w1, namespace: multinic-system}\nspec: {nodeName: w1, interfaces: []}\n";
    let doc: Value = serde_yaml::from_str(text).unwrap();
    let errors: Vec<String> = crd_schema_validator()
        .iter_errors(&doc)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let resource = resource_from(doc).unwrap();
    let valid = validate_spec(&resource.spec).unwrap();
    assert!(valid.interfaces.is_empty());
}

const DOMAIN_SAMPLE: &str = r#"
apiVersion: multinic.io/v1alpha1
kind: MultiNicNodeConfig
metadata:
  name: worker-01
  namespace: multinic-system
  labels: {multinic.io/node-name: worker-01, multinic.io/instance-id: 84183610-f911-4d8f-9ec2-f35bfeac671f}
spec:
  nodeName: worker-01
  instanceId: 84183610-f911-4d8f-9ec2-f35bfeac671f   # OpenStack instance UUID
  interfaces:
    - id: 0                      # 0..9 -> multinic0..multinic9
      name: multinic0            # optional; ^multinic[0-9]+$
      portId: 5e0c
      macAddress: "fa:16:3e:fb:9b:68"
      address: "11.11.11.132"    # host address
      cidr: "11.11.11.0/24"      # the NETWORK (address must lie inside it)
      mtu: 1450                  # 68..9000
"#;

#[test]
fn committed_crd_matches_the_generated_one() {
    let path = repo_root().join("deploy/crds/multinic.io_multinicnodeconfigs.yaml");
    let committed = std::fs::read_to_string(&path).expect("committed CRD exists");
    assert!(
        committed == multinic_api::crd_yaml(),
        "{} is stale: regenerate it with `cargo run -p multinic -- crd > {}`",
        path.display(),
        path.display()
    );
}

#[test]
fn lenient_check_keeps_the_good_interfaces_and_names_the_bad_one() {
    let text =
        std::fs::read_to_string(repo_root().join("testdata/invalid/20-address-outside-cidr.yaml"))
            .expect("corpus file");
    let resource: MultiNicNodeConfig = serde_yaml::from_str(&text).expect("parse");
    let check = check_spec(&resource.spec);
    let kept: Vec<usize> = check.interfaces.iter().map(|i| i.index).collect();
    assert_eq!(kept, vec![0], "interface 0 is fine and must survive");
    assert_eq!(check.interface_errors(1).count(), 1);
    assert_eq!(check.spec_errors().count(), 0);
    assert_eq!(check.interfaces[0].network.to_string(), "11.11.11.0/24");
    assert_eq!(check.interfaces[0].address.to_string(), "11.11.11.132/24");
}

#[test]
fn host_form_cidr_means_the_network() {
    let text = std::fs::read_to_string(repo_root().join("examples/worker-02-three-nics.yaml"))
        .expect("example");
    let resource: MultiNicNodeConfig = serde_yaml::from_str(&text).expect("parse");
    let valid = validate_spec(&resource.spec).expect("valid");
    assert_eq!(valid.interfaces[1].network.to_string(), "12.12.12.0/24");
    assert_eq!(
        valid.interfaces[1].mac.to_string(),
        "fa:16:3e:10:00:02",
        "MACs are normalised to lowercase"
    );
}

/// `spec.nodeName` and `spec.instanceId` cannot change once set (CEL transition rules the API
/// server enforces), so a resource never silently moves and orphans the old node's NICs.
#[test]
fn node_name_and_instance_id_are_immutable_in_the_crd() {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(MultiNicNodeConfig::crd()).expect("crd to json");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let rules = |v: &Value| -> Vec<String> {
        v["x-kubernetes-validations"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| r["rule"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let props = &spec["properties"];
    assert_eq!(rules(&props["nodeName"]), vec!["self == oldSelf"]);
    assert_eq!(rules(&props["instanceId"]), vec!["self == oldSelf"]);
    // Removing the instance id is refused too (a field's own rule skips a removed field).
    assert!(
        rules(spec)
            .iter()
            .any(|r| r.contains("!has(oldSelf.instanceId)")),
        "{:?}",
        rules(spec)
    );
    assert!(
        rules(&props["interfaces"]).is_empty(),
        "interfaces stay mutable"
    );
}
