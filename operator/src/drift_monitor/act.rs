//! Decide what a finished check leads to (pure): nothing, a held action (a guard says not
//! yet), or an action — `Notify`, `Rollback`, `Promote` — or that action skipped with the
//! reason. Only a `Drift` verdict ever leads to an action; `Failed` and `InsufficientData`
//! neither act nor count.

use std::time::Duration;

use jiff::Timestamp;
use mooring_crds::DriftReport;
use mooring_crds::drift_monitor::OnDrift;
use mooring_crds::drift_report::DriftVerdict;
use mooring_crds::model_deployment::{
    ModelDeployment, ROLLBACK_REQUEST_ANNOTATION, RollbackRequest,
};

use super::validate::{Target, ValidMonitor};

/// What the guards and the action's own conditions decided.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// No drift, or no verdict: nothing to do.
    Nothing,
    /// The served version is still warming up: the check is recorded, but does not count.
    WarmingUp { until: Timestamp },
    /// Drift, but a guard holds the action back (`consecutiveDrifts`, `cooldown`).
    Held { reason: String },
    /// Act.
    Act(Act),
}

/// An action to carry out, or one skipped (recorded with its reason, Notify done instead).
#[derive(Clone, Debug, PartialEq)]
pub enum Act {
    Notify,
    Rollback {
        from: String,
        to: String,
    },
    Promote {
        alias: String,
        from_alias: String,
        /// The challenger version the gate checked: promoted only if `fromAlias` still names it.
        version: String,
        /// The version serving now.
        from: String,
    },
    Skip {
        action: OnDrift,
        reason: String,
    },
}

/// What the decision needs besides the spec and target.
pub struct Inputs<'a> {
    pub valid: &'a ValidMonitor,
    pub target: &'a Target,
    pub verdict: DriftVerdict,
    pub report: Option<&'a DriftReport>,
    /// Drifted checks in a row before this one.
    pub consecutive_before: i32,
    /// When the last action (not a skipped one) was taken.
    pub last_action: Option<Timestamp>,
    pub now: Timestamp,
}

/// The drifted checks in a row after this one: a drift adds one, no drift resets, a check
/// without a verdict (or during the warm-up) leaves the count alone.
pub fn consecutive_after(plan: &Plan, verdict: DriftVerdict, before: i32) -> i32 {
    match (plan, verdict) {
        (Plan::WarmingUp { .. }, _) => before,
        // Acting starts the count afresh.
        (Plan::Act(_), _) => 0,
        (_, DriftVerdict::Drift) => before + 1,
        (_, DriftVerdict::NoDrift) => 0,
        _ => before,
    }
}

fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    Duration::from_secs((to.as_second() - from.as_second()).max(0) as u64)
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Decide.
pub fn decide(i: &Inputs) -> Plan {
    if !matches!(i.verdict, DriftVerdict::Drift | DriftVerdict::NoDrift) {
        return Plan::Nothing;
    }
    let g = &i.valid.guards;
    if let Some(since) = i.target.serving_since {
        let until = since
            .checked_add(jiff::SignedDuration::from_secs(g.warmup.as_secs() as i64))
            .unwrap_or(since);
        if i.now < until {
            return Plan::WarmingUp { until };
        }
    }
    if i.verdict != DriftVerdict::Drift {
        return Plan::Nothing;
    }
    let drifted = i.consecutive_before + 1;
    if (drifted as u32) < g.consecutive_drifts {
        return Plan::Held {
            reason: format!(
                "{drifted} of {} drifted checks in a row (action.consecutiveDrifts)",
                g.consecutive_drifts
            ),
        };
    }
    if let Some(last) = i.last_action {
        let since = elapsed(last, i.now);
        if since < g.cooldown {
            return Plan::Held {
                reason: format!(
                    "the last action was {} ago, within action.cooldown {}",
                    human(since),
                    human(g.cooldown)
                ),
            };
        }
    }
    Plan::Act(match i.valid.on_drift {
        OnDrift::Notify => Act::Notify,
        OnDrift::Rollback => rollback(i),
        OnDrift::Promote => promote(i),
    })
}

