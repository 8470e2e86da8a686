//! The closed loop on the simulated cluster, in virtual time: a ModelDeployment serves and
//! logs, a DriftMonitor runs its checks as Jobs on schedule, the Jobs' verdicts come back
//! through their pods' termination messages (scripted here: the simulated kubelet does not
//! run `inference-server drift`, whose statistics are tested against SciPy elsewhere), and
//! the action lands: a promotion moves the real local registry's alias and the
//! ModelDeployment rolls the new version out; a rollback request pins the version before.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use mooring_crds::DriftMonitor;
use mooring_crds::drift_monitor::{ActionResult, OnDrift};
use mooring_crds::drift_report::DriftVerdict;
use mooring_crds::model_deployment::PinSource;
use mooring_kube_sim::{PodBehaviour, Sim};

/// The arguments of a pod's first container.
fn args(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.args.clone())
        .unwrap_or_default()
}

fn arg(pod: &Pod, flag: &str) -> Option<String> {
    let a = args(pod);
    a.iter().position(|x| x == flag).map(|i| a[i + 1].clone())
}

/// The compact report a drift Job writes to its termination log: `drifting` says which
/// served versions see drifted traffic; the challenger (when the Job runs the gate) is the
/// registry's version 2, whose reference matches the traffic.
fn report(pod: &Pod, drifting: &[&str]) -> String {
    let version = arg(pod, "--version").unwrap_or_default();
    let drift = drifting.contains(&version.as_str());
    let mut report = serde_json::json!({
        "verdict": if drift { "Drift" } else { "NoDrift" },
        "model": "iris-classifier", "modelVersion": version,
        "samples": 500, "referenceSamples": 150,
        "driftShare": if drift { 0.75 } else { 0.0 }, "driftShareThreshold": 0.5,
        "features": [
            {"name": "petal_length", "kind": "Numeric", "test": "KolmogorovSmirnov", "statistic": 0.61,
             "pValue": 2.0e-20, "threshold": 0.05, "drifted": drift},
        ],
        "reportUri": format!("s3://logs/iris/reports/{version}/report.html"),
    });
    if let Some(alias) = arg(pod, "--challenger-alias") {
        report["challenger"] = serde_json::json!({
            "alias": alias, "version": "2", "verdict": "NoDrift", "driftShare": 0.0
        });
    }
    report.to_string()
}

/// Pods of drift Jobs succeed after 20 s with the scripted report; serving pods are ready.
fn cluster(drifting: &'static [&'static str]) -> Sim {
    let sim = Sim::new();
    sim.set_pod_behaviour(move |pod: &Pod| {
        if args(pod).first().map(String::as_str) == Some("drift") {
            PodBehaviour::Succeed {
                after: Duration::from_secs(20),
                termination_message: Some(report(pod, drifting)),
            }
        } else {
            PodBehaviour::Ready {
                after: Duration::from_secs(5),
            }
        }
    });
    sim
}

/// The iris example logging to S3, and a monitor of it acting as `action` says.
fn apply_loop(world: &World, action: &str) {
    let mut md = world.iris();
    md.spec.prediction_log =
        Some(serde_yaml::from_str("sink: s3://logs/iris\nsampleRate: 1.0").unwrap());
    world.apply_md(&md);
    let dm: DriftMonitor = serde_yaml::from_str(&format!(
        "apiVersion: mooring.dev/v1alpha1\nkind: DriftMonitor\nmetadata: {{name: iris-drift, namespace: {NS}}}\nspec:\n  target: {{modelDeployment: iris}}\n  intervalSeconds: 600\n  window: {{minSamples: 50, warmup: 1m}}\n  action: {action}"
    ))
    .unwrap();
    world.sim.put_as("kubectl", &dm);
}

fn monitor(world: &World) -> DriftMonitor {
    world
        .sim
        .get::<DriftMonitor>(NS, "iris-drift")
        .expect("the DriftMonitor")
}

