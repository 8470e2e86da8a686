//! End-to-end tests: the server on 127.0.0.1 port 0, loading the bundled models through the
//! local registry; a third-party client (tritonclient) against it; graceful shutdown; and
//! the binary's failure and batch modes.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use inference_server::serve::Extras;
use mooring_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use mooring_proto::inference::{
    InferTensorContents, ModelInferRequest, model_infer_request::InferInputTensor,
};

mod common;

use common::{Running, bundled_registry, repo};

/// `serve` of the bundled registry's `models` on 127.0.0.1 port 0, with a fresh cache.
async fn start(models: &[&str]) -> (Running, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let registry = bundled_registry();
    // Running binds the ports itself: no --host, --http-port, --grpc-port.
    let mut flags = vec!["--registry", &registry, "--cache-dir"];
    flags.push(cache.path().to_str().unwrap());
    for m in models {
        flags.extend(["--model", m]);
    }
    (Running::serve(&common::serve_args(&flags)).await, cache)
}

/// Runs the unmodified tritonclient script `tests/python/<script>` against `serve` of
/// `model@production` (HTTP and gRPC, with the version's reference.csv) and checks that it
/// printed `<success>`.
async fn tritonclient_check(script: &str, model: &str, success: &str) {
    let python = std::env::var("MOORING_TEST_PYTHON")
        .expect("MOORING_TEST_PYTHON is not set: it must name a Python with tritonclient[http,grpc] and numpy; run `make test`");
    let (server, _cache) = start(&[&format!("{model}@production")]).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let reference = repo().join("models").join(model).join("1/reference.csv");
    let (http, grpc, name) = (
        server.http.to_string(),
        server.grpc.to_string(),
        model.to_string(),
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args([&http, &grpc, &name])
            .arg(reference)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{success}: failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains(success), "{stdout}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_http_and_grpc_work_unchanged() {
    tritonclient_check(
        "tritonclient_check.py",
        "iris-classifier",
        "tritonclient conformance ok",
    )
    .await;
}

/// BYTES tensors with the unmodified tritonclient: HTTP JSON and binary, gRPC, against the
/// bundled spam classifier (non-ASCII and empty strings, invalid UTF-8 refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_sends_text_to_the_spam_classifier() {
    tritonclient_check(
        "tritonclient_text_check.py",
        "spam-classifier",
        "tritonclient text conformance ok",
    )
    .await;
}

fn iris_request(version: &str) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "iris-classifier".into(),
        model_version: version.into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, 4],
            contents: Some(InferTensorContents {
                fp32_contents: vec![6.7, 3.0, 5.2, 2.3],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_by_alias_and_stops_on_one_signal_for_both_servers() {
    // challenger → version 2 (the random forest): alias resolution through the registry.
    let (server, _cache) = start(&["iris-classifier@challenger"]).await;
    let mut client = GrpcInferenceServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    let answer = client
        .model_infer(iris_request(""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.model_version, "2");
    assert_eq!(
        answer.outputs[0].contents.as_ref().unwrap().int64_contents,
        vec![2]
    );
    let status = client.model_infer(iris_request("1")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);

    // Both servers stop and `run` returns cleanly; afterwards nothing listens any more.
    let (http, grpc) = (server.http, server.grpc);
    server.stop().await;
    assert!(tokio::net::TcpStream::connect(http).await.is_err());
    assert!(tokio::net::TcpStream::connect(grpc).await.is_err());
}

/// The binary's `serve` of `model` from the bundled registry, on port 0.
fn serve_binary(model: &str, cache: &Path) -> Command {
    let mut serve = Command::new(env!("CARGO_BIN_EXE_inference-server"));
    serve
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
        ])
        .args(["--model", model, "--registry", &bundled_registry()])
        .arg("--cache-dir")
        .arg(cache);
    serve
}

#[test]
fn a_missing_onnx_runtime_fails_fast_with_a_clear_message() {
    let cache = tempfile::tempdir().unwrap();
    let output = serve_binary("iris-classifier@production", cache.path())
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ORT_DYLIB_PATH=/nonexistent/libonnxruntime.so does not name a file"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_alias_is_refused_at_start() {
    let cache = tempfile::tempdir().unwrap();
    let output = serve_binary("iris-classifier@staging", cache.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no alias \"staging\""), "{stderr}");
}

