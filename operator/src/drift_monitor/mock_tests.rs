//! Reconciles of a DriftMonitor against a scripted API server (`tower_test::mock::pair`):
//! every request's method, path, query and body is checked, and nothing else may be sent.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use http::{Method, StatusCode};
use kube::runtime::controller::Action;
use mooring_crds::DriftMonitor;
use mooring_crds::drift_monitor::DriftMonitorStatus;
use mooring_crds::model_deployment::ROLLBACK_REQUEST_ANNOTATION;
use mooring_registry::{
    Error as RegistryError, FetchedModel, ModelRef, ModelVersion, RegisteredModel, Registry,
    RegistryConfig, Selector,
};
use serde_json::{Value, json};

use super::fixtures::{SERVING_MD, dm_yaml, md_yaml};
use super::{Context, reconcile};
use crate::controller::fetch::Connector;
use crate::controller::fixtures::at;
use crate::metrics::Metrics;
use crate::mock_api::{self, ApiServer, Exchange};

const MD: &str = "/apis/mooring.dev/v1alpha1/namespaces/ml/modeldeployments/iris";
const STATUS: &str = "/apis/mooring.dev/v1alpha1/namespaces/ml/driftmonitors/iris-drift/status";
const JOBS: &str = "/apis/batch/v1/namespaces/ml/jobs";
const PODS: &str = "/api/v1/namespaces/ml/pods";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ml/events";
const IMAGE: &str = "mooring/inference-server:test";
/// Version 3 of the target became ready at 10 060; an hour later it is warm and recent.
const NOW: i64 = 10_060 + 3600;

/// A registry answering from memory, recording alias moves and tags.
#[derive(Default)]
struct FakeRegistry {
    aliases: Mutex<BTreeMap<String, String>>,
    tags: Mutex<Vec<(String, String, String)>>,
    read_only: bool,
}

fn version(v: &str) -> ModelVersion {
    ModelVersion {
        name: "iris-classifier".into(),
        version: v.into(),
        source: format!("file:///models/iris-classifier/{v}"),
        status: "READY".into(),
        run_id: None,
        created_at_ms: None,
        description: None,
        aliases: vec![],
        tags: BTreeMap::new(),
        metrics: BTreeMap::new(),
    }
}

#[async_trait]
impl Registry for FakeRegistry {
    fn location(&self) -> String {
        "fake".into()
    }
    async fn resolve(&self, model: &ModelRef) -> mooring_registry::Result<ModelVersion> {
        let v = match &model.selector {
            Selector::Alias(a) => {
                self.aliases
                    .lock()
                    .unwrap()
                    .get(a)
                    .cloned()
                    .ok_or_else(|| RegistryError::AliasNotFound {
                        name: model.name.clone(),
                        alias: a.clone(),
                        known: String::new(),
                    })?
            }
            Selector::Version(v) => v.clone(),
        };
        Ok(version(&v))
    }
    async fn fetch(
        &self,
        _: &ModelVersion,
        _: &std::path::Path,
    ) -> mooring_registry::Result<FetchedModel> {
        unreachable!("the operator never fetches artifacts")
    }
    async fn list_models(&self) -> mooring_registry::Result<Vec<RegisteredModel>> {
        unreachable!("not used by the operator")
    }
    async fn set_alias(&self, _: &str, alias: &str, version: &str) -> mooring_registry::Result<()> {
        if self.read_only {
            return Err(RegistryError::Io {
                context: "writing /models/iris-classifier/aliases.json".into(),
                source: std::io::Error::from_raw_os_error(30),
            });
        }
        self.aliases
            .lock()
            .unwrap()
            .insert(alias.into(), version.into());
        Ok(())
    }
    async fn delete_alias(&self, _: &str, _: &str) -> mooring_registry::Result<()> {
        unreachable!("not used by the operator")
    }
    async fn set_version_tag(
        &self,
        _: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> mooring_registry::Result<bool> {
        self.tags
            .lock()
            .unwrap()
            .push((version.into(), key.into(), value.into()));
        Ok(true)
    }
    async fn register(
        &self,
        _: &str,
        _: &std::path::Path,
    ) -> mooring_registry::Result<ModelVersion> {
        unreachable!("not used by the operator")
    }
}

struct FakeConnector(Arc<FakeRegistry>);

impl Connector for FakeConnector {
    fn connect(&self, config: &RegistryConfig) -> mooring_registry::Result<Arc<dyn Registry>> {
        assert_eq!(config.location, "/models", "the target's registry");
        Ok(self.0.clone())
    }
}

fn context(client: kube::Client, registry: Arc<FakeRegistry>) -> Arc<Context> {
    let mut ctx = Context::new(
        client,
        Arc::new(FakeConnector(registry)),
        Metrics::new().unwrap(),
        IMAGE.into(),
    );
    ctx.clock = Arc::new(|| at(NOW));
    Arc::new(ctx)
}

/// Run `reconcile` against the scripted server `script` (see [`mock_api::run_scripted`]).
async fn run<F>(
    dm: DriftMonitor,
    registry: Arc<FakeRegistry>,
    script: impl FnOnce(ApiServer) -> F,
) -> (Action, Metrics)
where
    F: std::future::Future<Output = ApiServer> + Send + 'static,
{
    let (client, server) = mock_api::pair();
    let ctx = context(client, registry);
    let action = mock_api::run_scripted(server, reconcile(Arc::new(dm), ctx.clone()), script)
        .await
        .expect("reconcile failed");
    (action, ctx.metrics.clone())
}

fn md_json(extra_status: &str) -> Value {
    let md = md_yaml(&format!("{SERVING_MD}{extra_status}"));
    serde_json::to_value(&md).unwrap()
}

fn dm_with(spec: &str, status: DriftMonitorStatus) -> DriftMonitor {
    let mut dm = dm_yaml(spec);
    dm.status = Some(status);
    dm
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {}, "items": items})
}

