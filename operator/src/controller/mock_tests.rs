//! Reconciles against a scripted API server (`tower_test::mock::pair`): every request's
//! method, path, query and body is checked, and nothing else may be sent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Method, StatusCode};
use kube::runtime::controller::Action;
use mooring_crds::ModelDeployment;
use mooring_registry::{
    Error as RegistryError, FetchedModel, ModelRef, ModelVersion, RegisteredModel, Registry,
    RegistryConfig, Selector,
};
use serde_json::{Value, json};

use super::fetch::Connector;
use super::{Context, reconcile};
use crate::controller::fixtures::{at, md_from_yaml, status_from_yaml};
use crate::metrics::Metrics;
use crate::mock_api::{self, ApiServer, Exchange};

const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/ml/deployments/iris";
const SERVICE: &str = "/api/v1/namespaces/ml/services/iris";
const STATUS: &str = "/apis/mooring.dev/v1alpha1/namespaces/ml/modeldeployments/iris/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ml/events";
const IMAGE: &str = "mooring/inference-server:test";

/// A registry answering from memory: `aliases` of model `iris-classifier`, versions 1–9.
pub(crate) struct FakeRegistry {
    aliases: BTreeMap<String, String>,
    down: bool,
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
        tags: BTreeMap::from([("mooring.digest".to_string(), format!("{v}{v}{v}"))]),
        metrics: BTreeMap::new(),
    }
}