fn rollback(i: &Inputs) -> Act {
    let t = i.target;
    let skip = |reason: String| Act::Skip {
        action: OnDrift::Rollback,
        reason,
    };
    if let Some(since) = t.serving_since {
        let served = elapsed(since, i.now);
        if served >= i.valid.guards.rollback_window {
            return skip(format!(
                "version {} has served for {}, longer than action.rollback.window {}: the drift is in the data, not the model",
                t.version,
                human(served),
                human(i.valid.guards.rollback_window)
            ));
        }
    }
    match &t.previous_version {
        Some(previous) => Act::Rollback {
            from: t.version.clone(),
            to: previous.clone(),
        },
        None => skip(format!(
            "no version served before {} to roll back to",
            t.version
        )),
    }
}

fn promote(i: &Inputs) -> Act {
    let skip = |reason: String| Act::Skip {
        action: OnDrift::Promote,
        reason,
    };
    let Some(promote) = &i.valid.promote else {
        return skip("action.promote is not set".into());
    };
    let Some(gate) = i.report.and_then(|r| r.challenger.as_ref()) else {
        return skip("the check ran no challenger gate".into());
    };
    let Some(version) = &gate.version else {
        return skip(format!(
            "alias {:?} names no version: {}",
            promote.from_alias,
            gate.message.as_deref().unwrap_or("not found")
        ));
    };
    if *version == i.target.version {
        return skip(format!(
            "alias {:?} names version {version}, which is already serving",
            promote.from_alias
        ));
    }
    match gate.verdict {
        DriftVerdict::NoDrift => Act::Promote {
            alias: promote.alias.clone(),
            from_alias: promote.from_alias.clone(),
            version: version.clone(),
            from: i.target.version.clone(),
        },
        DriftVerdict::Drift => skip(format!(
            "the traffic drifts from challenger version {version}'s own reference too (drift share {:.2}{}): not promoted",
            gate.drift_share,
            if gate.drifted_features.is_empty() {
                String::new()
            } else {
                format!(" in {}", gate.drifted_features.join(", "))
            }
        )),
        _ => skip(format!(
            "the challenger gate on version {version} gave no verdict: {}",
            gate.message.as_deref().unwrap_or("unknown")
        )),
    }
}

/// The names of the drifted features, for Events and requests.
pub fn drifted_features(report: &DriftReport) -> Vec<&str> {
    report
        .features
        .iter()
        .filter(|f| f.result.drifted)
        .map(|f| f.name.as_str())
        .collect()
}

/// A one-line summary of a drifted report.
pub fn summary(report: &DriftReport) -> String {
    let features = drifted_features(report);
    format!(
        "drift share {:.2} (threshold {}) over {} samples; drifted: {}",
        report.drift_share,
        report.drift_share_threshold,
        report.samples,
        if features.is_empty() {
            "-".to_string()
        } else {
            features.join(", ")
        }
    )
}

/// The rollback request a monitor puts on its target (see
/// [`ROLLBACK_REQUEST_ANNOTATION`]): unique per check, so the target's acknowledgement
/// (`rollbackPin.requestId`) names the check that asked.
pub fn rollback_request(
    namespace: &str,
    monitor: &str,
    job_name: &str,
    from: &str,
    to: &str,
    report: Option<&DriftReport>,
) -> RollbackRequest {
    RollbackRequest {
        id: format!("{namespace}/{monitor}/{job_name}"),
        from_version: from.into(),
        to_version: to.into(),
        reason: match report {
            Some(r) => format!("DriftMonitor {monitor}: {}", summary(r)),
            None => format!("DriftMonitor {monitor}: drift"),
        },
    }
}

/// Where a monitor's rollback request on its target stands.
#[derive(Clone, Debug, PartialEq)]
pub enum RequestState {
    /// No request of this monitor is on the target.
    None,
    /// Waiting for the target's controller.
    Pending(RollbackRequest),
    /// Honoured: the target's rollback pin carries the request's id.
    Acknowledged(RollbackRequest),
    /// The target no longer serves `fromVersion` (and did not pin for it): moot.
    Obsolete(RollbackRequest),
}

