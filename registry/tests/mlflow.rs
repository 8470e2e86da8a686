//! The MLflow backend against a real `mlflow server` (sqlite backend, artifact proxy), as
//! `make test` starts it. Each test uses its own model names, so they run in parallel.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mooring_registry::mlflow::MlflowRegistry;
use mooring_registry::{Error, ModelRef, Registry, RegistryConfig, Sha256Sums};

fn mlflow_url() -> String {
    std::env::var("MOORING_TEST_MLFLOW_URL")
        .expect("MOORING_TEST_MLFLOW_URL is not set: these tests need a real MLflow server; run `make test`")
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn bundled(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/iris-classifier")
        .join(version)
}

fn registry() -> MlflowRegistry {
    MlflowRegistry::new(&RegistryConfig::new(mlflow_url())).unwrap()
}

fn r(s: &str) -> ModelRef {
    s.parse().unwrap()
}

/// Register bundled versions 1 and 2 as `name`, with production → 1, challenger → 2.
async fn register_iris(reg: &MlflowRegistry, name: &str) {
    assert_eq!(
        reg.register(name, &bundled("1")).await.unwrap().version,
        "1"
    );
    assert_eq!(
        reg.register(name, &bundled("2")).await.unwrap().version,
        "2"
    );
    reg.set_alias(name, "production", "1").await.unwrap();
    reg.set_alias(name, "challenger", "2").await.unwrap();
}

#[tokio::test]
async fn register_resolve_move_alias_and_fetch() {
    let reg = registry();
    let name = unique("iris-classifier");
    register_iris(&reg, &name).await;

    let prod = reg
        .resolve(&r(&format!("{name}@production")))
        .await
        .unwrap();
    assert_eq!(prod.version, "1");
    assert!(prod.is_ready());
    assert_eq!(prod.aliases, ["production"]);
    assert!(prod.run_id.is_some());
    assert!(
        prod.source.starts_with("mlflow-artifacts:/"),
        "{}",
        prod.source
    );
    assert!(prod.metrics["test_accuracy"] > 0.8, "{:?}", prod.metrics);
    assert_eq!(prod.tags["param.algorithm"], "LogisticRegression");
    assert_eq!(
        prod.description.as_deref(),
        Some("Logistic regression on the iris data set")
    );
    let v2 = reg.resolve(&r(&format!("{name}@2"))).await.unwrap();
    assert_eq!(v2.aliases, ["challenger"]);

    // Promotion: the next resolve follows the alias.
    reg.set_alias(&name, "production", "2").await.unwrap();
    assert_eq!(
        reg.resolve(&r(&format!("{name}@production")))
            .await
            .unwrap()
            .version,
        "2"
    );

    // Download into the cache layout, digests checked against the recorded sha256sums.
    let cache = tempfile::tempdir().unwrap();
    let fetched = reg.fetch(&v2, cache.path()).await.unwrap();
    assert_eq!(fetched.dir, cache.path().join(&name).join("2"));
    let local = Sha256Sums::read(&bundled("2")).unwrap();
    assert_eq!(
        fetched.digest,
        format!("sha256:{}", local.get("model.onnx").unwrap())
    );
    for f in [
        "model.onnx",
        "signature.json",
        "reference.csv",
        "version.json",
        "sha256sums",
    ] {
        assert!(fetched.dir.join(f).is_file(), "{f} missing from the cache");
    }
    assert_eq!(
        fetched.signature.class_labels,
        ["setosa", "versicolor", "virginica"]
    );
    // Fetching again reuses the verified copy.
    let again = reg.fetch(&v2, cache.path()).await.unwrap();
    assert_eq!(again.digest, fetched.digest);

    let models = reg.list_models().await.unwrap();
    let m = models
        .iter()
        .find(|m| m.name == name)
        .expect("registered model listed");
    assert_eq!(m.versions.len(), 2);
    assert_eq!(m.aliases["production"], "2");
    assert_eq!(m.aliases["challenger"], "2");
    assert_eq!(m.versions[1].aliases, ["challenger", "production"]);

    reg.delete_alias(&name, "challenger").await.unwrap();
    let err = reg
        .resolve(&r(&format!("{name}@challenger")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AliasNotFound { .. }), "{err}");
}

#[tokio::test]
async fn unknown_model_alias_and_version() {
    let reg = registry();
    let name = unique("iris-errors");
    let err = reg
        .resolve(&r(&format!("{name}@production")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ModelNotFound { .. }), "{err}");
    let err = reg.resolve(&r(&format!("{name}@1"))).await.unwrap_err();
    assert!(matches!(err, Error::ModelNotFound { .. }), "{err}");

    reg.register(&name, &bundled("1")).await.unwrap();
    reg.set_alias(&name, "production", "1").await.unwrap();
    let err = reg
        .resolve(&r(&format!("{name}@staging")))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("model {name:?} has no alias \"staging\" (known aliases: production)")
    );
    assert!(!err.is_transient());
    let err = reg.resolve(&r(&format!("{name}@7"))).await.unwrap_err();
    assert!(matches!(err, Error::VersionNotFound { .. }), "{err}");
    let err = reg.set_alias(&name, "production", "7").await.unwrap_err();
    assert!(matches!(err, Error::VersionNotFound { .. }), "{err}");
    let err = reg.delete_alias(&name, "staging").await.unwrap_err();
    assert!(matches!(err, Error::AliasNotFound { .. }), "{err}");
    let err = reg.set_alias(&name, "latest", "1").await.unwrap_err();
    assert!(err.to_string().starts_with("invalid alias"), "{err}");
}

