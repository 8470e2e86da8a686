//! ModelDeployment scenarios through the real operator (`process::operate`: watches, queue,
//! requeues, leader election) against the simulated cluster (`mooring-kube-sim`), in virtual
//! time, with the real local registry in a temp dir (wrapped only to count its calls and to
//! cut it off for the outage scenario). Assertions are on the cluster's state and on what a
//! user sees (status, Events, metrics), not on call order.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use mooring_crds::model_deployment::PinSource;
use mooring_kube_sim::{OutageKind, PodBehaviour, Sim};
use mooring_operator::process::Exit;

/// 1. New ModelDeployment → children → pods ready → `Ready=True` on version 1; then quiet:
///    over one virtual hour the reconciles, registry calls and writes stay bounded.
#[tokio::test(start_paused = true)]
async fn a_new_model_deployment_becomes_ready_and_then_stays_quiet() {
    let world = World::new(Sim::new(), "1");
    let op = world.start_operator("op-a", None);
    world.apply_md(&world.iris());
    world
        .until("Ready=True on version 1", |md| ready_on(md, "1"))
        .await;
    assert!(world.sim.get::<Deployment>(NS, "iris").is_some());
    assert!(world.sim.get::<Service>(NS, "iris").is_some());
    let status = world.md().status.unwrap();
    assert_eq!(status.target_version.as_deref(), Some("1"));
    assert_eq!(status.observed_generation, Some(1));

    let (reconciles, calls, writes) = (
        op.reconciles(),
        world.registry.calls(),
        world.operator_writes(),
    );
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let reconciles = op.reconciles() - reconciles;
    let calls = world.registry.calls() - calls;
    let writes = world.operator_writes() - writes;
    // One resolve every 30 s: 120 in the hour. A status write that woke the controller again
    // would make thousands.
    assert!(
        (100..=130).contains(&reconciles),
        "{reconciles} reconciles in a quiet hour"
    );
    assert!(calls <= 2 * 130, "{calls} registry calls in a quiet hour");
    let status_writes = world.sim.count(|r| {
        r.client == "op-a" && r.is_write() && r.subresource.as_deref() == Some("status")
    });
    assert!(
        status_writes <= 6,
        "{status_writes} status writes in all: none while nothing changes"
    );
    // The applies of the children each resolve are idempotent writes: no change, no event.
    assert!(writes <= 3 * 130, "{writes} writes in a quiet hour");
    assert!(ready_on(&world.md(), "1"));
}

/// 2. Alias moved 1 → 2 → rolling update → `Ready=True` on 2, Events in order.
#[tokio::test(start_paused = true)]
async fn an_alias_move_rolls_out_the_new_version() {
    let world = World::new(Sim::new(), "1");
    let _op = world.start_operator("op-a", None);
    world.apply_md(&world.iris());
    world.until("ready on 1", |md| ready_on(md, "1")).await;
    world.registry.set_alias("production", "2");
    world
        .until("rolling out 2: Ready=False, Reconciling", |md| {
            md.status.as_ref().is_some_and(|s| {
                s.target_version.as_deref() == Some("2")
                    && condition(md, "Reconciling").is_some_and(|c| c.status == "True")
            })
        })
        .await;
    world.until("ready on 2", |md| ready_on(md, "2")).await;
    assert_eq!(template_version(&world.sim), Some("2".into()));
    let reasons = world.events();
    assert_eq!(
        reasons,
        [
            ("Normal", "RollingOut", "rolling out version 1".to_string()),
            ("Normal", "RolloutComplete", "version 1 is ready".into()),
            (
                "Normal",
                "RollingOut",
                "rolling out version 2 (was 1)".into()
            ),
            ("Normal", "RolloutComplete", "version 2 is ready".into()),
        ]
        .map(|(t, r, n)| (t.to_string(), r.to_string(), n)),
        "Events, oldest first"
    );
}

