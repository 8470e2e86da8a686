//! Property tests of every decoder of bytes from the network or a file: V2 JSON and the
//! binary-data extension, gRPC typed and raw contents, `/api/v1` bodies, and batch CSV/JSONL
//! files. Whatever the bytes, nothing panics, a bad request is a 4xx (gRPC
//! `INVALID_ARGUMENT`), and a valid one round-trips. A stand-in model with the iris
//! signature answers, so no ONNX Runtime is needed and the cases stay fast.
//!
//! Case counts are bounded (`PROPTEST_CASES` raises them locally); a failing case is kept
//! under `proptest-regressions/` and replayed first on every run.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::backend::{Backend, BatchConfig};
use crate::error::{Result, ServerError};
use crate::infer::{LoadedModel, ServerState};
use crate::metrics::Metrics;
use crate::tensor::{ByteString, DataType, Tensor, TensorData};
use crate::validate::tests::iris_signature;

/// Cases per property: enough to find shallow decoder bugs, few enough for CI.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 128;
    }
    config
}

/// The iris signature's outputs for any number of rows: class 0, uniform probabilities.
struct Uniform;

impl Backend for Uniform {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let rows = inputs[0].rows();
        Ok(vec![
            Tensor {
                name: "label".into(),
                shape: vec![rows as i64],
                data: TensorData::I64(vec![0; rows]),
            },
            Tensor {
                name: "probabilities".into(),
                shape: vec![rows as i64, 3],
                data: TensorData::F32(vec![1.0 / 3.0; rows * 3]),
            },
        ])
    }
}

fn state() -> Arc<ServerState> {
    let metrics = Metrics::new();
    let model = LoadedModel::with_backend(
        "iris-classifier",
        "1",
        "sha256:test",
        iris_signature(),
        || Ok(Box::new(Uniform) as Box<dyn Backend>),
        &BatchConfig::default(),
        &metrics,
    )
    .unwrap();
    Arc::new(ServerState::new(vec![model], metrics, 1 << 16))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Sends a request through the router; returns the status and the body.
async fn send(
    state: &Arc<ServerState>,
    uri: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let mut request = Request::post(uri).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = crate::app(state.clone())
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    (
        status,
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

/// A refusal is a 4xx with `{"error": "…"}`; anything else must be a success.
fn assert_ok_or_4xx(status: StatusCode, body: &[u8]) -> std::result::Result<(), TestCaseError> {
    prop_assert!(
        status.is_success() || status.is_client_error(),
        "status {status}: {}",
        String::from_utf8_lossy(body)
    );
    if status.is_client_error() {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| TestCaseError::fail(format!("the error body is not JSON: {e}")))?;
        prop_assert!(value["error"].is_string(), "{value}");
    }
    Ok(())
}

/// JSON values of any shape, small.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const DATATYPES: &[&str] = &[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
    "FP32", "FP64", "BYTES", "", "fp32",
];

/// V2 inputs that are nearly right: any name, datatype, shape and data.
fn v2_input() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("input".to_string()), ".{0,8}"],
        prop::sample::select(DATATYPES),
        prop::collection::vec(prop_oneof![-2i64..6, any::<i64>()], 0..4),
        prop_oneof![
            any_json(),
            prop::collection::vec(any::<f32>(), 0..12).prop_map(|v| json!(v))
        ],
        prop::option::of(prop_oneof![0u64..64, any::<u64>()]),
    )
        .prop_map(|(name, datatype, shape, data, binary_size)| {
            let mut input =
                json!({"name": name, "datatype": datatype, "shape": shape, "data": data});
            if let Some(size) = binary_size {
                input["parameters"] = json!({"binary_data_size": size});
            }
            input
        })
}

/// Any datatype's buffer, with values of every kind the type holds.
fn tensor_data() -> impl Strategy<Value = TensorData> {
    let n = 0..16usize;
    prop_oneof![
        prop::collection::vec(any::<bool>(), n.clone()).prop_map(TensorData::Bool),
        prop::collection::vec(any::<u8>(), n.clone()).prop_map(TensorData::U8),
        prop::collection::vec(any::<u16>(), n.clone()).prop_map(TensorData::U16),
        prop::collection::vec(any::<u32>(), n.clone()).prop_map(TensorData::U32),
        prop::collection::vec(any::<u64>(), n.clone()).prop_map(TensorData::U64),
        prop::collection::vec(any::<i8>(), n.clone()).prop_map(TensorData::I8),
        prop::collection::vec(any::<i16>(), n.clone()).prop_map(TensorData::I16),
        prop::collection::vec(any::<i32>(), n.clone()).prop_map(TensorData::I32),
        prop::collection::vec(any::<i64>(), n.clone()).prop_map(TensorData::I64),
        prop::collection::vec(
            any::<f32>().prop_filter("finite", |f| f.is_finite()),
            n.clone()
        )
        .prop_map(TensorData::F32),
        prop::collection::vec(
            any::<f64>().prop_filter("finite", |f| f.is_finite()),
            n.clone()
        )
        .prop_map(TensorData::F64),
        // Text of any kind, empty strings included (JSON carries BYTES as strings).
        prop::collection::vec("\\PC{0,12}".prop_map(|s| ByteString::from(s.as_str())), n)
            .prop_map(TensorData::Bytes),
    ]
}