/// Wait (virtual time) until `f` holds for the monitor.
async fn until_dm(world: &World, what: &str, f: impl Fn(&DriftMonitor) -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !f(&monitor(world)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never: {what}\nmonitor status: {:#?}\nevents: {:#?}",
            monitor(world).status,
            world
                .sim
                .list::<k8s_openapi::api::events::v1::Event>(Some(NS))
                .into_iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref())
                    == Some("DriftMonitor"))
                .map(|e| (e.reason, e.note))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// alias → rollout → scheduled drift Job → Drift with a passing challenger gate → the alias
/// moves in the registry → the ModelDeployment rolls the challenger out; the next check on
/// the new version finds no drift and does nothing.
#[tokio::test(start_paused = true)]
async fn promote_closes_the_loop() {
    let world = World::new(cluster(&["1"]), "1");
    world.registry.set_alias("challenger", "2");
    let _op = world.start_operator("op-a", None);
    apply_loop(
        &world,
        "{onDrift: Promote, promote: {alias: production, fromAlias: challenger}}",
    );
    world.until("ready on 1", |md| ready_on(md, "1")).await;
    until_dm(&world, "promoted", |dm| {
        dm.status.as_ref().is_some_and(|s| {
            s.actions.iter().any(|a| {
                a.action == OnDrift::Promote
                    && a.result == ActionResult::Succeeded
                    && a.to_version.as_deref() == Some("2")
            })
        })
    })
    .await;
    let status = monitor(&world).status.unwrap();
    let report = status.last_report.clone().unwrap();
    assert_eq!(report.verdict, DriftVerdict::Drift);
    assert_eq!(
        report.challenger.unwrap().verdict,
        DriftVerdict::NoDrift,
        "both results in the report"
    );
    let aliases = std::fs::read_to_string(
        world
            .registry
            .dir
            .path()
            .join("iris-classifier/aliases.json"),
    )
    .unwrap();
    let aliases: serde_json::Value = serde_json::from_str(&aliases).unwrap();
    assert_eq!(aliases["production"], "2", "{aliases}");
    // The alias move is an ordinary rollout.
    world.until("ready on 2", |md| ready_on(md, "2")).await;
    // The next check, on version 2, finds nothing; no second action.
    until_dm(&world, "a NoDrift check of version 2", |dm| {
        dm.status.as_ref().is_some_and(|s| {
            s.last_report.as_ref().is_some_and(|r| {
                r.model_version.as_deref() == Some("2") && r.verdict == DriftVerdict::NoDrift
            })
        })
    })
    .await;
    let status = monitor(&world).status.unwrap();
    assert_eq!(status.actions.len(), 1, "{:?}", status.actions);
    // Never two Jobs of one monitor at once, and finished ones pruned to the history limit.
    let jobs = world.sim.list::<Job>(Some(NS));
    let running = jobs
        .iter()
        .filter(|j| j.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0)
        .count();
    assert!(running <= 1, "{running} Jobs running at once");
    assert!(jobs.len() <= 4, "{} Jobs kept", jobs.len());
}

/// A drifted, recently rolled-out version is rolled back through the request annotation:
/// the ModelDeployment pins the version before, the monitor sees it acknowledged and
/// withdraws the request; the target keeps serving the version before.
#[tokio::test(start_paused = true)]
async fn rollback_returns_to_the_version_before() {
    let world = World::new(cluster(&["2"]), "1");
    let _op = world.start_operator("op-a", None);
    apply_loop(&world, "{onDrift: Rollback}");
    world.until("ready on 1", |md| ready_on(md, "1")).await;
    world.registry.set_alias("production", "2");
    world.until("ready on 2", |md| ready_on(md, "2")).await;
    world
        .until("rolled back to 1 at the monitor's request", |md| {
            md.status.as_ref().is_some_and(|s| {
                s.version.as_deref() == Some("1")
                    && s.rollback_pin.as_ref().is_some_and(|p| {
                        p.set_by == PinSource::DriftMonitor && p.replaces_version == "2"
                    })
            }) && template_version(&world.sim).as_deref() == Some("1")
        })
        .await;
    until_dm(&world, "the rollback acknowledged", |dm| {
        dm.status.as_ref().is_some_and(|s| {
            s.actions
                .iter()
                .any(|a| a.action == OnDrift::Rollback && a.result == ActionResult::Succeeded)
        })
    })
    .await;
    // The request is withdrawn once acknowledged; the pin holds (the alias still names 2).
    tokio::time::sleep(Duration::from_secs(120)).await;
    let md = world.md();
    assert!(
        !md.metadata
            .annotations
            .unwrap_or_default()
            .contains_key(mooring_crds::model_deployment::ROLLBACK_REQUEST_ANNOTATION),
        "withdrawn"
    );
    assert_eq!(md.status.unwrap().version.as_deref(), Some("1"));
}
