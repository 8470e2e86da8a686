//! The Deployment and ReplicaSet controllers.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Ids, Progress, deleting, is_ready, owner_ref, set_condition, write_status};
use crate::State;
use crate::store::{Key, uid_of};

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

pub(super) fn deployment_controller(state: &mut State, ids: &Ids) {
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

pub(super) fn replicaset_controller(state: &mut State, ids: &Ids) {
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
            meta["generateName"] = json!(format!("{}-", key.name));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hash_ignores_key_order() {
        let a = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"x": 1}});
        let b = json!({"spec": {"x": 1}, "metadata": {"labels": {"b": "2", "a": "1"}}});
        assert_eq!(template_hash(&a), template_hash(&b));
        assert_ne!(template_hash(&a), template_hash(&json!({"spec": {"x": 2}})));
    }
}