/// Rows of valid iris features.
fn iris_rows() -> impl Strategy<Value = Vec<[f32; 4]>> {
    prop::collection::vec(prop::array::uniform4(-1e6f32..1e6), 1..8)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn v2_infer_never_fails_on_arbitrary_bytes(
        body in prop::collection::vec(any::<u8>(), 0..512),
        header_length in prop::option::of(prop_oneof![
            (0usize..600).prop_map(|n| n.to_string()),
            // what a header value may hold (http refuses control characters)
            "[ -~]{0,6}",
        ]),
    ) {
        let state = state();
        let headers: Vec<(&str, String)> = header_length
            .map(|h| ("inference-header-content-length", h))
            .into_iter()
            .collect();
        let (status, body) = runtime().block_on(send(&state, "/v2/models/iris-classifier/infer", &headers, body));
        assert_ok_or_4xx(status, &body)?;
    }

    #[test]
    fn v2_infer_answers_any_json_request_with_2xx_or_4xx(
        inputs in prop::collection::vec(v2_input(), 0..3),
        outputs in prop::collection::vec(any_json(), 0..2),
        parameters in any_json(),
        binary in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let state = state();
        let mut head = serde_json::to_vec(&json!({"inputs": inputs, "outputs": outputs, "parameters": parameters})).unwrap();
        let headers = vec![("inference-header-content-length", head.len().to_string())];
        head.extend_from_slice(&binary);
        let (status, body) = runtime().block_on(send(&state, "/v2/models/iris-classifier/infer", &headers, head));
        assert_ok_or_4xx(status, &body)?;
    }

    #[test]
    fn v2_rows_round_trip_as_json_and_as_binary_data(rows in iris_rows(), binary in any::<bool>()) {
        let state = state();
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let shape = [rows.len(), 4];
        let (headers, body) = if binary {
            let bytes = TensorData::F32(flat.clone()).to_le_bytes();
            let mut head = serde_json::to_vec(&json!({
                "inputs": [{"name": "input", "datatype": "FP32", "shape": shape,
                            "parameters": {"binary_data_size": bytes.len()}}],
                "parameters": {"binary_data_output": true}})).unwrap();
            let headers = vec![("inference-header-content-length", head.len().to_string())];
            head.extend_from_slice(&bytes);
            (headers, head)
        } else {
            let body = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": shape, "data": flat}]});
            (Vec::new(), serde_json::to_vec(&body).unwrap())
        };
        let (status, body) = runtime().block_on(send(&state, "/v2/models/iris-classifier/infer", &headers, body));
        prop_assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        if binary {
            // The JSON head, then the label (INT64) and probabilities (FP32) bytes.
            let head: Value = serde_json::Deserializer::from_slice(&body).into_iter().next().unwrap().unwrap();
            let head_len = serde_json::to_vec(&head).unwrap().len();
            prop_assert_eq!(body.len() - head_len, rows.len() * 8 + rows.len() * 3 * 4);
        } else {
            let value: Value = serde_json::from_slice(&body).unwrap();
            prop_assert_eq!(&value["outputs"][1]["shape"], &json!([rows.len(), 3]));
        }
    }

    #[test]
    fn api_v1_predict_answers_any_body_with_2xx_or_4xx(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            any_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            prop::collection::btree_map(
                prop_oneof![Just("sepal_length".to_string()), Just("sepal_width".to_string()),
                            Just("petal_length".to_string()), Just("petal_width".to_string()), "[a-z]{1,6}"],
                any_json(), 0..6,
            ).prop_map(|m| serde_json::to_vec(&m).unwrap()),
        ],
        classify in any::<bool>(),
    ) {
        let state = state();
        let uri = if classify { "/api/v1/classify" } else { "/api/v1/models/iris-classifier/predict" };
        let (status, body) = runtime().block_on(send(&state, uri, &[], body));
        assert_ok_or_4xx(status, &body)?;
    }

    #[test]
    fn api_v1_predicts_every_valid_row(rows in iris_rows()) {
        let state = state();
        let names = ["sepal_length", "sepal_width", "petal_length", "petal_width"];
        let body: Vec<Value> = rows
            .iter()
            .map(|r| Value::Object(names.iter().zip(r).map(|(n, v)| (n.to_string(), json!(v))).collect()))
            .collect();
        let (status, body) = runtime().block_on(send(
            &state, "/api/v1/models/iris-classifier/predict", &[], serde_json::to_vec(&body).unwrap(),
        ));
        prop_assert_eq!(status, StatusCode::OK);
        let value: Value = serde_json::from_slice(&body).unwrap();
        prop_assert_eq!(value.as_array().map(Vec::len), Some(rows.len()));
    }

    #[test]
    fn grpc_inputs_decode_or_are_invalid_argument(
        datatype in prop::sample::select(DATATYPES),
        shape in prop::collection::vec(any::<i64>(), 0..4),
        raw in prop::option::of(prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..3)),
        ints in prop::collection::vec(any::<i32>(), 0..8),
        uints in prop::collection::vec(any::<u32>(), 0..8),
        fp32 in prop::collection::vec(any::<f32>(), 0..8),
        with_contents in any::<bool>(),
    ) {
        use mooring_proto::inference::model_infer_request::InferInputTensor;
        use mooring_proto::inference::InferTensorContents;
        let contents = with_contents.then(|| InferTensorContents {
            int_contents: ints,
            uint_contents: uints,
            fp32_contents: fp32,
            ..Default::default()
        });
        let input = InferInputTensor {
            name: "input".into(),
            datatype: datatype.to_string(),
            shape,
            parameters: Default::default(),
            contents,
        };
        match crate::grpc::decode_inputs(vec![input], raw.unwrap_or_default()) {
            Ok(_) => {}
            Err(e) => prop_assert_eq!(e.grpc_code(), tonic::Code::InvalidArgument, "{}", e),
        }
    }

    #[test]
    fn raw_contents_round_trip(data in tensor_data()) {
        let bytes = data.to_le_bytes();
        let back = TensorData::from_le_bytes(data.datatype(), &bytes, "x").unwrap();
        prop_assert_eq!(back, data);
    }

    #[test]
    fn raw_bytes_of_any_length_decode_or_name_the_field(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        datatype in prop::sample::select(&DATATYPES[..13]),
    ) {
        if let Ok(datatype) = DataType::parse(datatype) {
            match TensorData::from_le_bytes(datatype, &bytes, "input \"x\"") {
                Ok(data) => prop_assert_eq!(data.to_le_bytes().len(), bytes.len()),
                Err(e) => prop_assert!(e.to_string().starts_with("input \"x\""), "{}", e),
            }
        }
    }

    #[test]
    fn json_data_round_trips(data in tensor_data()) {
        let json = serde_json::to_value(&data).unwrap();
        let back = TensorData::from_json(data.datatype(), &json, "x").unwrap();
        prop_assert_eq!(back, data);
    }

    #[test]
    fn batch_files_of_any_bytes_read_or_fail_cleanly(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        text in "(([a-z_]{1,8}|[0-9.e+-]{1,8}|\"[^\"]{0,6}\"|\\{.{0,16}\\}),?){0,12}\n?",
        csv in any::<bool>(),
        text_columns in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(if csv { "rows.csv" } else { "rows.jsonl" });
        let mut content = text.into_bytes();
        content.extend_from_slice(&bytes);
        std::fs::write(&path, &content).unwrap();
        if let Ok(rows) = crate::batch_cmd::read_rows(&path, text_columns) {
            for (line, _) in rows {
                prop_assert!(line >= 1);
            }
        }
    }
}

