//! The chart's RBAC against the permissions the controller's code declares
//! (`multinic_controller::rbac::RBAC_RULES`): no rule may grant more, in scope or verb, and
//! every call the code makes must be allowed where it is made. Only the controller's
//! ServiceAccount is bound; the agent gets no API access at all.

mod chart_support;

use chart_support::{container, env_of, of_kind, render, strings};
use multinic_controller::rbac::{RBAC_RULES, RbacScope};
use serde_json::Value;
use std::collections::BTreeSet;

/// One granted or needed (scope, group, resource, verb).
type Grant = (Scope, String, String, String);

/// A scope as rendered: a namespace or the cluster.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Namespace(String),
    Cluster,
}

/// What the chart grants, one entry per verb; wildcards and non-resource URLs are refused.
fn granted(objects: &[Value]) -> Result<BTreeSet<Grant>, String> {
    let mut grants = BTreeSet::new();
    for role in objects
        .iter()
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
    {
        let scope = match role["metadata"]["namespace"].as_str() {
            Some(ns) if role["kind"] == "Role" => Scope::Namespace(ns.to_string()),
            _ => Scope::Cluster,
        };
        if role.get("aggregationRule").is_some() {
            return Err(format!(
                "{}: aggregation grants unknown rules",
                role["metadata"]["name"]
            ));
        }
        for rule in role["rules"].as_array().into_iter().flatten() {
            if rule.get("nonResourceURLs").is_some() || rule.get("resourceNames").is_some() {
                return Err(format!("unexpected rule shape: {rule}"));
            }
            let fields = ["apiGroups", "resources", "verbs"].map(|f| strings(&rule[f]));
            if fields.iter().flatten().any(|v| v.contains('*')) {
                return Err(format!("wildcard in {rule}"));
            }
            let [groups, resources, verbs] = fields;
            for group in &groups {
                for resource in &resources {
                    for verb in &verbs {
                        grants.insert((
                            scope.clone(),
                            group.clone(),
                            resource.clone(),
                            verb.clone(),
                        ));
                    }
                }
            }
        }
    }
    Ok(grants)
}

/// What the code needs, placed in the namespaces this rendering runs with.
fn needed(watched: &str, lease: &str) -> BTreeSet<Grant> {
    let mut needs = BTreeSet::new();
    for permission in RBAC_RULES {
        let scope = match permission.scope {
            RbacScope::Watched => Scope::Namespace(watched.to_string()),
            RbacScope::Lease => Scope::Namespace(lease.to_string()),
            RbacScope::Cluster => Scope::Cluster,
        };
        for verb in permission.verbs {
            needs.insert((
                scope.clone(),
                permission.api_group.to_string(),
                permission.resource.to_string(),
                verb.to_string(),
            ));
        }
    }
    needs
}

/// The namespaces the rendered controller acts in: `--namespace` and its own (the Lease's).
fn controller_namespaces(objects: &[Value]) -> (String, String) {
    let deployment = of_kind(objects, "Deployment")[0];
    let args = strings(&container(deployment)["args"]);
    let watched = args
        .iter()
        .find_map(|a| a.strip_prefix("--namespace="))
        .expect("--namespace")
        .to_string();
    let lease_from_pod = env_of(container(deployment))
        .iter()
        .any(|(name, value)| name == "POD_NAMESPACE" && value.is_none());
    assert!(
        lease_from_pod,
        "the Lease namespace is the Pod's own (POD_NAMESPACE)"
    );
    let own = deployment["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    (watched, own)
}

fn show(grants: &BTreeSet<Grant>) -> Vec<String> {
    grants
        .iter()
        .map(|(scope, group, resource, verb)| {
            let group = if group.is_empty() { "core" } else { group };
            format!("{verb} {group}/{resource} in {scope:?}")
        })
        .collect()
}

#[test]
fn chart_grants_exactly_what_the_controller_code_uses() {
    // `full` watches another namespace than the release's, so a Lease grant in the wrong one
    // (or a resource grant next to the Lease) shows.
    for case in ["default", "full"] {
        let objects = render(case);
        let (watched, lease) = controller_namespaces(&objects);
        let granted = granted(&objects).unwrap_or_else(|e| panic!("{case}: {e}"));
        let needed = needed(&watched, &lease);
        let excess: BTreeSet<_> = granted.difference(&needed).cloned().collect();
        assert!(
            excess.is_empty(),
            "{case}: the chart grants more than the controller's code uses:\n{:#?}",
            show(&excess)
        );
        let missing: BTreeSet<_> = needed.difference(&granted).cloned().collect();
        assert!(
            missing.is_empty(),
            "{case}: the controller would be forbidden:\n{:#?}",
            show(&missing)
        );
    }
}

#[test]
fn only_the_controller_service_account_is_bound() {
    for case in ["default", "full"] {
        let objects = render(case);
        let deployment = of_kind(&objects, "Deployment")[0];
        let account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .expect("the controller names its ServiceAccount");
        let namespace = deployment["metadata"]["namespace"].as_str().unwrap();
        let roles: BTreeSet<(String, String)> = objects
            .iter()
            .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
            .map(|o| {
                (
                    o["kind"].as_str().unwrap().into(),
                    o["metadata"]["name"].as_str().unwrap().into(),
                )
            })
            .collect();
        let bindings: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "RoleBinding" || o["kind"] == "ClusterRoleBinding")
            .collect();
        assert_eq!(bindings.len(), roles.len(), "{case}: one binding per role");
        for binding in bindings {
            let role_ref = &binding["roleRef"];
            let target = (
                role_ref["kind"].as_str().unwrap().to_string(),
                role_ref["name"].as_str().unwrap().to_string(),
            );
            assert!(
                roles.contains(&target),
                "{case}: binding to a role the chart does not own: {target:?}"
            );
            let subjects = binding["subjects"].as_array().unwrap();
            assert_eq!(subjects.len(), 1, "{case}: {binding}");
            assert_eq!(subjects[0]["kind"], "ServiceAccount");
            assert_eq!(subjects[0]["name"], account);
            assert_eq!(subjects[0]["namespace"], namespace);
        }
    }
}

#[test]
fn agents_get_no_api_access() {
    let objects = render("full");
    for daemonset in of_kind(&objects, "DaemonSet") {
        let pod = &daemonset["spec"]["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert!(
            pod.get("serviceAccountName").is_none(),
            "the agent uses no ServiceAccount"
        );
    }
}

#[test]
fn the_comparison_catches_an_extra_verb_and_a_wildcard() {
    let mut objects = render("default");
    let (watched, lease) = controller_namespaces(&objects);
    let role = objects
        .iter_mut()
        .find(|o| o["kind"] == "ClusterRole")
        .expect("a ClusterRole");
    role["rules"][0]["verbs"]
        .as_array_mut()
        .unwrap()
        .push("delete".into());
    let excess: Vec<_> = granted(&objects)
        .unwrap()
        .difference(&needed(&watched, &lease))
        .cloned()
        .collect();
    assert_eq!(excess.len(), 1, "{excess:?}");
    let role = objects.iter_mut().find(|o| o["kind"] == "Role").unwrap();
    role["rules"][0]["resources"] = serde_json::json!(["*"]);
    assert!(granted(&objects).is_err());
}
