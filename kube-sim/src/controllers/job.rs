//! The Job controller.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Ids, JobSim, deleting, is_ready, owner_ref, set_condition, write_status};
use crate::State;
use crate::store::{Key, uid_of};

pub(super) fn job_controller(state: &mut State, ids: &Ids) {
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
            let backoff = super::doubling(Duration::from_secs(10), Duration::from_secs(360))
                .nth(failed as usize - 1)
                .unwrap_or(Duration::from_secs(360));
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
                meta["generateName"] = json!(format!("{}-", key.name));
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
