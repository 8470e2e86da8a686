//! The kubelet: pod status from the pod's behaviour and the time since it was seen.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Ids, PodBehaviour, PodSim, deleting, write_status};
use crate::State;
use crate::store::{rfc3339, uid_of};

fn container_names(pod: &Value) -> Vec<(String, String)> {
    pod["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or("main").to_string(),
                        c["image"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_else(|| vec![("main".into(), String::new())])
}

/// The crash-loop restart times: 10 s doubling, capped at 5 min.
fn restarts_by(elapsed: Duration) -> (i64, Duration) {
    let mut t = Duration::ZERO;
    for (n, backoff) in
        super::doubling(Duration::from_secs(10), Duration::from_secs(300)).enumerate()
    {
        if t + backoff > elapsed {
            return (n as i64, t + backoff);
        }
        t += backoff;
    }
    unreachable!("the restart delays never end")
}

/// The pod status a behaviour gives after `elapsed`, and when it next changes.
fn pod_status(
    behaviour: &PodBehaviour,
    pod: &Value,
    elapsed: Duration,
    at: &dyn Fn(Duration) -> String,
) -> (Value, Option<Duration>) {
    let containers = container_names(pod);
    let start = at(Duration::ZERO);
    let cond = |t: &str, s: bool, since: Duration, reason: Option<&str>| {
        let mut c = json!({"type": t, "status": if s { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": at(since)});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        c
    };
    let statuses = |state: &dyn Fn(&str, &str) -> Value,
                    ready: bool,
                    restarts: i64,
                    last: Option<Value>|
     -> Value {
        json!(
            containers
                .iter()
                .map(|(name, image)| {
                    let mut s = json!({
                        "name": name, "image": image, "imageID": "", "ready": ready,
                        "started": ready, "restartCount": restarts, "state": state(name, image),
                    });
                    if let Some(l) = &last {
                        s["lastState"] = l.clone();
                    }
                    s
                })
                .collect::<Vec<_>>()
        )
    };
    // Scheduled and initialised, its containers not (yet) ready.
    let not_ready = || {
        vec![
            cond("PodScheduled", true, Duration::ZERO, None),
            cond("Initialized", true, Duration::ZERO, None),
            cond(
                "ContainersReady",
                false,
                Duration::ZERO,
                Some("ContainersNotReady"),
            ),
            cond("Ready", false, Duration::ZERO, Some("ContainersNotReady")),
        ]
    };
    let running = |since: Duration| {
        let t = at(since);
        move |_: &str, _: &str| json!({"running": {"startedAt": t}})
    };
    let waiting = |reason: &'static str, message: String| move |_: &str, _: &str| json!({"waiting": {"reason": reason, "message": message}});
    let base = |phase: &str, conditions: Vec<Value>, cs: Value| json!({"phase": phase, "conditions": conditions, "containerStatuses": cs, "startTime": start, "hostIP": "10.0.0.1", "podIP": "10.1.0.1", "qosClass": "Burstable"});
    let creating = || {
        base(
            "Pending",
            not_ready(),
            statuses(&waiting("ContainerCreating", String::new()), false, 0, None),
        )
    };
    let running_ready = |since: Duration| {
        base(
            "Running",
            vec![
                cond("PodScheduled", true, Duration::ZERO, None),
                cond("Initialized", true, Duration::ZERO, None),
                cond("ContainersReady", true, since, None),
                cond("Ready", true, since, None),
            ],
            statuses(&running(since), true, 0, None),
        )
    };
    let terminated = |after: Duration, code: i32, reason: &str, message: &Option<String>| {
        let t = at(after);
        let mut term =
            json!({"exitCode": code, "reason": reason, "startedAt": start, "finishedAt": t});
        if let Some(m) = message {
            term["message"] = json!(m);
        }
        let state = move |_: &str, _: &str| json!({"terminated": term.clone()});
        base(
            if code == 0 { "Succeeded" } else { "Failed" },
            vec![
                cond("PodScheduled", true, Duration::ZERO, None),
                cond("Initialized", true, Duration::ZERO, None),
                cond("ContainersReady", false, after, Some("PodCompleted")),
                cond("Ready", false, after, Some("PodCompleted")),
            ],
            statuses(&state, false, 0, None),
        )
    };
    match behaviour {
        PodBehaviour::Ready { after } if elapsed < *after => (creating(), Some(*after)),
        PodBehaviour::Ready { after } => (running_ready(*after), None),
        PodBehaviour::Hang => (running_ready(Duration::ZERO), None),
        PodBehaviour::Succeed { after, .. } | PodBehaviour::Fail { after, .. }
            if elapsed < *after =>
        {
            (running_ready(Duration::ZERO), Some(*after))
        }
        PodBehaviour::Succeed {
            after,
            termination_message,
        } => (
            terminated(*after, 0, "Completed", termination_message),
            None,
        ),
        PodBehaviour::Fail {
            after,
            exit_code,
            message,
        } => (terminated(*after, *exit_code, "Error", message), None),
        PodBehaviour::Pending => (
            json!({"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "lastProbeTime": null,
                "lastTransitionTime": start,
                "message": "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
            }], "qosClass": "Burstable"}),
            None,
        ),
        PodBehaviour::ImagePullError => {
            let image = containers.first().map(|c| c.1.clone()).unwrap_or_default();
            let message = format!("failed to pull and unpack image \"{image}\": not found");
            (
                base(
                    "Pending",
                    not_ready(),
                    statuses(&waiting("ErrImagePull", message), false, 0, None),
                ),
                None,
            )
        }
        PodBehaviour::CrashLoop => {
            let (restarts, next) = restarts_by(elapsed);
            let pod_name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
            let backoff = (10u64 << restarts.min(5)).min(300);
            let state = move |name: &str, _: &str| json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off {backoff}s restarting failed container={name} pod={pod_name}")}});
            let last = json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": start, "finishedAt": start}});
            (
                base(
                    "Running",
                    not_ready(),
                    statuses(&state, false, restarts, Some(last)),
                ),
                Some(next),
            )
        }
    }
}

pub(super) fn kubelet(state: &mut State, ids: &Ids) {
    let clock = state.store.clock;
    for (key, pod) in state.store.list(ids.pods, None) {
        if deleting(&pod) {
            continue;
        }
        let uid = uid_of(&pod).to_string();
        let behaviour_fn = state.pod_behaviour.clone();
        let sim = state.controllers.pods.entry(uid).or_insert_with(|| {
            let typed: Pod = serde_json::from_value(pod.clone()).unwrap_or_default();
            PodSim {
                behaviour: behaviour_fn(&typed),
                since: Instant::now(),
            }
        });
        let since = sim.since;
        let elapsed = Instant::now().saturating_duration_since(since);
        let at = |d: Duration| rfc3339(clock.at(since + d));
        let (status, next) = pod_status(&sim.behaviour, &pod, elapsed, &at);
        if let Some(next) = next {
            state.controllers.wake_at(since + next);
        }
        write_status(&mut state.store, &key, &pod, status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_loop_backoff_doubles_up_to_five_minutes() {
        assert_eq!(
            restarts_by(Duration::from_secs(5)),
            (0, Duration::from_secs(10))
        );
        assert_eq!(
            restarts_by(Duration::from_secs(10)),
            (1, Duration::from_secs(30))
        );
        assert_eq!(
            restarts_by(Duration::from_secs(75)),
            (3, Duration::from_secs(150))
        );
        assert_eq!(restarts_by(Duration::from_secs(1000)).0, 7);
    }
}
