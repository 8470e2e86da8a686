//! `POST /api/v1/classify` (the default model) and `POST /api/v1/models/{m}/predict`: named
//! features in, labelled predictions out. A single object gives one prediction; a list of
//! objects gives a list. A row is flat (`{"sepal_length": 5.1, …}`) or, as many clients send
//! it, nested under `features` (`{"features": {"sepal_length": 5.1, …}}`).

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Map, Value};

use super::{AppState, body, parse_json};
use crate::error::{Result, ServerError};
use crate::infer::{InferRequest, LoadedModel, Protocol};
use crate::predict::{predictions, rows_to_input};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/classify", post(classify))
        .route("/api/v1/models/{model}/predict", post(predict))
}

async fn classify(
    State(state): State<AppState>,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<Value>> {
    let model = state
        .default_model()
        .ok_or_else(|| ServerError::Unavailable("no model is loaded".into()))?
        .to_string();
    run(state, model, raw).await
}

async fn predict(
    State(state): State<AppState>,
    Path(model): Path<String>,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<Value>> {
    run(state, model, raw).await
}

async fn run(
    state: AppState,
    model_name: String,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<Value>> {
    let bytes = body(&state, raw)?;
    let value: Value = parse_json(&bytes)?;
    let model = state.model(&model_name, None)?.clone();
    // A text model with one feature also takes `{"text": ["…", "…"]}` or a bare list of strings.
    let value = text_rows(&model, value);
    let (rows, single) = match &value {
        Value::Object(row) => (vec![features(row)], true),
        Value::Array(items) => {
            let rows = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.as_object().map(features).ok_or_else(|| {
                        ServerError::InvalidInput(format!("row {i} is not an object of features"))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            (rows, false)
        }
        _ => {
            return Err(ServerError::InvalidInput(
                "the body must be an object of features or a list of them".into(),
            ));
        }
    };
    let input = rows_to_input(&model, &rows, &|i| {
        if single {
            "request".to_string()
        } else {
            format!("row {i}")
        }
    })?;
    let request = InferRequest {
        model: model_name,
        version: None,
        id: None,
        inputs: vec![input],
        outputs: vec![],
    };
    let response = state.infer(request, Protocol::ApiV1).await?;
    let mut predicted = predictions(&model, &response.outputs, rows.len())?;
    let json = if single {
        serde_json::to_value(predicted.remove(0))
    } else {
        serde_json::to_value(predicted)
    };
    Ok(Json(
        json.map_err(|e| ServerError::Execution(e.to_string()))?,
    ))
}

/// Rewrites the shorthands of a one-feature text model into rows of features: a list of
/// strings, or the feature holding a list of strings. Anything else is left as it is.
fn text_rows(model: &LoadedModel, value: Value) -> Value {
    let sig = &model.signature;
    let [feature] = sig.feature_names.as_slice() else {
        return value;
    };
    if sig.inputs.first().map(|i| i.datatype.as_str()) != Some("BYTES") {
        return value;
    }
    let row = |text: Value| Value::Object(Map::from_iter([(feature.clone(), text)]));
    match value {
        Value::Array(items) if items.iter().all(Value::is_string) => {
            Value::Array(items.into_iter().map(row).collect())
        }
        Value::Object(mut object)
            if object.len() == 1 && object.get(feature).is_some_and(Value::is_array) =>
        {
            let items = match object.remove(feature) {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            Value::Array(items.into_iter().map(row).collect())
        }
        other => other,
    }
}

/// The features of a row: the row itself, or the object under its only key `features` (a
/// feature's value is a number or a string, never an object, so this cannot shadow one).
fn features(row: &Map<String, Value>) -> &Map<String, Value> {
    match row.get("features") {
        Some(Value::Object(inner)) if row.len() == 1 => inner,
        _ => row,
    }
}
