//! The server serving from MLflow end to end: the bundled iris versions are registered into
//! the real MLflow server of `make test` (`MOORING_TEST_MLFLOW_URL`), the server loads
//! `iris-classifier-<suffix>@production` from it, and one V2 REST infer answers.

use mooring_registry::{RegistryConfig, connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

use common::Running;

fn mlflow_url() -> String {
    std::env::var("MOORING_TEST_MLFLOW_URL").expect(
        "MOORING_TEST_MLFLOW_URL is not set: this test needs a real MLflow server; run `make test`",
    )
}

/// One HTTP/1.1 POST over a plain socket (the server crate has no HTTP client dependency).
async fn post_json(addr: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "unexpected chunked body: {head}"
    );
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}")),
    )
}

#[tokio::test]
async fn serves_iris_from_mlflow_by_alias() {
    let url = mlflow_url();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!("iris-classifier-{}-{nanos}", std::process::id());
    let models = common::repo().join("models/iris-classifier");

    let registry = connect(&RegistryConfig::new(&url)).unwrap();
    for v in ["1", "2"] {
        registry.register(&name, &models.join(v)).await.unwrap();
    }
    registry.set_alias(&name, "production", "2").await.unwrap();

    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{name}@production");
    let args = common::serve_args(&[
        "--registry",
        &url,
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "--model",
        &reference,
    ]);
    // Loads from MLflow.
    let server = Running::serve(&args).await;
    // The digest-verified copy is where the registry's cache layout puts it.
    assert!(
        cache
            .path()
            .join(&name)
            .join("2")
            .join("model.onnx")
            .is_file()
    );

    let addr = server.http.to_string();
    let body = r#"{"inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2,6.7,3.0,5.2,2.3]}]}"#;
    let (status, json) = post_json(&addr, &format!("/v2/models/{name}/infer"), body).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["model_name"], name.as_str());
    assert_eq!(json["model_version"], "2");
    let label = json["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "label")
        .expect("label output");
    assert_eq!(label["data"], serde_json::json!([0, 2]), "{json}");

    server.stop().await;
}
