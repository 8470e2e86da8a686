//! Resolve the version in force: the spec's pin, else the status's rollback pin (while the
//! alias still names the version it replaced), else the version the alias names now.
//!
//! [`lookup`] asks the registry (the only I/O here); [`decide`] is pure.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mooring_crds::model_deployment::{
    ModelDeploymentStatus, PinSource, RollbackPin, RollbackRequest,
};
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
    /// The version the spec asks for: its pin, or the alias's version (the last known one
    /// while the registry does not answer).
    pub target_version: Option<String>,
    /// The annotations acted on, to record in the status.
    pub seen: Seen,
}

/// The annotation values a decision acted on, so each is acted on once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Seen {
    pub retry: Option<String>,
    pub rollback_request: Option<String>,
}

/// What besides the registry can set or clear a rollback pin: the pod template, the user's
/// retry annotation, a DriftMonitor's rollback request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PinContext {
    /// [`super::children::template_hash`] of the spec now.
    pub template_hash: String,
    /// The value of the `mooring.dev/retry` annotation now.
    pub retry: Option<String>,
    /// A DriftMonitor's request, from the `mooring.dev/rollback-request` annotation.
    pub rollback_request: Option<RollbackRequest>,
    /// When a pin set now is set.
    pub now: Option<Time>,
}

/// Does `pin` still hold for `target`, whose alias now names `alias_version`? It is cleared
/// by an alias move, a spec that pins a version or follows another alias, a change of the
/// pod template, or a new value of the retry annotation.
pub fn pin_holds(
    pin: &RollbackPin,
    target: &ModelTarget,
    alias_version: Option<&str>,
    status: &ModelDeploymentStatus,
    ctx: &PinContext,
) -> bool {
    match target {
        // A pin in the spec is an explicit choice: it wins, and any rollback pin is void.
        ModelTarget::Pinned { .. } => false,
        ModelTarget::Alias { alias, .. } => {
            let same_alias = pin.alias.as_deref() == Some(alias.as_str());
            // Unknown (registry down) keeps the pin: never flap back on missing information.
            let alias_not_moved = alias_version.is_none_or(|v| v == pin.replaces_version);
            let same_template = pin
                .template_hash
                .as_ref()
                .is_none_or(|h| *h == ctx.template_hash);
            let no_retry = ctx.retry.is_none() || ctx.retry == status.observed_retry;
            same_alias && alias_not_moved && same_template && no_retry
        }
    }
}

/// A new pin asked for by a DriftMonitor's rollback request: honoured once per request id,
/// only while the spec follows an alias that (as far as is known) still names the drifted
/// version and that version is the one serving.
pub fn requested_pin(
    target: &ModelTarget,
    alias_version: Option<&str>,
    status: &ModelDeploymentStatus,
    ctx: &PinContext,
) -> Option<RollbackPin> {
    let request = ctx.rollback_request.as_ref()?;
    let ModelTarget::Alias { alias, .. } = target else {
        return None;
    };
    let fresh = status.observed_rollback_request.as_deref() != Some(request.id.as_str());
    let serving = status.version.as_deref() == Some(request.from_version.as_str());
    let alias_names_it = alias_version.is_none_or(|v| v == request.from_version);
    let differs = request.to_version != request.from_version;
    (fresh && serving && alias_names_it && differs).then(|| RollbackPin {
        version: request.to_version.clone(),
        replaces_version: request.from_version.clone(),
        alias: Some(alias.clone()),
        set_by: PinSource::DriftMonitor,
        reason: request.reason.clone(),
        since: ctx.now.clone().unwrap_or(Time(jiff::Timestamp::UNIX_EPOCH)),
        request_id: Some(request.id.clone()),
        template_hash: Some(ctx.template_hash.clone()),
    })
}

/// The rollback pin in force after this reconcile: the status's pin if it still holds, else
/// a DriftMonitor's new request, else none.
pub fn pin_in_force(
    target: &ModelTarget,
    alias_version: Option<&str>,
    status: &ModelDeploymentStatus,
    ctx: &PinContext,
) -> Option<RollbackPin> {
    status
        .rollback_pin
        .clone()
        .filter(|pin| pin_holds(pin, target, alias_version, status, ctx))
        .or_else(|| requested_pin(target, alias_version, status, ctx))
}