#[tokio::test]
async fn tampered_artifact_is_a_digest_mismatch() {
    let reg = registry();
    let name = unique("iris-tampered");
    let v = reg.register(&name, &bundled("1")).await.unwrap();
    // Overwrite model.onnx behind mooring's back, through the same artifact proxy.
    let path = v.source.strip_prefix("mlflow-artifacts:/").unwrap();
    let url = format!(
        "{}/api/2.0/mlflow-artifacts/artifacts/{path}/model.onnx",
        mlflow_url()
    );
    let resp = reqwest::Client::new()
        .put(url)
        .body("not a model")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let cache = tempfile::tempdir().unwrap();
    let err = reg.fetch(&v, cache.path()).await.unwrap_err();
    match &err {
        Error::DigestMismatch { file, .. } => assert_eq!(file, &format!("{name}/1/model.onnx")),
        other => panic!("expected a digest mismatch, got {other}"),
    }
    assert!(
        !cache.path().join(&name).join("1").exists(),
        "no half copy left in the cache"
    );
}

/// A version logged by another tool: no sha256sums, no signature.json, an MLmodel file.
#[tokio::test]
async fn foreign_version_uses_the_mlmodel_signature() {
    let base = mlflow_url();
    let api = format!("{base}/api/2.0/mlflow");
    let http = reqwest::Client::new();
    let name = unique("iris-foreign");
    let post = |endpoint: &str, body: serde_json::Value| {
        let req = http.post(format!("{api}/{endpoint}")).json(&body);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let json: serde_json::Value = resp.json().await.unwrap();
            assert!(status.is_success(), "{json}");
            json
        }
    };
    let exp = post(
        "experiments/create",
        serde_json::json!({"name": unique("foreign-exp")}),
    )
    .await;
    let run = post(
        "runs/create",
        serde_json::json!({"experiment_id": exp["experiment_id"]}),
    )
    .await;
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
    let artifact_uri = run["run"]["info"]["artifact_uri"]
        .as_str()
        .unwrap()
        .to_string();
    let proxy_path = artifact_uri.strip_prefix("mlflow-artifacts:/").unwrap();
    let mlmodel = r#"flavors:
  onnx: {onnx_version: 1.17.0, data: model.onnx}
signature:
  inputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}, "name": "input"}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}, "name": "label"}, {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3]}, "name": "probabilities"}]'
