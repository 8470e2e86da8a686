//! Read what a drift Job found (pure): the compact report from its pod's terminated
//! container (`state.terminated.message`), or why the check failed. A check that failed
//! (Job failed, deadline exceeded, image not pulled, unreadable report) has the outcome
//! `Failed` with its reason: never an action.

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use mooring_crds::DriftReport;
use mooring_crds::drift_report::DriftVerdict;

use super::job::CONTAINER_NAME;

/// Waiting reasons that will not go away by themselves: the Job is failed at once rather than
/// left to its deadline.
const STUCK_REASONS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// The kubelet's cap on a termination message.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// A finished check.
#[derive(Clone, Debug, PartialEq)]
pub struct Collected {
    pub verdict: DriftVerdict,
    /// The report, when one could be read.
    pub report: Option<DriftReport>,
    /// Why it failed or had too little data.
    pub reason: Option<String>,
    pub completion_time: Option<Timestamp>,
    /// The Job is stuck (e.g. its image cannot be pulled) and must be deleted, as
    /// Kubernetes would only fail it at its deadline.
    pub stuck: bool,
}

impl Collected {
    fn failed(reason: String, completion_time: Option<Timestamp>) -> Collected {
        Collected {
            verdict: DriftVerdict::Failed,
            report: None,
            reason: Some(reason),
            completion_time,
            stuck: false,
        }
    }
}

/// True while the Job has neither completed nor failed.
pub fn is_running(job: &Job) -> bool {
    finished(job).is_none()
}

/// `Some(true)` once complete, `Some(false)` once failed.
fn finished(job: &Job) -> Option<bool> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .filter(|c| c.status == "True")
        .find_map(|c| match c.type_.as_str() {
            "Complete" | "SuccessCriteriaMet" => Some(true),
            "Failed" | "FailureTarget" => Some(false),
            _ => None,
        })
}

fn drift_container(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == CONTAINER_NAME)
}

/// The termination message of the newest terminated attempt.
fn termination_message(pods: &[Pod]) -> Option<String> {
    let mut terminated: Vec<_> = pods
        .iter()
        .filter_map(drift_container)
        .filter_map(|c| {
            c.state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.as_ref()))
        })
        .collect();
    terminated.sort_by_key(|t| t.finished_at.as_ref().map(|f| f.0));
    terminated.last().and_then(|t| t.message.clone())
}

/// Parse a termination message as a compact report.
pub fn parse_report(message: &str) -> Result<DriftReport, String> {
    serde_json::from_str::<DriftReport>(message.trim()).map_err(|e| {
        let truncated = message.len() >= TERMINATION_MESSAGE_LIMIT;
        format!(
            "the termination message is not a drift report{}: {e}",
            if truncated {
                " (cut at the kubelet's 4096-byte limit)"
            } else {
                ""
            }
        )
    })
}

