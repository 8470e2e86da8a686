//! Prediction logging end to end: `serve --prediction-log file://…` logs every row of every
//! front door (V2 REST, V2 gRPC, /api/v1), a clean stop flushes the log, the drift reader
//! reads it back, and `inference-server drift` runs on it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use clap::Parser;
use inference_server::config::{Cli, Command as Sub, ServeArgs};
use inference_server::metrics::Metrics;
use inference_server::serve;
use inference_server::serve_extras;
use mooring_drift::log::{FeatureValue, ReadQuery, S3Options, read_records};
use mooring_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use mooring_proto::inference::{
    InferTensorContents, ModelInferRequest, model_infer_request::InferInputTensor,
};
use serde_json::json;

mod common;

use common::{Running, bundled_registry, parse};

fn serve_args(cache: &Path, sink: &str) -> ServeArgs {
    common::serve_args(&[
        "--registry",
        &bundled_registry(),
        "--cache-dir",
        cache.to_str().unwrap(),
        "--model",
        "iris-classifier@production",
        "--prediction-log",
        sink,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_front_door_is_logged_flushed_on_stop_and_checked_for_drift() {
    let dir = tempfile::tempdir().unwrap();
    let sink = format!("file://{}", dir.path().join("log").display());
    let args = serve_args(&dir.path().join("cache"), &sink);

    // What `serve` does, with ports we can learn.
    let (mut extras, running) = serve_extras::build(&args).await.unwrap();
    let metrics = Metrics::with_registry(extras.metrics_registry.take().unwrap());
    let state = serve::load_state_with(&args, metrics)
        .await
        .expect("bundled model loads (ORT_DYLIB_PATH set? run `scripts/setup.sh run`)")
        .with_observer(
            extras
                .observer
                .take()
                .expect("--prediction-log installs an observer"),
        );
    let server = Running::start(Arc::new(state), extras).await;
    let (http_addr, grpc_addr) = (server.http, server.grpc);

    let client = reqwest::Client::new();
    let base = format!("http://{http_addr}");
    let post = |path: &str, body: serde_json::Value| {
        let req = client.post(format!("{base}{path}")).json(&body);
        async move {
            let resp = req.send().await.unwrap();
            assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
        }
    };
    // 2 rows over V2 REST, 1 over /api/v1/classify, 2 over /api/v1 predict, 1 over gRPC.
    post(
        "/v2/models/iris-classifier/infer",
        json!({"id": "rest-1", "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32",
               "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}]}),
    )
    .await;
    post(
        "/api/v1/classify",
        json!({"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 4.2, "petal_width": 1.5}),
    )
    .await;
    post(
        "/api/v1/models/iris-classifier/predict",
        json!([{"sepal_length": 5.0, "sepal_width": 3.4, "petal_length": 1.5, "petal_width": 0.2},
               {"sepal_length": 6.3, "sepal_width": 2.9, "petal_length": 5.6, "petal_width": 1.8}]),
    )
    .await;
    let mut grpc_client = GrpcInferenceServiceClient::connect(format!("http://{grpc_addr}"))
        .await
        .unwrap();
    grpc_client
        .model_infer(ModelInferRequest {
            model_name: "iris-classifier".into(),
            inputs: vec![InferInputTensor {
                name: "input".into(),
                datatype: "FP32".into(),
                shape: vec![1, 4],
                contents: Some(InferTensorContents {
                    fp32_contents: vec![4.9, 3.0, 1.4, 0.2],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap();

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mooring_prediction_log_logged_total 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mooring_prediction_log_dropped_total 0"),
        "{metrics}"
    );

    // A clean stop: servers drain, then the log is flushed. Nothing may be lost.
    server.stop().await;
    running.stop().await;

    let query = ReadQuery {
        model: "iris-classifier".into(),
        version: Some("1".into()),
        since_ms: None,
        max_samples: None,
    };
    let (records, stats) = read_records(&sink, &query, &S3Options::default())
        .await
        .unwrap();
    assert_eq!(records.len(), 6, "{stats:?}");
    let protocols: BTreeSet<_> = records.iter().map(|r| r.protocol.as_str()).collect();
    assert_eq!(protocols, BTreeSet::from(["api_v1", "grpc_v2", "rest_v2"]));

    let rest: Vec<_> = records
        .iter()
        .filter(|r| r.request_id == "rest-1")
        .collect();
    assert_eq!(rest.len(), 2, "one record per row of the batch");
    let first = rest
        .iter()
        .find(|r| r.features["sepal_length"] == FeatureValue::Number(5.1));
    let first = first.expect("row 1 logged with named features");
    assert_eq!(first.features["petal_width"], FeatureValue::Number(0.2));
    assert_eq!(first.prediction.label.as_deref(), Some("setosa"));
    assert_eq!(first.prediction.class_index, Some(0));
    let p = first.prediction.probabilities.as_ref().unwrap();
    assert_eq!(p.len(), 3);
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{p:?}");
    let second = rest
        .iter()
        .find(|r| r.features["sepal_length"] == FeatureValue::Number(6.7));
    assert_eq!(
        second.unwrap().prediction.label.as_deref(),
        Some("virginica")
    );

    // The drift subcommand reads the same log against the version's reference.csv.
    let result = dir.path().join("result.json");
    let reports = dir.path().join("reports");
    let models = bundled_registry();
    let Sub::Drift(drift) = parse(&[
        "drift",
        "--sink",
        &sink,
        "--model",
        "iris-classifier",
        "--version",
        "1",
        "--registry",
        &models,
        "--cache-dir",
        dir.path().join("drift-cache").to_str().unwrap(),
        "--min-samples",
        "5",
        "--result-file",
        result.to_str().unwrap(),
        "--report-dir",
        reports.to_str().unwrap(),
    ]) else {
        unreachable!()
    };
    let report = mooring_drift::job::run(drift).await.unwrap();
    assert_eq!(report.samples, 6);
    assert_eq!(report.features.len(), 4, "{report:?}");
    let compact: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&result).unwrap()).unwrap();
    assert!(
        ["NoDrift", "Drift"].contains(&compact["verdict"].as_str().unwrap()),
        "{compact}"
    );
    // One directory per run, holding report.json and report.html; the compact result
    // points at the HTML.
    let runs: Vec<_> = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "one report run in {}", reports.display());
    let html = runs[0].join("report.html");
    assert!(std::fs::read_to_string(&html).unwrap().contains("<html"));
    assert!(runs[0].join("report.json").is_file());
    assert_eq!(
        compact["reportUri"].as_str(),
        Some(format!("file://{}", html.display()).as_str()),
        "{compact}"
    );
}

#[test]
fn chat_mode_needs_no_model_and_a_model_is_required_otherwise() {
    assert!(
        matches!(parse(&["serve", "--registry", "models", "--chat"]), Sub::Serve(a) if a.chat && a.models.is_empty())
    );
    let err =
        Cli::try_parse_from(["inference-server", "serve", "--registry", "models"]).unwrap_err();
    assert!(err.to_string().contains("--model"), "{err}");
}
