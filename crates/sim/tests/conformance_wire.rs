//! Conformance-style tests, part three: server-side apply, events and leases, wire formats
//! (Table, PartialObjectMetadata), request counters and the validation of built-in objects.
//!
//! | Promise | Test |
//! |---|---|
//! | server-side apply with fieldManager and force, also on status; released fields removed; conflicts without force; managedFields | `server_side_apply_creates_updates_and_records_managers` |
//! | events (core/v1, events.k8s.io/v1, one resource: the latter reads as the former), leases | `events_and_leases` |
//! | Table output with printer columns (also in watches), PartialObjectMetadata | `table_and_metadata_only_responses` |
//! | request counters by verb and resource | `request_counters` |
//! | built-in objects validated (names, labels, Pod/Job specs); Job template and Pod spec immutable | `built_in_objects_are_validated_and_immutable_fields_kept` |

mod common;

both_backends! {
    events_and_leases,
    table_and_metadata_only_responses,
    built_in_objects_are_validated_and_immutable_fields_kept,
    server_side_apply_creates_updates_and_records_managers,
}

use common::{NS, Target, eventually, mnnc, raw_get, sim_with_crd, status_of};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use multinic_api::MultiNicNodeConfig;
use multinic_sim::SimConfig;
use serde_json::json;

async fn events_and_leases(t: Target) {
    let client = t.client.clone();
    let recorder = kube::runtime::events::Recorder::new(client.clone(), "multinic-test".into());
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        kind: Some("Node".into()),
        name: Some("n1".into()),
        api_version: Some("v1".into()),
        ..Default::default()
    };
    let ev = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Normal,
        reason: "Tested".into(),
        note: Some("hello".into()),
        action: "Test".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.unwrap();
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(client.clone());
    let listed = events.list(&ListParams::default()).await.unwrap().items;
    assert!(
        listed.iter().any(|e| e.reason.as_deref() == Some("Tested")),
        "{listed:?}"
    );
    let core_events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(client.clone(), &t.ns);
    let event = |name: &str, involved_ns: &str| -> k8s_openapi::api::core::v1::Event {
        serde_json::from_value(json!({"metadata": {"name": name},
            "involvedObject": {"kind": "ConfigMap", "name": "c", "namespace": involved_ns}, "reason": "R"}))
        .unwrap()
    };
    core_events
        .create(&PostParams::default(), &event("e1", &t.ns))
        .await
        .unwrap();
    // An Event lives in the namespace of the object it is about.
    let err = status_of(
        core_events
            .create(&PostParams::default(), &event("e2", "elsewhere"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.details.unwrap().causes[0].field.as_str()),
        (422, "involvedObject.namespace")
    );
    // What the Recorder published through events.k8s.io/v1 also reads as a core/v1 Event, the
    // way `kubectl describe` looks for it.
    let all_core: Api<k8s_openapi::api::core::v1::Event> = Api::all(client.clone());
    let mirrored = all_core
        .list(&ListParams::default().fields("involvedObject.name=n1,reason=Tested"))
        .await
        .unwrap()
        .items;
    assert_eq!(mirrored.len(), 1);
    assert_eq!(mirrored[0].message.as_deref(), Some("hello"));
    assert_eq!(mirrored[0].involved_object.kind.as_deref(), Some("Node"));
    let leases: Api<Lease> = Api::namespaced(client, &t.ns);
    let l: Lease = serde_json::from_value(json!({"metadata": {"name": "multinic-controller"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}})).unwrap();
    let created = leases.create(&PostParams::default(), &l).await.unwrap();
    let mut takeover = created.clone();
    takeover.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases
        .replace("multinic-controller", &PostParams::default(), &takeover)
        .await
        .unwrap();
    let err = status_of(
        leases
            .replace("multinic-controller", &PostParams::default(), &created)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.code, 409,
        "two candidates racing on one lease: the stale one loses"
    );
}

