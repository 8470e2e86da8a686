//! Compute the next status from the old one and what this reconcile decided and observed
//! (pure), and the Events that the change deserves: transitions only.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mooring_crds::model_deployment::{
    Endpoints, HISTORY_LIMIT, HistoryEntry, ModelDeploymentStatus, PinSource, RollbackPin,
    RolloutOutcome, condition,
};

use super::conditions;
use super::resolve::{Decision, Source, VersionInfo};
use super::rollout::{Observation, Rollout};
use super::validate::ModelTarget;

/// What happened in this reconcile.
#[derive(Clone, Debug)]
pub enum Step<'a> {
    /// The spec (or something it references) is wrong: nothing was applied.
    Invalid { reason: &'a str, message: String },
    /// The API server refused or failed a write or read (422, 403, a webhook, a conflict, an
    /// outage): the reconcile is retried with backoff; what runs is untouched.
    Failed { message: String },
    /// The version in force was decided; `observation` is `None` when nothing was applied
    /// (registry unreachable, or no version to serve yet).
    Resolved {
        target: &'a ModelTarget,
        decision: &'a Decision,
        observation: Option<&'a Observation>,
    },
}

/// The condition reason of [`Step::Failed`].
pub const RECONCILE_ERROR: &str = "ReconcileError";

/// Everything the next status depends on besides the old status.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    pub generation: Option<i64>,
    pub now: Time,
    pub auto_rollback: bool,
    pub endpoints: Endpoints,
    /// [`super::children::template_hash`] of the spec, recorded in a new rollback pin.
    pub template_hash: String,
    pub step: Step<'a>,
}

/// The next status.
pub fn next(old: &ModelDeploymentStatus, inputs: &Inputs<'_>) -> ModelDeploymentStatus {
    let mut new = old.clone();
    let (generation, now) = (inputs.generation, &inputs.now);
    let set = |conds: &mut Vec<_>, type_: &str, ok: bool, reason: &str, message: String| {
        conditions::set(conds, type_, ok, reason, message, generation, now)
    };
    match &inputs.step {
        Step::Invalid { reason, message } => {
            // Acted on: this generation cannot be applied until the user changes it.
            new.observed_generation = generation;
            let conds = &mut new.conditions;
            set(conds, condition::READY, false, reason, message.clone());
            set(conds, condition::STALLED, true, reason, message.clone());
            set(conds, condition::RECONCILING, false, reason, String::new());
        }
        Step::Failed { message } => {
            // Nothing was (fully) applied: observedGeneration stays where it was.
            let conds = &mut new.conditions;
            set(
                conds,
                condition::READY,
                false,
                RECONCILE_ERROR,
                message.clone(),
            );
            set(
                conds,
                condition::RECONCILING,
                true,
                RECONCILE_ERROR,
                "retrying with backoff".into(),
            );
            set(
                conds,
                condition::STALLED,
                false,
                RECONCILE_ERROR,
                String::new(),
            );
        }
        Step::Resolved {
            target,
            decision,
            observation,
        } => {
            let conds = &mut new.conditions;
            match &decision.registry {
                Ok(()) => {
                    let message = format!(
                        "{} is version {}",
                        target.model_ref(),
                        decision.target_version.clone().unwrap_or_default()
                    );
                    set(
                        conds,
                        condition::REGISTRY_REACHABLE,
                        true,
                        "Resolved",
                        message,
                    );
                }
                Err((reason, message)) => {
                    let reachable = !decision.registry_unreachable;
                    set(
                        conds,
                        condition::REGISTRY_REACHABLE,
                        reachable,
                        reason,
                        message.clone(),
                    );
                }
            }
            new.rollback_pin = decision.rollback_pin.clone();
            new.target_version = decision.target_version.clone();
            if decision.seen.retry.is_some() {
                new.observed_retry = decision.seen.retry.clone();
            }
            if decision.seen.rollback_request.is_some() {
                new.observed_rollback_request = decision.seen.rollback_request.clone();
            }
            match (&decision.version, observation) {
                (None, _) => {
                    let (reason, message) = decision
                        .registry
                        .clone()
                        .err()
                        .unwrap_or(("NoVersion", String::new()));
                    let message = format!("nothing to serve yet: {message}");
                    // An outage passes by itself; a missing alias or version needs the user.
                    let stalled = !decision.registry_unreachable;
                    set(conds, condition::READY, false, reason, message.clone());
                    set(conds, condition::STALLED, stalled, reason, message);
                    set(
                        conds,
                        condition::RECONCILING,
                        !stalled,
                        reason,
                        "waiting for the registry".into(),
                    );
                    if stalled {
                        new.observed_generation = generation;
                    }
                }
                // Nothing applied: what runs keeps running, the other conditions stand, and
                // this generation is not observed yet.
                (Some(_), None) => {}
                (Some(version), Some(obs)) => {
                    new.observed_generation = generation;
                    new.version = Some(version.version.clone());
                    new.model_uri = version.uri.clone().or(new
                        .model_uri
                        .filter(|_| old.version.as_ref() == Some(&version.version)));
                    new.model_digest = version.digest.clone();
                    new.replicas = Some(obs.replicas.desired);
                    new.ready_replicas = Some(obs.replicas.ready);
                    new.updated_replicas = Some(obs.replicas.updated);
                    new.endpoints = Some(inputs.endpoints.clone());
                    record_rollout(&mut new, version, obs, now);
                    if let Rollout::Failed(message) = &obs.rollout {
                        maybe_pin(&mut new, target, decision, message, inputs, now);
                    }
                    rollout_conditions(&mut new, version, obs, generation, now);
                }
            }
        }
    }
    new
}