/// Where this monitor's request on `md` stands (requests of other monitors are ignored).
pub fn request_state(md: &ModelDeployment, namespace: &str, monitor: &str) -> RequestState {
    let Some(raw) = md
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ROLLBACK_REQUEST_ANNOTATION))
    else {
        return RequestState::None;
    };
    let Ok(request) = serde_json::from_str::<RollbackRequest>(raw) else {
        return RequestState::None;
    };
    if !request.id.starts_with(&format!("{namespace}/{monitor}/")) {
        return RequestState::None;
    }
    let status = md.status.as_ref();
    let pinned = status
        .and_then(|s| s.rollback_pin.as_ref())
        .and_then(|p| p.request_id.as_deref())
        == Some(request.id.as_str());
    if pinned {
        return RequestState::Acknowledged(request);
    }
    if status.and_then(|s| s.version.as_deref()) != Some(request.from_version.as_str()) {
        return RequestState::Obsolete(request);
    }
    RequestState::Pending(request)
}

#[cfg(test)]
mod tests {
    use mooring_crds::drift_report::ChallengerCheck;

    use super::*;
    use crate::drift_monitor::fixtures::{SERVING_MD, dm_yaml, md_yaml};
    use crate::drift_monitor::validate;

    // Version 3 became ready at t=10060.
    const READY_AT: i64 = 10_060;

    fn report(challenger: Option<ChallengerCheck>) -> DriftReport {
        DriftReport {
            verdict: DriftVerdict::Drift,
            model: "iris-classifier".into(),
            model_version: Some("3".into()),
            samples: 500,
            reference_samples: 150,
            drift_share: 0.75,
            drift_share_threshold: 0.5,
            features: vec![],
            prediction: None,
            message: None,
            report_uri: None,
            challenger,
        }
    }

    fn gate(version: Option<&str>, verdict: DriftVerdict) -> ChallengerCheck {
        ChallengerCheck {
            alias: "challenger".into(),
            version: version.map(Into::into),
            verdict,
            drift_share: if verdict == DriftVerdict::Drift {
                0.5
            } else {
                0.0
            },
            drifted_features: if verdict == DriftVerdict::Drift {
                vec!["petal_length".into()]
            } else {
                vec![]
            },
            message: None,
        }
    }

    /// Decide for a monitor spec, `secs_after_ready` after version 3 became ready.
    fn plan(
        spec: &str,
        verdict: DriftVerdict,
        report: Option<&DriftReport>,
        consecutive_before: i32,
        last_action: Option<i64>,
        secs_after_ready: i64,
    ) -> Plan {
        let dm = dm_yaml(spec);
        let valid = validate::validate(&dm.spec).unwrap();
        let target = validate::target("iris", Some(&md_yaml(SERVING_MD))).unwrap();
        decide(&Inputs {
            valid: &valid,
            target: &target,
            verdict,
            report,
            consecutive_before,
            last_action: last_action.map(|s| Timestamp::from_second(s).unwrap()),
            now: Timestamp::from_second(READY_AT + secs_after_ready).unwrap(),
        })
    }

    const NOTIFY: &str = "target: {modelDeployment: iris}";
    const ROLLBACK: &str = "target: {modelDeployment: iris}\naction: {onDrift: Rollback}";
    const PROMOTE: &str = "target: {modelDeployment: iris}\naction: {onDrift: Promote, promote: {alias: production, fromAlias: challenger}}";
    const HOUR: i64 = 3600;

    #[test]
    fn only_drift_acts() {
        for verdict in [
            DriftVerdict::NoDrift,
            DriftVerdict::InsufficientData,
            DriftVerdict::Failed,
        ] {
            assert_eq!(plan(ROLLBACK, verdict, None, 5, None, HOUR), Plan::Nothing);
        }
        assert_eq!(
            plan(NOTIFY, DriftVerdict::Drift, None, 0, None, HOUR),
            Plan::Act(Act::Notify)
        );
    }