#[async_trait]
impl Registry for FakeRegistry {
    fn location(&self) -> String {
        "fake".into()
    }
    async fn resolve(&self, model: &ModelRef) -> mooring_registry::Result<ModelVersion> {
        if self.down {
            return Err(RegistryError::Unreachable("connection refused".into()));
        }
        let v = match &model.selector {
            Selector::Alias(a) => {
                self.aliases
                    .get(a)
                    .cloned()
                    .ok_or_else(|| RegistryError::AliasNotFound {
                        name: model.name.clone(),
                        alias: a.clone(),
                        known: self.aliases.keys().cloned().collect::<Vec<_>>().join(", "),
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
        Err(RegistryError::Unreachable(
            "the operator never fetches artifacts".into(),
        ))
    }
    async fn list_models(&self) -> mooring_registry::Result<Vec<RegisteredModel>> {
        Err(RegistryError::Unreachable(
            "not used by the operator".into(),
        ))
    }
    async fn set_alias(&self, _: &str, _: &str, _: &str) -> mooring_registry::Result<()> {
        Err(RegistryError::Unreachable(
            "not used by the operator".into(),
        ))
    }
    async fn delete_alias(&self, _: &str, _: &str) -> mooring_registry::Result<()> {
        Err(RegistryError::Unreachable(
            "not used by the operator".into(),
        ))
    }
    async fn register(
        &self,
        _: &str,
        _: &std::path::Path,
    ) -> mooring_registry::Result<ModelVersion> {
        Err(RegistryError::Unreachable(
            "not used by the operator".into(),
        ))
    }
}

pub(crate) struct FakeConnector(pub(crate) Arc<FakeRegistry>);

impl Connector for FakeConnector {
    fn connect(&self, config: &RegistryConfig) -> mooring_registry::Result<Arc<dyn Registry>> {
        assert_eq!(
            config.location, "/models",
            "the spec's registry is the one connected to"
        );
        Ok(self.0.clone())
    }
}

pub(crate) fn registry(production: Option<&str>, down: bool) -> Arc<FakeRegistry> {
    let aliases = production
        .map(|v| BTreeMap::from([("production".to_string(), v.to_string())]))
        .unwrap_or_default();
    Arc::new(FakeRegistry { aliases, down })
}

fn context(client: kube::Client, registry: Arc<FakeRegistry>) -> Arc<Context> {
    let mut ctx = Context::new(
        client,
        Arc::new(FakeConnector(registry)),
        Metrics::new().unwrap(),
        IMAGE.into(),
    );
    ctx.clock = Arc::new(|| at(1_000));
    Arc::new(ctx)
}

const SPEC: &str =
    "model: {name: iris-classifier, alias: production}\nregistry: {local: {path: /models}}";

fn md_with_status(status_yaml: &str) -> ModelDeployment {
    let mut md = md_from_yaml(SPEC);
    md.status = Some(status_from_yaml(status_yaml));
    md
}

/// Run `reconcile` against the scripted server `script` (see [`mock_api::run_scripted`]).
async fn run<F>(
    md: ModelDeployment,
    registry: Arc<FakeRegistry>,
    script: impl FnOnce(ApiServer) -> F,
) -> (Action, Metrics)
where
    F: std::future::Future<Output = ApiServer> + Send + 'static,
{
    let (client, server) = mock_api::pair();
    let ctx = context(client, registry);
    let action = mock_api::run_scripted(server, reconcile(Arc::new(md), ctx.clone()), script)
        .await
        .expect("reconcile failed");
    (action, ctx.metrics.clone())
}

fn annotation(deployment: &Value, key: &str) -> Value {
    deployment["spec"]["template"]["metadata"]["annotations"][key].clone()
}

fn args(deployment: &Value) -> Vec<String> {
    serde_json::from_value(deployment["spec"]["template"]["spec"]["containers"][0]["args"].clone())
        .unwrap()
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_}"))
}

/// The Deployment as the API server returns it after an apply: generation bumped, and the
/// status the Deployment controller last wrote.
fn applied(deployment: &Exchange, generation: i64, status: Value) -> Value {
    let mut body = deployment.body.clone();
    body["metadata"]["generation"] = json!(generation);
    body["status"] = status;
    body
}

/// Answer a status apply with the whole object, as the API server does.
fn reply_status(status: Exchange) {
    let mut object = serde_json::to_value(md_from_yaml(SPEC)).unwrap();
    object["status"] = status.body["status"].clone();
    status.reply(StatusCode::OK, &object);
}

async fn expect_event(server: &mut ApiServer, type_: &str, reason: &str) -> Value {
    let event = server.expect(Method::POST, EVENTS).await;
    assert_eq!(event.body["type"], type_, "{}", event.body);
    assert_eq!(event.body["reason"], reason, "{}", event.body);
    assert_eq!(event.body["regarding"]["kind"], "ModelDeployment");
    assert_eq!(event.body["regarding"]["name"], "iris");
    let body = event.body.clone();
    event.echo();
    body
}

#[tokio::test]
async fn first_reconcile_creates_deployment_and_service_and_writes_status() {
    let (action, metrics) = run(
        md_from_yaml(SPEC),
        registry(Some("2"), false),
        |mut server| async move {
            // Nothing of that name exists yet: nothing to refuse to adopt.
            server.expect(Method::GET, DEPLOYMENT).await.not_found();
            server.expect(Method::GET, SERVICE).await.not_found();
            let deployment = server.expect(Method::PATCH, DEPLOYMENT).await;
            deployment.assert_apply();
            let d = &deployment.body;
            assert_eq!(
                (d["apiVersion"].as_str(), d["kind"].as_str()),
                (Some("apps/v1"), Some("Deployment"))
            );
            assert_eq!(d["metadata"]["ownerReferences"][0]["uid"], "uid-1");
            assert_eq!(d["metadata"]["ownerReferences"][0]["controller"], true);
            assert_eq!(annotation(d, "mooring.dev/model-version"), "2");
            assert_eq!(annotation(d, "mooring.dev/model-digest"), "sha256:222");
            let a = args(d);
            assert!(
                a.windows(2).any(|w| w == ["--model", "iris-classifier@2"]),
                "{a:?}"
            );
            assert!(
                a.windows(2).any(|w| w == ["--registry", "/models"]),
                "{a:?}"
            );
            assert_eq!(
                d["spec"]["template"]["spec"]["containers"][0]["image"],
                IMAGE
            );
            assert_eq!(
                d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
                "iris"
            );
            let reply = applied(&deployment, 1, Value::Null);
            deployment.reply(StatusCode::OK, &reply);

            let service = server.expect(Method::PATCH, SERVICE).await;
            service.assert_apply();
            assert_eq!(service.body["kind"], "Service");
            assert_eq!(service.body["spec"]["ports"][1]["name"], "grpc");
            service.echo();

            let status = server.expect(Method::PATCH, STATUS).await;
            status.assert_apply();
            let s = &status.body["status"];
            assert_eq!(status.body["kind"], "ModelDeployment");
            assert_eq!(s["observedGeneration"], 1);
            assert_eq!(s["version"], "2");
            assert_eq!(s["modelUri"], "file:///models/iris-classifier/2");
            assert_eq!(s["modelDigest"], "sha256:222");
            assert_eq!(s["history"][0]["outcome"], "Progressing");
            assert_eq!(s["endpoints"]["rest"], "http://iris.ml.svc:8080");
            assert_eq!(condition(s, "RegistryReachable")["status"], "True");
            assert_eq!(condition(s, "Progressing")["status"], "True");
            assert_eq!(condition(s, "Ready")["status"], "False");
            assert_eq!(condition(s, "Degraded")["status"], "False");
            assert_eq!(condition(s, "Ready")["reason"], "RollingOut");
            assert_eq!(condition(s, "Reconciling")["status"], "True");
            assert_eq!(condition(s, "Stalled")["status"], "False");
            assert_eq!(s["targetVersion"], "2");
            reply_status(status);

            // Pods starting is routine: one Normal Event, no Warning.
            expect_event(&mut server, "Normal", "RollingOut").await;
            server
        },
    )
    .await;
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(15)),
        "a rollout in progress is looked at again"
    );
    assert!(metrics.render().contains("mooring_model_deployment_resolved_version{model=\"iris-classifier\",name=\"iris\",namespace=\"ml\"} 2"));
}

const SERVING_2: &str = "version: '2'\nmodelUri: file:///models/iris-classifier/2\nmodelDigest: sha256:222\nreplicas: 1\nreadyReplicas: 1\nupdatedReplicas: 1\nobservedGeneration: 1\nendpoints: {rest: 'http://iris.ml.svc:8080', grpc: 'iris.ml.svc:8081'}\nhistory: [{version: '1', startedAt: '2026-01-01T00:00:00Z', readyAt: '2026-01-01T00:01:00Z', outcome: Superseded}, {version: '2', digest: 'sha256:222', startedAt: '2026-01-02T00:00:00Z', readyAt: '2026-01-02T00:01:00Z', outcome: Ready}]\nconditions: [{type: Ready, status: 'True', reason: Available, message: 'version 2: 1/1 replicas ready', observedGeneration: 1, lastTransitionTime: '2026-01-02T00:01:00Z'}, {type: RegistryReachable, status: 'True', reason: Resolved, message: 'iris-classifier@production is version 2', observedGeneration: 1, lastTransitionTime: '2026-01-01T00:00:00Z'}, {type: Progressing, status: 'False', reason: RolloutComplete, message: 'version 2 is rolled out', observedGeneration: 1, lastTransitionTime: '2026-01-02T00:01:00Z'}, {type: Degraded, status: 'False', reason: AsExpected, message: '', observedGeneration: 1, lastTransitionTime: '2026-01-01T00:00:00Z'}, {type: Reconciling, status: 'False', reason: Reconciled, message: '', observedGeneration: 1, lastTransitionTime: '2026-01-02T00:01:00Z'}, {type: Stalled, status: 'False', reason: AsExpected, message: '', observedGeneration: 1, lastTransitionTime: '2026-01-01T00:00:00Z'}]\ntargetVersion: '2'";

#[tokio::test]
async fn alias_moved_patches_the_deployment_with_the_new_version() {
    let (action, _) = run(md_with_status(SERVING_2), registry(Some("3"), false), |mut server| async move {
        let deployment = server.expect(Method::PATCH, DEPLOYMENT).await;
        deployment.assert_apply();
        assert_eq!(annotation(&deployment.body, "mooring.dev/model-version"), "3");
        assert!(args(&deployment.body).windows(2).any(|w| w == ["--model", "iris-classifier@3"]));
        // The old ReplicaSet still serves while the new one starts.
        let reply = applied(&deployment, 2, json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}));
        deployment.reply(StatusCode::OK, &reply);
        server.expect(Method::PATCH, SERVICE).await.echo();

        let status = server.expect(Method::PATCH, STATUS).await;
        let s = &status.body["status"];
        assert_eq!(s["version"], "3");
        assert_eq!(s["history"][1]["outcome"], "Superseded");
        assert_eq!(s["history"][2]["version"], "3");
        assert_eq!(s["history"][2]["outcome"], "Progressing");
        assert_eq!(condition(s, "Progressing")["status"], "True");
        // Version 2 keeps serving, but Ready means "serving what the spec asks for".
        assert_eq!(condition(s, "Ready")["status"], "False");
        assert_eq!(condition(s, "Ready")["reason"], "RollingOut");
        assert_eq!(condition(s, "Reconciling")["status"], "True");
        assert_eq!(s["targetVersion"], "3");
        reply_status(status);
        let event = expect_event(&mut server, "Normal", "RollingOut").await;
        assert_eq!(event["note"], "rolling out version 3 (was 2)");
        server
    })
    .await;
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));
}