/// Update `history` with the version in force and how its rollout goes.
fn record_rollout(
    status: &mut ModelDeploymentStatus,
    version: &VersionInfo,
    obs: &Observation,
    now: &Time,
) {
    let history = &mut status.history;
    if history.last().map(|h| &h.version) != Some(&version.version) {
        if let Some(last) = history.last_mut()
            && matches!(
                last.outcome,
                RolloutOutcome::Progressing | RolloutOutcome::Ready
            )
        {
            last.outcome = RolloutOutcome::Superseded;
        }
        history.push(HistoryEntry {
            version: version.version.clone(),
            digest: version.digest.clone(),
            started_at: now.clone(),
            ready_at: None,
            outcome: RolloutOutcome::Progressing,
            message: None,
        });
        if history.len() > HISTORY_LIMIT {
            history.drain(..history.len() - HISTORY_LIMIT);
        }
    }
    let last = history.last_mut().expect("pushed above");
    match &obs.rollout {
        Rollout::Complete if last.outcome != RolloutOutcome::Ready => {
            last.outcome = RolloutOutcome::Ready;
            last.ready_at.get_or_insert_with(|| now.clone());
            last.message = None;
        }
        Rollout::Failed(message) if last.outcome == RolloutOutcome::Progressing => {
            last.outcome = RolloutOutcome::Failed;
            last.message = Some(message.clone());
        }
        _ => {}
    }
}

/// After a failed rollout of the alias's version, pin the last version that became ready.
fn maybe_pin(
    status: &mut ModelDeploymentStatus,
    target: &ModelTarget,
    decision: &Decision,
    message: &str,
    inputs: &Inputs<'_>,
    now: &Time,
) {
    let ModelTarget::Alias { alias, .. } = target else {
        return;
    };
    if !inputs.auto_rollback || decision.source != Source::Alias || status.rollback_pin.is_some() {
        return;
    }
    let Some(failed) = decision.version.as_ref().map(|v| v.version.clone()) else {
        return;
    };
    // Only the rollout of a new version: a version that became ready and later fails to
    // scale is not rolled back (that is a capacity problem, not a bad model).
    let rollout_failed = status
        .history
        .last()
        .is_some_and(|h| h.version == failed && h.outcome == RolloutOutcome::Failed);
    if !rollout_failed {
        return;
    }
    let Some(good) = status
        .history
        .iter()
        .rev()
        .find(|h| h.version != failed && h.ready_at.is_some())
    else {
        return;
    };
    status.rollback_pin = Some(RollbackPin {
        version: good.version.clone(),
        replaces_version: failed,
        alias: Some(alias.clone()),
        set_by: PinSource::AutoRollback,
        reason: message.to_string(),
        since: now.clone(),
        request_id: None,
        template_hash: Some(inputs.template_hash.clone()),
    });
}

