//! REST tests through `tower::ServiceExt::oneshot`, no socket, on the bundled iris model
//! (version 1: logistic regression) run by ONNX Runtime.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use mooring_registry::Signature;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::backend::ort::OrtBackend;
use crate::backend::{Backend, BatchConfig};
use crate::infer::{LoadedModel, ServerState};
use crate::metrics::Metrics;

pub(crate) fn iris_dir() -> PathBuf {
    iris_version_dir("1")
}

fn iris_version_dir(version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../models/iris-classifier")
        .join(version)
}

/// A version of the bundled iris model, loaded straight from its directory (the registry is
/// tested in its own crate and end to end in tests/).
pub(crate) fn iris_model(version: &str, metrics: &Metrics) -> LoadedModel {
    let dir = iris_version_dir(version);
    let signature =
        Signature::from_json(&std::fs::read(dir.join("signature.json")).unwrap()).unwrap();
    let sig = signature.clone();
    let make = move || {
        OrtBackend::load(&dir.join("model.onnx"), &sig).map(|b| Box::new(b) as Box<dyn Backend>)
    };
    LoadedModel::with_backend(
        "iris-classifier",
        version,
        "sha256:test",
        signature,
        make,
        &BatchConfig::default(),
        metrics,
    )
    .expect("the bundled model loads (is ORT_DYLIB_PATH set? run `scripts/setup.sh run`)")
}

/// Version 1 of the bundled iris model.
pub(crate) fn iris_state(max_body_bytes: usize) -> Arc<ServerState> {
    let metrics = Metrics::new();
    let model = iris_model("1", &metrics);
    Arc::new(ServerState::new(vec![model], metrics, max_body_bytes))
}

async fn call(
    state: &Arc<ServerState>,
    method: &str,
    uri: &str,
    body: impl Into<Body>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    let response = crate::app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, value)
}

async fn post(state: &Arc<ServerState>, uri: &str, body: Value) -> (StatusCode, Value) {
    call(state, "POST", uri, body.to_string()).await
}

fn two_rows() -> Value {
    json!({"inputs":[{"name":"input","shape":[2,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2,6.7,3.0,5.2,2.3]}]})
}

#[tokio::test]
async fn v2_infer_returns_the_models_outputs() {
    let state = iris_state(1 << 20);
    let (status, body) = post(&state, "/v2/models/iris-classifier/infer", two_rows()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["model_name"], "iris-classifier");
    assert_eq!(body["model_version"], "1");
    let outputs = body["outputs"].as_array().unwrap();
    let label = outputs.iter().find(|o| o["name"] == "label").unwrap();
    assert_eq!(label["datatype"], "INT64");
    assert_eq!(label["shape"], json!([2]));
    assert_eq!(label["data"], json!([0, 2]), "setosa and virginica");
    let probs = outputs
        .iter()
        .find(|o| o["name"] == "probabilities")
        .unwrap();
    assert_eq!(probs["shape"], json!([2, 3]));
    let p: Vec<f64> = probs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        (p[0] + p[1] + p[2] - 1.0).abs() < 1e-4 && p[0] > 0.5 && p[5] > 0.5,
        "{p:?}"
    );
}

#[tokio::test]
async fn v2_infer_by_version_and_requested_outputs() {
    let state = iris_state(1 << 20);
    let mut request = two_rows();
    request["outputs"] = json!([{"name": "label"}]);
    request["id"] = json!("req-7");
    let (status, body) = post(
        &state,
        "/v2/models/iris-classifier/versions/1/infer",
        request,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], "req-7");
    assert_eq!(body["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(body["outputs"][0]["name"], "label");
}

#[tokio::test]
async fn v2_binary_tensor_extension_in_and_out() {
    let state = iris_state(1 << 20);
    let values: [f32; 4] = [6.7, 3.0, 5.2, 2.3];
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let head = json!({
        "inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size": raw.len()}}],
        "outputs":[{"name":"label","parameters":{"binary_data": true}}]
    })
    .to_string();
    let mut body = head.clone().into_bytes();
    body.extend_from_slice(&raw);
    let request = Request::post("/v2/models/iris-classifier/infer")
        .header("inference-header-content-length", head.len())
        .header("content-type", "application/octet-stream")
        .body(Body::from(body))
        .unwrap();
    let response = crate::app(state).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let json_len: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let head: Value = serde_json::from_slice(&bytes[..json_len]).unwrap();
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 8);
    assert_eq!(
        i64::from_le_bytes(bytes[json_len..].try_into().unwrap()),
        2,
        "virginica"
    );
}