#[tokio::test]
async fn failed_rollout_pins_the_last_ready_version_then_rolls_back() {
    let rolling_3 = SERVING_2.replace(
        "outcome: Ready}]",
        "outcome: Superseded}, {version: '3', digest: 'sha256:333', startedAt: '2026-01-03T00:00:00Z', outcome: Progressing}]",
    ).replacen("version: '2'", "version: '3'", 1);
    let (action, _) = run(md_with_status(&rolling_3), registry(Some("3"), false), |mut server| async move {
        let deployment = server.expect(Method::PATCH, DEPLOYMENT).await;
        assert_eq!(annotation(&deployment.body, "mooring.dev/model-version"), "3");
        let reply = applied(
            &deployment,
            2,
            json!({"observedGeneration": 2, "replicas": 2, "readyReplicas": 1, "updatedReplicas": 1,
                   "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                   "message": "ReplicaSet \"iris-7d9\" has timed out progressing."}]}),
        );
        deployment.reply(StatusCode::OK, &reply);
        server.expect(Method::PATCH, SERVICE).await.echo();

        let status = server.expect(Method::PATCH, STATUS).await;
        let s = &status.body["status"];
        assert_eq!(s["history"][2]["outcome"], "Failed");
        assert_eq!(s["rollbackPin"]["version"], "2");
        assert_eq!(s["rollbackPin"]["replacesVersion"], "3");
        assert_eq!(s["rollbackPin"]["alias"], "production");
        assert_eq!(s["rollbackPin"]["setBy"], "AutoRollback");
        assert_eq!(condition(s, "Degraded")["status"], "True");
        assert_eq!(condition(s, "Degraded")["reason"], "RolledBack");
        assert_eq!(condition(s, "Progressing")["reason"], "RolloutFailed");
        reply_status(status);
        expect_event(&mut server, "Warning", "RolloutFailed").await;
        let event = expect_event(&mut server, "Warning", "RolledBack").await;
        assert!(event["note"].as_str().unwrap().contains("rolled back to version 2"), "{event}");
        server
    })
    .await;
    assert_eq!(
        action,
        Action::requeue(Duration::from_millis(100)),
        "the rollback is applied at once"
    );

    // Next reconcile: the alias still names 3, the pin holds, version 2 goes back out.
    let pinned = rolling_3.replace(
        "outcome: Progressing}]",
        "outcome: Failed, message: deadline}]",
    ) + "\nrollbackPin: {version: '2', replacesVersion: '3', alias: production, setBy: AutoRollback, reason: deadline, since: '2026-01-03T00:05:00Z'}";
    run(md_with_status(&pinned), registry(Some("3"), false), |mut server| async move {
        let deployment = server.expect(Method::PATCH, DEPLOYMENT).await;
        assert_eq!(annotation(&deployment.body, "mooring.dev/model-version"), "2", "no flapping back to 3");
        assert!(args(&deployment.body).windows(2).any(|w| w == ["--model", "iris-classifier@2"]));
        // Version 2's pod still serves; the Deployment controller has not seen the change yet.
        let reply = applied(&deployment, 3, json!({"observedGeneration": 2, "replicas": 2, "readyReplicas": 1, "updatedReplicas": 1}));
        deployment.reply(StatusCode::OK, &reply);
        server.expect(Method::PATCH, SERVICE).await.echo();
        let status = server.expect(Method::PATCH, STATUS).await;
        let s = &status.body["status"];
        assert_eq!(s["version"], "2");
        assert_eq!(s["rollbackPin"]["version"], "2");
        assert_eq!(s["history"][3]["version"], "2");
        assert_eq!(condition(s, "Degraded")["status"], "True");
        reply_status(status);
        expect_event(&mut server, "Normal", "RollingOut").await;
        server
    })
    .await;
}