"#;
    for (file, body) in [
        (
            "model.onnx",
            std::fs::read(bundled("1").join("model.onnx")).unwrap(),
        ),
        ("MLmodel", mlmodel.into()),
    ] {
        let url = format!("{base}/api/2.0/mlflow-artifacts/artifacts/{proxy_path}/model/{file}");
        assert!(
            http.put(url)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .is_success()
        );
    }
    post(
        "registered-models/create",
        serde_json::json!({"name": name}),
    )
    .await;
    post(
        "model-versions/create",
        serde_json::json!({"name": name, "source": format!("{artifact_uri}/model"), "run_id": run_id}),
    )
    .await;

    let reg = registry();
    let v = reg.resolve(&r(&format!("{name}@1"))).await.unwrap();
    let cache = tempfile::tempdir().unwrap();
    let fetched = reg.fetch(&v, cache.path()).await.unwrap();
    assert_eq!(fetched.signature.inputs[0].name, "input");
    assert_eq!(fetched.signature.outputs[1].shape, [-1, 3]);
    let expected = Sha256Sums::read(&bundled("1")).unwrap();
    assert_eq!(
        fetched.digest,
        format!("sha256:{}", expected.get("model.onnx").unwrap())
    );

    // With digests required, such a version is refused.
    let mut strict = RegistryConfig::new(mlflow_url());
    strict.require_digest = true;
    let err = MlflowRegistry::new(&strict)
        .unwrap()
        .fetch(&v, tempfile::tempdir().unwrap().path())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no sha256sums artifact"), "{err}");
}

#[tokio::test]
async fn connection_refused_is_a_clear_transient_error_after_retries() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = RegistryConfig::new(format!("http://127.0.0.1:{port}"));
    config.max_retries = 2;
    config.retry_base_delay = Duration::from_millis(10);
    let reg = MlflowRegistry::new(&config).unwrap();
    let err = reg
        .resolve(&r("iris-classifier@production"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unreachable(_)), "{err}");
    assert!(err.is_transient());
    let msg = err.to_string();
    assert!(msg.contains("GET registered-models/alias"), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.contains("gave up after 3 attempts"), "{msg}");
    assert!(msg.to_lowercase().contains("connection refused"), "{msg}");
}

#[tokio::test]
async fn version_tags_are_set_on_mlflow_and_a_no_op_locally() {
    let reg = registry();
    let name = unique("iris-tagged");
    register_iris(&reg, &name).await;
    assert!(
        reg.set_version_tag(&name, "2", "mooring.dev/promoted-by", "ml/iris-drift")
            .await
            .unwrap()
    );
    let v2 = reg.resolve(&r(&format!("{name}@2"))).await.unwrap();
    assert_eq!(v2.tags["mooring.dev/promoted-by"], "ml/iris-drift");
    let err = reg.set_version_tag(&name, "9", "k", "v").await.unwrap_err();
    assert_eq!(err.reason(), "VersionNotFound", "{err}");

    let local = mooring_registry::connect(&RegistryConfig::new(
        bundled("1")
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .to_str()
            .unwrap(),
    ))
    .unwrap();
    assert!(
        !local
            .set_version_tag("iris-classifier", "1", "k", "v")
            .await
            .unwrap()
    );
}

/// SmolLM2 as an MLflow model version: the chat service's GGUF registered like any other
/// model (`mooring models register`), resolved by alias, fetched with its digest checked.
#[tokio::test]
async fn a_gguf_chat_model_registers_and_fetches_digest_checked() {
    let gguf = PathBuf::from(
        std::env::var("MOORING_TEST_GGUF").expect("MOORING_TEST_GGUF is not set: run `make test`"),
    );
    let from = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&gguf, from.path().join("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let reg = registry();
    let name = unique("smollm2");
    let v = reg.register(&name, from.path()).await.unwrap();
    reg.set_alias(&name, "production", &v.version)
        .await
        .unwrap();
    let prod = reg
        .resolve(&r(&format!("{name}@production")))
        .await
        .unwrap();
    // The digest the bundled registry records for the same file.
    let bundled = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/smollm2/1/sha256sums"),
    )
    .unwrap();
    let hex = bundled
        .lines()
        .find(|l| l.ends_with(".gguf"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    assert_eq!(prod.tags["mooring.digest"], hex);
    let cache = tempfile::tempdir().unwrap();
    let fetched = reg.fetch_gguf(&prod, cache.path()).await.unwrap();
    assert_eq!(fetched.digest, format!("sha256:{hex}"));
    assert_eq!(
        std::fs::metadata(&fetched.path).unwrap().len(),
        std::fs::metadata(&gguf).unwrap().len()
    );
    // An ONNX version is not a chat model.
    let iris = unique("iris-classifier");
    register_iris(&reg, &iris).await;
    let v1 = reg.resolve(&r(&format!("{iris}@1"))).await.unwrap();
    let err = reg.fetch_gguf(&v1, cache.path()).await.unwrap_err();
    assert!(err.to_string().contains("exactly one .gguf"), "{err}");
}