    #[test]
    fn warmup_check_does_not_count() {
        let p = plan(NOTIFY, DriftVerdict::Drift, None, 0, None, 60);
        assert_eq!(
            p,
            Plan::WarmingUp {
                until: Timestamp::from_second(READY_AT + 600).unwrap()
            }
        );
        assert_eq!(consecutive_after(&p, DriftVerdict::Drift, 2), 2);
        // Failed checks are not even warm-up checks.
        assert_eq!(
            plan(NOTIFY, DriftVerdict::Failed, None, 0, None, 60),
            Plan::Nothing
        );
    }

    #[test]
    fn consecutive_drifts_hold_the_action_until_n_in_a_row() {
        let spec = "target: {modelDeployment: iris}\naction: {consecutiveDrifts: 3}";
        let p = plan(spec, DriftVerdict::Drift, None, 0, None, HOUR);
        assert!(
            matches!(&p, Plan::Held { reason } if reason.contains("1 of 3")),
            "{p:?}"
        );
        assert_eq!(consecutive_after(&p, DriftVerdict::Drift, 0), 1);
        let p = plan(spec, DriftVerdict::Drift, None, 2, None, HOUR);
        assert_eq!(p, Plan::Act(Act::Notify));
        assert_eq!(consecutive_after(&p, DriftVerdict::Drift, 2), 0);
        // No drift breaks the run; no verdict does not.
        assert_eq!(
            consecutive_after(&Plan::Nothing, DriftVerdict::NoDrift, 2),
            0
        );
        assert_eq!(
            consecutive_after(&Plan::Nothing, DriftVerdict::Failed, 2),
            2
        );
    }

    #[test]
    fn cooldown_holds_a_second_action() {
        let now = READY_AT + 2 * HOUR;
        let p = plan(
            NOTIFY,
            DriftVerdict::Drift,
            None,
            0,
            Some(now - 1800),
            2 * HOUR,
        );
        assert!(
            matches!(&p, Plan::Held { reason } if reason.contains("cooldown")),
            "{p:?}"
        );
        let p = plan(
            NOTIFY,
            DriftVerdict::Drift,
            None,
            0,
            Some(now - HOUR),
            2 * HOUR,
        );
        assert_eq!(p, Plan::Act(Act::Notify));
    }

    #[test]
    fn rollback_returns_to_the_version_served_before_a_recent_one() {
        assert_eq!(
            plan(ROLLBACK, DriftVerdict::Drift, None, 0, None, HOUR),
            Plan::Act(Act::Rollback {
                from: "3".into(),
                to: "1".into()
            })
        );
        // Served for more than a day: the drift is in the data.
        let p = plan(ROLLBACK, DriftVerdict::Drift, None, 0, None, 25 * HOUR);
        assert!(
            matches!(&p, Plan::Act(Act::Skip { action: OnDrift::Rollback, reason }) if reason.contains("in the data")),
            "{p:?}"
        );
        let spec =
            "target: {modelDeployment: iris}\naction: {onDrift: Rollback, rollback: {window: 2d}}";
        assert!(matches!(
            plan(spec, DriftVerdict::Drift, None, 0, None, 25 * HOUR),
            Plan::Act(Act::Rollback { .. })
        ));
    }

    #[test]
    fn rollback_without_an_earlier_version_is_skipped() {
        let dm = dm_yaml(ROLLBACK);
        let valid = validate::validate(&dm.spec).unwrap();
        let mut target = validate::target("iris", Some(&md_yaml(SERVING_MD))).unwrap();
        target.previous_version = None;
        let p = decide(&Inputs {
            valid: &valid,
            target: &target,
            verdict: DriftVerdict::Drift,
            report: None,
            consecutive_before: 0,
            last_action: None,
            now: Timestamp::from_second(READY_AT + HOUR).unwrap(),
        });
        assert!(
            matches!(&p, Plan::Act(Act::Skip { reason, .. }) if reason.contains("no version served before 3")),
            "{p:?}"
        );
    }