#[tokio::test]
async fn registry_down_applies_nothing_and_sets_the_condition() {
    let (action, metrics) = run(
        md_with_status(SERVING_2),
        registry(Some("3"), true),
        |mut server| async move {
            // No Deployment or Service apply: straight to the status.
            let status = server.expect(Method::PATCH, STATUS).await;
            status.assert_apply();
            let s = &status.body["status"];
            let reachable = condition(s, "RegistryReachable");
            assert_eq!(reachable["status"], "False");
            assert_eq!(reachable["reason"], "RegistryUnreachable");
            assert!(
                reachable["message"]
                    .as_str()
                    .unwrap()
                    .contains("connection refused")
            );
            assert_eq!(s["version"], "2");
            assert_eq!(condition(s, "Ready")["status"], "True");
            reply_status(status);
            expect_event(&mut server, "Warning", "RegistryUnreachable").await;
            server
        },
    )
    .await;
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(5)),
        "first backoff step"
    );
    assert!(metrics.render().contains("reason=\"RegistryUnreachable\""));
}

#[tokio::test]
async fn invalid_spec_sets_ready_false_and_applies_no_child() {
    let md = md_from_yaml(
        "model: {name: iris-classifier, alias: production, version: '3'}\nregistry: {local: {path: /models}}",
    );
    let (action, metrics) = run(md, registry(Some("3"), false), |mut server| async move {
        let status = server.expect(Method::PATCH, STATUS).await;
        status.assert_apply();
        let ready = condition(&status.body["status"], "Ready").clone();
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "InvalidModel");
        assert!(
            ready["message"].as_str().unwrap().contains("spec.model"),
            "{ready}"
        );
        reply_status(status);
        expect_event(&mut server, "Warning", "InvalidModel").await;
        server
    })
    .await;
    assert_eq!(
        action,
        Action::await_change(),
        "no retry storm: wait for the spec to change"
    );
    assert!(metrics.render().contains("reason=\"InvalidModel\""));
}

