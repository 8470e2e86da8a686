//! JSON mapping from recorded MLflow 3 responses, and the HTTP behaviour (retries, status
//! handling) against a scripted in-process server. The real-server tests are in
//! `registry/tests/mlflow.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::artifacts::{ArtifactLocation, parse_artifact_uri};
use super::wire::*;
use super::*;

/// `GET registered-models/alias` from MLflow 3.17 (a version registered by mooring).
const ALIAS_RESPONSE: &str = r#"{
  "model_version": {
    "name": "probe", "version": "1",
    "creation_timestamp": 1795322516484, "last_updated_timestamp": 1795322516484,
    "current_stage": "None", "description": "d",
    "source": "mlflow-artifacts:/1/42a6982de40d4733beb7b9159fba9a50/artifacts/model",
    "run_id": "42a6982de40d4733beb7b9159fba9a50", "status": "READY",
    "tags": [{"key": "k", "value": "v"}, {"key": "mooring.metric.test_accuracy", "value": "0.9667"},
             {"key": "mooring.param.algorithm", "value": "LogisticRegression"}],
    "run_link": "", "aliases": ["production"]
  }
}"#;

/// `GET registered-models/get` from MLflow 3.17.
const MODEL_RESPONSE: &str = r#"{
  "registered_model": {
    "name": "probe", "creation_timestamp": 1795322504757, "last_updated_timestamp": 1795322516484,
    "latest_versions": [],
    "aliases": [{"alias": "production", "version": "1"}, {"alias": "challenger", "version": "2"}]
  }
}"#;

#[test]
fn maps_a_model_version() {
    let r: ModelVersionResponse = serde_json::from_str(ALIAS_RESPONSE).unwrap();
    let v = r.model_version.into_model_version(None);
    assert_eq!(v.name, "probe");
    assert_eq!(v.version, "1");
    assert!(v.is_ready());
    assert_eq!(
        v.run_id.as_deref(),
        Some("42a6982de40d4733beb7b9159fba9a50")
    );
    assert_eq!(v.created_at_ms, Some(1795322516484));
    assert_eq!(v.description.as_deref(), Some("d"));
    assert_eq!(v.aliases, ["production"]);
    assert_eq!(v.metrics["test_accuracy"], 0.9667);
    assert_eq!(v.tags["param.algorithm"], "LogisticRegression");
    assert_eq!(v.tags["k"], "v");
    assert!(!v.tags.contains_key("mooring.metric.test_accuracy"));
}

#[test]
fn search_results_get_aliases_from_the_registered_model() {
    let m: RegisteredModelResponse = serde_json::from_str(MODEL_RESPONSE).unwrap();
    let page: SearchVersionsResponse = serde_json::from_str(
        r#"{"model_versions": [{"name": "probe", "version": "2", "creation_timestamp": "1795322516484",
             "source": "file:///x", "status": "PENDING_REGISTRATION"}], "next_page_token": "abc"}"#,
    )
    .unwrap();
    assert_eq!(page.next_page_token.as_deref(), Some("abc"));
    let v = page
        .model_versions
        .into_iter()
        .next()
        .unwrap()
        .into_model_version(Some(&m.registered_model.aliases));
    assert_eq!(v.aliases, ["challenger"]);
    assert_eq!(v.created_at_ms, Some(1795322516484));
    assert!(!v.is_ready());
    assert_eq!(
        known_aliases(&m.registered_model.aliases),
        "challenger, production"
    );
}

