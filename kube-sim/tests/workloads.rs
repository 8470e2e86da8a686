//! The simulated Deployment, ReplicaSet, Job and kubelet controllers and the garbage
//! collector, in virtual time.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use mooring_kube_sim::{PodBehaviour, Sim};
use serde_json::json;

const NS: &str = "ns";

fn deployment(version: &str, replicas: i32) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": 120,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}, "annotations": {"version": version}},
                "spec": {"containers": [{"name": "main", "image": format!("web:{version}")}]},
            },
        },
    })
}

async fn apply(api: &Api<Deployment>, body: serde_json::Value) {
    api.patch(
        "web",
        &PatchParams::apply("test").force(),
        &Patch::Apply(body),
    )
    .await
    .unwrap();
}

fn condition(d: &Deployment, t: &str) -> Option<(String, String)> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

fn behaviour(pod: &Pod) -> PodBehaviour {
    match pod.annotations().get("version").map(String::as_str) {
        Some("bad") => PodBehaviour::CrashLoop,
        _ => PodBehaviour::Ready {
            after: Duration::from_secs(5),
        },
    }
}

fn pods_of(sim: &Sim, rs: &str) -> Vec<Pod> {
    sim.list::<Pod>(Some(NS))
        .into_iter()
        .filter(|p| p.owner_references().iter().any(|o| o.name == rs))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn deployment_rolls_a_to_b_to_a_reusing_the_replicaset() {
    let sim = Sim::new();
    sim.set_pod_behaviour(behaviour);
    let api: Api<Deployment> = Api::namespaced(sim.client("t"), NS);
    apply(&api, deployment("a", 2)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rs_a = sim.list::<ReplicaSet>(Some(NS));
    assert_eq!(rs_a.len(), 1);
    let rs_a = rs_a[0].name_any();
    let hash = sim.get::<ReplicaSet>(NS, &rs_a).unwrap().labels()["pod-template-hash"].clone();
    assert_eq!(rs_a, format!("web-{hash}"));
    let pods = pods_of(&sim, &rs_a);
    assert_eq!(pods.len(), 2);
    assert_eq!(pods[0].labels()["pod-template-hash"], hash);
    assert_eq!(pods[0].annotations()["version"], "a");
    let d = sim.get::<Deployment>(NS, "web").unwrap();
    assert_eq!(condition(&d, "Available").unwrap().0, "False");

    tokio::time::sleep(Duration::from_secs(5)).await;
    let d = sim.get::<Deployment>(NS, "web").unwrap();
    let status = d.status.clone().unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        (status.ready_replicas, status.available_replicas),
        (Some(2), Some(2))
    );
    assert_eq!(
        condition(&d, "Progressing").unwrap(),
        ("True".into(), "NewReplicaSetAvailable".into())
    );
    assert_eq!(condition(&d, "Available").unwrap().0, "True");

    // To B: a new ReplicaSet; the old pods stay until the new ones are ready.
    apply(&api, deployment("b", 2)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let d = sim.get::<Deployment>(NS, "web").unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    assert_eq!(
        condition(&d, "Progressing").unwrap(),
        ("True".into(), "ReplicaSetUpdated".into())
    );
    assert_eq!(sim.list::<ReplicaSet>(Some(NS)).len(), 2);
    assert_eq!(sim.list::<Pod>(Some(NS)).len(), 4);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(pods_of(&sim, &rs_a).is_empty());
    let d = sim.get::<Deployment>(NS, "web").unwrap();
    assert_eq!(d.status.as_ref().unwrap().updated_replicas, Some(2));
    assert_eq!(
        condition(&d, "Progressing").unwrap().1,
        "NewReplicaSetAvailable"
    );

    // Back to A: its ReplicaSet is scaled up again, no third one.
    apply(&api, deployment("a", 2)).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(sim.list::<ReplicaSet>(Some(NS)).len(), 2);
    let a = sim.get::<ReplicaSet>(NS, &rs_a).unwrap();
    assert_eq!(a.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(a.annotations()["deployment.kubernetes.io/revision"], "3");
    assert_eq!(pods_of(&sim, &rs_a).len(), 2);
    assert_eq!(sim.list::<Pod>(Some(NS)).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn crash_looping_template_exceeds_the_progress_deadline() {
    let sim = Sim::new();
    sim.set_pod_behaviour(behaviour);
    let api: Api<Deployment> = Api::namespaced(sim.client("t"), NS);
    apply(&api, deployment("a", 1)).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    apply(&api, deployment("bad", 1)).await;
    tokio::time::sleep(Duration::from_secs(100)).await;
    let d = sim.get::<Deployment>(NS, "web").unwrap();
    assert_eq!(condition(&d, "Progressing").unwrap().1, "ReplicaSetUpdated");
    let bad: Vec<Pod> = sim
        .list::<Pod>(Some(NS))
        .into_iter()
        .filter(|p| p.annotations()["version"] == "bad")
        .collect();
    let cs = &bad[0]
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert!(cs.restart_count >= 3, "{cs:?}");
    assert_eq!(
        cs.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("CrashLoopBackOff")
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    let d = sim.get::<Deployment>(NS, "web").unwrap();
    assert_eq!(
        condition(&d, "Progressing").unwrap(),
        ("False".into(), "ProgressDeadlineExceeded".into())
    );
    // The old pod still serves.
    assert_eq!(condition(&d, "Available").unwrap().0, "True");
}

#[tokio::test(start_paused = true)]
async fn deleting_a_deployment_collects_its_replicasets_and_pods() {
    let sim = Sim::new();
    let api: Api<Deployment> = Api::namespaced(sim.client("t"), NS);
    apply(&api, deployment("a", 3)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    apply(&api, deployment("b", 3)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sim.list::<ReplicaSet>(Some(NS)).len(), 2);
    assert_eq!(sim.list::<Pod>(Some(NS)).len(), 3);
    api.delete("web", &DeleteParams::background())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(sim.list::<ReplicaSet>(Some(NS)).is_empty());
    assert!(sim.list::<Pod>(Some(NS)).is_empty());
}

fn job(name: &str, deadline: Option<i64>) -> serde_json::Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 1,
            "activeDeadlineSeconds": deadline,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "drift", "image": "drift:1"}]}},
        },
    })
}