#[tokio::test]
async fn missing_token_secret_sets_ready_false_naming_the_secret() {
    let mut md = md_from_yaml(
        "model: {name: iris-classifier, alias: production}\nregistry: {mlflow: {url: 'http://mlflow:5000', tokenSecretRef: {name: mlflow-token}}}",
    );
    md.metadata.generation = Some(4);
    let (action, _) = run(md, registry(Some("3"), false), |mut server| async move {
        server
            .expect(Method::GET, "/api/v1/namespaces/ml/secrets/mlflow-token")
            .await
            .not_found();
        let status = server.expect(Method::PATCH, STATUS).await;
        let s = &status.body["status"];
        assert_eq!(s["observedGeneration"], 4);
        let ready = condition(s, "Ready");
        assert_eq!(ready["reason"], "SecretNotFound");
        assert!(ready["message"].as_str().unwrap().contains("mlflow-token"));
        reply_status(status);
        expect_event(&mut server, "Warning", "SecretNotFound").await;
        server
    })
    .await;
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(300)),
        "slow retry, no storm"
    );
}

#[tokio::test]
async fn basic_auth_secret_without_password_sets_ready_false_naming_field_and_key() {
    let md = md_from_yaml(
        "model: {name: iris-classifier, alias: production}\nregistry: {mlflow: {url: 'http://mlflow:5000', basicAuthSecretRef: {name: mlflow-basic}}}",
    );
    let (action, _) = run(md, registry(Some("3"), false), |mut server| async move {
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "mlflow-basic", "namespace": "ml"},
            "data": {"username": "YWxpY2U="}
        });
        server
            .expect(Method::GET, "/api/v1/namespaces/ml/secrets/mlflow-basic")
            .await
            .reply(StatusCode::OK, &secret);
        // No child is applied: the pods could not start without the password either.
        let status = server.expect(Method::PATCH, STATUS).await;
        let ready = condition(&status.body["status"], "Ready").clone();
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "SecretKeyMissing");
        assert_eq!(
            ready["message"],
            r#"spec.registry.mlflow.basicAuthSecretRef: Secret "mlflow-basic" has no key "password""#
        );
        reply_status(status);
        expect_event(&mut server, "Warning", "SecretKeyMissing").await;
        server
    })
    .await;
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
}

