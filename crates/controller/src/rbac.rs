//! The Kubernetes API permissions the controller's code uses, as data. The Helm chart's RBAC is
//! tested against this list (`crates/multinic/tests/chart_rbac.rs`): a rule granting more fails
//! CI, and so does a call the chart forgot to allow. Change it together with the API calls.

/// Where a permission must be granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RbacScope {
    /// The namespace of the MultiNicNodeConfigs and their Jobs (`--namespace`).
    Watched,
    /// The namespace of the leader-election Lease (the controller Pod's own).
    Lease,
    /// Cluster-scoped resources.
    Cluster,
}

/// One resource and the verbs the controller calls on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permission {
    /// Where it must be granted.
    pub scope: RbacScope,
    /// API group; `""` is the core group.
    pub api_group: &'static str,
    /// Resource, with `/subresource` where the call goes to one.
    pub resource: &'static str,
    /// RBAC verbs (`list`/`watch` for caches and polls, `patch` for every patch and
    /// server-side apply, `update` for a replace).
    pub verbs: &'static [&'static str],
    /// The code that needs it.
    pub used_by: &'static str,
}

/// Every permission the controller needs, and nothing else.
pub const RBAC_RULES: &[Permission] = &[
    Permission {
        scope: RbacScope::Watched,
        api_group: "multinic.io",
        resource: "multinicnodeconfigs",
        verbs: &["list", "watch", "patch"],
        used_by: "run.rs cache (watch or poll); run.rs finalizer() and the retry annotation (patch)",
    },
    Permission {
        scope: RbacScope::Watched,
        api_group: "multinic.io",
        resource: "multinicnodeconfigs/status",
        verbs: &["patch"],
        used_by: "reconcile::write_status (server-side apply)",
    },
    Permission {
        scope: RbacScope::Watched,
        api_group: "batch",
        resource: "jobs",
        verbs: &["list", "watch", "create", "delete"],
        used_by: "run.rs Job cache; Context::create_job / delete_job",
    },
    Permission {
        scope: RbacScope::Watched,
        api_group: "",
        resource: "pods",
        verbs: &["list"],
        used_by: "reconcile: a finished Job's Pods, for the agent's termination message",
    },
    Permission {
        scope: RbacScope::Watched,
        api_group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "list"],
        used_by: "reconcile::Context::event: a fresh Recorder per Event only ever creates; \
                  launch::Context::pod_refusal lists a Pod-less Job's FailedCreate Events",
    },
    Permission {
        scope: RbacScope::Lease,
        api_group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "update"],
        used_by: "leader::LeaderElector (get, create, replace)",
    },
    Permission {
        scope: RbacScope::Cluster,
        api_group: "",
        resource: "nodes",
        verbs: &["list", "watch"],
        used_by: "run.rs Node cache (systemUUID, osImage)",
    },
];