/// 3. Version 2 crash-loops → automatic rollback to 1, said in status and Events; more memory
///    while pinned → the documented retry (a new pod template retries 2); alias moved to 3 →
///    the pin clears → 3 rolls out.
#[tokio::test(start_paused = true)]
async fn a_crash_looping_version_is_rolled_back_until_the_alias_or_template_moves() {
    let sim = Sim::new();
    // Version 2 crashes, unless it has 1Gi of memory; every other version is ready.
    sim.set_pod_behaviour(|pod: &Pod| {
        let version = pod_version(pod);
        let memory = pod.spec.as_ref().and_then(|s| {
            s.containers[0]
                .resources
                .as_ref()?
                .limits
                .as_ref()?
                .get("memory")
                .map(|q| q.0.clone())
        });
        if version.as_deref() == Some("2") && memory.as_deref() != Some("1Gi") {
            PodBehaviour::CrashLoop
        } else {
            PodBehaviour::Ready {
                after: Duration::from_secs(5),
            }
        }
    });
    let world = World::new(sim, "1");
    let _op = world.start_operator("op-a", None);
    world.apply_md(&world.iris());
    world.until("ready on 1", |md| ready_on(md, "1")).await;
    world.registry.set_alias("production", "2");
    world
        .until("rolled back to 1", |md| {
            md.status.as_ref().is_some_and(|s| {
                s.rollback_pin.as_ref().is_some_and(|p| {
                    p.version == "1"
                        && p.replaces_version == "2"
                        && p.set_by == PinSource::AutoRollback
                }) && s.version.as_deref() == Some("1")
            })
        })
        .await;
    world
        .until("serving 1 again, Ready=False RolledBack, Stalled", |md| {
            condition(md, "Ready").is_some_and(|c| c.status == "False" && c.reason == "RolledBack")
                && condition(md, "Stalled").is_some_and(|c| c.status == "True")
                && template_version(&world.sim).as_deref() == Some("1")
                && md.status.as_ref().and_then(|s| s.ready_replicas) == Some(2)
        })
        .await;
    let events = world.events();
    assert!(
        events
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "RolloutFailed"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|(t, r, n)| t == "Warning"
            && r == "RolledBack"
            && n.contains("rolled back to version 1")),
        "{events:?}"
    );
    // Pinned: an hour later still on 1, no flapping back to 2.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(template_version(&world.sim).as_deref(), Some("1"));

    // More memory: the pod template changed, so version 2 gets another chance — and now runs.
    world
        .patch_md(serde_json::json!({"spec": {"resources": {"limits": {"memory": "1Gi"}}}}))
        .await;
    world
        .until("pin cleared by the new template, ready on 2", |md| {
            ready_on(md, "2") && md.status.as_ref().unwrap().rollback_pin.is_none()
        })
        .await;
    assert!(
        world
            .events()
            .iter()
            .any(|(_, r, _)| r == "RollbackPinCleared")
    );

    // The alias moves on to 3: rolled out like any alias move.
    world.registry.set_alias("production", "3");
    world.until("ready on 3", |md| ready_on(md, "3")).await;
}

/// 3b. While pinned, the alias moves past the failed version: the pin clears, 3 rolls out.
#[tokio::test(start_paused = true)]
async fn an_alias_move_clears_the_rollback_pin() {
    let sim = Sim::new();
    sim.set_pod_behaviour(|pod: &Pod| match pod_version(pod).as_deref() {
        Some("2") => PodBehaviour::CrashLoop,
        _ => PodBehaviour::Ready {
            after: Duration::from_secs(5),
        },
    });
    let world = World::new(sim, "1");
    let _op = world.start_operator("op-a", None);
    world.apply_md(&world.iris());
    world.until("ready on 1", |md| ready_on(md, "1")).await;
    world.registry.set_alias("production", "2");
    world
        .until("pinned to 1", |md| {
            md.status.as_ref().is_some_and(|s| s.rollback_pin.is_some())
        })
        .await;
    world.registry.set_alias("production", "3");
    world
        .until("pin cleared, ready on 3", |md| {
            ready_on(md, "3") && md.status.as_ref().unwrap().rollback_pin.is_none()
        })
        .await;
}

/// 4. Registry unreachable for 10 virtual minutes → nothing scaled down or switched, the
///    condition says why, the backoff is bounded; registry back → converges without restart.
#[tokio::test(start_paused = true)]
async fn a_registry_outage_changes_nothing_that_runs() {
    let world = World::new(Sim::new(), "1");
    let _op = world.start_operator("op-a", None);
    world.apply_md(&world.iris());
    world.until("ready on 1", |md| ready_on(md, "1")).await;
    let applies_before = world.operator_applies_of_deployment();
    world.registry.set_down(true);
    // The alias moves while the registry is down: nobody can know it yet.
    world.registry.set_alias("production", "2");
    let calls_before = world.registry.calls();
    world
        .until("RegistryReachable=False", |md| {
            condition(md, "RegistryReachable")
                .is_some_and(|c| c.status == "False" && c.reason == "RegistryUnreachable")
        })
        .await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    let md = world.md();
    assert_eq!(
        template_version(&world.sim).as_deref(),
        Some("1"),
        "nothing switched"
    );
    let deployment = world.sim.get::<Deployment>(NS, "iris").unwrap();
    assert_eq!(
        deployment.spec.unwrap().replicas,
        Some(2),
        "nothing scaled down"
    );
    assert_eq!(
        world.operator_applies_of_deployment(),
        applies_before,
        "no child applied during the outage"
    );
    assert!(
        ready_on(&md, "1"),
        "what runs keeps serving and stays Ready"
    );
    // Backoff 5 s doubling, capped at the 30 s resolve interval: about 20 tries in 10 minutes,
    // not a hot loop.
    let calls = world.registry.calls() - calls_before;
    assert!(
        (5..=40).contains(&calls),
        "{calls} registry calls in a 10-minute outage"
    );

    world.registry.set_down(false);
    world
        .until("converged on 2 after the outage", |md| ready_on(md, "2"))
        .await;
    assert!(condition(&world.md(), "RegistryReachable").is_some_and(|c| c.status == "True"));
}