    #[test]
    fn promote_only_through_a_passing_challenger_gate() {
        let ok = report(Some(gate(Some("4"), DriftVerdict::NoDrift)));
        assert_eq!(
            plan(PROMOTE, DriftVerdict::Drift, Some(&ok), 0, None, HOUR),
            Plan::Act(Act::Promote {
                alias: "production".into(),
                from_alias: "challenger".into(),
                version: "4".into(),
                from: "3".into()
            })
        );
        let skipped =
            |r: &DriftReport| match plan(PROMOTE, DriftVerdict::Drift, Some(r), 0, None, HOUR) {
                Plan::Act(Act::Skip {
                    action: OnDrift::Promote,
                    reason,
                }) => reason,
                other => panic!("{other:?}"),
            };
        let r = skipped(&report(Some(gate(Some("4"), DriftVerdict::Drift))));
        assert!(
            r.contains("drifts from challenger version 4") && r.contains("petal_length"),
            "{r}"
        );
        let r = skipped(&report(Some(gate(Some("3"), DriftVerdict::NoDrift))));
        assert!(r.contains("already serving"), "{r}");
        let r = skipped(&report(Some(gate(None, DriftVerdict::Failed))));
        assert!(r.contains("names no version"), "{r}");
        let r = skipped(&report(Some(gate(
            Some("4"),
            DriftVerdict::InsufficientData,
        ))));
        assert!(r.contains("no verdict"), "{r}");
        let r = skipped(&report(None));
        assert!(r.contains("no challenger gate"), "{r}");
    }

    #[test]
    fn rollback_request_is_unique_per_check_and_says_why() {
        let mut r = report(None);
        r.features = serde_json::from_value(serde_json::json!([
            {"name": "petal_length", "kind": "Numeric", "test": "KolmogorovSmirnov",
             "statistic": 0.4, "pValue": 0.0001, "threshold": 0.05, "drifted": true},
            {"name": "sepal_width", "kind": "Numeric", "test": "KolmogorovSmirnov",
             "statistic": 0.1, "pValue": 0.4, "threshold": 0.05, "drifted": false}
        ]))
        .unwrap();
        let req = rollback_request(
            "ml",
            "iris-drift",
            "iris-drift-1800000000",
            "3",
            "1",
            Some(&r),
        );
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({
                "id": "ml/iris-drift/iris-drift-1800000000",
                "fromVersion": "3",
                "toVersion": "1",
                "reason": "DriftMonitor iris-drift: drift share 0.75 (threshold 0.5) over 500 samples; drifted: petal_length"
            })
        );
    }

    #[test]
    fn request_state_follows_the_targets_acknowledgement() {
        let req = rollback_request("ml", "iris-drift", "job-1", "3", "1", None);
        let with = |extra: &str| {
            let mut md = md_yaml(&format!("{SERVING_MD}{extra}"));
            md.metadata.annotations = Some(
                [(
                    ROLLBACK_REQUEST_ANNOTATION.to_string(),
                    serde_json::to_string(&req).unwrap(),
                )]
                .into(),
            );
            md
        };
        assert_eq!(
            request_state(&with(""), "ml", "iris-drift"),
            RequestState::Pending(req.clone())
        );
        // Another monitor's request is not ours to manage.
        assert_eq!(request_state(&with(""), "ml", "other"), RequestState::None);
        let pinned = "  rollbackPin: {version: '1', replacesVersion: '3', setBy: DriftMonitor, reason: drift, since: '1970-01-01T03:00:00Z', requestId: ml/iris-drift/job-1}\n";
        assert_eq!(
            request_state(&with(pinned), "ml", "iris-drift"),
            RequestState::Acknowledged(req.clone())
        );
        let mut moved = with("");
        moved.status.as_mut().unwrap().version = Some("4".into());
        assert_eq!(
            request_state(&moved, "ml", "iris-drift"),
            RequestState::Obsolete(req)
        );
        assert_eq!(
            request_state(&md_yaml(SERVING_MD), "ml", "iris-drift"),
            RequestState::None
        );
    }
}