/// Decide the version in force from the spec, the current status and the registry's answer
/// for the spec's reference (`spec_lookup`) and, when a rollback pin holds, for the pinned
/// version (`pin_lookup`).
pub fn decide(
    target: &ModelTarget,
    status: &ModelDeploymentStatus,
    spec_lookup: &Lookup,
    pin_lookup: Option<&Lookup>,
    ctx: &PinContext,
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
    let rollback_pin = pin_in_force(target, alias_version.as_deref(), status, ctx);
    let registry = match spec_lookup {
        Lookup::Found(_) => Ok(()),
        Lookup::Unreachable(message) => Err(("RegistryUnreachable", message.clone())),
        Lookup::Rejected { reason, message } => Err((*reason, message.clone())),
    };
    let registry_unreachable = matches!(spec_lookup, Lookup::Unreachable(_));
    let target_version = match target {
        ModelTarget::Pinned { version, .. } => Some(version.clone()),
        // Unknown while the registry does not answer: the last one known.
        ModelTarget::Alias { .. } => alias_version.clone().or(status.target_version.clone()),
    };
    let seen = Seen {
        retry: ctx.retry.clone(),
        rollback_request: rollback_pin
            .as_ref()
            .and_then(|p| p.request_id.clone())
            .or(status.observed_rollback_request.clone()),
    };

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
            target_version,
            seen,
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
        target_version,
        seen,
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
            &PinContext::default(),
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
        let d = decide(&target, &status, &found("1"), None, &PinContext::default());
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
        let d = decide(
            &alias(),
            &status,
            &found("3"),
            Some(&found("2")),
            &PinContext::default(),
        );
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
        let d = decide(&alias(), &status, &found("4"), None, &PinContext::default());
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
        let d = decide(&staging, &status, &found("3"), None, &PinContext::default());
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
            &PinContext::default(),
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
            &PinContext::default(),
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
            &PinContext::default(),
        );
        assert_eq!(d.version, None);
        assert_eq!(d.registry.unwrap_err().0, "AliasNotFound");
        assert!(!d.registry_unreachable);
    }

    fn pinned_status() -> ModelDeploymentStatus {
        let mut p = pin("2", "3", "production");
        p.template_hash = Some("aaaa".into());
        ModelDeploymentStatus {
            version: Some("2".into()),
            rollback_pin: Some(p),
            ..Default::default()
        }
    }
    fn ctx(hash: &str) -> PinContext {
        PinContext {
            template_hash: hash.into(),
            ..PinContext::default()
        }
    }

    #[test]
    fn a_new_pod_template_clears_the_pin() {
        let status = pinned_status();
        let d = decide(&alias(), &status, &found("3"), None, &ctx("aaaa"));
        assert_eq!(
            d.source,
            Source::RollbackPin,
            "same template: the pin holds"
        );
        let d = decide(&alias(), &status, &found("3"), None, &ctx("bbbb"));
        assert_eq!(d.rollback_pin, None, "more memory, say: retry version 3");
        assert_eq!(d.version.unwrap().version, "3");
    }

    #[test]
    fn a_new_retry_annotation_clears_the_pin_once() {
        let mut status = pinned_status();
        let mut c = ctx("aaaa");
        c.retry = Some("1".into());
        let d = decide(&alias(), &status, &found("3"), None, &c);
        assert_eq!(d.rollback_pin, None);
        assert_eq!(d.seen.retry.as_deref(), Some("1"));
        // Once recorded, the same value does not clear a later pin.
        status.observed_retry = Some("1".into());
        let d = decide(&alias(), &status, &found("3"), None, &c);
        assert_eq!(d.source, Source::RollbackPin);
    }

    #[test]
    fn a_drift_monitor_request_pins_the_version_before_once() {
        let status = ModelDeploymentStatus {
            version: Some("3".into()),
            target_version: Some("3".into()),
            ..Default::default()
        };
        let mut c = ctx("aaaa");
        c.rollback_request = Some(RollbackRequest {
            id: "ml/iris-drift/job-1".into(),
            from_version: "3".into(),
            to_version: "2".into(),
            reason: "drift share 0.75".into(),
        });
        let d = decide(&alias(), &status, &found("3"), None, &c);
        let pin = d.rollback_pin.clone().expect("pinned");
        assert_eq!(
            (pin.version.as_str(), pin.replaces_version.as_str()),
            ("2", "3")
        );
        assert_eq!(pin.set_by, PinSource::DriftMonitor);
        assert_eq!(pin.request_id.as_deref(), Some("ml/iris-drift/job-1"));
        assert_eq!(d.version.unwrap().version, "2");
        assert_eq!(
            d.seen.rollback_request.as_deref(),
            Some("ml/iris-drift/job-1")
        );
        assert_eq!(d.target_version.as_deref(), Some("3"));

        // Honoured once: after the pin is cleared (the retry annotation), the same request
        // does not pin again.
        let after = ModelDeploymentStatus {
            observed_rollback_request: Some("ml/iris-drift/job-1".into()),
            ..status.clone()
        };
        let d2 = decide(&alias(), &after, &found("3"), None, &c);
        assert_eq!(d2.rollback_pin, None);
        // A request about a version that is not serving is void.
        let other = ModelDeploymentStatus {
            version: Some("4".into()),
            ..status
        };
        assert_eq!(
            decide(&alias(), &other, &found("4"), None, &c).rollback_pin,
            None
        );
    }
}
