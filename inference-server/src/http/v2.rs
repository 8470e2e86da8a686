//! Open Inference Protocol (KServe V2) over REST, with the binary tensor data extension
//! (what `tritonclient.http` sends by default): when the `Inference-Header-Content-Length`
//! header is present, the body is that many bytes of JSON followed by the raw tensors.

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{AppState, body, parse_json};
use crate::error::{Result, ServerError};
use crate::infer::{InferRequest, LoadedModel, Protocol, ServerState};
use crate::tensor::{DataType, Tensor, TensorData};

const HEADER_LENGTH: &str = "inference-header-content-length";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2", get(server_metadata))
        .route(
            "/v2/health/live",
            get(|| async { Json(json!({"live": true})) }),
        )
        .route("/v2/health/ready", get(server_ready))
        .route("/v2/models/{model}", get(model_metadata))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(model_version_metadata),
        )
        .route("/v2/models/{model}/ready", get(model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(model_version_ready),
        )
        .route("/v2/models/{model}/infer", post(infer))
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(infer_version),
        )
}

/// Server name, version and the protocol extensions implemented.
pub fn server_metadata_json() -> Value {
    json!({"name": "mooring", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data"]})
}

async fn server_metadata() -> Json<Value> {
    Json(server_metadata_json())
}

async fn server_ready(State(state): State<AppState>) -> Response {
    let ready = state.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"ready": ready}))).into_response()
}

fn metadata(state: &ServerState, model: &LoadedModel) -> Value {
    let tensors = |specs: &[mooring_registry::TensorSpec]| {
        specs
            .iter()
            .map(|t| json!({"name": t.name, "datatype": t.datatype, "shape": t.shape}))
            .collect::<Vec<_>>()
    };
    json!({
        "name": model.name,
        "versions": state.versions(&model.name),
        "platform": model.platform,
        "inputs": tensors(&model.signature.inputs),
        "outputs": tensors(&model.signature.outputs),
    })
}

async fn model_metadata(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>> {
    Ok(Json(metadata(&state, state.model(&model, None)?)))
}

async fn model_version_metadata(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Json<Value>> {
    Ok(Json(metadata(&state, state.model(&model, Some(&version))?)))
}

async fn model_ready(State(state): State<AppState>, Path(model): Path<String>) -> Result<Response> {
    ready_response(&state, &model, None)
}

async fn model_version_ready(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response> {
    ready_response(&state, &model, Some(&version))
}

fn ready_response(state: &AppState, model: &str, version: Option<&str>) -> Result<Response> {
    let m = state.model(model, version)?;
    let ready = state.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(json!({"name": m.name, "ready": ready}))).into_response())
}

#[derive(Deserialize)]
struct V2Request {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<V2Input>,
    #[serde(default)]
    outputs: Vec<V2RequestedOutput>,
}

#[derive(Deserialize)]
struct V2Input {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct V2RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// The response head, its keys in the order `json!` gave them (sorted).
#[derive(Serialize)]
struct V2Response<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'a str,
    model_name: &'a str,
    model_version: &'a str,
    outputs: Vec<V2Output<'a>>,
}

#[derive(Serialize)]
struct V2Output<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a TensorData>,
}

async fn infer(
    State(state): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    run(state, model, None, headers, raw).await
}

async fn infer_version(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    run(state, model, Some(version), headers, raw).await
}

async fn run(
    state: AppState,
    model: String,
    version: Option<String>,
    headers: HeaderMap,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let bytes = body(&state, raw)?;
    let (json_part, mut binary) = split_binary(&headers, &bytes)?;
    let request: V2Request = parse_json(json_part)?;
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in request.inputs {
        inputs.push(decode_input(input, &mut binary)?);
    }
    if !binary.is_empty() {
        return Err(ServerError::InvalidInput(format!(
            "{} bytes of binary data follow the inputs unused",
            binary.len()
        )));
    }
    let all_binary = request
        .parameters
        .get("binary_data_output")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let binary_outputs: Vec<String> = request
        .outputs
        .iter()
        .filter(|o| {
            o.parameters
                .get("binary_data")
                .and_then(Value::as_bool)
                .unwrap_or(all_binary)
        })
        .map(|o| o.name.clone())
        .collect();
    let wanted = request.outputs.into_iter().map(|o| o.name).collect();
    let infer = InferRequest {
        model,
        version,
        id: request.id,
        inputs,
        outputs: wanted,
    };
    let response = state.infer(infer, Protocol::Rest).await?;
    let is_binary = |t: &Tensor| all_binary || binary_outputs.contains(&t.name);
    let mut tail = Vec::new();
    let outputs: Vec<V2Output> = response
        .outputs
        .iter()
        .map(|t| {
            let binary = is_binary(t);
            let mut parameters = None;
            if binary {
                let bytes = t.data.to_le_bytes();
                parameters = Some(json!({"binary_data_size": bytes.len()}));
                tail.extend_from_slice(&bytes);
            }
            V2Output {
                name: &t.name,
                datatype: t.datatype().as_str(),
                shape: &t.shape,
                parameters,
                data: (!binary).then_some(&t.data),
            }
        })
        .collect();
    let head = V2Response {
        id: &response.id,
        model_name: &response.model_name,
        model_version: &response.model_version,
        outputs,
    };
    let head = serde_json::to_vec(&head).map_err(|e| ServerError::Execution(e.to_string()))?;
    if tail.is_empty() {
        return Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            head,
        )
            .into_response());
    }
    let header_length = head.len().to_string();
    let mut out = head;
    out.extend_from_slice(&tail);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static(HEADER_LENGTH),
                HeaderValue::from_str(&header_length).expect("digits"),
            ),
        ],
        out,
    )
        .into_response())
}

/// Splits a binary-extension body into its JSON header and the binary tail.
fn split_binary<'a>(headers: &HeaderMap, bytes: &'a [u8]) -> Result<(&'a [u8], &'a [u8])> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok((bytes, &[]));
    };
    let length: usize = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            ServerError::InvalidInput(
                "header Inference-Header-Content-Length is not a number".into(),
            )
        })?;
    if length > bytes.len() {
        return Err(ServerError::InvalidInput(format!(
            "header Inference-Header-Content-Length is {length} but the body has only {} bytes",
            bytes.len()
        )));
    }
    Ok(bytes.split_at(length))
}

fn decode_input(input: V2Input, binary: &mut &[u8]) -> Result<Tensor> {
    let field = format!("input {:?}", input.name);
    let datatype = DataType::parse(&input.datatype)
        .map_err(|e| ServerError::InvalidInput(format!("{field}: {e}")))?;
    let data = match (input.parameters.get("binary_data_size"), input.data) {
        (Some(size), _) => {
            let size = size.as_u64().ok_or_else(|| {
                ServerError::InvalidInput(format!(
                    "{field}: parameter binary_data_size is not a number"
                ))
            })? as usize;
            if size > binary.len() {
                return Err(ServerError::InvalidInput(format!(
                    "{field}: binary_data_size is {size} but only {} bytes of binary data remain",
                    binary.len()
                )));
            }
            let (mine, rest) = binary.split_at(size);
            *binary = rest;
            TensorData::from_le_bytes(datatype, mine, &field)?
        }
        (None, Some(data)) => TensorData::from_json(datatype, &data, &field)?,
        (None, None) => return Err(ServerError::InvalidInput(format!("{field} has no data"))),
    };
    Ok(Tensor {
        name: input.name,
        shape: input.shape,
        data,
    })
}
