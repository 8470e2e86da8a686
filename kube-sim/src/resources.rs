//! The resource types the simulated API server serves, and the parsing of request paths.

/// One served resource type.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    /// Plural, lower case: the path segment.
    pub plural: &'static str,
    pub kind: &'static str,
    /// Has a `status` subresource: writes to the main resource ignore `status`, writes to
    /// `/status` change nothing else.
    pub status_subresource: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, as the API server names the resource in its messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Deployment.apps`, as in the messages of validation errors.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

const fn rt(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    status_subresource: bool,
) -> ResourceType {
    ResourceType {
        group,
        version,
        plural,
        kind,
        status_subresource,
    }
}

/// Every served type. All are namespaced.
pub static RESOURCES: &[ResourceType] = &[
    rt(
        "mooring.dev",
        "v1alpha1",
        "modeldeployments",
        "ModelDeployment",
        true,
    ),
    rt(
        "mooring.dev",
        "v1alpha1",
        "driftmonitors",
        "DriftMonitor",
        true,
    ),
    rt(
        "mooring.dev",
        "v1alpha1",
        "chatservices",
        "ChatService",
        true,
    ),
    rt("apps", "v1", "deployments", "Deployment", true),
    rt("apps", "v1", "replicasets", "ReplicaSet", true),
    rt("", "v1", "pods", "Pod", true),
    rt("", "v1", "services", "Service", true),
    rt("", "v1", "secrets", "Secret", false),
    rt("", "v1", "configmaps", "ConfigMap", false),
    rt("", "v1", "events", "Event", false),
    rt("", "v1", "serviceaccounts", "ServiceAccount", false),
    rt(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
    ),
    rt("batch", "v1", "jobs", "Job", true),
    rt("coordination.k8s.io", "v1", "leases", "Lease", false),
    rt("events.k8s.io", "v1", "events", "Event", false),
    rt(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        true,
    ),
    rt(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
    ),
];

/// Index into [`RESOURCES`].
pub type ResourceId = usize;

pub fn find(group: &str, version: &str, plural: &str) -> Option<ResourceId> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

pub fn by_kind(api_version: &str, kind: &str) -> Option<ResourceId> {
    RESOURCES
        .iter()
        .position(|r| r.api_version() == api_version && r.kind == kind)
}

pub fn get(id: ResourceId) -> &'static ResourceType {
    &RESOURCES[id]
}

/// What a request path names.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Version,
    /// A collection (`name` None) or one object, optionally a subresource of it.
    Resource {
        resource: ResourceId,
        namespace: Option<String>,
        name: Option<String>,
        subresource: Option<String>,
    },
}

/// Parse `/api/v1/...` and `/apis/<group>/<version>/...`. `Err` carries the unknown path.
pub fn parse_path(path: &str) -> Result<Target, String> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return Ok(Target::Version),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(path.to_string()),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(path.to_string()),
    };
    let resource = find(group, version, plural).ok_or_else(|| path.to_string())?;
    Ok(Target::Resource {
        resource,
        namespace,
        name,
        subresource,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let d = find("apps", "v1", "deployments").unwrap();
        assert_eq!(
            parse_path("/apis/apps/v1/namespaces/ns/deployments/web/status"),
            Ok(Target::Resource {
                resource: d,
                namespace: Some("ns".into()),
                name: Some("web".into()),
                subresource: Some("status".into())
            })
        );
        assert_eq!(
            parse_path("/apis/apps/v1/deployments"),
            Ok(Target::Resource {
                resource: d,
                namespace: None,
                name: None,
                subresource: None
            })
        );
        let pods = find("", "v1", "pods").unwrap();
        assert!(matches!(
            parse_path("/api/v1/namespaces/ns/pods"),
            Ok(Target::Resource { resource, namespace: Some(_), name: None, .. }) if resource == pods
        ));
        assert_eq!(parse_path("/version"), Ok(Target::Version));
        assert!(parse_path("/apis/nope/v1/things").is_err());
    }
}