#[test]
fn a_jsonl_row_that_is_valid_reads_back_as_its_features() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.jsonl");
    std::fs::write(&path, "{\"a\": 1.5}\n\n[1]\n").unwrap();
    let rows = crate::batch_cmd::read_rows(&path, false).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].1.as_ref().unwrap()["a"], json!(1.5));
    assert_eq!(rows[1].0, 3);
    assert!(rows[1].1.is_err());
}

#[test]
fn a_csv_text_column_is_read_as_text_for_a_text_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messages.csv");
    std::fs::write(
        &path,
        "text,label\n\"Winner, reply YES\",spam\nTrès bien 😀,ham\n",
    )
    .unwrap();
    let rows = crate::batch_cmd::read_rows(&path, true).unwrap();
    assert_eq!(
        rows[0].1.as_ref().unwrap()["text"],
        json!("Winner, reply YES")
    );
    assert_eq!(rows[1].1.as_ref().unwrap()["text"], json!("Très bien 😀"));
    let numeric = crate::batch_cmd::read_rows(&path, false).unwrap();
    assert!(
        numeric[0]
            .1
            .as_ref()
            .unwrap_err()
            .contains("is not a number")
    );
}

#[test]
fn errors_map_to_4xx_and_invalid_argument() {
    let e = ServerError::InvalidInput("x".into());
    assert_eq!(e.grpc_code(), tonic::Code::InvalidArgument);
}
