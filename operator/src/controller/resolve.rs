//! Resolve the version in force: the spec's pin, else the status's rollback pin (while the
//! alias still names the version it replaced), else the version the alias names now.
//!
//! [`lookup`] asks the registry (the only I/O here); [`decide`] is pure.

use std::sync::Arc;

use mooring_crds::model_deployment::{ModelDeploymentStatus, RollbackPin};
use mooring_registry::{ModelRef, ModelVersion, Registry};

use super::validate::ModelTarget;

/// The registry's answer about one reference.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    Found(VersionInfo),
    /// The registry could not be reached (network, 5xx): keep what runs.
    Unreachable(String),
    /// The registry answered, but the reference is wrong (no such model, alias or version,
    /// version not ready). `reason` is a short CamelCase label.
    Rejected {
        reason: &'static str,
        message: String,
    },
}

/// What the pod template needs to know about a version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    pub version: String,
    pub uri: Option<String>,
    pub digest: Option<String>,
}

impl VersionInfo {
    pub fn from_registry(v: &ModelVersion) -> Self {
        VersionInfo {
            version: v.version.clone(),
            uri: Some(v.source.clone()),
            digest: digest_tag(v),
        }
    }
}

/// Tags under which a registry may record the model artifact's digest.
const DIGEST_TAGS: [&str; 2] = ["mooring.digest", "sha256"];

fn digest_tag(v: &ModelVersion) -> Option<String> {
    DIGEST_TAGS
        .iter()
        .find_map(|tag| v.tags.get(*tag))
        .map(|d| {
            if d.starts_with("sha256:") {
                d.clone()
            } else {
                format!("sha256:{d}")
            }
        })
}

/// Ask the registry which version `model` names now.
pub async fn lookup(registry: &Arc<dyn Registry>, model: &ModelRef) -> Lookup {
    match registry.resolve(model).await {
        Ok(v) if !v.is_ready() => Lookup::Rejected {
            reason: "VersionNotReady",
            message: v.not_ready_error().to_string(),
        },
        Ok(v) => Lookup::Found(VersionInfo::from_registry(&v)),
        Err(e) if e.is_transient() => Lookup::Unreachable(e.to_string()),
        Err(e) => Lookup::Rejected {
            reason: e.reason(),
            message: e.to_string(),
        },
    }
}

/// Where the version in force came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `spec.model.version`.
    SpecPin,
    /// `status.rollbackPin`.
    RollbackPin,
    /// `spec.model.alias`, resolved now.
    Alias,
    /// The registry could not answer: the version resolved before keeps serving.
    LastResolved,
}

/// The outcome of resolving.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The version to serve; `None` when there is none yet (first resolve failed).
    pub version: Option<VersionInfo>,
    pub source: Source,
    /// The rollback pin after this decision (cleared once the alias or spec moved past it).
    pub rollback_pin: Option<RollbackPin>,
    /// `Err((reason, message))` when the registry did not give a usable answer.
    pub registry: Result<(), (&'static str, String)>,
    /// True when the registry was unreachable (transient: retry with backoff).
    pub registry_unreachable: bool,
    /// The version the spec's alias names now, when it was resolved.
    pub alias_version: Option<String>,
}

/// Does `pin` still hold for `target`, whose alias now names `alias_version`?
pub fn pin_holds(pin: &RollbackPin, target: &ModelTarget, alias_version: Option<&str>) -> bool {
    match target {
        // A pin in the spec is an explicit choice: it wins, and any rollback pin is void.
        ModelTarget::Pinned { .. } => false,
        ModelTarget::Alias { alias, .. } => {
            let same_alias = pin.alias.as_deref() == Some(alias.as_str());
            // Unknown (registry down) keeps the pin: never flap back on missing information.
            let alias_not_moved = alias_version.is_none_or(|v| v == pin.replaces_version);
            same_alias && alias_not_moved
        }
    }
}