fn job(name: &str, condition: Option<(&str, &str)>) -> Value {
    let conditions = match condition {
        Some((type_, reason)) => json!([{"type": type_, "status": "True", "reason": reason,
                                         "message": format!("{reason} happened")}]),
        None => json!([]),
    };
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "ml",
                     "labels": {"mooring.dev/drift-monitor": "iris-drift"},
                     "ownerReferences": [{"apiVersion": "mooring.dev/v1alpha1", "kind": "DriftMonitor",
                                          "name": "iris-drift", "uid": "dm-uid", "controller": true}]},
        "spec": {"template": {"spec": {"containers": []}}},
        "status": {"conditions": conditions, "completionTime": "1970-01-01T03:47:00Z"}
    })
}

fn pod(job_name: &str, state: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{job_name}-x1"), "namespace": "ml", "labels": {"job-name": job_name}},
        "status": {"containerStatuses": [{"name": "drift", "image": IMAGE, "imageID": "", "ready": false,
                                          "restartCount": 0, "state": state}]}
    })
}

fn report(verdict: &str, share: f64, challenger: Option<Value>) -> String {
    let mut r = json!({
        "verdict": verdict, "model": "iris-classifier", "modelVersion": "3",
        "samples": 500, "referenceSamples": 150, "driftShare": share, "driftShareThreshold": 0.5,
        "features": [{"name": "petal_length", "kind": "Numeric", "test": "KolmogorovSmirnov",
                      "statistic": 0.4, "pValue": 0.0001, "threshold": 0.05, "drifted": verdict == "Drift"}],
        "reportUri": "file:///var/log/mooring/reports/r1/report.html"
    });
    if let Some(c) = challenger {
        r["challenger"] = c;
    }
    r.to_string()
}

fn terminated(message: &str) -> Value {
    json!({"terminated": {"exitCode": 0, "message": message, "finishedAt": "1970-01-01T03:47:00Z"}})
}

/// A monitor whose check `job-name` was started at `NOW - 600` and has not been collected.
fn awaiting(spec: &str, job_name: &str) -> DriftMonitor {
    let mut status = DriftMonitorStatus::default();
    super::status::started(
        &mut status,
        job_name,
        "3",
        jiff::Timestamp::from_second(NOW - 600).unwrap(),
        &at(NOW - 600),
    );
    dm_with(spec, status)
}

async fn expect_get_md(server: &mut ApiServer, md: Value) {
    server
        .expect(Method::GET, MD)
        .await
        .reply(StatusCode::OK, &md);
}

async fn expect_jobs(server: &mut ApiServer, jobs: Vec<Value>) {
    let e = server.expect(Method::GET, JOBS).await;
    assert_eq!(
        e.query["labelSelector"],
        "mooring.dev/drift-monitor=iris-drift"
    );
    e.reply(StatusCode::OK, &list("JobList", jobs));
}

async fn expect_pods(server: &mut ApiServer, job_name: &str, pods: Vec<Value>) {
    let e = server.expect(Method::GET, PODS).await;
    assert_eq!(e.query["labelSelector"], format!("job-name={job_name}"));
    e.reply(StatusCode::OK, &list("PodList", pods));
}

async fn expect_status(server: &mut ApiServer) -> Value {
    let e = server.expect(Method::PATCH, STATUS).await;
    e.assert_apply();
    let status = e.body["status"].clone();
    let mut object = serde_json::to_value(dm_yaml("target: {modelDeployment: iris}")).unwrap();
    object["status"] = status.clone();
    e.reply(StatusCode::OK, &object);
    status
}

async fn expect_event(server: &mut ApiServer, type_: &str, reason: &str) -> Value {
    let event = server.expect(Method::POST, EVENTS).await;
    assert_eq!(event.body["type"], type_, "{}", event.body);
    assert_eq!(event.body["reason"], reason, "{}", event.body);
    assert_eq!(event.body["regarding"]["kind"], "DriftMonitor");
    assert_eq!(event.body["regarding"]["name"], "iris-drift");
    let body = event.body.clone();
    event.echo();
    body
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {status}"))
}

fn assert_apply_by(e: &Exchange, manager: &str) {
    assert_eq!(e.method, Method::PATCH);
    assert_eq!(
        e.query.get("fieldManager").map(String::as_str),
        Some(manager)
    );
}

