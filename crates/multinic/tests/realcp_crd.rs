//! The CRD against the real kube-apiserver: it is accepted and Established, `kubectl explain`
//! is served from it, and the split of validation layers in `testdata/invalid` holds against
//! the real validator: files marked `schema: rejects` are refused naming their field, all other
//! files and the examples pass the schema (server-side dry-run create).

#[path = "../../api/tests/corpus_files/mod.rs"]
mod corpus_files;
use corpus_files::{header, yaml_files};
mod realcp_support;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use realcp_support::{RealControlPlane, workspace};
use serde_json::Value;
use std::time::{Duration, Instant};

const NAMESPACE: &str = "multinic-system";

fn mnnc_api(client: kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("multinic.io", "v1alpha1", "MultiNicNodeConfig");
    Api::namespaced_with(client, NAMESPACE, &ApiResource::from_gvk(&gvk))
}

/// Server-side dry-run create of a document: `Ok` when admitted, else the server's message.
async fn dry_run_create(api: &Api<DynamicObject>, doc: &Value) -> Result<(), String> {
    let object: DynamicObject = serde_json::from_value(doc.clone()).expect("document as object");
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match api.create(&params, &object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) => Err(format!("{} ({})", status.message, status.code)),
        Err(e) => panic!("dry-run create failed outside validation: {e}"),
    }
}

#[tokio::test]
async fn real_apiserver_serves_the_crd_and_enforces_its_schema() {
    let Some(cp) = RealControlPlane::start().await else {
        return;
    };
    cp.install_crd().await;
    let client = cp.client().await;

    // The apiserver publishes the CRD's OpenAPI a moment after Established: retry until then.
    let deadline = Instant::now() + Duration::from_secs(60);
    let explained = loop {
        let out = cp
            .kubectl()
            .args(["explain", "mnnc.spec.interfaces"])
            .output()
            .expect("running kubectl explain");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl explain mnnc.spec.interfaces kept failing: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for field in ["macAddress", "cidr", "mtu"] {
        assert!(
            explained.contains(field),
            "kubectl explain mnnc.spec.interfaces lacks {field}:\n{explained}"
        );
    }
    assert!(
        explained.contains("MultiNicNodeConfig"),
        "explain names the kind:\n{explained}"
    );

    cp.kubectl_ok(&["create", "namespace", NAMESPACE]);
    let api = mnnc_api(client);

    let files = yaml_files(&workspace().join("testdata/invalid"));
    assert!(files.len() >= 30, "corpus has only {} files", files.len());
    let (mut rejected, mut passed) = (0, 0);
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().expect("file name").to_string_lossy();
        let text = std::fs::read_to_string(file).expect("reading corpus file");
        let expect = header(&text, "expect");
        let verdict = header(&text, "schema");
        let doc: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let result = dry_run_create(&api, &doc).await;
        match (verdict.as_str(), result) {
            ("rejects", Err(message)) if message.contains(&expect) => rejected += 1,
            ("rejects", Err(message)) => failures.push(format!(
                "{name}: refused, but the message does not name {expect}: {message}"
            )),
            ("rejects", Ok(())) => failures.push(format!(
                "{name}: header says the schema rejects {expect}, the real apiserver admitted it"
            )),
            ("accepts", Ok(())) => passed += 1,
            ("accepts", Err(message)) => failures.push(format!(
                "{name}: header says only check_spec catches this, the real apiserver refused it: {message}"
            )),
            (other, _) => panic!("{name}: unknown schema verdict {other}"),
        }
    }
    assert!(
        failures.is_empty(),
        "the real validator disagrees with the corpus headers:\n{}",
        failures.join("\n")
    );
    assert!(rejected >= 15, "only {rejected} files exercise the schema");
    assert!(passed > 0, "no file is marked `schema: accepts`");

    for file in yaml_files(&workspace().join("examples")) {
        let text = std::fs::read_to_string(&file).expect("reading example");
        let doc: Value = serde_yaml::from_str(&text).expect("example is YAML");
        if let Err(message) = dry_run_create(&api, &doc).await {
            panic!(
                "{}: refused by the real apiserver: {message}",
                file.display()
            );
        }
    }
}