#[test]
fn batch_predicts_every_row_and_reports_bad_ones_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("rows.csv");
    let output = dir.path().join("predictions.jsonl");
    std::fs::write(
        &input,
        "sepal_length,sepal_width,petal_length,petal_width,target\n5.1,3.5,1.4,0.2,0\n6.7,3.0,x,2.3,2\n6.7,3.0,5.2,2.3,2\n",
    )
    .unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_inference-server"))
        .args(["batch", "--model", "iris-classifier@production"])
        .arg("--registry")
        .arg(repo().join("models"))
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("batch: 3 rows, 2 predicted, 1 failed"),
        "{stderr}"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        (
            lines[0]["line"].as_u64(),
            lines[0]["prediction"]["predicted_class"].as_str()
        ),
        (Some(2), Some("setosa"))
    );
    assert_eq!(lines[1]["line"], 3);
    assert!(
        lines[1]["error"]
            .as_str()
            .unwrap()
            .contains("column \"petal_length\": \"x\" is not a number"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2]["prediction"]["predicted_class"], "virginica");
}

/// Holds every model call until the test opens the gate; reports when a call has started.
struct Gated {
    started: std::sync::mpsc::Sender<()>,
    release: std::sync::mpsc::Receiver<()>,
}

impl inference_server::backend::Backend for Gated {
    fn run(
        &mut self,
        inputs: Vec<inference_server::tensor::Tensor>,
    ) -> inference_server::Result<Vec<inference_server::tensor::Tensor>> {
        let _ = self.started.send(());
        let _ = self.release.recv();
        let rows = inputs[0].rows();
        Ok(vec![
            inference_server::tensor::Tensor {
                name: "label".into(),
                shape: vec![rows as i64],
                data: inference_server::tensor::TensorData::I64(vec![2; rows]),
            },
            inference_server::tensor::Tensor {
                name: "probabilities".into(),
                shape: vec![rows as i64, 3],
                data: inference_server::tensor::TensorData::F32([0.0, 0.0, 1.0].repeat(rows)),
            },
        ])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_requests_in_flight() {
    use inference_server::backend::{Backend, BatchConfig};
    use inference_server::infer::{LoadedModel, ServerState};
    use inference_server::metrics::Metrics;

    let signature = mooring_registry::Signature::from_json(
        &std::fs::read(repo().join("models/iris-classifier/1/signature.json")).unwrap(),
    )
    .unwrap();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    // One worker (the default), so the factory runs once and takes the receiver.
    let slot = std::sync::Mutex::new(Some(release_rx));
    let make = move || {
        let release = slot.lock().unwrap().take().expect("one worker");
        Ok(Box::new(Gated {
            started: started_tx.clone(),
            release,
        }) as Box<dyn Backend>)
    };
    let metrics = Metrics::new();
    let model = LoadedModel::with_backend(
        "iris-classifier",
        "1",
        "sha256:x",
        signature,
        make,
        &BatchConfig::default(),
        &metrics,
    )
    .unwrap();
    let state = Arc::new(ServerState::new(vec![model], metrics, 1 << 20));
    let mut server = Running::start(state.clone(), Extras::default()).await;

    let mut client = GrpcInferenceServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    let call = tokio::spawn(async move { client.model_infer(iris_request("")).await });
    // The request is inside the model when the shutdown signal arrives.
    tokio::task::spawn_blocking(move || {
        started_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the call reached the model")
    })
    .await
    .unwrap();
    server.signal_stop();
    common::eventually("not ready while draining", Duration::from_secs(10), || {
        !state.is_ready()
    })
    .await;
    assert!(
        common::still_pending(&mut server.task, Duration::from_millis(100)).await,
        "the server waits for the call in flight"
    );
    release.send(()).unwrap();
    let answer = call
        .await
        .unwrap()
        .expect("the call in flight completes")
        .into_inner();
    assert_eq!(
        answer.outputs[0].contents.as_ref().unwrap().int64_contents,
        vec![2]
    );
    server.stop().await;
}
