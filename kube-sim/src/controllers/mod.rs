//! The simulated built-in controllers: Deployment, ReplicaSet, Job, the kubelet, and the
//! garbage collector. They run synchronously after every write (to a fixpoint) and when a
//! timer of theirs fires, so for a given sequence of requests and virtual time the cluster
//! is always in the same state.
//!
//! Simplifications:
//! - Deployment: one rolling step. The ReplicaSet of the current template is scaled to
//!   `spec.replicas` at once; the old ones are scaled to zero once it has all its replicas
//!   ready (so maxSurge is effectively 100% and old pods stay until then; maxUnavailable is
//!   used only for the `Available` condition). `minReadySeconds`, `paused`, `Recreate` and
//!   `revisionHistoryLimit` are ignored (old ReplicaSets stay, at zero). Progress (any change
//!   in the new ReplicaSet's replicas/ready counts, or a new template) resets the
//!   `progressDeadlineSeconds` clock (default 600 s).
//! - ReplicaSet: creates `<rs>-<5 chars>` pods from the template, deletes surplus pods (not
//!   ready ones first, then the newest).
//! - Kubelet: a pod's status follows its [`PodBehaviour`], decided once when the pod is
//!   first seen, as a pure function of the time since then. Every container gets the same
//!   state. Deleted pods go at once (no graceful termination).
//! - Job: one pod at a time (`parallelism`/`completions` other than 1 are not modelled);
//!   every failure makes a new pod (`restartPolicy: OnFailure` is treated as `Never`) after
//!   a backoff of 10 s doubling up to 6 min, until `backoffLimit` (default 6) is exceeded;
//!   `activeDeadlineSeconds` fails the Job with `DeadlineExceeded` and deletes its active
//!   pod. No `suspend`, pod failure policy, success policy, `FailureTarget`,
//!   `SuccessCriteriaMet` or `ttlSecondsAfterFinished`.
//! - The API server's defaulting of Job selectors/labels is not done; pods get the
//!   `job-name`, `batch.kubernetes.io/job-name`, `controller-uid` and
//!   `batch.kubernetes.io/controller-uid` labels.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::resources::{self, ResourceId};
use crate::store::{Key, Store, uid_of};
use crate::{Inner, State};

mod deployment;
mod job;
mod kubelet;

pub use deployment::template_hash;

/// Kubernetes' restart delays (a crash-looping container, a failing Job's pods): `first`,
/// doubling, capped at `cap`, without end.
fn doubling(first: Duration, cap: Duration) -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(cap)
        .without_max_times()
        .build()
}

/// How the simulated kubelet runs a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodBehaviour {
    /// Running; every container ready after `after` (containers are creating before).
    Ready { after: Duration },
    /// Every container crashes at once and is restarted with the kubelet's back-off (10 s
    /// doubling up to 5 min): `restartCount` grows, `state.waiting.reason` is
    /// `CrashLoopBackOff`, never ready.
    CrashLoop,
    /// Never scheduled: phase `Pending`, `PodScheduled=False` (`Unschedulable`).
    Pending,
    /// The image cannot be pulled: phase `Pending`, `state.waiting.reason` `ErrImagePull`.
    ImagePullError,
    /// Runs, then exits 0 after `after` (phase `Succeeded`, `state.terminated` with reason
    /// `Completed` and the termination message).
    Succeed {
        after: Duration,
        termination_message: Option<String>,
    },
    /// Runs, then exits with `exit_code` after `after` (phase `Failed`, reason `Error`).
    Fail {
        after: Duration,
        exit_code: i32,
        message: Option<String>,
    },
    /// Runs forever, ready (a Job that never finishes).
    Hang,
}

/// The default: Job pods succeed after 1 s, other pods are ready after 1 s.
pub fn default_behaviour(pod: &Pod) -> PodBehaviour {
    let is_job = pod
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key("job-name"));
    if is_job {
        PodBehaviour::Succeed {
            after: Duration::from_secs(1),
            termination_message: None,
        }
    } else {
        PodBehaviour::Ready {
            after: Duration::from_secs(1),
        }
    }
}

struct PodSim {
    behaviour: PodBehaviour,
    since: Instant,
}

struct Progress {
    counts: Value,
    since: Instant,
}

