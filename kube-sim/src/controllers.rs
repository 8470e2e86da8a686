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
use crate::store::{Key, Store, rfc3339, uid_of};
use crate::{Inner, State};

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
    for _ in 0..50 {
        let rv = state.store.rv;
        state.store.collect_garbage();
        deployment_controller(state, &ids);
        replicaset_controller(state, &ids);
        job_controller(state, &ids);
        kubelet(state, &ids);
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

/// FNV-1a of the template's canonical JSON, spelled like the Deployment controller's hash.
pub fn template_hash(template: &Value) -> String {
    fn canonical(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for k in keys {
                    out.push_str(&serde_json::to_string(k).expect("JSON"));
                    out.push(':');
                    canonical(&m[k], out);
                    out.push(',');
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for i in a {
                    canonical(i, out);
                    out.push(',');
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    canonical(template, &mut s);
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn revision(v: &Value) -> i64 {
    v["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn int_or_percent(v: &Value, of: i64, default_percent: i64, round_up: bool) -> i64 {
    let percent = |p: i64| {
        if round_up {
            (of * p + 99) / 100
        } else {
            of * p / 100
        }
    };
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => s
            .trim_end_matches('%')
            .parse()
            .map(percent)
            .unwrap_or_else(|_| percent(default_percent)),
        _ => percent(default_percent),
    }
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

fn deployment_controller(state: &mut State, ids: &Ids) {
    for (key, d) in state.store.list(ids.deployments, None) {
        if deleting(&d) {
            continue;
        }
        let uid = uid_of(&d).to_string();
        let name = key.name.clone();
        let desired = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let template = d["spec"]["template"].clone();
        let hash = template_hash(&template);
        let rses = state
            .store
            .controlled_by(ids.replicasets, &key.namespace, &uid);
        let max_revision = rses.iter().map(|(_, r)| revision(r)).max().unwrap_or(0);
        let current = rses
            .iter()
            .find(|(_, r)| r["metadata"]["labels"]["pod-template-hash"] == hash.as_str())
            .cloned();
        let rs_name = format!("{name}-{hash}");
        let (rs_key, rs) = match current {
            None => {
                let mut labels = template["metadata"]["labels"].clone();
                if !labels.is_object() {
                    labels = json!({});
                }
                labels["pod-template-hash"] = json!(hash);
                let mut rs_template = template.clone();
                rs_template["metadata"]["labels"] = labels.clone();
                let mut selector = d["spec"]["selector"].clone();
                if !selector.is_object() {
                    selector = json!({});
                }
                selector["matchLabels"]["pod-template-hash"] = json!(hash);
                let rs = json!({
                    "metadata": {
                        "name": rs_name, "labels": labels,
                        "annotations": {
                            "deployment.kubernetes.io/revision": (max_revision + 1).to_string(),
                            "deployment.kubernetes.io/desired-replicas": desired.to_string(),
                        },
                        "ownerReferences": [owner_ref(&d, "Deployment", "apps/v1")],
                    },
                    "spec": {"replicas": desired, "selector": selector, "template": rs_template},
                });
                let rs_key = Key {
                    resource: ids.replicasets,
                    namespace: key.namespace.clone(),
                    name: rs_name.clone(),
                };
                let stored = state.store.insert(rs_key.clone(), rs);
                (rs_key, stored)
            }
            Some((rs_key, rs)) => {
                let mut new = rs.clone();
                new["spec"]["replicas"] = json!(desired);
                new["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
                    json!(desired.to_string());
                if revision(&rs) < max_revision {
                    new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                        json!((max_revision + 1).to_string());
                }
                let stored = state.store.update(&rs_key, new).unwrap_or(rs);
                (rs_key, stored)
            }
        };
        let new_ready = rs["status"]["readyReplicas"].as_i64().unwrap_or(0);
        let new_replicas = rs["status"]["replicas"].as_i64().unwrap_or(0);
        if new_ready >= desired {
            for (old_key, old) in &rses {
                if *old_key != rs_key && old["spec"]["replicas"].as_i64().unwrap_or(0) != 0 {
                    let mut new = old.clone();
                    new["spec"]["replicas"] = json!(0);
                    state.store.update(old_key, new);
                }
            }
        }
        // Status, from the ReplicaSets as they are now.
        let rses = state
            .store
            .controlled_by(ids.replicasets, &key.namespace, &uid);
        let sum = |f: &str| -> i64 {
            rses.iter()
                .map(|(_, r)| r["status"][f].as_i64().unwrap_or(0))
                .sum()
        };
        let (replicas, ready) = (sum("replicas"), sum("readyReplicas"));
        let available = sum("availableReplicas");
        let strategy = &d["spec"]["strategy"]["rollingUpdate"];
        let max_unavailable = int_or_percent(&strategy["maxUnavailable"], desired, 25, false);
        let now = state.store.now();
        let instant = Instant::now();
        let complete = new_replicas == desired && new_ready >= desired && replicas == desired;
        let counts = json!([
            rs_name,
            d["metadata"]["generation"],
            new_replicas,
            new_ready,
            replicas
        ]);
        let progress = state
            .controllers
            .progress
            .entry(uid.clone())
            .or_insert(Progress {
                counts: counts.clone(),
                since: instant,
            });
        if progress.counts != counts {
            progress.counts = counts;
            progress.since = instant;
        }
        let deadline =
            Duration::from_secs(d["spec"]["progressDeadlineSeconds"].as_u64().unwrap_or(600));
        let timed_out = !complete && instant >= progress.since + deadline;
        let due = progress.since + deadline;
        let mut status = d["status"].clone();
        if !status.is_object() {
            status = json!({});
        }
        let mut conditions: Vec<Value> =
            status["conditions"].as_array().cloned().unwrap_or_default();
        let (a_status, a_reason, a_message) = if available >= desired - max_unavailable {
            (
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        } else {
            (
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        };
        set_condition(
            &mut conditions,
            json!({"type": "Available", "status": a_status, "reason": a_reason, "message": a_message, "lastUpdateTime": now}),
            &now,
        );
        let (p_status, p_reason, p_message) = if complete {
            (
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            )
        } else if timed_out {
            (
                "False",
                "ProgressDeadlineExceeded",
                format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
            )
        } else {
            (
                "True",
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{rs_name}\" is progressing."),
            )
        };
        set_condition(
            &mut conditions,
            json!({"type": "Progressing", "status": p_status, "reason": p_reason, "message": p_message, "lastUpdateTime": now}),
            &now,
        );
        if !complete && !timed_out {
            state.controllers.wake_at(due);
        }
        status["observedGeneration"] = d["metadata"]["generation"].clone();
        status["replicas"] = json!(replicas);
        status["updatedReplicas"] = json!(new_replicas);
        status["readyReplicas"] = json!(ready);
        status["availableReplicas"] = json!(available);
        status["unavailableReplicas"] = json!((desired - available).max(0));
        status["conditions"] = json!(conditions);
        for zero in [
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
            "updatedReplicas",
            "replicas",
        ] {
            if status[zero] == 0 {
                status.as_object_mut().expect("object").remove(zero);
            }
        }
        let mut d_new = d.clone();
        d_new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
            json!(revision(&rs).max(max_revision).max(1).to_string());
        let d_new = if d_new != d {
            state.store.update(&key, d_new).unwrap_or(d)
        } else {
            d
        };
        write_status(&mut state.store, &key, &d_new, status);
    }
}

fn replicaset_controller(state: &mut State, ids: &Ids) {
    for (key, rs) in state.store.list(ids.replicasets, None) {
        if deleting(&rs) {
            continue;
        }
        let uid = uid_of(&rs).to_string();
        let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        let mut pods: Vec<(Key, Value)> = state
            .store
            .controlled_by(ids.pods, &key.namespace, &uid)
            .into_iter()
            .filter(|(_, p)| !deleting(p))
            .collect();
        while pods.len() < want {
            let template = &rs["spec"]["template"];
            let name = format!("{}-{}", key.name, state.store.suffix(5));
            let mut meta = template["metadata"].clone();
            if !meta.is_object() {
                meta = json!({});
            }
            meta["name"] = json!(name);
            meta["ownerReferences"] = json!([owner_ref(&rs, "ReplicaSet", "apps/v1")]);
            let pod = json!({
                "metadata": meta,
                "spec": template["spec"],
                "status": {"phase": "Pending"},
            });
            let pod_key = Key {
                resource: ids.pods,
                namespace: key.namespace.clone(),
                name,
            };
            let stored = state.store.insert(pod_key.clone(), pod);
            pods.push((pod_key, stored));
        }
        if pods.len() > want {
            // Not ready first, then the newest.
            pods.sort_by(|(_, a), (_, b)| {
                is_ready(a).cmp(&is_ready(b)).then_with(|| {
                    let rv = |v: &Value| {
                        v["metadata"]["resourceVersion"]
                            .as_str()
                            .and_then(|r| r.parse::<u64>().ok())
                            .unwrap_or(0)
                    };
                    let created = |v: &Value| {
                        v["metadata"]["creationTimestamp"]
                            .as_str()
                            .unwrap_or("")
                            .to_string()
                    };
                    created(b).cmp(&created(a)).then(rv(b).cmp(&rv(a)))
                })
            });
            let surplus = pods.len() - want;
            for (pod_key, _) in pods.drain(..surplus) {
                state.store.delete(&pod_key);
            }
        }
        let ready = pods.iter().filter(|(_, p)| is_ready(p)).count();
        let status = json!({
            "replicas": pods.len(),
            "fullyLabeledReplicas": pods.len(),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"]["generation"],
        });
        let rs = state.store.get(&key).cloned().unwrap_or(rs);
        write_status(&mut state.store, &key, &rs, status);
    }
}

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
    let mut backoff = Duration::from_secs(10);
    let mut n = 0;
    loop {
        if t + backoff > elapsed {
            return (n, t + backoff);
        }
        t += backoff;
        n += 1;
        backoff = (backoff * 2).min(Duration::from_secs(300));
    }
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
    let running = |since: Duration| {
        let t = at(since);
        move |_: &str, _: &str| json!({"running": {"startedAt": t}})
    };
    let waiting = |reason: &'static str, message: String| move |_: &str, _: &str| json!({"waiting": {"reason": reason, "message": message}});
    let base = |phase: &str, conditions: Vec<Value>, cs: Value| json!({"phase": phase, "conditions": conditions, "containerStatuses": cs, "startTime": start, "hostIP": "10.0.0.1", "podIP": "10.1.0.1", "qosClass": "Burstable"});
    let creating = || {
        base(
            "Pending",
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
            ],
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
                    ],
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
                    ],
                    statuses(&state, false, restarts, Some(last)),
                ),
                Some(next),
            )
        }
    }
}

fn kubelet(state: &mut State, ids: &Ids) {
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

fn job_controller(state: &mut State, ids: &Ids) {
    for (key, job) in state.store.list(ids.jobs, None) {
        if deleting(&job) {
            continue;
        }
        let finished = job["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter().any(|c| {
                (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True"
            })
        });
        if finished {
            continue;
        }
        let uid = uid_of(&job).to_string();
        let now_instant = Instant::now();
        let now = state.store.now();
        let mut status = job["status"].clone();
        if !status.is_object() {
            status = json!({});
        }
        if status["startTime"].is_null() {
            status["startTime"] = json!(now);
        }
        let pods = state.store.controlled_by(ids.pods, &key.namespace, &uid);
        let phase = |p: &Value| p["status"]["phase"].as_str().unwrap_or("").to_string();
        let succeeded = pods.iter().filter(|(_, p)| phase(p) == "Succeeded").count() as i64;
        let failed = pods.iter().filter(|(_, p)| phase(p) == "Failed").count() as i64;
        let active: Vec<&(Key, Value)> = pods
            .iter()
            .filter(|(_, p)| !deleting(p) && phase(p) != "Succeeded" && phase(p) != "Failed")
            .collect();
        let sim = state.controllers.jobs.entry(uid.clone()).or_insert(JobSim {
            failed_seen: 0,
            next_pod_at: now_instant,
        });
        if failed > sim.failed_seen {
            sim.failed_seen = failed;
            let backoff = Duration::from_secs(10 * (1u64 << (failed - 1).min(6)))
                .min(Duration::from_secs(360));
            sim.next_pod_at = now_instant + backoff;
        }
        let next_pod_at = sim.next_pod_at;
        let start_time: jiff::Timestamp = status["startTime"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| state.store.clock.now());
        let mut conditions: Vec<Value> =
            status["conditions"].as_array().cloned().unwrap_or_default();
        let backoff_limit = job["spec"]["backoffLimit"].as_i64().unwrap_or(6);
        let deadline = job["spec"]["activeDeadlineSeconds"].as_i64();
        let wall_now = state.store.clock.now();
        let mut active_count = active.len() as i64;
        let mut failed_count = failed;
        let finish =
            |conditions: &mut Vec<Value>, t: &str, reason: Option<&str>, message: Option<&str>| {
                let mut c = json!({"type": t, "status": "True", "lastProbeTime": now});
                if let Some(r) = reason {
                    c["reason"] = json!(r);
                }
                if let Some(m) = message {
                    c["message"] = json!(m);
                }
                set_condition(conditions, c, &now);
            };
        let deadline_at = deadline.map(|s| start_time + jiff::SignedDuration::from_secs(s));
        if deadline_at.is_some_and(|at| wall_now >= at) {
            for (pod_key, _) in &active {
                state.store.delete(pod_key);
            }
            failed_count += active_count;
            active_count = 0;
            finish(
                &mut conditions,
                "Failed",
                Some("DeadlineExceeded"),
                Some("Job was active longer than specified deadline"),
            );
        } else if succeeded >= 1 {
            active_count = 0;
            status["completionTime"] = json!(now);
            finish(&mut conditions, "Complete", None, None);
        } else if failed > backoff_limit {
            finish(
                &mut conditions,
                "Failed",
                Some("BackoffLimitExceeded"),
                Some("Job has reached the specified backoff limit"),
            );
        } else if active.is_empty() {
            if now_instant >= next_pod_at {
                let template = &job["spec"]["template"];
                let name = format!("{}-{}", key.name, state.store.suffix(5));
                let mut meta = template["metadata"].clone();
                if !meta.is_object() {
                    meta = json!({});
                }
                meta["name"] = json!(name);
                for label in ["job-name", "batch.kubernetes.io/job-name"] {
                    meta["labels"][label] = json!(key.name);
                }
                for label in ["controller-uid", "batch.kubernetes.io/controller-uid"] {
                    meta["labels"][label] = json!(uid);
                }
                meta["ownerReferences"] = json!([owner_ref(&job, "Job", "batch/v1")]);
                let pod = json!({"metadata": meta, "spec": template["spec"], "status": {"phase": "Pending"}});
                state.store.insert(
                    Key {
                        resource: ids.pods,
                        namespace: key.namespace.clone(),
                        name,
                    },
                    pod,
                );
                active_count = 1;
            } else {
                state.controllers.wake_at(next_pod_at);
            }
        }
        if let Some(at) = deadline_at
            && wall_now < at
        {
            let wait = Duration::try_from(at.duration_since(wall_now)).unwrap_or_default();
            state.controllers.wake_at(now_instant + wait);
        }
        status["active"] = json!(active_count);
        status["succeeded"] = json!(succeeded);
        status["failed"] = json!(failed_count);
        status["ready"] = json!(active.iter().filter(|(_, p)| is_ready(p)).count());
        if !conditions.is_empty() {
            status["conditions"] = json!(conditions);
        }
        for zero in ["active", "succeeded", "failed"] {
            if status[zero] == 0 {
                status.as_object_mut().expect("object").remove(zero);
            }
        }
        let job = state.store.get(&key).cloned().unwrap_or(job);
        write_status(&mut state.store, &key, &job, status);
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

    #[test]
    fn template_hash_ignores_key_order() {
        let a = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"x": 1}});
        let b = json!({"spec": {"x": 1}, "metadata": {"labels": {"b": "2", "a": "1"}}});
        assert_eq!(template_hash(&a), template_hash(&b));
        assert_ne!(template_hash(&a), template_hash(&json!({"spec": {"x": 2}})));
    }
}