fn rollout_conditions(
    status: &mut ModelDeploymentStatus,
    version: &VersionInfo,
    obs: &Observation,
    generation: Option<i64>,
    now: &Time,
) {
    let v = &version.version;
    let r = obs.replicas;
    let was_ready = status
        .history
        .last()
        .is_some_and(|h| h.version == *v && h.ready_at.is_some());
    let counts = format!("{}/{} replicas ready", r.ready, r.desired);
    // (Ready, Reconciling, Stalled, reason, message): kstatus' three plus ours.
    let (ready, reconciling, stalled, reason, message) = match (&status.rollback_pin, &obs.rollout)
    {
        (Some(pin), rollout) => (
            false,
            *rollout == Rollout::Progressing,
            *rollout != Rollout::Progressing,
            "RolledBack",
            format!(
                "version {} {} ({}); serving version {} until the alias moves past {}, the pod template changes or mooring.dev/retry is set",
                pin.replaces_version,
                match pin.set_by {
                    mooring_crds::model_deployment::PinSource::AutoRollback => "failed",
                    mooring_crds::model_deployment::PinSource::DriftMonitor => "drifted",
                },
                pin.reason,
                pin.version,
                pin.replaces_version
            ),
        ),
        (None, Rollout::Failed(m)) => (
            false,
            false,
            true,
            "RolloutFailed",
            format!("version {v}: {m}; no earlier version to roll back to"),
        ),
        (None, Rollout::Progressing) if was_ready => {
            (false, true, false, "ReplicasNotReady", counts.clone())
        }
        (None, Rollout::Progressing) => (
            false,
            true,
            false,
            "RollingOut",
            format!(
                "rolling out version {v}: {}/{} updated, {counts}",
                r.updated, r.desired
            ),
        ),
        (None, Rollout::Complete) if r.desired == 0 => {
            (true, false, false, "ScaledToZero", counts.clone())
        }
        (None, Rollout::Complete) => (
            true,
            false,
            false,
            "Available",
            format!("version {v}: {counts}"),
        ),
    };
    let mut set = |type_: &str, ok: bool, reason: &str, message: String| {
        conditions::set(
            &mut status.conditions,
            type_,
            ok,
            reason,
            message,
            generation,
            now,
        )
    };
    set(condition::READY, ready, reason, message.clone());
    let reconciling_reason = if reconciling { reason } else { "Reconciled" };
    set(
        condition::RECONCILING,
        reconciling,
        reconciling_reason,
        if reconciling {
            message.clone()
        } else {
            String::new()
        },
    );
    let stalled_reason = if stalled { reason } else { "AsExpected" };
    set(
        condition::STALLED,
        stalled,
        stalled_reason,
        if stalled {
            message.clone()
        } else {
            String::new()
        },
    );
    let (progressing, p_reason, p_message) = match &obs.rollout {
        Rollout::Progressing => (
            true,
            "RollingOut",
            format!(
                "rolling out version {v}: {}/{} updated",
                r.updated, r.desired
            ),
        ),
        Rollout::Complete => (
            false,
            "RolloutComplete",
            format!("version {v} is rolled out"),
        ),
        Rollout::Failed(m) => (false, "RolloutFailed", format!("version {v}: {m}")),
    };
    set(condition::PROGRESSING, progressing, p_reason, p_message);
    let degraded = matches!(reason, "RolledBack" | "RolloutFailed");
    set(
        condition::DEGRADED,
        degraded,
        if degraded { reason } else { "AsExpected" },
        if degraded { message } else { String::new() },
    );
}

/// Whether an Event is routine or needs attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

/// An Event to publish about the ModelDeployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub severity: Severity,
    pub reason: String,
    /// What was done, with the version it concerns (`RollOut/2`): kube's event recorder
    /// folds Events with the same reason and action into one series, so a rollback to 1
    /// must not share them with the rollout of 1 before it.
    pub action: String,
    pub note: String,
}

/// Ready reasons told by the rollout and pin Events already, or routine: no Event of
/// their own (a brand-new ModelDeployment whose pods are starting is not a warning).
const READY_REASONS_TOLD_ELSEWHERE: [&str; 4] =
    ["RollingOut", "RolledBack", "RolloutFailed", "Available"];

