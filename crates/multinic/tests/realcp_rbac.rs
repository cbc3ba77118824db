//! The chart's RBAC on the real kube-apiserver: the namespace (labelled for PodSecurity as
//! docs/install.md says), ServiceAccount, Roles, ClusterRole and bindings, rendered with Helm's
//! SDK, apply; and the real RBAC authorizer, asked as that ServiceAccount (a TokenRequest
//! token), allows every permission the controller declares (`RBAC_RULES`) and refuses the same
//! resources' other verbs, other namespaces and everything else it was not given.

mod chart_support;
mod realcp_support;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use multinic_controller::rbac::{RBAC_RULES, RbacScope};
use realcp_support::RealControlPlane;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The release namespace of chart_tool.py's renders.
const NS: &str = "multinic-system";
/// A namespace the chart grants nothing in.
const OTHER_NS: &str = "elsewhere";
/// The chart objects that make up the controller's identity and rights.
const RBAC_KINDS: &[&str] = &[
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
];
const VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// Asks the real authorizer whether the client's user may `verb` `group`/`resource` (with
/// `/subresource`) in `namespace` (`None`: cluster-wide).
async fn allowed(
    client: &kube::Client,
    namespace: Option<&str>,
    group: &str,
    resource: &str,
    verb: &str,
) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (resource, None),
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: namespace.map(str::to_string),
                verb: Some(verb.to_string()),
                group: Some(group.to_string()),
                resource: Some(resource.to_string()),
                subresource,
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let answer = reviews
        .create(&PostParams::default(), &review)
        .await
        .expect("SelfSubjectAccessReview");
    answer.status.expect("review status").allowed
}

#[tokio::test]
async fn chart_rbac_gives_the_controller_exactly_its_declared_rights_on_the_real_authorizer() {
    let Some(cp) = RealControlPlane::start().await else {
        return;
    };
    cp.install_crd().await;
    cp.kubectl_ok(&["create", "namespace", NS]);
    cp.kubectl_ok(&[
        "label",
        "namespace",
        NS,
        "pod-security.kubernetes.io/enforce=privileged",
    ]);
    cp.kubectl_ok(&["create", "namespace", OTHER_NS]);
    let labels = cp.kubectl_ok(&["get", "namespace", NS, "-o", "jsonpath={.metadata.labels}"]);
    assert!(
        labels.contains(r#""pod-security.kubernetes.io/enforce":"privileged""#),
        "namespace labels: {labels}"
    );

    let objects: Vec<Value> = chart_support::render("default")
        .into_iter()
        .filter(|o| RBAC_KINDS.contains(&o["kind"].as_str().unwrap_or_default()))
        .collect();
    for kind in RBAC_KINDS {
        assert!(
            objects.iter().any(|o| o["kind"] == *kind),
            "the chart renders no {kind}"
        );
    }
    cp.apply_objects("chart-rbac", NS, &objects);
    let account = objects
        .iter()
        .find(|o| o["kind"] == "ServiceAccount")
        .and_then(|o| o["metadata"]["name"].as_str())
        .expect("ServiceAccount name");
    let controller = cp.service_account_client(NS, account).await;

    // Both ways, resource by resource: what is declared is allowed where it is declared, and
    // no other verb on it, nor the same verbs in another namespace.
    let mut wrong = Vec::new();
    for rule in RBAC_RULES {
        let namespace = match rule.scope {
            RbacScope::Watched | RbacScope::Lease => Some(NS),
            RbacScope::Cluster => None,
        };
        // Verbs granted on this resource by any rule in this scope.
        let granted: Vec<&str> = RBAC_RULES
            .iter()
            .filter(|r| r.resource == rule.resource && r.api_group == rule.api_group)
            .filter(|r| (r.scope == RbacScope::Cluster) == namespace.is_none())
            .flat_map(|r| r.verbs.iter().copied())
            .collect();
        for verb in VERBS {
            let want = granted.contains(verb);
            let got = allowed(&controller, namespace, rule.api_group, rule.resource, verb).await;
            if got != want {
                wrong.push(format!(
                    "{verb} {}/{} in {namespace:?}: authorizer says {got}, RBAC_RULES say {want}",
                    rule.api_group, rule.resource
                ));
            }
            if namespace.is_some()
                && want
                && allowed(
                    &controller,
                    Some(OTHER_NS),
                    rule.api_group,
                    rule.resource,
                    verb,
                )
                .await
            {
                wrong.push(format!(
                    "{verb} {}/{} allowed in {OTHER_NS}, outside the chart's namespace",
                    rule.api_group, rule.resource
                ));
            }
        }
    }
    for (namespace, group, resource) in [
        (None, "", "secrets"),
        (Some(NS), "", "secrets"),
        (Some(NS), "", "configmaps"),
        (None, "rbac.authorization.k8s.io", "clusterroles"),
        (Some(NS), "", "serviceaccounts/token"),
    ] {
        for verb in ["get", "list", "create"] {
            if allowed(&controller, namespace, group, resource, verb).await {
                wrong.push(format!(
                    "{verb} {group}/{resource} in {namespace:?} is allowed"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the real authorizer and RBAC_RULES disagree:\n{}",
        wrong.join("\n")
    );

    // And real requests: the watched resources list, secrets cluster-wide are refused (403),
    // and the refusal is in the audit log under the ServiceAccount's name.
    let gvk = GroupVersionKind::gvk("multinic.io", "v1alpha1", "MultiNicNodeConfig");
    let mnnc: Api<DynamicObject> =
        Api::namespaced_with(controller.clone(), NS, &ApiResource::from_gvk(&gvk));
    mnnc.list(&ListParams::default())
        .await
        .expect("the controller lists MultiNicNodeConfigs in its namespace");
    let secrets: Api<Secret> = Api::all(controller.clone());
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("listing secrets cluster-wide must be forbidden, got {other:?}"),
    }
    // The audit event is written as the response completes: wait for it, with a deadline.
    let user = format!("system:serviceaccount:{NS}:{account}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let refused = cp.audit_events().into_iter().any(|e| {
            e["user"]["username"] == user
                && e["objectRef"]["resource"] == "secrets"
                && e["responseStatus"]["code"] == 403
        });
        if refused {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 403 for {user} listing secrets in the audit log"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