/// Decide the version in force from the spec, the current status and the registry's answer
/// for the spec's reference (`spec_lookup`) and, when a rollback pin holds, for the pinned
/// version (`pin_lookup`).
pub fn decide(
    target: &ModelTarget,
    status: &ModelDeploymentStatus,
    spec_lookup: &Lookup,
    pin_lookup: Option<&Lookup>,
) -> Decision {
    let last_resolved = || {
        status.version.as_ref().map(|v| VersionInfo {
            version: v.clone(),
            uri: status.model_uri.clone(),
            digest: status.model_digest.clone(),
        })
    };
    let alias_version = match (target, spec_lookup) {
        (ModelTarget::Alias { .. }, Lookup::Found(v)) => Some(v.version.clone()),
        _ => None,
    };
    let rollback_pin = status
        .rollback_pin
        .clone()
        .filter(|pin| pin_holds(pin, target, alias_version.as_deref()));
    let registry = match spec_lookup {
        Lookup::Found(_) => Ok(()),
        Lookup::Unreachable(message) => Err(("RegistryUnreachable", message.clone())),
        Lookup::Rejected { reason, message } => Err((*reason, message.clone())),
    };
    let registry_unreachable = matches!(spec_lookup, Lookup::Unreachable(_));

    if let Some(pin) = &rollback_pin {
        // The pinned version was served before: if the registry cannot describe it now,
        // what the history recorded about it is enough to serve it.
        let info = match pin_lookup {
            Some(Lookup::Found(v)) if v.version == pin.version => v.clone(),
            _ => VersionInfo {
                version: pin.version.clone(),
                uri: None,
                digest: status
                    .history
                    .iter()
                    .rev()
                    .find(|h| h.version == pin.version)
                    .and_then(|h| h.digest.clone()),
            },
        };
        return Decision {
            version: Some(info),
            source: Source::RollbackPin,
            rollback_pin,
            registry,
            registry_unreachable,
            alias_version,
        };
    }

    let (version, source) = match (target, spec_lookup) {
        (ModelTarget::Pinned { .. }, Lookup::Found(v)) => (Some(v.clone()), Source::SpecPin),
        // The spec names the version itself: it can be served without the registry's details.
        (ModelTarget::Pinned { version, .. }, _) => {
            let info = match last_resolved() {
                Some(last) if &last.version == version => last,
                _ => VersionInfo {
                    version: version.clone(),
                    uri: None,
                    digest: None,
                },
            };
            (Some(info), Source::SpecPin)
        }
        (ModelTarget::Alias { .. }, Lookup::Found(v)) => (Some(v.clone()), Source::Alias),
        // Never change (or drop) what runs because the registry did not answer.
        (ModelTarget::Alias { .. }, _) => (last_resolved(), Source::LastResolved),
    };
    Decision {
        version,
        source,
        rollback_pin,
        registry,
        registry_unreachable,
        alias_version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::{pin, status_from_yaml};

    fn alias() -> ModelTarget {
        ModelTarget::Alias {
            name: "iris".into(),
            alias: "production".into(),
        }
    }
    fn found(v: &str) -> Lookup {
        Lookup::Found(VersionInfo {
            version: v.into(),
            uri: Some(format!("file:///models/iris/{v}")),
            digest: None,
        })
    }

    #[test]
    fn alias_resolves_to_the_registry_version() {
        let d = decide(
            &alias(),
            &ModelDeploymentStatus::default(),
            &found("2"),
            None,
        );
        assert_eq!(d.version.unwrap().version, "2");
        assert_eq!(d.source, Source::Alias);
        assert_eq!(d.registry, Ok(()));
    }

    #[test]
    fn spec_pin_wins_over_alias_and_rollback_pin() {
        let target = ModelTarget::Pinned {
            name: "iris".into(),
            version: "1".into(),
        };
        let status = ModelDeploymentStatus {
            rollback_pin: Some(pin("2", "3", "production")),
            ..Default::default()
        };
        let d = decide(&target, &status, &found("1"), None);
        assert_eq!(d.version.unwrap().version, "1");
        assert_eq!(d.source, Source::SpecPin);
        assert_eq!(d.rollback_pin, None, "a spec pin voids the rollback pin");
    }

    #[test]
    fn rollback_pin_holds_while_the_alias_names_the_failed_version() {
        let status = ModelDeploymentStatus {
            rollback_pin: Some(pin("2", "3", "production")),
            ..Default::default()
        };
        let d = decide(&alias(), &status, &found("3"), Some(&found("2")));
        assert_eq!(d.version.as_ref().unwrap().version, "2");
        assert_eq!(d.source, Source::RollbackPin);
        assert!(d.rollback_pin.is_some());
    }

    #[test]
    fn rollback_pin_is_cleared_when_the_alias_moves_on() {
        let status = ModelDeploymentStatus {
            rollback_pin: Some(pin("2", "3", "production")),
            ..Default::default()
        };
        let d = decide(&alias(), &status, &found("4"), None);
        assert_eq!(d.version.unwrap().version, "4");
        assert_eq!(d.source, Source::Alias);
        assert_eq!(d.rollback_pin, None);
    }

    #[test]
    fn rollback_pin_is_cleared_when_the_spec_follows_another_alias() {
        let status = ModelDeploymentStatus {
            rollback_pin: Some(pin("2", "3", "production")),
            ..Default::default()
        };
        let staging = ModelTarget::Alias {
            name: "iris".into(),
            alias: "staging".into(),
        };
        let d = decide(&staging, &status, &found("3"), None);
        assert_eq!(d.version.unwrap().version, "3");
        assert_eq!(d.rollback_pin, None);
    }

    #[test]
    fn registry_down_keeps_the_last_version_and_the_pin() {
        let status = status_from_yaml(
            "version: '2'\nmodelUri: file:///models/iris/2\nrollbackPin: {version: '2', replacesVersion: '3', alias: production, setBy: AutoRollback, reason: RolloutFailed, since: '2026-01-01T00:00:00Z'}",
        );
        let d = decide(
            &alias(),
            &status,
            &Lookup::Unreachable("connection refused".into()),
            None,
        );
        assert_eq!(d.version.unwrap().version, "2");
        assert!(
            d.rollback_pin.is_some(),
            "no flapping on missing information"
        );
        assert!(d.registry_unreachable);
        assert_eq!(d.registry.unwrap_err().0, "RegistryUnreachable");

        let status = status_from_yaml("version: '2'\nmodelUri: file:///models/iris/2");
        let d = decide(
            &alias(),
            &status,
            &Lookup::Unreachable("timeout".into()),
            None,
        );
        assert_eq!(d.version.as_ref().unwrap().version, "2");
        assert_eq!(
            d.version.unwrap().uri.as_deref(),
            Some("file:///models/iris/2")
        );
        assert_eq!(d.source, Source::LastResolved);
    }

    #[test]
    fn first_resolve_failing_leaves_nothing_to_serve() {
        let d = decide(
            &alias(),
            &ModelDeploymentStatus::default(),
            &Lookup::Rejected {
                reason: "AliasNotFound",
                message: "no alias".into(),
            },
            None,
        );
        assert_eq!(d.version, None);
        assert_eq!(d.registry.unwrap_err().0, "AliasNotFound");
        assert!(!d.registry_unreachable);
    }
}
