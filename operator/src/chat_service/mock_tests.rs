//! ChatService reconciles against a scripted API server: each request's method, path and
//! body is checked, and nothing else may be sent.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use kube::runtime::controller::Action;
use mooring_crds::{ChatService, ChatServiceStatus};
use serde_json::{Value, json};

use super::reconcile;
use crate::controller::Context;
use crate::controller::fixtures::at;
use crate::controller::mock_tests::{FakeConnector, FakeRegistry, registry};
use crate::metrics::Metrics;
use crate::mock_api::{self, ApiServer, Exchange};

const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/ml/deployments/assistant";
const SERVICE: &str = "/api/v1/namespaces/ml/services/assistant";
const STATUS: &str = "/apis/mooring.dev/v1alpha1/namespaces/ml/chatservices/assistant/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ml/events";
const PODS: &str = "/api/v1/namespaces/ml/pods";
const IMAGE: &str = "mooring/inference-server:test";
const LOCAL: &str =
    "backend: {kind: local, model: smollm2@production}\nregistry: {local: {path: /models}}";

fn chat(spec_yaml: &str, status_yaml: Option<&str>) -> ChatService {
    let spec = serde_yaml::from_str(spec_yaml).unwrap_or_else(|e| panic!("{e}\n{spec_yaml}"));
    let mut chat = ChatService::new("assistant", spec);
    chat.metadata.namespace = Some("ml".into());
    chat.metadata.uid = Some("uid-1".into());
    chat.metadata.generation = Some(1);
    chat.status = status_yaml.map(|s| {
        serde_yaml::from_str::<ChatServiceStatus>(s).unwrap_or_else(|e| panic!("{e}\n{s}"))
    });
    chat
}

async fn run<F>(
    chat: ChatService,
    registry: Arc<FakeRegistry>,
    script: impl FnOnce(ApiServer) -> F + Send + 'static,
) -> Action
where
    F: std::future::Future<Output = ApiServer> + Send + 'static,
{
    let (client, server) = mock_api::pair();
    let mut ctx = Context::new(
        client,
        Arc::new(FakeConnector(registry)),
        Metrics::new().unwrap(),
        IMAGE.into(),
    );
    ctx.clock = Arc::new(|| at(1_000));
    // Kept until the script ends: its client must outlive the reconcile, so that the script
    // can wait for Events that do not come rather than see the client gone.
    let ctx = Arc::new(ctx);
    // Every reconcile starts by reading the object as the API server has it.
    let fresh = serde_json::to_value(&chat).unwrap();
    let scripted = tokio::spawn(async move {
        let mut server = server;
        server
            .expect(Method::GET, STATUS)
            .await
            .reply(StatusCode::OK, &fresh);
        script(server).await
    });
    let action = tokio::time::timeout(
        Duration::from_secs(10),
        reconcile(Arc::new(chat), ctx.clone()),
    )
    .await
    .expect("reconcile hung: it sent a request the script did not expect")
    .expect("reconcile failed");
    drop(
        tokio::time::timeout(Duration::from_secs(10), scripted)
            .await
            .expect("script unfinished")
            .expect("script panicked"),
    );
    drop(ctx);
    action
}

/// The Deployment as the API server returns it after an apply.
fn applied(deployment: &Exchange, generation: i64, status: Value) -> Value {
    let mut body = deployment.body.clone();
    body["metadata"]["generation"] = json!(generation);
    body["status"] = status;
    body
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
        .unwrap_or_else(|| panic!("no {type_} in {status}"))
}

/// Answer the status apply with the whole object; returns the status written.
async fn expect_status(server: &mut ApiServer) -> Value {
    let status = server.expect(Method::PATCH, STATUS).await;
    status.assert_apply();
    assert_eq!(status.body["kind"], "ChatService");
    let written = status.body["status"].clone();
    let mut object = serde_json::to_value(chat(LOCAL, None)).unwrap();
    object["status"] = written.clone();
    status.reply(StatusCode::OK, &object);
    written
}

/// The Events published after the status: (type, reason), in order.
async fn drain_events(server: &mut ApiServer) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Ok(event) = tokio::time::timeout(
        Duration::from_millis(300),
        server.expect(Method::POST, EVENTS),
    )
    .await
    {
        assert_eq!(event.body["regarding"]["kind"], "ChatService");
        out.push((
            event.body["type"].as_str().unwrap_or_default().to_string(),
            event.body["reason"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ));
        event.echo();
    }
    out
}

/// First reconcile: nothing exists yet, so nothing is refused; then the children.
async fn expect_children(server: &mut ApiServer, first: bool) -> Exchange {
    if first {
        server.expect(Method::GET, DEPLOYMENT).await.not_found();
        server.expect(Method::GET, SERVICE).await.not_found();
    }
    let deployment = server.expect(Method::PATCH, DEPLOYMENT).await;
    deployment.assert_apply();
    deployment
}

