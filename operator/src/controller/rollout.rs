//! Observe how the rollout of the version in force is going, from the Deployment read back
//! after applying it and the pods of that version (pure).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;

use super::children::VERSION_ANNOTATION;

/// A pod restarting this often while in `CrashLoopBackOff` counts as crash-looping.
pub const CRASH_LOOP_RESTARTS: i32 = 3;

/// What the Deployment says about the version in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollout {
    /// New pods are starting, or the Deployment controller has not seen the change yet.
    Progressing,
    /// Every replica runs the version and is ready.
    Complete,
    /// The rollout failed; the message says why.
    Failed(String),
}

/// Replica counts of the Deployment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Replicas {
    pub desired: i32,
    pub ready: i32,
    pub updated: i32,
}

/// The observation of one reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub rollout: Rollout,
    pub replicas: Replicas,
}

/// The version a Deployment's pod template serves.
pub fn template_version(deployment: &Deployment) -> Option<&str> {
    deployment
        .spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(VERSION_ANNOTATION)
        .map(String::as_str)
}

/// Does any pod keep crashing? Returns a message naming the pod.
pub fn crash_looping(pods: &[Pod]) -> Option<String> {
    pods.iter().find_map(|pod| {
        let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
        statuses.iter().find_map(|cs| {
            let waiting = cs.state.as_ref()?.waiting.as_ref()?;
            (waiting.reason.as_deref() == Some("CrashLoopBackOff")
                && cs.restart_count >= CRASH_LOOP_RESTARTS)
                .then(|| {
                    format!(
                        "pod {} container {} is crash-looping ({} restarts)",
                        pod.metadata.name.as_deref().unwrap_or("?"),
                        cs.name,
                        cs.restart_count
                    )
                })
        })
    })
}

/// Judge the rollout from the Deployment and the pods of the version in force.
pub fn observe(deployment: &Deployment, pods: &[Pod]) -> Observation {
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let status = deployment.status.clone().unwrap_or_default();
    let replicas = Replicas {
        desired,
        ready: status.ready_replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
    };
    // Until the Deployment controller has seen the current template, its status describes the
    // previous one (it may still say ProgressDeadlineExceeded about an older rollout).
    let seen = match (deployment.metadata.generation, status.observed_generation) {
        (Some(generation), Some(observed)) => observed >= generation,
        _ => false,
    };
    if !seen {
        return Observation {
            rollout: Rollout::Progressing,
            replicas,
        };
    }
    let deadline_exceeded = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if let Some(c) = deadline_exceeded {
        let message = c
            .message
            .clone()
            .unwrap_or_else(|| "progress deadline exceeded".into());
        return Observation {
            rollout: Rollout::Failed(format!("ProgressDeadlineExceeded: {message}")),
            replicas,
        };
    }
    if let Some(message) = crash_looping(pods) {
        return Observation {
            rollout: Rollout::Failed(message),
            replicas,
        };
    }
    let total = status.replicas.unwrap_or(0);
    let complete = replicas.updated >= desired && replicas.ready >= desired && total <= desired;
    let rollout = if complete {
        Rollout::Complete
    } else {
        Rollout::Progressing
    };
    Observation { rollout, replicas }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(yaml: &str) -> Deployment {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn unseen_generation_is_progressing_even_with_an_old_failure() {
        let d = deployment(
            "metadata: {name: iris, generation: 3}\nspec: {replicas: 1, selector: {}, template: {}}\nstatus: {observedGeneration: 2, conditions: [{type: Progressing, status: 'False', reason: ProgressDeadlineExceeded}]}",
        );
        assert_eq!(observe(&d, &[]).rollout, Rollout::Progressing);
    }

    #[test]
    fn deadline_exceeded_fails() {
        let d = deployment(
            "metadata: {name: iris, generation: 2}\nspec: {replicas: 2, selector: {}, template: {}}\nstatus: {observedGeneration: 2, replicas: 3, readyReplicas: 2, updatedReplicas: 1, conditions: [{type: Progressing, status: 'False', reason: ProgressDeadlineExceeded, message: 'ReplicaSet iris-abc has timed out progressing.'}]}",
        );
        let obs = observe(&d, &[]);
        assert!(
            matches!(&obs.rollout, Rollout::Failed(m) if m.contains("timed out")),
            "{obs:?}"
        );
        assert_eq!(
            obs.replicas,
            Replicas {
                desired: 2,
                ready: 2,
                updated: 1
            }
        );
    }

    #[test]
    fn complete_when_all_updated_replicas_are_ready() {
        let d = deployment(
            "metadata: {name: iris, generation: 2}\nspec: {replicas: 2, selector: {}, template: {}}\nstatus: {observedGeneration: 2, replicas: 2, readyReplicas: 2, updatedReplicas: 2}",
        );
        assert_eq!(observe(&d, &[]).rollout, Rollout::Complete);
        let surging = deployment(
            "metadata: {name: iris, generation: 2}\nspec: {replicas: 2, selector: {}, template: {}}\nstatus: {observedGeneration: 2, replicas: 3, readyReplicas: 2, updatedReplicas: 2}",
        );
        assert_eq!(
            observe(&surging, &[]).rollout,
            Rollout::Progressing,
            "old pod still terminating"
        );
    }

    #[test]
    fn crash_looping_pods_fail_the_rollout() {
        let d = deployment(
            "metadata: {name: iris, generation: 2}\nspec: {replicas: 1, selector: {}, template: {}}\nstatus: {observedGeneration: 2, replicas: 2, readyReplicas: 1, updatedReplicas: 1}",
        );
        let pod: Pod = serde_yaml::from_str(
            "metadata: {name: iris-new}\nstatus: {containerStatuses: [{name: inference-server, image: x, imageID: '', ready: false, restartCount: 4, state: {waiting: {reason: CrashLoopBackOff}}}]}",
        )
        .unwrap();
        let obs = observe(&d, std::slice::from_ref(&pod));
        assert!(
            matches!(&obs.rollout, Rollout::Failed(m) if m.contains("iris-new")),
            "{obs:?}"
        );
        let mut young = pod;
        young
            .status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[0]
            .restart_count = 1;
        assert_eq!(observe(&d, &[young]).rollout, Rollout::Progressing);
    }
}