#[test]
fn a_missing_status_is_not_ready() {
    let v: MlflowModelVersion = serde_json::from_str(r#"{"name": "m", "version": "1"}"#).unwrap();
    assert!(!v.into_model_version(None).is_ready());
}

#[test]
fn artifact_uris() {
    assert_eq!(
        parse_artifact_uri("mlflow-artifacts:/1/abc/artifacts/model").unwrap(),
        ArtifactLocation::Proxy("1/abc/artifacts/model".into())
    );
    assert_eq!(
        parse_artifact_uri("mlflow-artifacts://mlflow:5000/1/abc/artifacts/model/").unwrap(),
        ArtifactLocation::Proxy("1/abc/artifacts/model".into())
    );
    assert_eq!(
        parse_artifact_uri("file:///mnt/mlruns/1/abc").unwrap(),
        ArtifactLocation::LocalDir("/mnt/mlruns/1/abc".into())
    );
    let err = parse_artifact_uri("s3://bucket/x").unwrap_err();
    assert!(err.to_string().contains("s3://bucket/x"), "{err}");
}

#[test]
fn mlmodel_tensor_signature_converts() {
    let yaml = r#"
artifact_path: model
flavors:
  onnx:
    onnx_version: 1.17.0
signature:
  inputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}, "name": "input"}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}, "name": "label"},
    {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3]}, "name": "probabilities"}]'
  params: null
"#;
    let sig = signature_from_mlmodel(yaml).unwrap();
    assert_eq!(sig.inputs[0].name, "input");
    assert_eq!(sig.inputs[0].datatype, "FP32");
    assert_eq!(sig.outputs[0].datatype, "INT64");
    assert_eq!(sig.outputs[1].shape, [-1, 3]);
}

#[test]
fn mlmodel_column_signature_converts() {
    let yaml = r#"
signature:
  inputs: '[{"type": "double", "name": "sepal_length"}, {"type": "double", "name": "sepal_width"}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
"#;
    let sig = signature_from_mlmodel(yaml).unwrap();
    assert_eq!(sig.inputs[0].shape, [-1, 2]);
    assert_eq!(sig.inputs[0].datatype, "FP64");
    assert_eq!(sig.feature_names, ["sepal_length", "sepal_width"]);
    assert_eq!(sig.outputs[0].name, "output");
    assert!(
        signature_from_mlmodel("flavors: {}")
            .unwrap_err()
            .contains("no signature")
    );
    assert!(signature_from_mlmodel(": :").is_err());
}

/// A scripted HTTP/1.1 server on 127.0.0.1:0: answers each request with the next
/// (status, body) from `script` (repeating the last), counting requests.
async fn scripted_server(script: Vec<(u16, &'static str)>) -> (String, Arc<AtomicUsize>) {
    let (url, count, _) = recording_server(script).await;
    (url, count)
}

/// [`scripted_server`] that also keeps each request's head (request line and headers).
async fn recording_server(
    script: Vec<(u16, &'static str)>,
) -> (String, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = count.clone();
    let recorded = heads.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let (status, body) = script[n.min(script.len() - 1)];
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut read = 0;
                // Read the request head; the bodies we receive are small and unused.
                while read < buf.len() {
                    match sock.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => read += k,
                    }
                    if buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                recorded
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..read]).into_owned());
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}"), count, heads)
}

fn fast_config(url: &str, retries: u32) -> RegistryConfig {
    let mut c = RegistryConfig::new(url);
    c.max_retries = retries;
    c.retry_base_delay = Duration::from_millis(1);
    c.request_timeout = Duration::from_secs(5);
    c
}

#[tokio::test]
async fn sends_a_bearer_token_or_basic_auth() {
    let (url, _, heads) = recording_server(vec![(200, ALIAS_RESPONSE)]).await;
    let mut config = fast_config(&url, 0);
    config.token = Some("t0ken".into());
    let reg = MlflowRegistry::new(&config).unwrap();
    reg.resolve(&"probe@production".parse().unwrap())
        .await
        .unwrap();
    let mut config = fast_config(&url, 0);
    config.username = Some("alice".into());
    config.password = Some("s3cret".into());
    let reg = MlflowRegistry::new(&config).unwrap();
    reg.resolve(&"probe@production".parse().unwrap())
        .await
        .unwrap();
    let heads = heads.lock().unwrap().join("\n").to_ascii_lowercase();
    assert!(heads.contains("authorization: bearer t0ken"), "{heads}");
    // base64("alice:s3cret")
    assert!(
        heads.contains("authorization: basic ywxpy2u6cznjcmv0"),
        "{heads}"
    );
}