async fn expect_service(server: &mut ApiServer) {
    let service = server.expect(Method::PATCH, SERVICE).await;
    service.assert_apply();
    service.echo();
}

#[tokio::test]
async fn create_to_ready() {
    run(chat(LOCAL, None), registry(Some("2"), false), |mut server| async move {
        let deployment = expect_children(&mut server, true).await;
        let d = deployment.body.clone();
        assert_eq!(d["metadata"]["ownerReferences"][0]["kind"], "ChatService");
        assert!(
            args(&d).windows(2).any(|w| w == ["--chat-gguf-model", "smollm2@2"]),
            "{:?}",
            args(&d)
        );
        assert_eq!(
            d["spec"]["template"]["metadata"]["annotations"]["mooring.dev/model-digest"],
            "sha256:222"
        );
        let ready = json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1});
        let reply = applied(&deployment, 1, ready);
        deployment.reply(StatusCode::OK, &reply);
        expect_service(&mut server).await;
        let s = expect_status(&mut server).await;
        assert_eq!(s["version"], "2");
        assert_eq!(s["targetVersion"], "2");
        assert_eq!(s["modelDigest"], "sha256:222");
        assert_eq!(s["readyReplicas"], 1);
        assert_eq!(s["observedGeneration"], 1);
        assert_eq!(s["url"], "http://assistant.ml.svc:8080/v1");
        assert_eq!(condition(&s, "Ready")["status"], "True");
        assert_eq!(condition(&s, "BackendReachable")["status"], "True");
        assert_eq!(condition(&s, "Degraded")["status"], "False");
        let events = drain_events(&mut server).await;
        assert_eq!(
            events,
            [
                ("Normal".to_string(), "RollingOut".to_string()),
                ("Normal".to_string(), "RolloutComplete".to_string())
            ]
        );
        server
    })
    .await;
}

const SERVING_2: &str = "observedGeneration: 1\nurl: http://assistant.ml.svc:8080/v1\nversion: '2'\ntargetVersion: '2'\nmodelDigest: sha256:222\nhistory: [{version: '2', digest: 'sha256:222', startedAt: '1970-01-01T00:00:10Z', readyAt: '1970-01-01T00:00:20Z', outcome: Ready}]\nreadyReplicas: 1\nconditions: [{type: Ready, status: 'True', reason: Available, message: '', lastTransitionTime: '1970-01-01T00:00:20Z'}, {type: BackendReachable, status: 'True', reason: PodsReady, message: '', lastTransitionTime: '1970-01-01T00:00:20Z'}]";

#[tokio::test]
async fn alias_move_rolls_the_pods_out() {
    run(
        chat(LOCAL, Some(SERVING_2)),
        registry(Some("3"), false),
        |mut server| async move {
            let deployment = expect_children(&mut server, false).await;
            assert!(
                args(&deployment.body)
                    .windows(2)
                    .any(|w| w == ["--chat-gguf-model", "smollm2@3"])
            );
            let rolling = json!({"observedGeneration": 2, "replicas": 2, "readyReplicas": 1, "updatedReplicas": 1});
            let reply = applied(&deployment, 2, rolling);
            deployment.reply(StatusCode::OK, &reply);
            expect_service(&mut server).await;
            // The new pods are looked at for crash loops.
            let pods = server.expect(Method::GET, PODS).await;
            assert!(
                pods.query["labelSelector"].contains("mooring.dev/model-version=3"),
                "{:?}",
                pods.query
            );
            pods.reply(StatusCode::OK, &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}));
            let s = expect_status(&mut server).await;
            assert_eq!(s["version"], "3");
            assert_eq!(condition(&s, "Ready")["reason"], "RollingOut");
            assert_eq!(condition(&s, "BackendReachable")["status"], "True", "the old pod still answers");
            let events = drain_events(&mut server).await;
            assert!(events.contains(&("Normal".into(), "RollingOut".into())), "{events:?}");
            server
        },
    )
    .await;
}

