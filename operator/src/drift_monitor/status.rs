//! The DriftMonitor's status (pure): each step records what it did, and the Events are the
//! transitions between the old and the new status, so a steady monitor emits none.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mooring_crds::drift_monitor::{
    ACTION_HISTORY_LIMIT, ActionResult, DriftActionRecord, DriftMonitorStatus, DriftRun, OnDrift,
    VERDICT_HISTORY_LIMIT, VerdictRecord, condition,
};
use mooring_crds::drift_report::DriftVerdict;

use super::act::{self, Plan};
use super::collect::Collected;
use crate::controller::conditions;
use crate::controller::status::{Severity, Transition};

/// `Ready=False` for a spec or target the user must fix; no run is scheduled.
pub fn not_ready(
    status: &mut DriftMonitorStatus,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    status.next_run_time = None;
    conditions::set(
        &mut status.conditions,
        condition::READY,
        false,
        reason,
        message,
        generation,
        now,
    );
    status.observed_generation = generation;
}

/// `Ready=True`: checks are scheduled (or suspended).
pub fn ready(
    status: &mut DriftMonitorStatus,
    next_run: Option<Timestamp>,
    suspended: bool,
    generation: Option<i64>,
    now: &Time,
) {
    status.next_run_time = next_run.map(Time);
    let (reason, message) = match (suspended, next_run) {
        (true, _) => (
            "Suspended",
            "spec.suspend is true: no new checks start".to_string(),
        ),
        (false, Some(next)) => ("Scheduled", format!("next check at {next}")),
        (false, None) => ("Scheduled", "waiting for the running check".to_string()),
    };
    conditions::set(
        &mut status.conditions,
        condition::READY,
        true,
        reason,
        message,
        generation,
        now,
    );
    status.observed_generation = generation;
}

/// A Job was started for `scheduled`.
pub fn started(
    status: &mut DriftMonitorStatus,
    job_name: &str,
    version: &str,
    scheduled: Timestamp,
    now: &Time,
) {
    status.last_schedule_time = Some(Time(scheduled));
    status.last_run = Some(DriftRun {
        job_name: job_name.into(),
        version: Some(version.into()),
        start_time: Some(now.clone()),
        completion_time: None,
        outcome: None,
        reason: None,
    });
}

/// The run of `job_name` finished with `collected`, and the guards planned `plan`.
pub fn finished(
    status: &mut DriftMonitorStatus,
    job_name: &str,
    collected: &Collected,
    plan: &Plan,
    generation: Option<i64>,
    now: &Time,
) {
    let completion = collected.completion_time.map(Time).unwrap_or(now.clone());
    let version = status
        .last_run
        .as_ref()
        .filter(|r| r.job_name == job_name)
        .and_then(|r| r.version.clone());
    let reason = match plan {
        Plan::WarmingUp { until } => Some(format!(
            "skipped: the served version warms up until {until} (window.warmup)"
        )),
        _ => collected.reason.clone(),
    };
    let run = status.last_run.get_or_insert_with(|| DriftRun {
        job_name: job_name.into(),
        version: None,
        start_time: None,
        completion_time: None,
        outcome: None,
        reason: None,
    });
    run.job_name = job_name.into();
    run.completion_time = Some(completion.clone());
    run.outcome = Some(collected.verdict);
    run.reason = reason;
    if let Some(report) = &collected.report {
        status.last_report = Some(report.clone());
    }
    status.history.push(VerdictRecord {
        time: completion,
        job_name: job_name.into(),
        version,
        verdict: collected.verdict,
        drift_share: collected.report.as_ref().map(|r| r.drift_share),
        counted: !matches!(plan, Plan::WarmingUp { .. }),
    });
    let excess = status.history.len().saturating_sub(VERDICT_HISTORY_LIMIT);
    status.history.drain(..excess);
    status.consecutive_drifts =
        act::consecutive_after(plan, collected.verdict, status.consecutive_drifts);

    // DriftDetected follows the last counted verdict; checks without one leave it alone.
    let drift = |ok: bool, reason: &str, message: String, status: &mut DriftMonitorStatus| {
        conditions::set(
            &mut status.conditions,
            condition::DRIFT_DETECTED,
            ok,
            reason,
            message,
            generation,
            now,
        )
    };
    match (plan, collected.verdict, &collected.report) {
        (Plan::WarmingUp { .. }, _, _) => {}
        (_, DriftVerdict::Drift, Some(report)) => {
            let note = match plan {
                Plan::Held { reason } => format!("{}; action held: {reason}", act::summary(report)),
                _ => act::summary(report),
            };
            drift(true, "DriftDetected", note, status)
        }
        (_, DriftVerdict::NoDrift, Some(report)) => drift(
            false,
            "NoDrift",
            format!(
                "drift share {:.2} below {}",
                report.drift_share, report.drift_share_threshold
            ),
            status,
        ),
        _ => {}
    }
}