#[tokio::test]
async fn steady_state_applies_children_but_writes_nothing_else() {
    let (_, _) = run(md_with_status(SERVING_2), registry(Some("2"), false), |mut server| async move {
        let deployment = server.expect(Method::PATCH, DEPLOYMENT).await;
        let reply = applied(&deployment, 1, json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}));
        deployment.reply(StatusCode::OK, &reply);
        server.expect(Method::PATCH, SERVICE).await.echo();
        // No status write and no Event: nothing changed.
        server
    })
    .await;
}

#[tokio::test]
async fn crash_looping_new_pods_fail_the_rollout() {
    let rolling_3 = SERVING_2
        .replace(
            "outcome: Ready}]",
            "outcome: Superseded}, {version: '3', startedAt: '2026-01-03T00:00:00Z', outcome: Progressing}]",
        )
        .replacen("version: '2'", "version: '3'", 1);
    let (action, _) = run(md_with_status(&rolling_3), registry(Some("3"), false), |mut server| async move {
        let deployment = server.expect(Method::PATCH, DEPLOYMENT).await;
        let reply = applied(
            &deployment,
            2,
            json!({"observedGeneration": 2, "replicas": 2, "readyReplicas": 1, "updatedReplicas": 1}),
        );
        deployment.reply(StatusCode::OK, &reply);
        server.expect(Method::PATCH, SERVICE).await.echo();

        // The new version's pods, found by the stable selector plus the version label.
        let pods = server.expect(Method::GET, "/api/v1/namespaces/ml/pods").await;
        let selector = pods.query.get("labelSelector").cloned().unwrap_or_default();
        for wanted in [
            "app.kubernetes.io/name=inference-server",
            "app.kubernetes.io/instance=iris",
            "mooring.dev/model-version=3",
        ] {
            assert!(selector.split(',').any(|s| s == wanted), "{wanted} not in {selector}");
        }
        let list = json!({
            "apiVersion": "v1", "kind": "PodList", "metadata": {},
            "items": [{"metadata": {"name": "iris-7d9-abc"},
                       "status": {"containerStatuses": [{"name": "inference-server", "image": IMAGE, "imageID": "",
                                  "ready": false, "restartCount": 5,
                                  "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}]
        });
        pods.reply(StatusCode::OK, &list);

        let status = server.expect(Method::PATCH, STATUS).await;
        let s = &status.body["status"];
        assert_eq!(s["history"][2]["outcome"], "Failed");
        assert!(s["history"][2]["message"].as_str().unwrap().contains("iris-7d9-abc"));
        assert_eq!(s["rollbackPin"]["version"], "2");
        reply_status(status);
        expect_event(&mut server, "Warning", "RolloutFailed").await;
        expect_event(&mut server, "Warning", "RolledBack").await;
        server
    })
    .await;
    assert_eq!(action, Action::requeue(Duration::from_millis(100)));
}

#[tokio::test]
async fn a_resource_being_deleted_is_left_to_the_garbage_collector() {
    let mut md = md_with_status(SERVING_2);
    md.metadata.deletion_timestamp = Some(at(2_000));
    let (action, _) = run(
        md,
        registry(Some("3"), false),
        |server| async move { server },
    )
    .await;
    assert_eq!(action, Action::await_change());
}

/// `run`, for a reconcile that fails (its error is returned).
async fn run_failing<F>(
    md: ModelDeployment,
    registry: Arc<FakeRegistry>,
    script: impl FnOnce(ApiServer) -> F,
) -> super::Error
where
    F: std::future::Future<Output = ApiServer> + Send + 'static,
{
    let (client, server) = mock_api::pair();
    let ctx = context(client, registry);
    let result = mock_api::run_scripted(server, reconcile(Arc::new(md), ctx), script).await;
    result.expect_err("the reconcile must fail, to be retried with backoff")
}

fn api_status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

#[tokio::test]
async fn a_rejected_apply_is_reported_in_the_status_and_an_event() {
    const INVALID: &str = "Deployment.apps \"iris\" is invalid: spec.template.spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit";
    let err = run_failing(
        md_with_status(SERVING_2),
        registry(Some("2"), false),
        |mut server| async move {
            let deployment = server.expect(Method::PATCH, DEPLOYMENT).await;
            deployment.reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                &api_status(422, "Invalid", INVALID),
            );
            let status = server.expect(Method::PATCH, STATUS).await;
            let s = &status.body["status"];
            let ready = condition(s, "Ready");
            assert_eq!(ready["status"], "False");
            assert_eq!(ready["reason"], "ReconcileError");
            assert!(
                ready["message"]
                    .as_str()
                    .unwrap()
                    .contains("must be less than or equal to cpu limit"),
                "{ready}"
            );
            assert_eq!(condition(s, "Reconciling")["status"], "True");
            assert_eq!(
                s["observedGeneration"], 1,
                "unchanged: nothing of this generation was applied"
            );
            reply_status(status);
            let event = expect_event(&mut server, "Warning", "ReconcileError").await;
            assert!(
                event["note"].as_str().unwrap().contains("is invalid"),
                "{event}"
            );
            server
        },
    )
    .await;
    assert_eq!(err.reason(), "ApplyDeploymentFailed");
}

#[tokio::test]
async fn a_deployment_owned_by_someone_else_is_not_adopted() {
    let (action, _) = run(md_from_yaml(SPEC), registry(Some("2"), false), |mut server| async move {
        let get = server.expect(Method::GET, DEPLOYMENT).await;
        get.reply(StatusCode::OK, &json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "iris", "namespace": "ml",
                         "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "iris", "uid": "other", "controller": true}]},
            "spec": {"selector": {}, "template": {}}
        }));
        let status = server.expect(Method::PATCH, STATUS).await;
        let ready = condition(&status.body["status"], "Ready").clone();
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "NotOwned");
        assert!(ready["message"].as_str().unwrap().contains("controlled by Rollout iris"), "{ready}");
        assert_eq!(condition(&status.body["status"], "Stalled")["status"], "True");
        reply_status(status);
        expect_event(&mut server, "Warning", "NotOwned").await;
        // No apply follows: the script ends here.
        server
    })
    .await;
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
}

#[tokio::test]
async fn autoscaling_creates_an_hpa_and_a_pdb_and_leaves_replicas_to_the_hpa() {
    let md = md_from_yaml(&format!(
        "{SPEC}\nautoscaling: {{minReplicas: 2, maxReplicas: 5, targetCpuUtilizationPercentage: 70}}"
    ));
    run(md, registry(Some("2"), false), |mut server| async move {
        server.expect(Method::GET, DEPLOYMENT).await.not_found();
        server.expect(Method::GET, SERVICE).await.not_found();
        let deployment = server.expect(Method::PATCH, DEPLOYMENT).await;
        assert!(
            deployment.body["spec"].get("replicas").is_none(),
            "the HPA owns replicas: {}",
            deployment.body["spec"]
        );
        let reply = applied(&deployment, 1, Value::Null);
        deployment.reply(StatusCode::OK, &reply);
        server.expect(Method::PATCH, SERVICE).await.echo();
        let hpa = server
            .expect(
                Method::PATCH,
                "/apis/autoscaling/v2/namespaces/ml/horizontalpodautoscalers/iris",
            )
            .await;
        hpa.assert_apply();
        let spec = &hpa.body["spec"];
        assert_eq!(spec["scaleTargetRef"]["name"], "iris");
        assert_eq!(
            (spec["minReplicas"].as_i64(), spec["maxReplicas"].as_i64()),
            (Some(2), Some(5))
        );
        assert_eq!(
            spec["metrics"][0]["resource"]["target"]["averageUtilization"],
            70
        );
        hpa.echo();
        let pdb = server
            .expect(
                Method::PATCH,
                "/apis/policy/v1/namespaces/ml/poddisruptionbudgets/iris",
            )
            .await;
        assert_eq!(pdb.body["spec"]["maxUnavailable"], 1);
        pdb.echo();
        reply_status(server.expect(Method::PATCH, STATUS).await);
        expect_event(&mut server, "Normal", "RollingOut").await;
        server
    })
    .await;
}

/// Counts the registry clients made.
struct CountingConnector(std::sync::atomic::AtomicUsize, Arc<FakeRegistry>);

impl Connector for CountingConnector {
    fn connect(&self, config: &RegistryConfig) -> mooring_registry::Result<Arc<dyn Registry>> {
        assert!(
            config.request_timeout <= Duration::from_secs(10) && config.max_retries <= 2,
            "a hung registry must not hold a reconcile for minutes: {config:?}"
        );
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(self.1.clone())
    }
}

#[tokio::test]
async fn one_registry_client_per_registry_and_credentials() {
    let (client, _server) = mock_api::pair();
    let connector = Arc::new(CountingConnector(0.into(), registry(Some("1"), false)));
    let ctx = Context::new(
        client,
        connector.clone(),
        Metrics::new().unwrap(),
        IMAGE.into(),
    );
    let config = RegistryConfig::new("/models");
    for _ in 0..3 {
        ctx.registry(&config).unwrap();
    }
    assert_eq!(connector.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    let mut with_token = RegistryConfig::new("/models");
    with_token.token = Some("rotated".into());
    ctx.registry(&with_token).unwrap();
    assert_eq!(
        connector.0.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "new credentials, new client"
    );
    // The reconcile-duration histogram covers slow reconciles.
    ctx.metrics
        .duration
        .with_label_values(&["modeldeployment"])
        .observe(30.0);
    assert!(ctx.metrics.render().contains("le=\"120\""));
}