struct JobSim {
    failed_seen: i64,
    next_pod_at: Instant,
}

/// What the simulated controllers remember outside the objects.
#[derive(Default)]
pub(crate) struct Controllers {
    pods: HashMap<String, PodSim>,
    progress: HashMap<String, Progress>,
    jobs: HashMap<String, JobSim>,
    /// When a timer is next due.
    next_wake: Option<Instant>,
}

impl Controllers {
    fn wake_at(&mut self, at: Instant) {
        self.next_wake = Some(self.next_wake.map_or(at, |w| w.min(at)));
    }
}

fn rid(group: &str, version: &str, plural: &str) -> ResourceId {
    resources::find(group, version, plural).expect("served type")
}

/// Run every controller until nothing changes.
pub(crate) fn run(state: &mut State) {
    let (deployments, replicasets, pods, jobs) = (
        rid("apps", "v1", "deployments"),
        rid("apps", "v1", "replicasets"),
        rid("", "v1", "pods"),
        rid("batch", "v1", "jobs"),
    );
    let ids = Ids {
        deployments,
        replicasets,
        pods,
        jobs,
    };
    state.controllers.next_wake = None;
    for pass in 0.. {
        if pass == 50 {
            tracing::warn!("the simulated controllers did not settle after 50 passes");
            break;
        }
        let rv = state.store.rv;
        state.store.collect_garbage();
        deployment::deployment_controller(state, &ids);
        deployment::replicaset_controller(state, &ids);
        job::job_controller(state, &ids);
        kubelet::kubelet(state, &ids);
        if state.store.rv == rv {
            break;
        }
        state.controllers.next_wake = None;
    }
    let live: std::collections::HashSet<String> = state
        .store
        .objects
        .values()
        .map(|v| uid_of(v).to_string())
        .collect();
    state.controllers.pods.retain(|uid, _| live.contains(uid));
    state
        .controllers
        .progress
        .retain(|uid, _| live.contains(uid));
    state.controllers.jobs.retain(|uid, _| live.contains(uid));
}

/// Fire the controllers' timers until the simulation is dropped.
pub(crate) async fn timer_task(inner: Weak<Inner>, timers: std::sync::Arc<tokio::sync::Notify>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let wake = strong.lock().controllers.next_wake;
        drop(strong);
        let notified = timers.notified();
        match wake {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {
                        if let Some(strong) = inner.upgrade() {
                            strong.mutate(|_| ());
                        }
                    }
                    _ = notified => {}
                }
            }
            None => notified.await,
        }
    }
}

struct Ids {
    deployments: ResourceId,
    replicasets: ResourceId,
    pods: ResourceId,
    jobs: ResourceId,
}

fn deleting(v: &Value) -> bool {
    v["metadata"].get("deletionTimestamp").is_some()
}

fn owner_ref(owner: &Value, kind: &str, api_version: &str) -> Value {
    json!({
        "apiVersion": api_version, "kind": kind,
        "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
        "controller": true, "blockOwnerDeletion": true,
    })
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Set a condition; `lastTransitionTime` moves only when the status does.
fn set_condition(conditions: &mut Vec<Value>, mut new: Value, now: &str) {
    match conditions.iter_mut().find(|c| c["type"] == new["type"]) {
        Some(c) => {
            let transition = if c["status"] == new["status"] {
                c["lastTransitionTime"].clone()
            } else {
                json!(now)
            };
            let update = if c["status"] == new["status"]
                && c["reason"] == new["reason"]
                && c["message"] == new["message"]
            {
                c["lastUpdateTime"].clone()
            } else {
                json!(now)
            };
            new["lastTransitionTime"] = transition;
            if new.get("lastUpdateTime").is_some() {
                new["lastUpdateTime"] = update;
            }
            *c = new;
        }
        None => {
            new["lastTransitionTime"] = json!(now);
            if new.get("lastUpdateTime").is_some() {
                new["lastUpdateTime"] = json!(now);
            }
            conditions.push(new);
        }
    }
}

fn write_status(store: &mut Store, key: &Key, object: &Value, status: Value) {
    if object["status"] != status {
        let mut new = object.clone();
        new["status"] = status;
        store.update(key, new);
    }
}