#[tokio::test]
async fn retries_5xx_and_429_then_succeeds() {
    let (url, count) = scripted_server(vec![(503, "{}"), (429, "{}"), (200, ALIAS_RESPONSE)]).await;
    let reg = MlflowRegistry::new(&fast_config(&url, 3)).unwrap();
    let v = reg
        .resolve(&"probe@production".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(v.version, "1");
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn gives_up_after_the_retry_budget_with_mlflows_answer() {
    let body = r#"{"error_code": "INTERNAL_ERROR", "message": "database is locked"}"#;
    let (url, count) = scripted_server(vec![(500, body)]).await;
    let reg = MlflowRegistry::new(&fast_config(&url, 2)).unwrap();
    let err = reg.resolve(&"probe@3".parse().unwrap()).await.unwrap_err();
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert!(err.is_transient());
    assert_eq!(
        err.to_string(),
        "registry call GET model-versions/get failed: HTTP 500 INTERNAL_ERROR: database is locked"
    );
}

#[tokio::test]
async fn does_not_retry_other_4xx() {
    let body = r#"{"error_code": "PERMISSION_DENIED", "message": "no access"}"#;
    let (url, count) = scripted_server(vec![(403, body)]).await;
    let reg = MlflowRegistry::new(&fast_config(&url, 5)).unwrap();
    let err = reg.list_models().await.unwrap_err();
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert!(!err.is_transient());
    assert!(
        err.to_string().contains("GET registered-models/search")
            && err.to_string().contains("no access"),
        "{err}"
    );
}

#[tokio::test]
async fn a_pending_version_resolves_but_is_not_fetched() {
    let pending = r#"{"model_version": {"name": "probe", "version": "4", "source": "mlflow-artifacts:/1/r/artifacts/model",
        "status": "PENDING_REGISTRATION", "status_message": "uploading"}}"#;
    let (url, count) = scripted_server(vec![(200, pending)]).await;
    let reg = MlflowRegistry::new(&fast_config(&url, 0)).unwrap();
    let v = reg.resolve(&"probe@4".parse().unwrap()).await.unwrap();
    assert_eq!(v.status, "PENDING_REGISTRATION");
    let cache = tempfile::tempdir().unwrap();
    let err = reg.fetch(&v, cache.path()).await.unwrap_err();
    assert_eq!(err.reason(), "VersionNotReady");
    assert!(err.to_string().contains("PENDING_REGISTRATION"), "{err}");
    // Refused before any download was attempted.
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert!(!cache.path().join("probe").exists());
}

#[tokio::test]
async fn unparseable_answers_are_reported() {
    let (url, _) = scripted_server(vec![(200, "<html>proxy login</html>")]).await;
    let reg = MlflowRegistry::new(&fast_config(&url, 0)).unwrap();
    let err = reg
        .resolve(&"probe@production".parse().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("proxy login"), "{err}");
}

#[tokio::test]
async fn list_models_follows_page_tokens() {
    let script = vec![
        (
            200,
            r#"{"registered_models": [{"name": "a", "aliases": [{"alias": "production", "version": "1"}]}], "next_page_token": "p2"}"#,
        ),
        (
            200,
            r#"{"model_versions": [{"name": "a", "version": "1", "status": "READY"}]}"#,
        ),
        (200, r#"{"registered_models": [{"name": "b"}]}"#),
        (
            200,
            r#"{"model_versions": [{"name": "b", "version": "2", "status": "READY"}], "next_page_token": "v2"}"#,
        ),
        (
            200,
            r#"{"model_versions": [{"name": "b", "version": "1", "status": "READY"}]}"#,
        ),
    ];
    let (url, count) = scripted_server(script).await;
    let reg = MlflowRegistry::new(&fast_config(&url, 0)).unwrap();
    let models = reg.list_models().await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 5);
    assert_eq!(models.len(), 2);
    assert_eq!(models[0].versions[0].aliases, ["production"]);
    let b: Vec<&str> = models[1]
        .versions
        .iter()
        .map(|v| v.version.as_str())
        .collect();
    assert_eq!(b, ["1", "2"], "versions of every page, in numeric order");
}