#[tokio::test]
async fn failed_rollout_rolls_back_with_a_pin() {
    let rolling_3 = "observedGeneration: 1\nversion: '3'\ntargetVersion: '3'\nhistory: [{version: '2', startedAt: '1970-01-01T00:00:10Z', readyAt: '1970-01-01T00:00:20Z', outcome: Superseded}, {version: '3', startedAt: '1970-01-01T00:00:30Z', outcome: Progressing}]\nconditions: [{type: Ready, status: 'False', reason: RollingOut, message: '', lastTransitionTime: '1970-01-01T00:00:30Z'}]";
    let action = run(
        chat(LOCAL, Some(rolling_3)),
        registry(Some("3"), false),
        |mut server| async move {
            let deployment = expect_children(&mut server, false).await;
            let failed = json!({"observedGeneration": 2, "replicas": 2, "readyReplicas": 1, "updatedReplicas": 1,
                "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet assistant-3 has timed out progressing."}]});
            let reply = applied(&deployment, 2, failed);
            deployment.reply(StatusCode::OK, &reply);
            expect_service(&mut server).await;
            let s = expect_status(&mut server).await;
            assert_eq!(s["rollbackPin"]["version"], "2");
            assert_eq!(s["rollbackPin"]["replacesVersion"], "3");
            assert_eq!(s["rollbackPin"]["setBy"], "AutoRollback");
            assert_eq!(condition(&s, "Degraded")["status"], "True");
            let events = drain_events(&mut server).await;
            assert!(events.contains(&("Warning".into(), "RolloutFailed".into())), "{events:?}");
            assert!(events.contains(&("Warning".into(), "RolledBack".into())), "{events:?}");
            server
        },
    )
    .await;
    assert_eq!(
        action,
        Action::requeue(Duration::from_millis(100)),
        "the rollback is applied at once"
    );
}

#[tokio::test]
async fn missing_secret_is_ready_false_naming_it() {
    let spec = format!("{LOCAL}\nauth: {{apiKeysSecretRef: {{name: chat-keys}}}}");
    run(
        chat(&spec, None),
        registry(Some("2"), false),
        |mut server| async move {
            server
                .expect(Method::GET, "/api/v1/namespaces/ml/secrets/chat-keys")
                .await
                .not_found();
            let s = expect_status(&mut server).await;
            let ready = condition(&s, "Ready");
            assert_eq!(ready["status"], "False");
            assert_eq!(ready["reason"], "SecretNotFound");
            let message = ready["message"].as_str().unwrap();
            assert!(
                message.contains("spec.auth.apiKeysSecretRef") && message.contains("chat-keys"),
                "{message}"
            );
            drain_events(&mut server).await;
            server
        },
    )
    .await;
}

#[tokio::test]
async fn invalid_spec_is_stalled_and_applies_nothing() {
    let spec = format!("{LOCAL}\nreplicas: 3");
    let action = run(
        chat(&spec, None),
        registry(Some("2"), false),
        |mut server| async move {
            let s = expect_status(&mut server).await;
            assert_eq!(condition(&s, "Ready")["reason"], "SessionsNotShared");
            assert_eq!(condition(&s, "Stalled")["status"], "True");
            assert!(
                condition(&s, "Ready")["message"]
                    .as_str()
                    .unwrap()
                    .contains("memory.store redis")
            );
            drain_events(&mut server).await;
            server
        },
    )
    .await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn registry_outage_changes_nothing_that_runs() {
    let action = run(
        chat(LOCAL, Some(SERVING_2)),
        registry(Some("2"), true),
        |mut server| async move {
            let s = expect_status(&mut server).await;
            assert_eq!(s["version"], "2");
            assert_eq!(condition(&s, "RegistryReachable")["status"], "False");
            assert_eq!(condition(&s, "Ready")["status"], "True", "still serving");
            drain_events(&mut server).await;
            server
        },
    )
    .await;
    assert!(matches!(action, a if a != Action::await_change()));
}

#[tokio::test]
async fn remote_backend_create_to_ready() {
    let spec = "backend: {kind: openai, url: 'http://vllm:8000/v1', model: qwen, apiKeySecretRef: {name: openai, key: key}}";
    run(chat(spec, None), registry(None, true), |mut server| async move {
        let secret = server
            .expect(Method::GET, "/api/v1/namespaces/ml/secrets/openai")
            .await;
        secret.reply(
            StatusCode::OK,
            &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openai"}, "data": {"key": "c2stMTIz"}}),
        );
        let deployment = expect_children(&mut server, true).await;
        let env = deployment.body["spec"]["template"]["spec"]["containers"][0]["env"].clone();
        assert!(
            !env.to_string().contains("sk-123"),
            "the key is never copied into the Deployment: {env}"
        );
        let ready = json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1});
        let reply = applied(&deployment, 1, ready);
        deployment.reply(StatusCode::OK, &reply);
        expect_service(&mut server).await;
        let s = expect_status(&mut server).await;
        assert_eq!(condition(&s, "Ready")["status"], "True");
        assert_eq!(condition(&s, "BackendReachable")["status"], "True");
        assert!(s.get("version").is_none(), "{s}");
        drain_events(&mut server).await;
        server
    })
    .await;
}