#[tokio::test]
async fn first_reconcile_starts_the_first_check() {
    let dm = dm_yaml("target: {modelDeployment: iris}\nintervalSeconds: 3600");
    let (action, _) = run(dm, Arc::default(), |mut server| async move {
        expect_get_md(&mut server, md_json("")).await;
        expect_jobs(&mut server, vec![]).await;
        let name = format!("iris-drift-{NOW}");
        let e = server
            .expect(Method::PATCH, &format!("{JOBS}/{name}"))
            .await;
        e.assert_apply();
        let spec = &e.body["spec"]["template"]["spec"];
        let args: Vec<String> =
            serde_json::from_value(spec["containers"][0]["args"].clone()).unwrap();
        assert_eq!(
            args[..7],
            [
                "drift",
                "--sink",
                "file:///var/log/mooring",
                "--model",
                "iris-classifier",
                "--version",
                "3"
            ]
        );
        assert_eq!(e.body["metadata"]["ownerReferences"][0]["uid"], "dm-uid");
        e.echo();
        let status = expect_status(&mut server).await;
        assert_eq!(status["lastRun"]["jobName"], name);
        assert_eq!(status["lastRun"]["version"], "3");
        assert!(status["lastRun"].get("outcome").is_none());
        assert_eq!(status["nextRunTime"], "1970-01-01T04:47:40Z");
        assert_eq!(condition(&status, "Ready")["reason"], "Scheduled");
        expect_event(&mut server, "Normal", "Scheduled").await;
        expect_event(&mut server, "Normal", "CheckStarted").await;
        server
    })
    .await;
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(30)));
}

#[tokio::test]
async fn a_running_check_is_not_doubled() {
    // Due an hour ago, but the last check still runs: no second Job, no status change.
    let mut dm = awaiting(
        "target: {modelDeployment: iris}\nintervalSeconds: 600",
        "iris-drift-1",
    );
    let status = dm.status.as_mut().unwrap();
    status.last_schedule_time = Some(at(NOW - 3600));
    super::status::ready(
        status,
        Some(jiff::Timestamp::from_second(NOW - 3000).unwrap()),
        false,
        Some(1),
        &at(NOW - 3600),
    );
    let (action, _) = run(dm, Arc::default(), |mut server| async move {
        expect_get_md(&mut server, md_json("")).await;
        expect_jobs(&mut server, vec![job("iris-drift-1", None)]).await;
        expect_pods(
            &mut server,
            "iris-drift-1",
            vec![pod("iris-drift-1", json!({"running": {}}))],
        )
        .await;
        server
    })
    .await;
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(30)));
}