/// 5. An apply rejected by the API server (422) → the user sees it in status and an Event;
///    fixing the spec recovers.
#[tokio::test(start_paused = true)]
async fn a_rejected_apply_is_visible_and_a_fixed_spec_recovers() {
    let sim = Sim::new();
    // An admission policy of the cluster: no memory limit above 4Gi.
    sim.reject_writes::<Deployment>(NS, "iris", |body| {
        let limit = body.pointer("/spec/template/spec/containers/0/resources/limits/memory")?;
        (limit == "64Gi").then(|| {
            "admission webhook \"limits.example.com\" denied the request: memory limit 64Gi exceeds 4Gi".to_string()
        })
    });
    let world = World::new(sim, "1");
    let _op = world.start_operator("op-a", None);
    let mut md = world.iris();
    md.spec
        .resources
        .as_mut()
        .unwrap()
        .limits
        .as_mut()
        .unwrap()
        .insert(
            "memory".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("64Gi".into()),
        );
    world.apply_md(&md);
    world
        .until(
            "Ready=False ReconcileError with the server's message",
            |md| {
                condition(md, "Ready").is_some_and(|c| {
                    c.status == "False"
                        && c.reason == "ReconcileError"
                        && c.message.contains("exceeds 4Gi")
                })
            },
        )
        .await;
    assert!(
        world.events().iter().any(|(t, r, n)| t == "Warning"
            && r == "ReconcileError"
            && n.contains("denied the request")),
        "{:?}",
        world.events()
    );
    assert_eq!(
        world.md().status.unwrap().observed_generation,
        None,
        "nothing of generation 1 was applied"
    );
    world
        .patch_md(serde_json::json!({"spec": {"resources": {"limits": {"memory": "512Mi"}}}}))
        .await;
    world
        .until("recovered: ready on 1", |md| ready_on(md, "1"))
        .await;
    assert_eq!(world.md().status.unwrap().observed_generation, Some(2));
}