#[tokio::test]
async fn health_metadata_and_readiness() {
    let state = iris_state(1 << 20);
    for uri in [
        "/v2/health/live",
        "/v2/health/ready",
        "/healthz",
        "/readyz",
        "/v2/models/iris-classifier/ready",
        "/v2/models/iris-classifier/versions/1/ready",
    ] {
        assert_eq!(
            call(&state, "GET", uri, Body::empty()).await.0,
            StatusCode::OK,
            "{uri}"
        );
    }
    let (_, server) = call(&state, "GET", "/v2", Body::empty()).await;
    assert_eq!(server["name"], "mooring");
    let (status, meta) = call(&state, "GET", "/v2/models/iris-classifier", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta["versions"], json!(["1"]));
    assert_eq!(meta["platform"], "onnxruntime_onnx");
    assert_eq!(
        meta["inputs"],
        json!([{"name":"input","datatype":"FP32","shape":[-1,4]}])
    );
    assert_eq!(meta["outputs"][1]["name"], "probabilities");
    let (status, _) = call(
        &state,
        "GET",
        "/v2/models/iris-classifier/versions/1",
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    state.set_ready(false);
    assert_eq!(
        call(&state, "GET", "/readyz", Body::empty()).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call(&state, "GET", "/v2/health/ready", Body::empty())
            .await
            .0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call(&state, "GET", "/healthz", Body::empty()).await.0,
        StatusCode::OK,
        "still alive"
    );
}

/// (request body, expected status, text the error must contain)
fn bad_v2_requests() -> Vec<(Value, StatusCode, &'static str)> {
    let input = |shape: Value, datatype: &str, data: Value| json!({"inputs":[{"name":"input","shape":shape,"datatype":datatype,"data":data}]});
    vec![
        (
            json!({"inputs": []}),
            StatusCode::BAD_REQUEST,
            "missing input \"input\"",
        ),
        (
            json!({"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]},{"name":"extra","shape":[1],"datatype":"FP32","data":[1]}]}),
            StatusCode::BAD_REQUEST,
            "unexpected input \"extra\"",
        ),
        (
            input(json!([1, 4]), "FP64", json!([1, 2, 3, 4])),
            StatusCode::BAD_REQUEST,
            "datatype FP64 does not match the model's FP32",
        ),
        (
            input(json!([2, 4]), "FP32", json!([1, 2, 3, 4])),
            StatusCode::BAD_REQUEST,
            "needs 8 values but the data holds 4",
        ),
        (
            input(json!([1, 3]), "FP32", json!([1, 2, 3])),
            StatusCode::BAD_REQUEST,
            "does not match the model's shape",
        ),
        (
            input(json!([1, 4]), "FP32", json!([1, "x", 3, 4])),
            StatusCode::BAD_REQUEST,
            "element 1 is the string \"x\"",
        ),
        (
            input(json!([1, 4]), "BYTES", json!(["a", "b", "c", "d"])),
            StatusCode::BAD_REQUEST,
            "datatype BYTES does not match the model's FP32",
        ),
        (
            json!({"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32"}]}),
            StatusCode::BAD_REQUEST,
            "has no data",
        ),
        (
            json!({"inputs":[{"name":"input","datatype":"FP32","data":[1,2,3,4]}]}),
            StatusCode::BAD_REQUEST,
            "missing field `shape`",
        ),
        (
            json!({"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"nope"}]}),
            StatusCode::BAD_REQUEST,
            "unknown output \"nope\"",
        ),
    ]
}

#[tokio::test]
async fn every_bad_v2_request_gets_a_named_error() {
    let state = iris_state(1 << 20);
    for (body, status, text) in bad_v2_requests() {
        let (got, answer) = post(&state, "/v2/models/iris-classifier/infer", body.clone()).await;
        assert_eq!(got, status, "{body} → {answer}");
        let message = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field in {answer}"));
        assert!(message.contains(text), "{body}: {message:?} lacks {text:?}");
    }
}

#[tokio::test]
async fn malformed_json_unknown_models_and_versions() {
    let state = iris_state(1 << 20);
    let (status, body) = call(
        &state,
        "POST",
        "/v2/models/iris-classifier/infer",
        "{\"inputs\": [",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON request"),
        "{body}"
    );
    let (status, body) = post(&state, "/v2/models/nope/infer", two_rows()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "model \"nope\" is not served here");
    let (status, body) = post(
        &state,
        "/v2/models/iris-classifier/versions/9/infer",
        two_rows(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"].as_str().unwrap().contains("no version \"9\""),
        "{body}"
    );
    assert_eq!(
        call(&state, "GET", "/v2/models/nope", Body::empty())
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&state, "GET", "/v2/models/nope/ready", Body::empty())
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, body) = call(&state, "GET", "/no/such/route", Body::empty()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("no such route"))
    );
}

#[tokio::test]
async fn nan_is_refused_and_oversized_bodies_get_413() {
    let state = iris_state(1024);
    // JSON has no NaN, so send it through the binary extension.
    let raw: Vec<u8> = [1.0f32, f32::NAN, 1.0, 1.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let head = json!({"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}).to_string();
    let mut body = head.clone().into_bytes();
    body.extend_from_slice(&raw);
    let request = Request::post("/v2/models/iris-classifier/infer")
        .header("inference-header-content-length", head.len())
        .body(Body::from(body))
        .unwrap();
    let response = crate::app(state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let answer: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("element 1 is NaN or infinite"),
        "{answer}"
    );

    let big =
        json!({"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":vec![1.0; 400]}]});
    let (status, answer) = post(&state, "/v2/models/iris-classifier/infer", big.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        answer["error"],
        "request body is larger than the limit of 1024 bytes"
    );
    let (status, _) = post(&state, "/api/v1/classify", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn classify_answers_with_labelled_probabilities() {
    let state = iris_state(1 << 20);
    let row = json!({"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2});
    let (status, body) = post(&state, "/api/v1/classify", row).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["predicted_class"], "setosa");
    assert_eq!(body["predicted_class_index"], 0);
    assert_eq!(
        body["all_classes"],
        json!(["setosa", "versicolor", "virginica"])
    );
    assert_eq!(body["model_name"], "iris-classifier");
    assert_eq!(body["model_version"], "1");
    let confidence = body["confidence"].as_f64().unwrap();
    assert_eq!(
        body["probabilities"]["setosa"].as_f64().unwrap(),
        confidence
    );
    assert!(confidence > 0.5);
}

#[tokio::test]
async fn classify_and_predict_accept_features_nested_under_features() {
    let state = iris_state(1 << 20);
    let flat = json!({"sepal_length":6.7,"sepal_width":3.0,"petal_length":5.2,"petal_width":2.3});
    let nested = json!({ "features": flat.clone() });
    let (status, from_flat) = post(&state, "/api/v1/classify", flat.clone()).await;
    assert_eq!(status, StatusCode::OK, "{from_flat}");
    let (status, from_nested) = post(&state, "/api/v1/classify", nested.clone()).await;
    assert_eq!(status, StatusCode::OK, "{from_nested}");
    assert_eq!(from_nested, from_flat);
    assert_eq!(from_nested["predicted_class"], "virginica");
    let uri = "/api/v1/models/iris-classifier/predict";
    let (status, rows) = post(&state, uri, json!([nested, flat])).await;
    assert_eq!(status, StatusCode::OK, "{rows}");
    assert_eq!(rows[0], rows[1]);
    // Anything else under `features` is still named as what is wrong.
    let (status, body) = post(&state, uri, json!({"features": {"sepal_length": 1}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("sepal_width"),
        "{body}"
    );
}

/// `--model m@production --model m@2`: both versions are served, the first is the default.
#[tokio::test]
async fn two_versions_of_one_model_are_both_served_the_first_by_default() {
    let metrics = Metrics::new();
    let models = vec![iris_model("2", &metrics), iris_model("1", &metrics)];
    let state = Arc::new(ServerState::new(models, metrics, 1 << 20));
    let infer = |uri: &'static str| {
        let state = state.clone();
        async move { post(&state, uri, two_rows()).await }
    };
    let (status, default) = infer("/v2/models/iris-classifier/infer").await;
    assert_eq!(status, StatusCode::OK, "{default}");
    assert_eq!(
        default["model_version"], "2",
        "the first given is the default"
    );
    for version in ["1", "2"] {
        let uri = format!("/v2/models/iris-classifier/versions/{version}/infer");
        let (status, body) = post(&state, &uri, two_rows()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["model_version"], version);
    }
    let (status, meta) = call(&state, "GET", "/v2/models/iris-classifier", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta["versions"], json!(["2", "1"]));
    let (_, v1) = call(
        &state,
        "GET",
        "/v2/models/iris-classifier/versions/1/ready",
        Body::empty(),
    )
    .await;
    assert_eq!(v1["ready"], true);
    let (status, body) = post(
        &state,
        "/v2/models/iris-classifier/versions/3/infer",
        two_rows(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("serving versions: 2, 1"),
        "{body}"
    );
    let (_, classified) = post(
        &state,
        "/api/v1/classify",
        json!({"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}),
    )
    .await;
    assert_eq!(classified["model_version"], "2");
    let (_, text) = call(&state, "GET", "/metrics", Body::empty()).await;
    let text = text.as_str().unwrap();
    let unknown = r#"mooring_inference_requests_total{model="iris-classifier",outcome="not_found",protocol="rest",version="unknown"} 1"#;
    assert!(text.contains(unknown), "{unknown} in {text}");
    for version in ["1", "2"] {
        let series = format!(
            r#"mooring_inference_requests_total{{model="iris-classifier",outcome="ok",protocol="rest",version="{version}"}}"#
        );
        assert!(text.contains(&series), "{series} in {text}");
    }
    assert_eq!(
        crate::serve::served_summary(&state, &["chat (local backend, model smollm2)".into()]),
        "iris-classifier@2, iris-classifier@1 (at /v2/models/iris-classifier/versions/1), \
         chat (local backend, model smollm2)"
    );
}

#[tokio::test]
async fn the_same_version_given_twice_is_served_once() {
    let metrics = Metrics::new();
    let models = vec![iris_model("1", &metrics), iris_model("1", &metrics)];
    let state = ServerState::new(models, metrics, 1 << 20);
    assert_eq!(state.models().count(), 1);
    assert_eq!(state.versions("iris-classifier"), ["1"]);
}

#[tokio::test]
async fn predict_accepts_a_list_of_rows_and_names_bad_features() {
    let state = iris_state(1 << 20);
    let rows = json!([
        {"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2},
        {"sepal_length":6.7,"sepal_width":3.0,"petal_length":5.2,"petal_width":2.3}
    ]);
    let (status, body) = post(&state, "/api/v1/models/iris-classifier/predict", rows).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let classes: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["predicted_class"].as_str().unwrap())
        .collect();
    assert_eq!(classes, ["setosa", "virginica"]);

    let cases = [
        (
            json!({"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2,"colour":1}),
            "unknown feature \"colour\"",
        ),
        (
            json!({"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4}),
            "missing feature \"petal_width\"",
        ),
        (
            json!([{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":"wide"}]),
            "row 0: feature \"petal_width\" must be a number",
        ),
        (json!([1, 2]), "row 0 is not an object"),
        (json!([]), "no rows to predict"),
        (json!("text"), "must be an object of features"),
    ];
    for (body, text) in cases {
        let (status, answer) = post(
            &state,
            "/api/v1/models/iris-classifier/predict",
            body.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            answer["error"].as_str().unwrap().contains(text),
            "{body}: {answer}"
        );
    }
    let (status, _) = post(&state, "/api/v1/models/nope/predict", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metrics_count_requests_by_outcome() {
    let state = iris_state(1 << 20);
    post(&state, "/v2/models/iris-classifier/infer", two_rows()).await;
    post(
        &state,
        "/v2/models/iris-classifier/infer",
        json!({"inputs": []}),
    )
    .await;
    let request = Request::get("/metrics").body(Body::empty()).unwrap();
    let response = crate::app(state).oneshot(request).await.unwrap();
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    for line in [
        r#"mooring_inference_requests_total{model="iris-classifier",outcome="ok",protocol="rest",version="1"} 1"#,
        r#"mooring_inference_requests_total{model="iris-classifier",outcome="invalid_input",protocol="rest",version="1"} 1"#,
        r#"mooring_model_batch_size_count{model="iris-classifier"} 1"#,
        "mooring_inference_requests_in_flight 0",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert!(text.contains("mooring_inference_request_duration_seconds_bucket"));
    assert!(text.contains("mooring_model_execution_duration_seconds_bucket"));
}

#[tokio::test]
async fn concurrent_ort_requests_are_batched_with_correct_rows() {
    // A long queue delay with a batch of exactly the number of requests: one ort call.
    let dir = iris_dir();
    let signature =
        Signature::from_json(&std::fs::read(dir.join("signature.json")).unwrap()).unwrap();
    let metrics = Metrics::new();
    let sig = signature.clone();
    let make = move || {
        OrtBackend::load(&dir.join("model.onnx"), &sig).map(|b| Box::new(b) as Box<dyn Backend>)
    };
    let config = BatchConfig {
        max_batch_size: 3,
        max_queue_delay: std::time::Duration::from_secs(30),
        ..Default::default()
    };
    let model = LoadedModel::with_backend(
        "iris-classifier",
        "1",
        "sha256:test",
        signature,
        make,
        &config,
        &metrics,
    )
    .unwrap();
    let state = Arc::new(ServerState::new(vec![model], metrics, 1 << 20));
    let rows = [
        [5.1, 3.5, 1.4, 0.2],
        [6.0, 2.7, 4.1, 1.0],
        [6.7, 3.0, 5.2, 2.3],
    ];
    let bodies: Vec<Value> = rows
        .iter()
        .map(|r| json!({"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":r}]}))
        .collect();
    let answers = futures::future::join_all(
        bodies
            .into_iter()
            .map(|b| post(&state, "/v2/models/iris-classifier/infer", b)),
    )
    .await;
    let labels: Vec<Value> = answers
        .iter()
        .map(|(s, b)| {
            assert_eq!(*s, StatusCode::OK, "{b}");
            b["outputs"][0]["data"][0].clone()
        })
        .collect();
    assert_eq!(labels, [json!(0), json!(1), json!(2)]);
    let text = state.metrics.render();
    assert!(
        text.contains(r#"mooring_model_batch_size_count{model="iris-classifier"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"mooring_model_batch_size_sum{model="iris-classifier"} 3"#),
        "{text}"
    );
}

#[tokio::test]
async fn the_observer_sees_each_completed_inference_once() {
    use crate::infer::{InferenceObserver, InferenceRecord, Protocol};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<InferenceRecord>>);
    impl InferenceObserver for Recorder {
        fn observe(&self, record: InferenceRecord) {
            self.0.lock().unwrap().push(record);
        }
    }

    let recorder = Arc::new(Recorder::default());
    let state = Arc::try_unwrap(iris_state(1 << 20))
        .ok()
        .unwrap()
        .with_observer(recorder.clone());
    let state = Arc::new(state);
    let mut request = two_rows();
    request["id"] = json!("obs-1");
    assert_eq!(
        post(&state, "/v2/models/iris-classifier/infer", request)
            .await
            .0,
        StatusCode::OK
    );
    // A refused request is not an inference.
    assert_eq!(
        post(
            &state,
            "/v2/models/iris-classifier/infer",
            json!({"inputs": []})
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    let records = recorder.0.lock().unwrap();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (
            r.model.as_str(),
            r.version.as_str(),
            r.request_id.as_str(),
            r.protocol
        ),
        ("iris-classifier", "1", "obs-1", Protocol::Rest)
    );
    assert_eq!(r.inputs[0].shape, vec![2, 4]);
    assert_eq!(
        r.outputs.len(),
        2,
        "every output, whatever the client asked for"
    );
}

/// Never answers until its gate opens (a model call still running when the client leaves).
struct Stuck(std::sync::mpsc::Receiver<()>);

impl Backend for Stuck {
    fn run(
        &mut self,
        _inputs: Vec<crate::tensor::Tensor>,
    ) -> crate::error::Result<Vec<crate::tensor::Tensor>> {
        let _ = self.0.recv();
        Err(crate::error::ServerError::Execution("released".into()))
    }
}

#[tokio::test]
async fn a_cancelled_request_leaves_the_in_flight_gauge() {
    let signature =
        Signature::from_json(&std::fs::read(iris_dir().join("signature.json")).unwrap()).unwrap();
    let metrics = Metrics::new();
    let (release, gate) = std::sync::mpsc::channel();
    let gate = std::sync::Mutex::new(Some(gate));
    let make = move || {
        let gate = gate.lock().unwrap().take().expect("one worker");
        Ok(Box::new(Stuck(gate)) as Box<dyn Backend>)
    };
    let model = LoadedModel::with_backend(
        "iris-classifier",
        "1",
        "sha256:test",
        signature,
        make,
        &BatchConfig::default(),
        &metrics,
    )
    .unwrap();
    let state = Arc::new(ServerState::new(vec![model], metrics.clone(), 1 << 20));
    let request = crate::infer::InferRequest {
        model: "iris-classifier".into(),
        version: None,
        id: None,
        inputs: vec![crate::tensor::Tensor {
            name: "input".into(),
            shape: vec![1, 4],
            data: crate::tensor::TensorData::F32(vec![5.1, 3.5, 1.4, 0.2]),
        }],
        outputs: Vec::new(),
    };
    // The client goes away (or the gRPC deadline passes) while the model runs.
    let infer = state.infer(request, crate::infer::Protocol::Rest);
    let outcome = tokio::time::timeout(std::time::Duration::from_millis(200), infer).await;
    assert!(outcome.is_err(), "the stuck model answered");
    assert_eq!(
        metrics.in_flight.get(),
        0,
        "the cancelled request is still counted"
    );
    release.send(()).unwrap();
}

/// Version 1 of the bundled spam classifier (TF-IDF + logistic regression over a string
/// tensor).
fn spam_state() -> Arc<ServerState> {
    let metrics = Metrics::new();
    let model = spam_model(&metrics);
    Arc::new(ServerState::new(vec![model], metrics, 1 << 20))
}

/// Version 1 of the bundled spam classifier, loaded from its directory.
pub(crate) fn spam_model(metrics: &Metrics) -> LoadedModel {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/spam-classifier/1");
    let signature =
        Signature::from_json(&std::fs::read(dir.join("signature.json")).unwrap()).unwrap();
    let sig = signature.clone();
    let make = move || {
        OrtBackend::load(&dir.join("model.onnx"), &sig).map(|b| Box::new(b) as Box<dyn Backend>)
    };
    LoadedModel::with_backend(
        "spam-classifier",
        "1",
        "sha256:test",
        signature,
        make,
        &BatchConfig::default(),
        metrics,
    )
    .expect("the bundled spam model loads")
}

/// Iris (the default model) and the spam classifier, as the README serves them.
#[cfg(feature = "chat")]
pub(crate) fn iris_and_spam_state(max_body_bytes: usize) -> Arc<ServerState> {
    let metrics = Metrics::new();
    let models = vec![iris_model("1", &metrics), spam_model(&metrics)];
    Arc::new(ServerState::new(models, metrics, max_body_bytes))
}

const SPAM: &str = "URGENT: you have won a £1000 gift card. Click http://bit.ly/claim-now";
const HAM: &str = "Are you free for coffee tomorrow morning?";

#[tokio::test]
async fn text_goes_in_as_v2_bytes_and_a_class_comes_out() {
    let state = spam_state();
    let body = json!({"inputs":[{"name":"text","shape":[4,1],"datatype":"BYTES","data":[SPAM, HAM, "", "Très bien 😀"]}]});
    let (status, body) = post(&state, "/v2/models/spam-classifier/infer", body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let labels = &body["outputs"][0];
    assert_eq!(labels["name"], "label");
    assert_eq!(labels["data"][0], 1, "{body}");
    assert_eq!(labels["data"][1], 0, "{body}");
    assert_eq!(body["outputs"][1]["shape"], json!([4, 2]));
}

#[tokio::test]
async fn text_in_the_binary_extension_is_length_prefixed_and_must_be_utf8() {
    let state = spam_state();
    let mut raw = Vec::new();
    for text in [SPAM.as_bytes(), b"\xff\xfe"] {
        raw.extend_from_slice(&(text.len() as u32).to_le_bytes());
        raw.extend_from_slice(text);
    }
    let head = json!({"inputs":[{"name":"text","shape":[2,1],"datatype":"BYTES","parameters":{"binary_data_size":raw.len()}}]}).to_string();
    let mut body = head.clone().into_bytes();
    body.extend_from_slice(&raw);
    let request = Request::post("/v2/models/spam-classifier/infer")
        .header("inference-header-content-length", head.len())
        .body(Body::from(body))
        .unwrap();
    let response = crate::app(state).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let error: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        error["error"],
        "input \"text\": element 1 is not valid UTF-8, and the model takes text"
    );
}

#[tokio::test]
async fn api_v1_predicts_text_from_an_object_or_a_list() {
    let state = spam_state();
    let (status, one) = post(
        &state,
        "/api/v1/models/spam-classifier/predict",
        json!({"text": SPAM}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["predicted_class"], "spam");
    assert_eq!(one["all_classes"], json!(["ham", "spam"]));
    let (status, many) = post(
        &state,
        "/api/v1/models/spam-classifier/predict",
        json!([SPAM, HAM]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{many}");
    assert_eq!(many[1]["predicted_class"], "ham");
    let (status, also) = post(
        &state,
        "/api/v1/models/spam-classifier/predict",
        json!({"text": [HAM]}),
    )
    .await;
    assert_eq!(
        (status, also[0]["predicted_class"].clone()),
        (StatusCode::OK, json!("ham"))
    );
    let (status, err) = post(
        &state,
        "/api/v1/models/spam-classifier/predict",
        json!({"text": 3}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err["error"].as_str().unwrap().contains("must be a string"),
        "{err}"
    );
}