async fn table_and_metadata_only_responses(t: Target) {
    let client = t.client.clone();
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client.clone(), &t.ns);
    api.create(&PostParams::default(), &mnnc("w1", "n1", 1450))
        .await
        .unwrap();
    let path = format!(
        "/apis/multinic.io/v1alpha1/namespaces/{}/multinicnodeconfigs",
        t.ns
    );
    let (code, table) = raw_get(
        &client,
        &path,
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    )
    .await;
    assert_eq!(code, 200);
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols[..3], ["Name", "Node", "State"]);
    assert_eq!(table["rows"][0]["cells"][1], "n1");
    let metas = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(metas.items[0].metadata.name.as_deref(), Some("w1"));
    let (_, raw) = raw_get(
        &client,
        &path,
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
    )
    .await;
    assert_eq!(raw["kind"], "PartialObjectMetadataList");
    assert!(raw["items"][0].get("spec").is_none());
    assert_eq!(
        api.get_metadata("w1").await.unwrap().metadata.generation,
        Some(1)
    );
    // `kubectl get -w`: watch events carry one-row Tables.
    let req = axum::http::Request::get(format!("{path}?watch=1&timeoutSeconds=1"))
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap();
    let text = client.request_text(req).await.unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        (first["type"].as_str(), first["object"]["kind"].as_str()),
        (Some("ADDED"), Some("Table"))
    );
    assert_eq!(first["object"]["rows"][0]["cells"][0], "w1");
}