/// 6. Two operators with leader election: exactly one reconciles; the leader loses its Lease
///    (the API server unreachable for it longer than the lease) → it stops reconciling and
///    exits non-zero; the other takes over.
#[tokio::test(start_paused = true)]
async fn one_leader_reconciles_and_a_partitioned_leader_exits() {
    let world = World::new(Sim::new(), "1");
    let a = world.start_operator("op-a", Some(Duration::from_secs(15)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = world.start_operator("op-b", Some(Duration::from_secs(15)));
    world.apply_md(&world.iris());
    world.until("ready on 1", |md| ready_on(md, "1")).await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    let writes_by = |client: &str| {
        world
            .sim
            .count(|r| r.client == client && r.is_write() && r.resource == "modeldeployments")
    };
    assert!(writes_by("op-a") > 0, "the first candidate leads");
    assert_eq!(writes_by("op-b"), 0, "the standby never reconciles");
    assert!(a.is_leading() && !b.is_leading());
    assert!(
        a.health.ready() && b.health.ready(),
        "both ready: one leads, one stands by"
    );

    // op-a cannot reach the API server for a minute: four lease durations.
    let cut = tokio::time::Instant::now();
    world.sim.unavailable(
        Some("op-a"),
        Duration::from_secs(60),
        OutageKind::ConnectionError,
    );
    let exit = a.exit().await;
    let took = cut.elapsed();
    assert_eq!(exit, Exit::LostLeadership, "the process exits non-zero");
    assert!(
        took < Duration::from_secs(15),
        "op-a stopped {took:?} after the outage began: before its Lease could expire"
    );
    // op-b takes over and reconciles: a new alias is rolled out by op-b.
    world.registry.set_alias("production", "2");
    world
        .until("ready on 2, rolled out by op-b", |md| ready_on(md, "2"))
        .await;
    assert!(b.is_leading());
    assert!(writes_by("op-b") > 0);
}

/// 7. The ModelDeployment is deleted → its children are garbage-collected, its metrics
///    series removed.
#[tokio::test(start_paused = true)]
async fn a_deleted_model_deployment_leaves_nothing_behind() {
    let world = World::new(Sim::new(), "1");
    let op = world.start_operator("op-a", None);
    world.apply_md(&world.iris());
    world.until("ready on 1", |md| ready_on(md, "1")).await;
    assert!(op.metrics().contains("mooring_model_deployment_resolved_version{model=\"iris-classifier\",name=\"iris\",namespace=\"default\"} 1"));
    world
        .user_api()
        .delete("iris", &DeleteParams::default())
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert!(world.sim.get::<Deployment>(NS, "iris").is_none());
    assert!(world.sim.get::<Service>(NS, "iris").is_none());
    assert!(
        world.sim.list::<Pod>(Some(NS)).is_empty(),
        "pods collected too"
    );
    assert!(
        !op.metrics()
            .contains("mooring_model_deployment_resolved_version{"),
        "{}",
        op.metrics()
    );
}

/// 8. A Deployment of the same name owned by something else is not adopted; the status says
///    why.
#[tokio::test(start_paused = true)]
async fn a_foreign_deployment_is_not_adopted() {
    let world = World::new(Sim::new(), "1");
    let foreign: Deployment = serde_yaml::from_str(
        "metadata: {name: iris, namespace: default, labels: {app: iris}}\nspec: {replicas: 3, selector: {matchLabels: {app: iris}}, template: {metadata: {labels: {app: iris}}, spec: {containers: [{name: web, image: nginx}]}}}",
    )
    .unwrap();
    world.sim.put_as("helm", &foreign);
    let _op = world.start_operator("op-a", None);
    world.apply_md(&world.iris());
    world
        .until("Ready=False NotOwned", |md| {
            condition(md, "Ready")
                .is_some_and(|c| c.reason == "NotOwned" && c.message.contains("Deployment iris"))
        })
        .await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    let d = world.sim.get::<Deployment>(NS, "iris").unwrap();
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(3), "untouched");
    assert_eq!(
        spec.template.spec.unwrap().containers[0].image.as_deref(),
        Some("nginx")
    );
    assert!(d.metadata.owner_references.is_none_or(|o| o.is_empty()));
    // Deleting the foreign one lets the operator create its own.
    world.sim.delete::<Deployment>(NS, "iris");
    world
        .until("ready on 1 once the name is free", |md| ready_on(md, "1"))
        .await;
}

/// A DriftMonitor's rollback request is honoured once, and both
/// controllers' writes survive each other (the request annotation under the monitor's field
/// manager, the status under the operator's).
#[tokio::test(start_paused = true)]
async fn a_drift_monitor_rollback_request_is_honoured_once() {
    let world = World::new(Sim::new(), "1");
    let _op = world.start_operator("op-a", None);
    world.apply_md(&world.iris());
    world.until("ready on 1", |md| ready_on(md, "1")).await;
    world.registry.set_alias("production", "2");
    world.until("ready on 2", |md| ready_on(md, "2")).await;
    let request = serde_json::json!({
        "id": "default/iris-drift/iris-drift-1", "fromVersion": "2", "toVersion": "1",
        "reason": "drift share 0.75 (petal_length, petal_width, sepal_width)"
    });
    let annotate = |value: Option<String>| {
        let body = serde_json::json!({
            "apiVersion": "mooring.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "iris", "annotations": value.map(|v| serde_json::json!({
                mooring_crds::model_deployment::ROLLBACK_REQUEST_ANNOTATION: v
            })).unwrap_or(serde_json::json!({}))}
        });
        let api = world.user_api_as("mooring-drift-monitor");
        async move {
            api.patch(
                "iris",
                &PatchParams::apply("mooring-drift-monitor"),
                &Patch::Apply(&body),
            )
            .await
            .expect("the monitor's apply");
        }
    };
    annotate(Some(request.to_string())).await;
    world
        .until("pinned to 1 by the DriftMonitor", |md| {
            md.status
                .as_ref()
                .and_then(|s| s.rollback_pin.as_ref())
                .is_some_and(|p| {
                    p.set_by == PinSource::DriftMonitor
                        && p.request_id.as_deref() == Some("default/iris-drift/iris-drift-1")
                })
                && template_version(&world.sim).as_deref() == Some("1")
        })
        .await;
    // The user's spec and the monitor's annotation both survive the operator's status writes.
    let md = world.md();
    assert!(
        md.metadata
            .annotations
            .unwrap()
            .contains_key(mooring_crds::model_deployment::ROLLBACK_REQUEST_ANNOTATION)
    );
    assert_eq!(md.spec.replicas, 2);
    // The user retries 2; the same request is not honoured again.
    world
        .patch_md(serde_json::json!({"metadata": {"annotations": {"mooring.dev/retry": "1"}}}))
        .await;
    world
        .until("retried: ready on 2", |md| ready_on(md, "2"))
        .await;
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert!(ready_on(&world.md(), "2"), "one request, one rollback");
    annotate(None).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        !world
            .md()
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key(mooring_crds::model_deployment::ROLLBACK_REQUEST_ANNOTATION),
        "the monitor's apply without the annotation removed it"
    );
}