#[tokio::test]
async fn fetches_from_a_shared_file_volume() {
    let shared = tempfile::tempdir().unwrap();
    let bundled =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/iris-classifier/1");
    for f in [
        "model.onnx",
        "signature.json",
        "reference.csv",
        "version.json",
        "sha256sums",
    ] {
        std::fs::copy(bundled.join(f), shared.path().join(f)).unwrap();
    }
    let body: &'static str = Box::leak(
        format!(
            r#"{{"artifact_uri": "file://{}"}}"#,
            shared.path().display()
        )
        .into_boxed_str(),
    );
    let (url, _) = scripted_server(vec![(200, body)]).await;
    let reg = MlflowRegistry::new(&fast_config(&url, 0)).unwrap();
    let version: ModelVersion = serde_json::from_str::<ModelVersionResponse>(ALIAS_RESPONSE)
        .unwrap()
        .model_version
        .into_model_version(None);
    let cache = tempfile::tempdir().unwrap();
    let fetched = reg.fetch(&version, cache.path()).await.unwrap();
    let sums = crate::Sha256Sums::read(&bundled).unwrap();
    assert_eq!(
        fetched.digest,
        format!("sha256:{}", sums.get("model.onnx").unwrap())
    );

    // A file changed on the shared volume is caught on the next (fresh) fetch.
    std::fs::write(shared.path().join("reference.csv"), "x").unwrap();
    let err = reg
        .fetch(&version, tempfile::tempdir().unwrap().path())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::DigestMismatch { ref file, .. } if file == "probe/1/reference.csv"),
        "{err}"
    );
}

#[tokio::test]
async fn an_alias_move_that_may_have_succeeded_is_looked_up_not_repeated() {
    // The POST fails with a 5xx after MLflow applied it: the alias already points at 1.
    let (url, count, heads) = recording_server(vec![(500, "{}"), (200, ALIAS_RESPONSE)]).await;
    let reg = MlflowRegistry::new(&fast_config(&url, 3)).unwrap();
    reg.set_alias("probe", "production", "1").await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 2);
    let heads = heads.lock().unwrap();
    assert!(
        heads[0].starts_with("POST /api/2.0/mlflow/registered-models/alias"),
        "{}",
        heads[0]
    );
    assert!(
        heads[1].starts_with("GET /api/2.0/mlflow/registered-models/alias?"),
        "{}",
        heads[1]
    );
}

#[tokio::test]
async fn an_alias_move_that_did_not_happen_is_sent_again() {
    // The look-up shows the alias elsewhere (version 2): the move is retried, once.
    let elsewhere: &'static str = ALIAS_RESPONSE
        .replace(r#""version": "1""#, r#""version": "2""#)
        .leak();
    let script = vec![(503, "{}"), (200, elsewhere), (200, "{}")];
    let (url, count, heads) = recording_server(script).await;
    let reg = MlflowRegistry::new(&fast_config(&url, 3)).unwrap();
    reg.set_alias("probe", "production", "1").await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert!(heads.lock().unwrap()[2].starts_with("POST "));
}

#[tokio::test]
async fn a_creation_is_not_retried_blindly_after_a_server_error() {
    // The POST may have applied and the look-up fails (403): the POST is not sent again.
    let script = vec![
        (500, "{}"),
        (403, r#"{"error_code":"PERMISSION_DENIED","message":"no"}"#),
    ];
    let (url, count, heads) = recording_server(script).await;
    let reg = MlflowRegistry::new(&fast_config(&url, 3)).unwrap();
    let err = reg.set_alias("probe", "production", "1").await.unwrap_err();
    assert_eq!(count.load(Ordering::SeqCst), 2, "{err}");
    let posts = heads
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.starts_with("POST "))
        .count();
    assert_eq!(posts, 1);
}

#[tokio::test]
async fn a_creation_refused_with_429_is_retried_at_once() {
    // 429: MLflow did nothing, so the POST itself is sent again.
    let (url, count, heads) = recording_server(vec![(429, "{}"), (200, "{}")]).await;
    let reg = MlflowRegistry::new(&fast_config(&url, 3)).unwrap();
    reg.set_alias("probe", "production", "1").await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 2);
    assert!(heads.lock().unwrap().iter().all(|h| h.starts_with("POST ")));
}