/// The Events the change from `old` to `new` deserves: one per transition, none when
/// nothing changed (so a steady resource emits nothing).
pub fn transitions(old: &ModelDeploymentStatus, new: &ModelDeploymentStatus) -> Vec<Transition> {
    let mut out = Vec::new();
    let mut push = |severity, reason: &str, action: String, note: String| {
        out.push(Transition {
            severity,
            reason: reason.into(),
            action,
            note,
        })
    };
    let (old_last, new_last) = (old.history.last(), new.history.last());
    if let Some(n) = new_last {
        let same_entry =
            old_last.is_some_and(|o| o.version == n.version && o.started_at == n.started_at);
        // Rolling out the pinned version is the rollback itself.
        let verb = match &new.rollback_pin {
            Some(pin) if pin.version == n.version => "RollBack",
            _ => "RollOut",
        };
        if !same_entry {
            let from = old
                .version
                .as_deref()
                .map(|v| format!(" (was {v})"))
                .unwrap_or_default();
            push(
                Severity::Normal,
                "RollingOut",
                format!("{verb}/{}", n.version),
                format!("rolling out version {}{from}", n.version),
            );
        }
        let old_outcome = old_last.filter(|_| same_entry).map(|o| o.outcome);
        if old_outcome != Some(n.outcome) {
            match n.outcome {
                RolloutOutcome::Ready => push(
                    Severity::Normal,
                    "RolloutComplete",
                    format!("{verb}/{}", n.version),
                    format!("version {} is ready", n.version),
                ),
                RolloutOutcome::Failed => push(
                    Severity::Warning,
                    "RolloutFailed",
                    format!("RollOut/{}", n.version),
                    format!(
                        "version {}: {}",
                        n.version,
                        n.message.clone().unwrap_or_default()
                    ),
                ),
                _ => {}
            }
        }
    }
    match (&old.rollback_pin, &new.rollback_pin) {
        (old_pin, Some(pin)) if old_pin.as_ref() != Some(pin) => push(
            Severity::Warning,
            "RolledBack",
            format!("RollBack/{}", pin.version),
            format!(
                "rolled back to version {}: version {} {} ({})",
                pin.version,
                pin.replaces_version,
                match pin.set_by {
                    mooring_crds::model_deployment::PinSource::AutoRollback => "failed",
                    mooring_crds::model_deployment::PinSource::DriftMonitor =>
                        "drifted, by DriftMonitor request",
                },
                pin.reason
            ),
        ),
        (Some(pin), None) => push(
            Severity::Normal,
            "RollbackPinCleared",
            format!("ClearPin/{}", pin.version),
            format!(
                "the alias, the pod template or mooring.dev/retry moved past version {}; the rollback pin to {} is cleared",
                pin.replaces_version, pin.version
            ),
        ),
        _ => {}
    }
    for type_ in [condition::REGISTRY_REACHABLE, condition::READY] {
        let before = conditions::get(&old.conditions, type_);
        let Some(after) = conditions::get(&new.conditions, type_) else {
            continue;
        };
        let changed = before.is_none_or(|b| {
            b.status != after.status || (after.status == "False" && b.reason != after.reason)
        });
        if !changed {
            continue;
        }
        // A first `True` is routine and already told by RolloutComplete / nothing at all.
        if after.status == "True" && before.is_none() {
            continue;
        }
        if type_ == condition::READY
            && READY_REASONS_TOLD_ELSEWHERE.contains(&after.reason.as_str())
        {
            continue;
        }
        let severity = if after.status == "True" {
            Severity::Normal
        } else {
            Severity::Warning
        };
        let reason = if after.status == "True" {
            type_.to_string()
        } else {
            after.reason.clone()
        };
        push(
            severity,
            &reason,
            format!("{type_}/{}", after.status),
            after.message.clone(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::at;
    use crate::controller::resolve::Lookup;
    use crate::controller::rollout::Replicas;

    fn alias() -> ModelTarget {
        ModelTarget::Alias {
            name: "iris".into(),
            alias: "production".into(),
        }
    }
    fn info(v: &str) -> VersionInfo {
        VersionInfo {
            version: v.into(),
            uri: Some(format!("file:///models/iris/{v}")),
            digest: None,
        }
    }
    fn decision(v: &str, source: Source) -> Decision {
        Decision {
            version: Some(info(v)),
            source,
            rollback_pin: None,
            registry: Ok(()),
            registry_unreachable: false,
            alias_version: Some(v.into()),
            target_version: Some(v.into()),
            seen: Default::default(),
        }
    }
    fn obs(rollout: Rollout) -> Observation {
        Observation {
            rollout,
            replicas: Replicas {
                desired: 1,
                ready: 1,
                updated: 1,
            },
        }
    }
    /// The inputs of a reconcile of generation `generation` at time `t`.
    fn inputs(generation: i64, t: i64, step: Step<'_>) -> Inputs<'_> {
        Inputs {
            generation: Some(generation),
            now: at(t),
            auto_rollback: true,
            endpoints: Endpoints::default(),
            template_hash: "t1".into(),
            step,
        }
    }
    fn step_at(
        old: &ModelDeploymentStatus,
        d: &Decision,
        o: &Observation,
        t: i64,
    ) -> ModelDeploymentStatus {
        let target = alias();
        let inputs = inputs(
            1,
            t,
            Step::Resolved {
                target: &target,
                decision: d,
                observation: Some(o),
            },
        );
        next(old, &inputs)
    }
    fn cond<'a>(
        s: &'a ModelDeploymentStatus,
        t: &str,
    ) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        conditions::get(&s.conditions, t).unwrap()
    }

    #[test]
    fn failed_rollout_pins_the_last_ready_version_and_degrades() {
        let s1 = step_at(
            &ModelDeploymentStatus::default(),
            &decision("1", Source::Alias),
            &obs(Rollout::Complete),
            10,
        );
        assert_eq!(s1.history[0].outcome, RolloutOutcome::Ready);
        let s2 = step_at(
            &s1,
            &decision("2", Source::Alias),
            &obs(Rollout::Progressing),
            20,
        );
        assert_eq!(s2.history.len(), 2);
        assert_eq!(s2.history[0].outcome, RolloutOutcome::Superseded);
        let s3 = step_at(
            &s2,
            &decision("2", Source::Alias),
            &obs(Rollout::Failed("ProgressDeadlineExceeded".into())),
            30,
        );
        assert_eq!(s3.history[1].outcome, RolloutOutcome::Failed);
        let pin = s3.rollback_pin.clone().unwrap();
        assert_eq!(
            (pin.version.as_str(), pin.replaces_version.as_str()),
            ("1", "2")
        );
        assert_eq!(cond(&s3, condition::DEGRADED).status, "True");
        assert_eq!(cond(&s3, condition::DEGRADED).reason, "RolledBack");
        let events = transitions(&s2, &s3);
        let reasons: Vec<_> = events.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(reasons, vec!["RolloutFailed", "RolledBack"]);
        assert!(events.iter().all(|e| e.severity == Severity::Warning));
    }

    #[test]
    fn a_ready_version_that_later_fails_to_scale_is_not_rolled_back() {
        let s1 = step_at(
            &ModelDeploymentStatus::default(),
            &decision("1", Source::Alias),
            &obs(Rollout::Complete),
            10,
        );
        let s2 = step_at(
            &s1,
            &decision("2", Source::Alias),
            &obs(Rollout::Complete),
            20,
        );
        let s3 = step_at(
            &s2,
            &decision("2", Source::Alias),
            &obs(Rollout::Failed("ProgressDeadlineExceeded".into())),
            30,
        );
        assert_eq!(s3.rollback_pin, None);
        assert_eq!(s3.history[1].outcome, RolloutOutcome::Ready);
    }

    #[test]
    fn no_pin_without_auto_rollback_or_an_earlier_ready_version() {
        let s = step_at(
            &ModelDeploymentStatus::default(),
            &decision("1", Source::Alias),
            &obs(Rollout::Failed("crash".into())),
            10,
        );
        assert_eq!(s.rollback_pin, None);
        assert_eq!(cond(&s, condition::DEGRADED).reason, "RolloutFailed");
    }

    #[test]
    fn steady_state_emits_no_events_and_keeps_transition_times() {
        let d = decision("1", Source::Alias);
        let s1 = step_at(
            &ModelDeploymentStatus::default(),
            &d,
            &obs(Rollout::Complete),
            10,
        );
        let s2 = step_at(&s1, &d, &obs(Rollout::Complete), 20);
        assert!(transitions(&s1, &s2).is_empty());
        assert_eq!(cond(&s2, condition::READY).last_transition_time, at(10));
        assert_eq!(s1.history, s2.history);
    }

    #[test]
    fn history_is_bounded() {
        let mut s = ModelDeploymentStatus::default();
        for v in 1..=(HISTORY_LIMIT as i64 + 5) {
            s = step_at(
                &s,
                &decision(&v.to_string(), Source::Alias),
                &obs(Rollout::Complete),
                v,
            );
        }
        assert_eq!(s.history.len(), HISTORY_LIMIT);
        assert_eq!(
            s.history.last().unwrap().version,
            (HISTORY_LIMIT + 5).to_string()
        );
    }

    #[test]
    fn registry_unreachable_sets_the_condition_and_keeps_the_rest() {
        let s1 = step_at(
            &ModelDeploymentStatus::default(),
            &decision("1", Source::Alias),
            &obs(Rollout::Complete),
            10,
        );
        let target = alias();
        let d = crate::controller::resolve::decide(
            &target,
            &s1,
            &Lookup::Unreachable("connection refused".into()),
            None,
            &crate::controller::resolve::PinContext::default(),
        );
        let inputs = inputs(
            1,
            20,
            Step::Resolved {
                target: &target,
                decision: &d,
                observation: None,
            },
        );
        let s2 = next(&s1, &inputs);
        assert_eq!(cond(&s2, condition::REGISTRY_REACHABLE).status, "False");
        assert_eq!(
            cond(&s2, condition::READY).status,
            "True",
            "what runs keeps serving"
        );
        assert_eq!(s2.version.as_deref(), Some("1"));
        let events = transitions(&s1, &s2);
        assert!(
            events
                .iter()
                .any(|e| e.reason == "RegistryUnreachable" && e.severity == Severity::Warning)
        );
    }

    #[test]
    fn nothing_applied_during_an_outage_leaves_observed_generation_behind() {
        let s1 = step_at(
            &ModelDeploymentStatus::default(),
            &decision("1", Source::Alias),
            &obs(Rollout::Complete),
            10,
        );
        assert_eq!(s1.observed_generation, Some(1));
        let target = alias();
        let d = crate::controller::resolve::decide(
            &target,
            &s1,
            &Lookup::Unreachable("connection refused".into()),
            None,
            &crate::controller::resolve::PinContext::default(),
        );
        let inputs = inputs(
            2,
            20,
            Step::Resolved {
                target: &target,
                decision: &d,
                observation: None,
            },
        );
        let s2 = next(&s1, &inputs);
        assert_eq!(
            s2.observed_generation,
            Some(1),
            "generation 2 was not applied"
        );
    }

    #[test]
    fn an_api_error_is_ready_false_reconcile_error_and_keeps_observed_generation() {
        let s1 = step_at(
            &ModelDeploymentStatus::default(),
            &decision("1", Source::Alias),
            &obs(Rollout::Complete),
            10,
        );
        let inputs = inputs(
            2,
            20,
            Step::Failed {
                message: "applying Deployment iris: admission webhook denied".into(),
            },
        );
        let s2 = next(&s1, &inputs);
        assert_eq!(s2.observed_generation, Some(1));
        let ready = cond(&s2, condition::READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", RECONCILE_ERROR)
        );
        assert!(ready.message.contains("admission webhook denied"));
        let events = transitions(&s1, &s2);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].severity, Severity::Warning);
        assert_eq!(events[0].reason, RECONCILE_ERROR);
    }

    #[test]
    fn rollout_and_rollback_events_never_share_reason_and_action() {
        // 1 ready, 2 fails, rolled back to 1, 1 rolls out again: four transitions over time.
        let s1 = step_at(
            &ModelDeploymentStatus::default(),
            &decision("1", Source::Alias),
            &obs(Rollout::Complete),
            10,
        );
        let s2 = step_at(
            &s1,
            &decision("2", Source::Alias),
            &obs(Rollout::Progressing),
            20,
        );
        let s3 = step_at(
            &s2,
            &decision("2", Source::Alias),
            &obs(Rollout::Failed("crash".into())),
            30,
        );
        let mut pinned = decision("1", Source::RollbackPin);
        pinned.rollback_pin = s3.rollback_pin.clone();
        pinned.alias_version = Some("2".into());
        pinned.target_version = Some("2".into());
        let s4 = step_at(&s3, &pinned, &obs(Rollout::Progressing), 40);
        let mut all = Vec::new();
        for (a, b) in [
            (&ModelDeploymentStatus::default(), &s1),
            (&s1, &s2),
            (&s2, &s3),
            (&s3, &s4),
        ] {
            all.extend(transitions(a, b));
        }
        let keys: Vec<(String, String)> = all
            .iter()
            .map(|t| (t.reason.clone(), t.action.clone()))
            .collect();
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), keys.len(), "folded by the recorder: {keys:?}");
        assert!(keys.contains(&("RollingOut".into(), "RollOut/1".into())));
        assert!(keys.contains(&("RolledBack".into(), "RollBack/1".into())));
        assert!(keys.contains(&("RollingOut".into(), "RollBack/1".into())));
        assert_eq!(cond(&s4, condition::READY).reason, "RolledBack");
        assert_eq!(cond(&s4, condition::READY).status, "False");
        assert_eq!(s4.target_version.as_deref(), Some("2"));
        assert_eq!(s4.version.as_deref(), Some("1"));
    }
}
