//! The next ChatService status (pure).
//!
//! A local backend's model is rolled out exactly as a ModelDeployment's: the rollout part of
//! the status (version, history, rollback pin, the Ready/Reconciling/Stalled/Degraded/
//! Progressing/RegistryReachable conditions) is computed by the one implementation in
//! [`crate::controller::status`], over a [`ModelDeploymentStatus`] view of those fields. What
//! only a ChatService has (its URL, `BackendReachable`, the remote backends) is added here.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mooring_crds::ChatServiceStatus;
use mooring_crds::chat_service::condition;
use mooring_crds::model_deployment::ModelDeploymentStatus;

use crate::controller::conditions;
use crate::controller::rollout::{Observation, Rollout};
use crate::controller::status::{Severity, Transition};

/// The rollout fields of `s`, as the shared rollout status logic reads them.
pub fn rollout_view(s: &ChatServiceStatus) -> ModelDeploymentStatus {
    ModelDeploymentStatus {
        observed_generation: s.observed_generation,
        target_version: s.target_version.clone(),
        version: s.version.clone(),
        model_uri: s.model_uri.clone(),
        model_digest: s.model_digest.clone(),
        history: s.history.clone(),
        rollback_pin: s.rollback_pin.clone(),
        replicas: s.replicas,
        ready_replicas: s.ready_replicas,
        updated_replicas: s.updated_replicas,
        endpoints: None,
        observed_retry: s.observed_retry.clone(),
        observed_rollback_request: None,
        conditions: s.conditions.clone(),
    }
}

/// `view` (the shared logic's result) back into a ChatService status with its `url`.
pub fn from_view(view: ModelDeploymentStatus, url: Option<String>) -> ChatServiceStatus {
    ChatServiceStatus {
        observed_generation: view.observed_generation,
        url,
        target_version: view.target_version,
        version: view.version,
        model_uri: view.model_uri,
        model_digest: view.model_digest,
        history: view.history,
        rollback_pin: view.rollback_pin,
        replicas: view.replicas,
        ready_replicas: view.ready_replicas,
        updated_replicas: view.updated_replicas,
        observed_retry: view.observed_retry,
        conditions: view.conditions,
    }
}

/// A remote backend's rollout: no model version, the Deployment's judgement only.
pub fn remote(
    old: &ChatServiceStatus,
    obs: &Observation,
    generation: Option<i64>,
    now: &Time,
) -> ChatServiceStatus {
    let mut new = old.clone();
    new.observed_generation = generation;
    let r = obs.replicas;
    new.replicas = Some(r.desired);
    new.ready_replicas = Some(r.ready);
    new.updated_replicas = Some(r.updated);
    let counts = format!("{}/{} replicas ready", r.ready, r.desired);
    let (ready, reconciling, stalled, reason, message) = match &obs.rollout {
        Rollout::Complete if r.desired == 0 => (true, false, false, "ScaledToZero", counts),
        Rollout::Complete => (true, false, false, "Available", counts),
        Rollout::Progressing => (false, true, false, "RollingOut", counts),
        Rollout::Failed(m) => (false, false, true, "RolloutFailed", m.clone()),
    };
    let mut set = |type_: &str, ok: bool, reason: &str, message: String| {
        conditions::set(
            &mut new.conditions,
            type_,
            ok,
            reason,
            message,
            generation,
            now,
        )
    };
    set(condition::READY, ready, reason, message.clone());
    set(
        condition::RECONCILING,
        reconciling,
        if reconciling { reason } else { "Reconciled" },
        if reconciling {
            message.clone()
        } else {
            String::new()
        },
    );
    set(
        condition::STALLED,
        stalled,
        if stalled { reason } else { "AsExpected" },
        if stalled {
            message.clone()
        } else {
            String::new()
        },
    );
    set(
        condition::PROGRESSING,
        reconciling,
        if reconciling {
            "RollingOut"
        } else {
            "RolloutComplete"
        },
        String::new(),
    );
    set(
        condition::DEGRADED,
        stalled,
        if stalled { reason } else { "AsExpected" },
        if stalled { message } else { String::new() },
    );
    new
}

/// `BackendReachable` from the pods' readiness: `/readyz` passes only when the backend and
/// the session store answer.
pub fn set_backend_reachable(
    status: &mut ChatServiceStatus,
    obs: &Observation,
    backend: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let r = obs.replicas;
    let (ok, reason, message) = if r.ready > 0 {
        (
            true,
            "PodsReady",
            format!(
                "{} of {} pods pass /readyz: {backend} answers",
                r.ready, r.desired
            ),
        )
    } else if r.desired == 0 {
        (false, "ScaledToZero", "no pod runs".to_string())
    } else {
        (
            false,
            "NoPodReady",
            format!(
                "no pod passes /readyz yet: the model is loading, or {backend} or the session store does not answer (see the pods' /readyz)"
            ),
        )
    };
    conditions::set(
        &mut status.conditions,
        condition::BACKEND_REACHABLE,
        ok,
        reason,
        message,
        generation,
        now,
    );
}

/// Events of the ChatService-only parts: `BackendReachable` flips (a first `True` is routine)
/// and a remote backend's failed rollout.
pub fn transitions(
    old: &ChatServiceStatus,
    new: &ChatServiceStatus,
    remote: bool,
) -> Vec<Transition> {
    let mut out = Vec::new();
    let before = conditions::get(&old.conditions, condition::BACKEND_REACHABLE);
    if let Some(after) = conditions::get(&new.conditions, condition::BACKEND_REACHABLE) {
        let changed = before.is_none_or(|b| b.status != after.status);
        let routine = before.is_none() && after.status == "True";
        // Pods starting up are not a warning either: only a loss of reachability is.
        let starting = before.is_none() && after.reason == "NoPodReady";
        if changed && !routine && !starting {
            let ok = after.status == "True";
            out.push(Transition {
                severity: if ok {
                    Severity::Normal
                } else {
                    Severity::Warning
                },
                reason: if ok {
                    "BackendReachable"
                } else {
                    "BackendUnreachable"
                }
                .into(),
                action: "CheckBackend".into(),
                note: after.message.clone(),
            });
        }
    }
    if remote {
        let was = conditions::get(&old.conditions, condition::READY).map(|c| c.reason.as_str());
        if let Some(ready) = conditions::get(&new.conditions, condition::READY)
            && ready.reason == "RolloutFailed"
            && was != Some("RolloutFailed")
        {
            out.push(Transition {
                severity: Severity::Warning,
                reason: "RolloutFailed".into(),
                action: "RollOut".into(),
                note: ready.message.clone(),
            });
        }
    }
    out
}