#[tokio::test]
async fn drift_asks_the_target_to_roll_back_and_says_so() {
    let dm = awaiting(
        "target: {modelDeployment: iris}\nintervalSeconds: 3600\naction: {onDrift: Rollback}",
        "iris-drift-1",
    );
    let (action, metrics) = run(dm, Arc::default(), |mut server| async move {
        expect_get_md(&mut server, md_json("")).await;
        expect_jobs(&mut server, vec![job("iris-drift-1", Some(("Complete", "Completed")))]).await;
        let msg = report("Drift", 0.75, None);
        expect_pods(&mut server, "iris-drift-1", vec![pod("iris-drift-1", terminated(&msg))]).await;
        // The request: only the annotation, on the main resource, under the monitor's own
        // field manager, so it and the ModelDeployment controller's status apply (field
        // manager mooring-operator, /status subresource) own disjoint fields.
        let e = server.expect(Method::PATCH, MD).await;
        assert_apply_by(&e, "mooring-drift-monitor");
        assert_eq!(e.query.get("force").map(String::as_str), Some("true"));
        let request: Value = serde_json::from_str(
            e.body["metadata"]["annotations"][ROLLBACK_REQUEST_ANNOTATION].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(
            request,
            json!({"id": "ml/iris-drift/iris-drift-1", "fromVersion": "3", "toVersion": "1",
                   "reason": "DriftMonitor iris-drift: drift share 0.75 (threshold 0.5) over 500 samples; drifted: petal_length"})
        );
        let mut keys: Vec<_> = e.body.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["apiVersion", "kind", "metadata"]);
        let mut meta: Vec<_> = e.body["metadata"].as_object().unwrap().keys().cloned().collect();
        meta.sort();
        assert_eq!(meta, ["annotations", "name"]);
        e.reply(StatusCode::OK, &md_json(""));
        let status = expect_status(&mut server).await;
        assert_eq!(status["lastRun"]["outcome"], "Drift");
        assert_eq!(status["lastReport"]["driftShare"], 0.75);
        assert_eq!(status["history"][0]["verdict"], "Drift");
        assert_eq!(status["history"][0]["counted"], true);
        let action = &status["actions"][0];
        assert_eq!(action["action"], "Rollback");
        assert_eq!(action["result"], "Requested");
        assert_eq!((action["fromVersion"].as_str(), action["toVersion"].as_str()), (Some("3"), Some("1")));
        assert_eq!(action["jobName"], "iris-drift-1");
        assert_eq!(action["reportUri"], "file:///var/log/mooring/reports/r1/report.html");
        let drift = condition(&status, "DriftDetected");
        assert_eq!(drift["status"], "True");
        assert!(drift["message"].as_str().unwrap().contains("petal_length"));
        expect_event(&mut server, "Normal", "Scheduled").await;
        let event = expect_event(&mut server, "Warning", "DriftDetected").await;
        assert!(event["note"].as_str().unwrap().contains("0.75"), "{event}");
        expect_event(&mut server, "Warning", "RollbackRequested").await;
        server
    })
    .await;
    // Next check in 50 minutes (started 10 minutes ago, hourly).
    assert_eq!(
        action,
        Action::requeue(std::time::Duration::from_secs(3000))
    );
    let text = metrics.render();
    assert!(
        text.contains(
            r#"mooring_drift_checks_total{monitor="iris-drift",namespace="ml",verdict="Drift"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"mooring_drift_actions_total{action="Rollback",monitor="iris-drift",namespace="ml",result="Requested"} 1"#), "{text}");
}

#[tokio::test]
async fn acknowledged_rollback_request_is_withdrawn_and_recorded() {
    let mut dm = awaiting(
        "target: {modelDeployment: iris}\nintervalSeconds: 3600\naction: {onDrift: Rollback}",
        "iris-drift-1",
    );
    let status = dm.status.as_mut().unwrap();
    status.last_run.as_mut().unwrap().outcome =
        Some(mooring_crds::drift_report::DriftVerdict::Drift);
    super::status::record_action(
        status,
        serde_json::from_value(json!({"time": "1970-01-01T03:47:00Z", "action": "Rollback",
            "fromVersion": "3", "toVersion": "1", "jobName": "iris-drift-1",
            "result": "Requested", "message": "asked"}))
        .unwrap(),
    );
    super::status::ready(
        status,
        Some(jiff::Timestamp::from_second(NOW + 3000).unwrap()),
        false,
        Some(1),
        &at(NOW - 600),
    );
    // The ModelDeployment controller pinned version 1 for our request; version 1 serves.
    let mut md = md_json(
        "  rollbackPin: {version: '1', replacesVersion: '3', setBy: DriftMonitor, reason: drift, since: '1970-01-01T03:48:00Z', requestId: ml/iris-drift/iris-drift-1}\n",
    );
    md["status"]["version"] = json!("1");
    md["metadata"]["annotations"] = json!({ROLLBACK_REQUEST_ANNOTATION:
        json!({"id": "ml/iris-drift/iris-drift-1", "fromVersion": "3", "toVersion": "1", "reason": "drift"}).to_string()});
    let (_, _) = run(dm, Arc::default(), |mut server| async move {
        expect_get_md(&mut server, md).await;
        // Withdrawn: applied again under the same manager without the annotation.
        let e = server.expect(Method::PATCH, MD).await;
        assert_apply_by(&e, "mooring-drift-monitor");
        assert_eq!(e.body, json!({"apiVersion": "mooring.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "iris"}}));
        e.reply(StatusCode::OK, &md_json(""));
        expect_jobs(&mut server, vec![job("iris-drift-1", Some(("Complete", "Completed")))]).await;
        let status = expect_status(&mut server).await;
        assert_eq!(status["actions"][0]["result"], "Succeeded");
        assert!(status["actions"][0]["message"].as_str().unwrap().contains("serves version 1 instead of 3"));
        expect_event(&mut server, "Warning", "RolledBack").await;
        server
    })
    .await;
}

#[tokio::test]
async fn failed_check_takes_no_action() {
    let dm = awaiting(
        "target: {modelDeployment: iris}\nintervalSeconds: 3600\naction: {onDrift: Rollback}",
        "iris-drift-1",
    );
    let (_, metrics) = run(dm, Arc::default(), |mut server| async move {
        expect_get_md(&mut server, md_json("")).await;
        expect_jobs(
            &mut server,
            vec![job("iris-drift-1", Some(("Failed", "DeadlineExceeded")))],
        )
        .await;
        expect_pods(&mut server, "iris-drift-1", vec![]).await;
        // No request to the target: straight to the status.
        let status = expect_status(&mut server).await;
        assert_eq!(status["lastRun"]["outcome"], "Failed");
        assert!(
            status["lastRun"]["reason"]
                .as_str()
                .unwrap()
                .starts_with("DeadlineExceeded")
        );
        assert!(status.get("actions").is_none());
        assert!(
            status["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["type"] != "DriftDetected")
        );
        expect_event(&mut server, "Normal", "Scheduled").await;
        expect_event(&mut server, "Warning", "CheckFailed").await;
        server
    })
    .await;
    assert!(metrics.render().contains(r#"verdict="Failed"} 1"#));
}

#[tokio::test]
async fn promote_moves_the_alias_through_a_passing_gate() {
    let registry = Arc::new(FakeRegistry::default());
    registry.aliases.lock().unwrap().extend([
        ("production".to_string(), "3".to_string()),
        ("challenger".to_string(), "4".to_string()),
    ]);
    let dm = awaiting(
        "target: {modelDeployment: iris}\nintervalSeconds: 3600\naction: {onDrift: Promote, promote: {alias: production, fromAlias: challenger}}",
        "iris-drift-1",
    );
    let gate =
        json!({"alias": "challenger", "version": "4", "verdict": "NoDrift", "driftShare": 0.0});
    let (_, _) = run(dm, registry.clone(), |mut server| async move {
        expect_get_md(&mut server, md_json("")).await;
        expect_jobs(
            &mut server,
            vec![job("iris-drift-1", Some(("Complete", "Completed")))],
        )
        .await;
        let msg = report("Drift", 0.75, Some(gate));
        expect_pods(
            &mut server,
            "iris-drift-1",
            vec![pod("iris-drift-1", terminated(&msg))],
        )
        .await;
        let status = expect_status(&mut server).await;
        let action = &status["actions"][0];
        assert_eq!(
            (action["action"].as_str(), action["result"].as_str()),
            (Some("Promote"), Some("Succeeded"))
        );
        assert_eq!(
            (action["fromVersion"].as_str(), action["toVersion"].as_str()),
            (Some("3"), Some("4"))
        );
        assert_eq!(status["lastReport"]["challenger"]["verdict"], "NoDrift");
        expect_event(&mut server, "Normal", "Scheduled").await;
        expect_event(&mut server, "Warning", "DriftDetected").await;
        expect_event(&mut server, "Normal", "Promoted").await;
        server
    })
    .await;
    assert_eq!(registry.aliases.lock().unwrap()["production"], "4");
    assert_eq!(
        registry.tags.lock().unwrap()[..],
        [(
            "4".to_string(),
            "mooring.dev/promoted-by".to_string(),
            "ml/iris-drift".to_string()
        )]
    );
}

#[tokio::test]
async fn promote_on_a_read_only_registry_is_skipped_with_the_reason() {
    let registry = Arc::new(FakeRegistry {
        read_only: true,
        ..FakeRegistry::default()
    });
    registry
        .aliases
        .lock()
        .unwrap()
        .insert("challenger".into(), "4".into());
    let dm = awaiting(
        "target: {modelDeployment: iris}\nintervalSeconds: 3600\naction: {onDrift: Promote, promote: {alias: production, fromAlias: challenger}}",
        "iris-drift-1",
    );
    let gate =
        json!({"alias": "challenger", "version": "4", "verdict": "NoDrift", "driftShare": 0.0});
    run(dm, registry, |mut server| async move {
        expect_get_md(&mut server, md_json("")).await;
        expect_jobs(
            &mut server,
            vec![job("iris-drift-1", Some(("Complete", "Completed")))],
        )
        .await;
        let msg = report("Drift", 0.75, Some(gate));
        expect_pods(
            &mut server,
            "iris-drift-1",
            vec![pod("iris-drift-1", terminated(&msg))],
        )
        .await;
        let status = expect_status(&mut server).await;
        assert_eq!(status["actions"][0]["result"], "Skipped");
        assert!(
            status["actions"][0]["message"]
                .as_str()
                .unwrap()
                .contains("read-only"),
            "{status}"
        );
        expect_event(&mut server, "Normal", "Scheduled").await;
        expect_event(&mut server, "Warning", "DriftDetected").await;
        expect_event(&mut server, "Warning", "ActionSkipped").await;
        server
    })
    .await;
}

#[tokio::test]
async fn finished_jobs_beyond_the_history_limits_are_deleted() {
    let mut status = DriftMonitorStatus {
        last_schedule_time: Some(at(NOW - 600)),
        ..Default::default()
    };
    super::status::started(
        &mut status,
        "iris-drift-17",
        "3",
        jiff::Timestamp::from_second(NOW - 600).unwrap(),
        &at(NOW - 600),
    );
    status.last_run.as_mut().unwrap().outcome =
        Some(mooring_crds::drift_report::DriftVerdict::NoDrift);
    super::status::ready(
        &mut status,
        Some(jiff::Timestamp::from_second(NOW + 3000).unwrap()),
        false,
        Some(1),
        &at(NOW - 600),
    );
    let dm = dm_with(
        "target: {modelDeployment: iris}\nintervalSeconds: 3600\nhistoryLimits: {successful: 2, failed: 1}",
        status,
    );
    let complete = Some(("Complete", "Completed"));
    let failed = Some(("Failed", "BackoffLimitExceeded"));
    let jobs = vec![
        job("iris-drift-11", complete),
        job("iris-drift-12", failed),
        job("iris-drift-13", complete),
        job("iris-drift-14", failed),
        job("iris-drift-15", complete),
        job("iris-drift-16", failed),
        job("iris-drift-17", complete),
    ];
    let (action, _) = run(dm, Arc::default(), |mut server| async move {
        expect_get_md(&mut server, md_json("")).await;
        expect_jobs(&mut server, jobs).await;
        for name in [
            "iris-drift-11",
            "iris-drift-12",
            "iris-drift-13",
            "iris-drift-14",
        ] {
            let e = server
                .expect(Method::DELETE, &format!("{JOBS}/{name}"))
                .await;
            assert_eq!(e.body["propagationPolicy"], "Background");
            e.reply(
                StatusCode::OK,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
            );
        }
        server
    })
    .await;
    assert_eq!(
        action,
        Action::requeue(std::time::Duration::from_secs(3000))
    );
}

#[tokio::test]
async fn invalid_schedule_is_reported_and_nothing_else_is_done() {
    let dm = dm_yaml("target: {modelDeployment: iris}\nschedule: '0 25 * * *'");
    let (action, metrics) = run(dm, Arc::default(), |mut server| async move {
        let status = expect_status(&mut server).await;
        let ready = condition(&status, "Ready");
        assert_eq!(
            (ready["status"].as_str(), ready["reason"].as_str()),
            (Some("False"), Some("InvalidSchedule"))
        );
        assert!(ready["message"].as_str().unwrap().contains("spec.schedule"));
        expect_event(&mut server, "Warning", "InvalidSchedule").await;
        server
    })
    .await;
    assert_eq!(action, Action::await_change());
    assert!(metrics.render().contains(r#"reason="InvalidSchedule""#));
}

#[tokio::test]
async fn missing_target_and_target_without_log_are_reported() {
    let dm = dm_yaml("target: {modelDeployment: iris}");
    run(dm, Arc::default(), |mut server| async move {
        server.expect(Method::GET, MD).await.not_found();
        let status = expect_status(&mut server).await;
        assert_eq!(condition(&status, "Ready")["reason"], "TargetNotFound");
        expect_event(&mut server, "Warning", "TargetNotFound").await;
        server
    })
    .await;
    let dm = dm_yaml("target: {modelDeployment: iris}");
    run(dm, Arc::default(), |mut server| async move {
        let mut md = md_json("");
        md["spec"].as_object_mut().unwrap().remove("predictionLog");
        expect_get_md(&mut server, md).await;
        let status = expect_status(&mut server).await;
        let ready = condition(&status, "Ready");
        assert_eq!(ready["reason"], "NoPredictionLog");
        assert!(
            ready["message"]
                .as_str()
                .unwrap()
                .contains("spec.predictionLog")
        );
        expect_event(&mut server, "Warning", "NoPredictionLog").await;
        server
    })
    .await;
}

#[tokio::test]
async fn deleted_monitor_loses_its_metric_series() {
    let (client, _server) = mock_api::pair();
    let ctx = context(client, Arc::default());
    ctx.metrics
        .record_check("ml", "iris-drift", "Drift", Some(0.75), 1.0);
    ctx.metrics
        .record_action("ml", "iris-drift", "Notify", "Succeeded");
    let mut dm = dm_yaml("target: {modelDeployment: iris}");
    dm.metadata.deletion_timestamp = Some(at(NOW));
    // No request at all: the garbage collector deletes the Jobs.
    let action = tokio::time::timeout(mock_api::STEP_TIMEOUT, reconcile(Arc::new(dm), ctx.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(action, Action::await_change());
    assert!(!ctx.metrics.render().contains("iris-drift"));
}

/// The promote path against the real MLflow the test suite starts (`scripts/test.sh`): a
/// `Drift` verdict with a passing challenger gate moves `production` to the challenger's
/// version in MLflow and tags it; the ModelDeployment reconcile that follows rolls it out.
#[tokio::test]
async fn mlflow_promote_moves_production_and_the_target_rolls_it_out() {
    use mooring_registry::mlflow::MlflowRegistry;

    let url = std::env::var("MOORING_TEST_MLFLOW_URL").expect(
        "MOORING_TEST_MLFLOW_URL is not set: this test needs a real MLflow server; run scripts/test.sh",
    );
    let model = format!(
        "iris-dm-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond() % 1_000_000_000
    );
    let mlflow = MlflowRegistry::new(&RegistryConfig::new(url.clone())).unwrap();
    let bundled = |v: &str| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models/iris-classifier")
            .join(v)
    };
    for v in ["1", "2"] {
        assert_eq!(
            mlflow.register(&model, &bundled(v)).await.unwrap().version,
            v
        );
    }
    mlflow.set_alias(&model, "production", "1").await.unwrap();
    mlflow.set_alias(&model, "challenger", "2").await.unwrap();

    // The target serves version 1 (ready long ago), following `production` in MLflow.
    let md_spec = format!(
        "spec:
  model: {{name: {model}, alias: production}}
  registry: {{mlflow: {{url: '{url}'}}}}
  predictionLog: {{sink: 'file:///var/log/mooring', volume: {{persistentVolumeClaim: prediction-log}}}}
status:
  version: '1'
  targetVersion: '1'
  history:
  - {{version: '1', startedAt: '1970-01-01T00:00:00Z', readyAt: '1970-01-01T00:01:00Z', outcome: Ready}}
"
    );
    let md = serde_json::to_value(md_yaml(&md_spec)).unwrap();
    let dm = awaiting(
        "target: {modelDeployment: iris}\nintervalSeconds: 3600\naction: {onDrift: Promote, promote: {alias: production, fromAlias: challenger}}",
        "iris-drift-1",
    );
    let gate =
        json!({"alias": "challenger", "version": "2", "verdict": "NoDrift", "driftShare": 0.0});
    let mut msg: Value = serde_json::from_str(&report("Drift", 0.75, Some(gate))).unwrap();
    msg["model"] = json!(model);
    msg["modelVersion"] = json!("1");

    let (client, mut server) = mock_api::pair();
    let mut ctx = Context::new(
        client,
        Arc::new(crate::controller::fetch::RegistryConnector),
        Metrics::new().unwrap(),
        IMAGE.into(),
    );
    ctx.clock = Arc::new(|| at(NOW));
    let ctx = Arc::new(ctx);
    let md_reply = md.clone();
    let scripted = tokio::spawn(async move {
        expect_get_md(&mut server, md_reply).await;
        expect_jobs(
            &mut server,
            vec![job("iris-drift-1", Some(("Complete", "Completed")))],
        )
        .await;
        expect_pods(
            &mut server,
            "iris-drift-1",
            vec![pod("iris-drift-1", terminated(&msg.to_string()))],
        )
        .await;
        let status = expect_status(&mut server).await;
        let action = &status["actions"][0];
        assert_eq!(
            (action["action"].as_str(), action["result"].as_str()),
            (Some("Promote"), Some("Succeeded")),
            "{status}"
        );
        assert_eq!(
            (action["fromVersion"].as_str(), action["toVersion"].as_str()),
            (Some("1"), Some("2"))
        );
        expect_event(&mut server, "Normal", "Scheduled").await;
        expect_event(&mut server, "Warning", "DriftDetected").await;
        expect_event(&mut server, "Normal", "Promoted").await;
        server
    });
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        reconcile(Arc::new(dm), ctx),
    )
    .await
    .expect("reconcile hung")
    .expect("reconcile failed");
    drop(scripted.await.expect("script panicked"));

    let production = mlflow
        .resolve(&ModelRef::alias(&model, "production"))
        .await
        .unwrap();
    assert_eq!(production.version, "2");
    assert_eq!(production.tags["mooring.dev/promoted-by"], "ml/iris-drift");

    // The ModelDeployment controller's next reconcile resolves `production` to 2 and rolls
    // it out, as for any alias move. Its exact requests are its own tests' business: this
    // server answers them all and keeps the Deployment it was asked to apply.
    let (client, mut server) = mock_api::pair();
    let md_ctx = Arc::new(crate::controller::Context::new(
        client,
        Arc::new(crate::controller::fetch::RegistryConnector),
        Metrics::new().unwrap(),
        IMAGE.into(),
    ));
    let md_object: mooring_crds::ModelDeployment = serde_json::from_value(md.clone()).unwrap();
    let answering = tokio::spawn(async move {
        let mut deployment = None;
        while let Ok(Some((request, send))) =
            tokio::time::timeout(std::time::Duration::from_secs(2), server_next(&mut server)).await
        {
            let (method, path, body) = request;
            let reply = if method == Method::GET {
                list("List", vec![])
            } else if path.ends_with("/status") {
                let mut object = md.clone();
                object["status"] = body["status"].clone();
                object
            } else {
                if path.contains("/deployments/") {
                    deployment = Some(body.clone());
                }
                body
            };
            send(reply);
        }
        deployment
    });
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        crate::controller::reconcile(Arc::new(md_object), md_ctx),
    )
    .await
    .expect("ModelDeployment reconcile hung");
    let deployment = answering.await.unwrap().expect("a Deployment was applied");
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"]["mooring.dev/model-version"], "2",
        "{deployment}"
    );
}

type Reply = Box<dyn FnOnce(Value) + Send>;

/// The next request of any kind, with a way to answer it 200 with a JSON body.
async fn server_next(server: &mut ApiServer) -> Option<((Method, String, Value), Reply)> {
    let exchange = server.next_any().await?;
    let request = (
        exchange.method.clone(),
        exchange.path.clone(),
        exchange.body.clone(),
    );
    Some((
        request,
        Box::new(move |body| exchange.reply(StatusCode::OK, &body)),
    ))
}

/// A webhook server on a free port recording what it receives; `status` is its answer.
async fn webhook(status: u16) -> (String, Arc<Mutex<Vec<(Option<String>, String)>>>) {
    use axum::http::HeaderMap;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let seen = seen.clone();
            move |headers: HeaderMap, body: String| {
                let seen = seen.clone();
                async move {
                    let signature = headers
                        .get(super::webhook::SIGNATURE_HEADER)
                        .map(|v| v.to_str().unwrap().to_string());
                    seen.lock().unwrap().push((signature, body));
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), seen)
}

#[tokio::test]
async fn notify_posts_the_signed_report_to_the_webhook() {
    let (url, seen) = webhook(200).await;
    let dm = awaiting(
        &format!(
            "target: {{modelDeployment: iris}}\nintervalSeconds: 3600\naction: {{webhook: {{url: '{url}', secretRef: {{name: drift-webhook, key: key}}}}}}"
        ),
        "iris-drift-1",
    );
    run(dm, Arc::default(), |mut server| async move {
        expect_get_md(&mut server, md_json("")).await;
        expect_jobs(
            &mut server,
            vec![job("iris-drift-1", Some(("Complete", "Completed")))],
        )
        .await;
        let msg = report("Drift", 0.75, None);
        expect_pods(
            &mut server,
            "iris-drift-1",
            vec![pod("iris-drift-1", terminated(&msg))],
        )
        .await;
        server
            .expect(Method::GET, "/api/v1/namespaces/ml/secrets/drift-webhook")
            .await
            .reply(
                StatusCode::OK,
                &json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "drift-webhook", "namespace": "ml"},
                "data": {"key": "czNjcmV0"}}),
            );
        let status = expect_status(&mut server).await;
        assert_eq!(status["actions"][0]["action"], "Notify");
        assert_eq!(status["actions"][0]["result"], "Succeeded");
        assert_eq!(status["lastWebhook"]["delivered"], true);
        assert_eq!(status["lastWebhook"]["attempts"], 1);
        expect_event(&mut server, "Normal", "Scheduled").await;
        expect_event(&mut server, "Warning", "DriftDetected").await;
        expect_event(&mut server, "Warning", "DriftNotified").await;
        server
    })
    .await;
    let seen = seen.lock().unwrap();
    let (signature, raw) = &seen[0];
    let body: Value = serde_json::from_str(raw).unwrap();
    assert_eq!(body["event"], "DriftDetected");
    assert_eq!(
        (body["monitor"].as_str(), body["target"].as_str()),
        (Some("iris-drift"), Some("iris"))
    );
    assert_eq!(body["action"], "Notify");
    assert_eq!(body["report"]["driftShare"], 0.75);
    let expected = format!("sha256={}", super::webhook::sign(b"s3cret", raw.as_bytes()));
    assert_eq!(signature.as_deref(), Some(expected.as_str()));
}

#[tokio::test]
async fn a_failing_webhook_is_recorded_and_does_not_fail_the_reconcile() {
    let (url, seen) = webhook(500).await;
    let dm = awaiting(
        &format!(
            "target: {{modelDeployment: iris}}\nintervalSeconds: 3600\naction: {{webhook: {{url: '{url}'}}}}"
        ),
        "iris-drift-1",
    );
    run(dm, Arc::default(), |mut server| async move {
        expect_get_md(&mut server, md_json("")).await;
        expect_jobs(
            &mut server,
            vec![job("iris-drift-1", Some(("Complete", "Completed")))],
        )
        .await;
        let msg = report("Drift", 0.75, None);
        expect_pods(
            &mut server,
            "iris-drift-1",
            vec![pod("iris-drift-1", terminated(&msg))],
        )
        .await;
        let status = expect_status(&mut server).await;
        assert_eq!(status["actions"][0]["result"], "Succeeded");
        assert_eq!(status["lastWebhook"]["delivered"], false);
        assert_eq!(status["lastWebhook"]["attempts"], 3);
        assert!(
            status["lastWebhook"]["message"]
                .as_str()
                .unwrap()
                .contains("500")
        );
        expect_event(&mut server, "Normal", "Scheduled").await;
        expect_event(&mut server, "Warning", "DriftDetected").await;
        expect_event(&mut server, "Warning", "DriftNotified").await;
        expect_event(&mut server, "Warning", "WebhookFailed").await;
        server
    })
    .await;
    assert_eq!(seen.lock().unwrap().len(), 3);
}

/// The single-owner rule between the two controllers: the ModelDeployment controller applies
/// only `status` (the /status subresource, field manager `mooring-operator`); the monitor
/// applies only `metadata.annotations[mooring.dev/rollback-request]` (the main resource,
/// field manager `mooring-drift-monitor`). Server-side apply removes only the fields a
/// manager stops sending, so with disjoint field sets each write survives the other's
/// re-applies: shown here on the exact request bodies, applied in both orders.
#[tokio::test]
async fn rollback_request_and_target_status_writes_survive_each_other() {
    use mooring_crds::model_deployment::{ModelDeploymentStatus, RollbackRequest};

    let request = RollbackRequest {
        id: "ml/iris-drift/iris-drift-1".into(),
        from_version: "3".into(),
        to_version: "1".into(),
        reason: "drift".into(),
    };
    let mut pinned: ModelDeploymentStatus = md_yaml(SERVING_MD).status.unwrap();
    pinned.rollback_pin = serde_yaml::from_str(
        "{version: '1', replacesVersion: '3', setBy: DriftMonitor, reason: drift, since: '1970-01-01T03:48:00Z', requestId: ml/iris-drift/iris-drift-1}",
    )
    .unwrap();

    // The ModelDeployment controller's status write, as it sends it.
    let (client, mut server) = mock_api::pair();
    let mds = kube::Api::<mooring_crds::ModelDeployment>::namespaced(client, "ml");
    let status = pinned.clone();
    let write =
        tokio::spawn(async move { crate::controller::apply::status(&mds, "iris", &status).await });
    let e = server.expect(Method::PATCH, &format!("{MD}/status")).await;
    assert_apply_by(&e, "mooring-operator");
    let status_body = e.body.clone();
    e.reply(StatusCode::OK, &md_json(""));
    write.await.unwrap().unwrap();

    // The monitor's request and its withdrawal, as it sends them.
    let put = super::apply::request_body("iris", Some(&request));
    let withdraw = super::apply::request_body("iris", None);

    // The leaf paths a body sets, without the identity fields every apply names.
    fn fields(v: &Value) -> Vec<Vec<String>> {
        fn walk(v: &Value, path: Vec<String>, out: &mut Vec<Vec<String>>) {
            match v.as_object() {
                Some(map) if !map.is_empty() => {
                    for (k, child) in map {
                        let mut p = path.clone();
                        p.push(k.clone());
                        walk(child, p, out)
                    }
                }
                _ => out.push(path),
            }
        }
        let mut out = Vec::new();
        walk(v, Vec::new(), &mut out);
        out.retain(|p| {
            !matches!(
                p.iter().map(String::as_str).collect::<Vec<_>>()[..],
                ["apiVersion"] | ["kind"] | ["metadata", "name"]
            )
        });
        out
    }
    let theirs = fields(&status_body);
    let ours = fields(&put);
    assert!(theirs.iter().all(|p| p[0] == "status"), "{theirs:?}");
    assert_eq!(
        ours,
        [vec![
            "metadata".to_string(),
            "annotations".into(),
            ROLLBACK_REQUEST_ANNOTATION.into()
        ]]
    );
    assert!(fields(&withdraw).is_empty());

    // Apply them to one object in either order: what one wrote, the other left alone.
    let apply = |object: &mut Value, body: &Value| {
        for keys in fields(body) {
            let (mut src, mut dst) = (body, &mut *object);
            for k in &keys[..keys.len() - 1] {
                src = &src[k.as_str()];
                dst = dst
                    .as_object_mut()
                    .unwrap()
                    .entry(k.clone())
                    .or_insert(json!({}));
            }
            let last = keys[keys.len() - 1].as_str();
            dst[last] = src[last].clone();
        }
    };
    for order in [[&status_body, &put], [&put, &status_body]] {
        let mut object = md_json("");
        for body in order {
            apply(&mut object, body);
        }
        assert_eq!(
            object["status"]["rollbackPin"]["requestId"],
            "ml/iris-drift/iris-drift-1"
        );
        assert!(object["metadata"]["annotations"][ROLLBACK_REQUEST_ANNOTATION].is_string());
        assert_eq!(
            object["spec"],
            md_json("")["spec"],
            "neither touches the spec"
        );
    }
}