/// Simulator only: reads the simulator's request counters.
#[tokio::test]
async fn request_counters() {
    let (sim, client) = sim_with_crd(SimConfig::with_nodes(1)).await;
    sim.reset_request_counts();
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &mnnc("w1", "n1", 1450))
        .await
        .unwrap();
    api.get("w1").await.unwrap();
    api.get("w1").await.unwrap();
    api.patch_status(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"state": "Pending"}})),
    )
    .await
    .unwrap();
    let counts = sim.request_counts();
    let n = |verb: &str, res: &str| {
        counts
            .get(&(verb.to_string(), res.to_string()))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(
        (
            n("create", "multinicnodeconfigs"),
            n("get", "multinicnodeconfigs"),
            n("patch", "multinicnodeconfigs/status")
        ),
        (1, 2, 1)
    );
    let (_, doc) = raw_get(&client, "/debug/requests", "application/json").await;
    assert!(
        doc["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["verb"] == "get" && r["count"] == 2)
    );
}

async fn built_in_objects_are_validated_and_immutable_fields_kept(t: Target) {
    let client = t.client.clone();
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), &t.ns);
    let job = |name: &str, policy: &str, image: &str| {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"template": {"spec": {
            "restartPolicy": policy, "containers": [{"name": "c", "image": image}]}}}}),
        )
        .unwrap()
    };
    let fields = |e: kube::Error| -> Vec<String> {
        let s = status_of(e);
        assert_eq!(s.code, 422, "{}", s.message);
        s.details
            .unwrap()
            .causes
            .into_iter()
            .map(|c| c.field)
            .collect()
    };
    let long = "j".repeat(64);
    let err = jobs
        .create(&PostParams::default(), &job(&long, "Never", "x"))
        .await
        .unwrap_err();
    assert!(
        fields(err).contains(&"spec.template.labels".to_string()),
        "a Job name longer than a label value is refused"
    );
    let err = jobs
        .create(&PostParams::default(), &job("j1", "Always", ""))
        .await
        .unwrap_err();
    assert_eq!(
        fields(err),
        [
            "spec.template.spec.containers[0].image",
            "spec.template.spec.restartPolicy"
        ]
    );
    jobs.create(&PostParams::default(), &job("j1", "Never", "x"))
        .await
        .unwrap();
    // The Job controller writes status once it starts the Job; after that the object stays
    // put, so resourceVersions below change only through this test's writes.
    let created = eventually(30, "the Job controller to start the Job", || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get("j1").await.ok()?;
            j.status.as_ref()?.start_time.as_ref()?;
            Some(j)
        }
    })
    .await;
    let pp = PatchParams::apply("t").force();
    let applied = jobs
        .patch("j1", &pp, &Patch::Apply(job("j1", "Never", "x")))
        .await
        .expect("applying what exists");
    assert_eq!(applied.metadata.generation, created.metadata.generation);
    let again = jobs
        .patch("j1", &pp, &Patch::Apply(job("j1", "Never", "x")))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version, applied.metadata.resource_version,
        "a repeated apply is a no-op"
    );
    let err = jobs
        .patch("j1", &pp, &Patch::Apply(job("j1", "Never", "y")))
        .await
        .unwrap_err();
    assert_eq!(fields(err), ["spec.template"]);
    assert_eq!(
        jobs.get("j1").await.unwrap().metadata.resource_version,
        applied.metadata.resource_version,
        "a refused write changes nothing"
    );
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, &t.ns);
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({"metadata": {"name": "Bad_Name"},
        "spec": {"containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]}})).unwrap();
    let err = pods.create(&PostParams::default(), &pod).await.unwrap_err();
    assert_eq!(
        fields(err),
        ["metadata.name", "spec.containers[0].volumeMounts[0].name"]
    );
}

async fn server_side_apply_creates_updates_and_records_managers(t: Target) {
    let client = t.client.clone();
    let api: Api<MultiNicNodeConfig> = Api::namespaced(client, &t.ns);
    let pp = PatchParams::apply("multinic-test").force();
    let created = api
        .patch("w1", &pp, &Patch::Apply(mnnc("w1", "n1", 1450)))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let managers: Vec<String> = created
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, vec!["multinic-test".to_string()]);
    let updated = api
        .patch("w1", &pp, &Patch::Apply(mnnc("w1", "n1", 1400)))
        .await
        .unwrap();
    assert_eq!(
        (updated.metadata.generation, updated.spec.interfaces[0].mtu),
        (Some(2), Some(1400))
    );
    let status = json!({"apiVersion": "multinic.io/v1alpha1", "kind": "MultiNicNodeConfig", "status": {"state": "InProgress"}});
    let with_status = api
        .patch_status(
            "w1",
            &PatchParams::apply("multinic-controller").force(),
            &Patch::Apply(status),
        )
        .await
        .unwrap();
    assert_eq!(
        with_status.status.unwrap().state.unwrap().as_str(),
        "InProgress"
    );
    assert_eq!(with_status.metadata.generation, Some(2));
    let err = status_of(
        api.patch(
            "w1",
            &PatchParams::default(),
            &Patch::Apply(mnnc("w1", "n1", 1)),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.reason.as_str()),
        (422, "Invalid"),
        "apply needs a field manager: {}",
        err.message
    );
    // A field the controller applied before and now omits is released (removed); a field
    // another applier owns stays.
    let ctl = PatchParams::apply("multinic-controller").force();
    let st = |status: serde_json::Value| {
        Patch::Apply(
            json!({"apiVersion": "multinic.io/v1alpha1", "kind": "MultiNicNodeConfig", "status": status}),
        )
    };
    api.patch_status(
        "w1",
        &ctl,
        &st(json!({"state": "InProgress", "lastJobName": "job-1"})),
    )
    .await
    .unwrap();
    let other = PatchParams::apply("someone-else").force();
    api.patch_status("w1", &other, &st(json!({"interfacesReady": "0/1"})))
        .await
        .unwrap();
    let after = api
        .patch_status("w1", &ctl, &st(json!({"state": "Configured"})))
        .await
        .unwrap();
    let status = after.status.unwrap();
    assert_eq!(status.state.unwrap().as_str(), "Configured");
    assert_eq!(status.last_job_name, None, "released by its applier");
    assert_eq!(
        status.interfaces_ready.as_deref(),
        Some("0/1"),
        "owned by another applier"
    );
    let entries = after.metadata.managed_fields.unwrap();
    let ctl_entry = entries
        .iter()
        .find(|e| {
            e.manager.as_deref() == Some("multinic-controller")
                && e.subresource.as_deref() == Some("status")
        })
        .unwrap();
    assert_eq!(
        ctl_entry.fields_v1.as_ref().unwrap().0,
        json!({"f:status": {"f:state": {}}})
    );
    // Without force, taking another applier's field is a conflict naming it; with force it
    // is taken.
    let polite = PatchParams::apply("multinic-controller");
    let err = status_of(
        api.patch_status("w1", &polite, &st(json!({"interfacesReady": "1/1"})))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message.contains("someone-else") && err.message.contains(".status.interfacesReady"),
        "{}",
        err.message
    );
    api.patch_status("w1", &polite, &st(json!({"state": "Configured"})))
        .await
        .expect("no conflict on own fields");
    let taken = api
        .patch_status("w1", &ctl, &st(json!({"interfacesReady": "1/1"})))
        .await
        .unwrap();
    assert_eq!(
        taken.status.unwrap().interfaces_ready.as_deref(),
        Some("1/1")
    );
    let released = api
        .patch_status("w1", &ctl, &st(json!({"state": "Configured"})))
        .await
        .unwrap();
    assert_eq!(
        released.status.unwrap().interfaces_ready,
        None,
        "a forced apply took ownership, so omitting the field now releases it"
    );
}
