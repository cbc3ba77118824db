//! Parses request paths into the API endpoint they name.

/// A resource endpoint: collection, object or subresource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePath {
    /// Group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural resource name.
    pub plural: String,
    /// Namespace in the path, if any.
    pub namespace: Option<String>,
    /// Object name, if any.
    pub name: Option<String>,
    /// Subresource (`status`), if any.
    pub subresource: Option<String>,
}

/// What a request path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/version`.
    Version,
    /// `/healthz`, `/readyz`, `/livez`.
    Health,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    GroupList,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`.
    ResourceList {
        /// Group.
        group: String,
        /// Version.
        version: String,
    },
    /// `/openapi/v2`: an empty OpenAPI document (so clients skip client-side validation).
    OpenApiV2,
    /// `/openapi/v3`: the index of v3 documents.
    OpenApiV3,
    /// `/openapi/v3/apis/<group>/<version>`.
    OpenApiV3GroupVersion {
        /// Group.
        group: String,
        /// Version.
        version: String,
    },
    /// `/debug/requests`: the request counters.
    DebugRequests,
    /// A resource endpoint.
    Resource(ResourcePath),
    /// Anything else.
    Unknown,
}

/// Parses a URL path (without query).
pub fn parse(path: &str) -> Route {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "readyz" | "livez", ..] => Route::Health,
        ["debug", "requests"] => Route::DebugRequests,
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3,
        ["openapi", "v3", "apis", g, v] => Route::OpenApiV3GroupVersion {
            group: g.to_string(),
            version: v.to_string(),
        },
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::GroupList,
        ["apis", g] => Route::Group(g.to_string()),
        ["api", v] => Route::ResourceList {
            group: String::new(),
            version: v.to_string(),
        },
        ["apis", g, v] => Route::ResourceList {
            group: g.to_string(),
            version: v.to_string(),
        },
        ["api", v, rest @ ..] => resource("", v, rest),
        ["apis", g, v, rest @ ..] => resource(g, v, rest),
        _ => Route::Unknown,
    }
}

fn resource(group: &str, version: &str, rest: &[&str]) -> Route {
    let namespaced =
        rest.len() >= 3 && rest[0] == "namespaces" && !matches!(rest[2], "status" | "finalize");
    let (namespace, rest) = if namespaced {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let (plural, name, sub) = match rest {
        [p] => (p, None, None),
        [p, n] => (p, Some(n.to_string()), None),
        [p, n, s] => (p, Some(n.to_string()), Some(s.to_string())),
        _ => return Route::Unknown,
    };
    Route::Resource(ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        plural: plural.to_string(),
        namespace,
        name,
        subresource: sub,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match parse(path) {
            Route::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn paths() {
        let r = res("/apis/multinic.io/v1alpha1/namespaces/ns1/multinicnodeconfigs/w1/status");
        assert_eq!(
            (
                r.namespace.as_deref(),
                r.plural.as_str(),
                r.name.as_deref(),
                r.subresource.as_deref()
            ),
            (
                Some("ns1"),
                "multinicnodeconfigs",
                Some("w1"),
                Some("status")
            )
        );
        let r = res("/api/v1/namespaces/kube-system/status");
        assert_eq!(
            (
                r.plural.as_str(),
                r.name.as_deref(),
                r.subresource.as_deref()
            ),
            ("namespaces", Some("kube-system"), Some("status"))
        );
        let r = res("/api/v1/namespaces/x");
        assert_eq!(
            (r.plural.as_str(), r.name.as_deref()),
            ("namespaces", Some("x"))
        );
        let r = res("/api/v1/pods");
        assert_eq!((r.namespace, r.name), (None, None));
        assert_eq!(parse("/apis/batch"), Route::Group("batch".into()));
        assert_eq!(parse("/openapi/v2"), Route::OpenApiV2);
        assert_eq!(parse("/openapi/v3"), Route::OpenApiV3);
        assert_eq!(parse("/openapi/v3/api/v1"), Route::Unknown);
    }
}