fn job_condition(j: &Job, t: &str) -> Option<(String, String)> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t && c.status == "True")
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

#[tokio::test(start_paused = true)]
async fn jobs_succeed_fail_and_exceed_their_deadline() {
    let sim = Sim::new();
    sim.set_pod_behaviour(
        |pod| match pod.labels().get("job-name").map(String::as_str) {
            Some("ok") => PodBehaviour::Succeed {
                after: Duration::from_secs(30),
                termination_message: Some(r#"{"drift": false}"#.into()),
            },
            Some("broken") => PodBehaviour::Fail {
                after: Duration::from_secs(5),
                exit_code: 2,
                message: Some("boom".into()),
            },
            _ => PodBehaviour::Hang,
        },
    );
    let jobs: Api<Job> = Api::namespaced(sim.client("t"), NS);
    let pp = PatchParams::apply("test");
    for (name, deadline) in [("ok", None), ("broken", None), ("stuck", Some(600))] {
        jobs.patch(name, &pp, &Patch::Apply(job(name, deadline)))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let ok = sim.get::<Job>(NS, "ok").unwrap();
    assert_eq!(ok.status.as_ref().unwrap().active, Some(1));
    assert!(ok.status.as_ref().unwrap().start_time.is_some());

    tokio::time::sleep(Duration::from_secs(25)).await;
    let ok = sim.get::<Job>(NS, "ok").unwrap();
    assert_eq!(job_condition(&ok, "Complete").unwrap().0, "True");
    assert_eq!(ok.status.as_ref().unwrap().succeeded, Some(1));
    assert!(ok.status.as_ref().unwrap().completion_time.is_some());
    let pod = sim
        .list::<Pod>(Some(NS))
        .into_iter()
        .find(|p| p.labels().get("job-name").map(String::as_str) == Some("ok"))
        .unwrap();
    assert_eq!(pod.labels()["batch.kubernetes.io/job-name"], "ok");
    assert_eq!(pod.labels()["controller-uid"], ok.uid().unwrap());
    let status = pod.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Succeeded"));
    let terminated = status.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(terminated.exit_code, 0);
    assert_eq!(terminated.reason.as_deref(), Some("Completed"));
    assert_eq!(terminated.message.as_deref(), Some(r#"{"drift": false}"#));

    // backoffLimit 1: two failed pods (the second after a 10 s back-off), then Failed.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let broken = sim.get::<Job>(NS, "broken").unwrap();
    assert_eq!(
        job_condition(&broken, "Failed").unwrap().1,
        "BackoffLimitExceeded"
    );
    assert_eq!(broken.status.as_ref().unwrap().failed, Some(2));

    let stuck = sim.get::<Job>(NS, "stuck").unwrap();
    assert!(job_condition(&stuck, "Failed").is_none());
    tokio::time::sleep(Duration::from_secs(600)).await;
    let stuck = sim.get::<Job>(NS, "stuck").unwrap();
    assert_eq!(
        job_condition(&stuck, "Failed").unwrap().1,
        "DeadlineExceeded"
    );
    assert!(
        sim.list::<Pod>(Some(NS))
            .iter()
            .all(|p| p.labels().get("job-name").map(String::as_str) != Some("stuck")),
        "the active pod is deleted"
    );
}