/// What the Job found, once it has finished (`None` while it runs).
pub fn collect(job: &Job, pods: &[Pod]) -> Option<Collected> {
    let status = job.status.as_ref();
    let completion_time = status
        .and_then(|s| s.completion_time.as_ref())
        .map(|t| t.0)
        .or_else(|| {
            status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.status == "True"))
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0)
        });
    match finished(job) {
        None => {
            let stuck = pods
                .iter()
                .filter_map(drift_container)
                .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
                .find(|w| {
                    w.reason
                        .as_deref()
                        .is_some_and(|r| STUCK_REASONS.contains(&r))
                })?;
            let mut collected = Collected::failed(
                format!(
                    "{}: {}",
                    stuck.reason.as_deref().unwrap_or_default(),
                    stuck
                        .message
                        .as_deref()
                        .unwrap_or("the container cannot start")
                ),
                None,
            );
            collected.stuck = true;
            Some(collected)
        }
        Some(complete) => {
            let message = termination_message(pods);
            if !complete {
                let condition = status.and_then(|s| s.conditions.as_ref()).and_then(|cs| {
                    cs.iter()
                        .find(|c| c.type_ == "Failed" && c.status == "True")
                });
                let why = condition
                    .map(|c| {
                        format!(
                            "{}: {}",
                            c.reason.as_deref().unwrap_or("Failed"),
                            c.message.as_deref().unwrap_or("the Job failed")
                        )
                    })
                    .unwrap_or_else(|| "the Job failed".into());
                // A check that could not run still writes a `Failed` report saying why.
                let detail = message
                    .as_deref()
                    .and_then(|m| parse_report(m).ok())
                    .and_then(|r| r.message);
                let reason = match detail {
                    Some(d) => format!("{why}; {d}"),
                    None => why,
                };
                let mut collected = Collected::failed(reason, completion_time);
                collected.report = message.as_deref().and_then(|m| parse_report(m).ok());
                return Some(collected);
            }
            let Some(message) = message else {
                return Some(Collected::failed(
                    "the Job completed without a termination message".into(),
                    completion_time,
                ));
            };
            Some(match parse_report(&message) {
                Ok(report) => Collected {
                    verdict: report.verdict,
                    reason: match report.verdict {
                        DriftVerdict::InsufficientData | DriftVerdict::Failed => {
                            report.message.clone()
                        }
                        _ => None,
                    },
                    report: Some(report),
                    completion_time,
                    stuck: false,
                },
                Err(reason) => Collected::failed(reason, completion_time),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn job(conditions: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "iris-drift-1"},
            "status": {"conditions": conditions, "completionTime": "2026-03-01T10:05:00Z"}
        }))
        .unwrap()
    }

    fn pod_with(state: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "iris-drift-1-abcde"},
            "status": {"containerStatuses": [{
                "name": "drift", "image": "x", "imageID": "", "ready": false,
                "restartCount": 0, "state": state
            }]}
        }))
        .unwrap()
    }

    fn terminated(message: &str) -> Pod {
        pod_with(json!({"terminated": {"exitCode": 0, "message": message,
                                      "finishedAt": "2026-03-01T10:05:00Z"}}))
    }

    const DRIFT: &str = r#"{"verdict":"Drift","model":"iris-classifier","modelVersion":"3","samples":500,"referenceSamples":150,"driftShare":0.75,"driftShareThreshold":0.5,"features":[{"name":"petal_length","kind":"Numeric","test":"KolmogorovSmirnov","statistic":0.4,"pValue":0.0001,"threshold":0.05,"drifted":true}]}"#;

    fn complete() -> Job {
        job(json!([{"type": "Complete", "status": "True"}]))
    }

    #[test]
    fn running_job_has_nothing_to_collect() {
        let running = job(json!([]));
        assert!(is_running(&running));
        let pod = pod_with(json!({"running": {}}));
        assert_eq!(collect(&running, &[pod]), None);
    }

    #[test]
    fn completed_job_gives_its_report() {
        let c = collect(&complete(), &[terminated(DRIFT)]).unwrap();
        assert_eq!(c.verdict, DriftVerdict::Drift);
        assert_eq!(c.report.as_ref().unwrap().drift_share, 0.75);
        assert_eq!(c.reason, None);
        assert_eq!(
            c.completion_time,
            Some("2026-03-01T10:05:00Z".parse().unwrap())
        );
    }

    #[test]
    fn insufficient_data_keeps_its_reason() {
        let msg = r#"{"verdict":"InsufficientData","model":"m","samples":3,"referenceSamples":150,"driftShare":0,"driftShareThreshold":0.5,"message":"3 samples, fewer than minSamples 30"}"#;
        let c = collect(&complete(), &[terminated(msg)]).unwrap();
        assert_eq!(c.verdict, DriftVerdict::InsufficientData);
        assert!(c.reason.unwrap().contains("fewer than"));
    }

    #[test]
    fn truncated_4k_message_is_a_failed_check_that_says_so() {
        let mut long = DRIFT.replace("]}", "");
        while long.len() < TERMINATION_MESSAGE_LIMIT {
            long.push_str(r#",{"name":"f","kind":"Numeric","test":"Psi","statistic":0.1,"threshold":0.1,"drifted":false}"#);
        }
        long.truncate(TERMINATION_MESSAGE_LIMIT);
        let c = collect(&complete(), &[terminated(&long)]).unwrap();
        assert_eq!(c.verdict, DriftVerdict::Failed);
        let reason = c.reason.unwrap();
        assert!(
            reason.contains("not a drift report") && reason.contains("4096"),
            "{reason}"
        );
    }

    #[test]
    fn garbage_and_missing_messages_are_failed_checks() {
        let c = collect(&complete(), &[terminated("segfault")]).unwrap();
        assert_eq!(c.verdict, DriftVerdict::Failed);
        assert!(!c.reason.unwrap().contains("4096"));
        let c = collect(&complete(), &[]).unwrap();
        assert_eq!(c.verdict, DriftVerdict::Failed);
        assert!(c.reason.unwrap().contains("without a termination message"));
    }

    #[test]
    fn failed_job_gives_the_failure_and_the_checks_own_reason() {
        let failed = job(
            json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                  "message": "Job has reached the specified backoff limit"}]),
        );
        let msg = r#"{"verdict":"Failed","model":"m","samples":0,"referenceSamples":0,"driftShare":0,"driftShareThreshold":0,"message":"reading the prediction log: no such bucket"}"#;
        let pod = pod_with(json!({"terminated": {"exitCode": 1, "message": msg}}));
        let c = collect(&failed, &[pod]).unwrap();
        assert_eq!(c.verdict, DriftVerdict::Failed);
        let reason = c.reason.unwrap();
        assert!(reason.starts_with("BackoffLimitExceeded"), "{reason}");
        assert!(reason.contains("no such bucket"), "{reason}");
    }

    #[test]
    fn deadline_exceeded_is_a_failed_check() {
        let failed = job(
            json!([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                  "message": "Job was active longer than specified deadline"}]),
        );
        let c = collect(&failed, &[]).unwrap();
        assert_eq!(c.verdict, DriftVerdict::Failed);
        assert!(c.reason.unwrap().starts_with("DeadlineExceeded"));
    }

    #[test]
    fn image_pull_failure_fails_the_check_at_once() {
        let pod = pod_with(json!({"waiting": {"reason": "ImagePullBackOff",
                                              "message": "Back-off pulling image \"nope\""}}));
        let c = collect(&job(json!([])), &[pod]).unwrap();
        assert_eq!(c.verdict, DriftVerdict::Failed);
        assert!(c.stuck);
        assert!(c.reason.unwrap().starts_with("ImagePullBackOff"));
    }
}