/// Record an action (bounded).
pub fn record_action(status: &mut DriftMonitorStatus, record: DriftActionRecord) {
    status.actions.push(record);
    let excess = status.actions.len().saturating_sub(ACTION_HISTORY_LIMIT);
    status.actions.drain(..excess);
}

/// Settle the newest `Requested` rollback of `job_name`'s request.
pub fn settle_request(
    status: &mut DriftMonitorStatus,
    job_name: &str,
    result: ActionResult,
    message: String,
) {
    if let Some(record) = status.actions.iter_mut().rev().find(|a| {
        a.action == OnDrift::Rollback
            && a.result == ActionResult::Requested
            && a.job_name.as_deref() == Some(job_name)
    }) {
        record.result = result;
        record.message = message;
    }
}

/// When the last action that counts for the cooldown was taken (skipped ones do not).
pub fn last_action_time(status: &DriftMonitorStatus) -> Option<Timestamp> {
    status
        .actions
        .iter()
        .rev()
        .find(|a| matches!(a.result, ActionResult::Succeeded | ActionResult::Requested))
        .map(|a| a.time.0)
}

/// The Events the change from `old` to `new` deserves.
pub fn transitions(old: &DriftMonitorStatus, new: &DriftMonitorStatus) -> Vec<Transition> {
    let mut out = Vec::new();
    // The action names what the Event is about (the check's Job, the action's versions), so
    // the event recorder folds only repeats of the same thing.
    let mut push = |severity, reason: &str, action: String, note: String| {
        out.push(Transition {
            severity,
            reason: reason.into(),
            action,
            note,
        })
    };
    let job = new
        .last_run
        .as_ref()
        .map(|r| r.job_name.clone())
        .unwrap_or_default();
    let cond = |s: &DriftMonitorStatus, t: &str| {
        conditions::get(&s.conditions, t)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let (was, is) = (cond(old, condition::READY), cond(new, condition::READY));
    if let Some((status, reason, message)) = &is
        && was.as_ref().map(|(s, r, _)| (s, r)) != Some((status, reason))
    {
        let severity = if status == "True" {
            Severity::Normal
        } else {
            Severity::Warning
        };
        push(severity, reason, format!("Ready/{status}"), message.clone());
    }
    if let (Some(old_run), Some(new_run)) = (&old.last_run, &new.last_run)
        && old_run.job_name != new_run.job_name
    {
        push(
            Severity::Normal,
            "CheckStarted",
            format!("Check/{job}"),
            format!("started Job {}", new_run.job_name),
        );
    } else if old.last_run.is_none()
        && let Some(run) = &new.last_run
    {
        push(
            Severity::Normal,
            "CheckStarted",
            format!("Check/{job}"),
            format!("started Job {}", run.job_name),
        );
    }
    if let Some(run) = &new.last_run
        && run.outcome.is_some()
        && old
            .last_run
            .as_ref()
            .is_none_or(|o| o.outcome.is_none() || o.job_name != run.job_name)
    {
        let outcome = run.outcome.expect("checked");
        let (severity, reason) = match outcome {
            DriftVerdict::Failed => (Severity::Warning, "CheckFailed"),
            DriftVerdict::InsufficientData => (Severity::Normal, "InsufficientData"),
            DriftVerdict::Drift => (Severity::Warning, "DriftDetected"),
            DriftVerdict::NoDrift => (Severity::Normal, "NoDrift"),
        };
        let mut note = format!("{}: {outcome:?}", run.job_name);
        if outcome == DriftVerdict::Drift
            && let Some(report) = &new.last_report
        {
            note = format!("{note}; {}", act::summary(report));
        }
        if let Some(why) = &run.reason {
            note = format!("{note}; {why}");
        }
        push(severity, reason, format!("Check/{job}"), note);
    }
    // New or settled actions.
    for record in &new.actions {
        if old.actions.contains(record) {
            continue;
        }
        let (severity, reason) = match (record.action, record.result) {
            (_, ActionResult::Failed) => (Severity::Warning, "ActionFailed"),
            (_, ActionResult::Skipped) => (Severity::Warning, "ActionSkipped"),
            (OnDrift::Notify, _) => (Severity::Warning, "DriftNotified"),
            (OnDrift::Rollback, ActionResult::Requested) => {
                (Severity::Warning, "RollbackRequested")
            }
            (OnDrift::Rollback, _) => (Severity::Warning, "RolledBack"),
            (OnDrift::Promote, _) => (Severity::Normal, "Promoted"),
        };
        let versions = format!(
            "{}-{}",
            record.from_version.as_deref().unwrap_or(""),
            record.to_version.as_deref().unwrap_or("")
        );
        push(
            severity,
            reason,
            format!("{:?}/{versions}", record.action),
            record.message.clone(),
        );
    }
    if let Some(hook) = &new.last_webhook
        && !hook.delivered
        && old.last_webhook.as_ref() != Some(hook)
    {
        push(
            Severity::Warning,
            "WebhookFailed",
            format!("Webhook/{job}"),
            hook.message.clone().unwrap_or_default(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::at;

    fn collected(verdict: DriftVerdict, share: f64) -> Collected {
        let report: mooring_crds::DriftReport = serde_json::from_value(serde_json::json!({
            "verdict": verdict, "model": "iris-classifier", "modelVersion": "3",
            "samples": 500, "referenceSamples": 150, "driftShare": share,
            "driftShareThreshold": 0.5
        }))
        .unwrap();
        Collected {
            verdict,
            report: Some(report),
            reason: None,
            completion_time: Some(Timestamp::from_second(2_000).unwrap()),
            stuck: false,
        }
    }

    #[test]
    fn history_is_bounded_and_newest_last() {
        let mut s = DriftMonitorStatus::default();
        for i in 0..(VERDICT_HISTORY_LIMIT + 5) {
            let job = format!("job-{i}");
            started(
                &mut s,
                &job,
                "3",
                Timestamp::from_second(i as i64).unwrap(),
                &at(1),
            );
            finished(
                &mut s,
                &job,
                &collected(DriftVerdict::NoDrift, 0.0),
                &Plan::Nothing,
                Some(1),
                &at(2),
            );
        }
        assert_eq!(s.history.len(), VERDICT_HISTORY_LIMIT);
        assert_eq!(
            s.history.last().unwrap().job_name,
            format!("job-{}", VERDICT_HISTORY_LIMIT + 4)
        );
        assert_eq!(s.history[0].version.as_deref(), Some("3"));
        for i in 0..(ACTION_HISTORY_LIMIT + 3) {
            record_action(
                &mut s,
                DriftActionRecord {
                    time: at(i as i64),
                    action: OnDrift::Notify,
                    from_version: None,
                    to_version: None,
                    job_name: None,
                    report_uri: None,
                    result: ActionResult::Succeeded,
                    message: "m".into(),
                },
            );
        }
        assert_eq!(s.actions.len(), ACTION_HISTORY_LIMIT);
        assert_eq!(
            last_action_time(&s),
            Some(at((ACTION_HISTORY_LIMIT + 2) as i64).0)
        );
    }

    #[test]
    fn drift_sets_the_condition_and_events_fire_once() {
        let mut old = DriftMonitorStatus::default();
        started(
            &mut old,
            "job-1",
            "3",
            Timestamp::from_second(1).unwrap(),
            &at(1),
        );
        let mut new = old.clone();
        finished(
            &mut new,
            "job-1",
            &collected(DriftVerdict::Drift, 0.75),
            &Plan::Act(act::Act::Notify),
            Some(1),
            &at(2),
        );
        let c = conditions::get(&new.conditions, condition::DRIFT_DETECTED).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "DriftDetected")
        );
        assert!(c.message.contains("0.75"), "{}", c.message);
        let events = transitions(&old, &new);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].reason, "DriftDetected");
        assert!(transitions(&new, &new).is_empty());
    }

    #[test]
    fn warmup_is_recorded_as_skipped_and_leaves_the_condition() {
        let mut s = DriftMonitorStatus::default();
        started(
            &mut s,
            "job-1",
            "3",
            Timestamp::from_second(1).unwrap(),
            &at(1),
        );
        let plan = Plan::WarmingUp {
            until: Timestamp::from_second(600).unwrap(),
        };
        finished(
            &mut s,
            "job-1",
            &collected(DriftVerdict::Drift, 0.75),
            &plan,
            Some(1),
            &at(2),
        );
        assert!(!s.history[0].counted);
        assert!(
            s.last_run
                .as_ref()
                .unwrap()
                .reason
                .as_ref()
                .unwrap()
                .starts_with("skipped")
        );
        assert!(conditions::get(&s.conditions, condition::DRIFT_DETECTED).is_none());
        assert_eq!(s.consecutive_drifts, 0);
    }

    #[test]
    fn invalid_spec_clears_the_next_run_and_says_why() {
        let mut s = DriftMonitorStatus {
            next_run_time: Some(at(5)),
            ..Default::default()
        };
        let old = s.clone();
        not_ready(
            &mut s,
            "InvalidSchedule",
            "spec.schedule \"x\": bad",
            Some(2),
            &at(3),
        );
        assert_eq!(s.next_run_time, None);
        let c = conditions::get(&s.conditions, condition::READY).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "InvalidSchedule")
        );
        let events = transitions(&old, &s);
        assert_eq!(events[0].reason, "InvalidSchedule");
    }
}
