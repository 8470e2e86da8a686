//! The REST server: Open Inference Protocol V2, the friendly `/api/v1` and the probes.

mod api_v1;
mod health;
mod v2;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use bytes::Bytes;

use crate::error::{Result, ServerError};
use crate::infer::ServerState;

pub type AppState = Arc<ServerState>;

/// Every REST route of the inference server.
pub fn app(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .merge(v2::routes())
        .merge(api_v1::routes())
        .merge(health::routes())
        .fallback(|| async {
            ServerError::InvalidInput("no such route".into()).with_status(StatusCode::NOT_FOUND)
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Turns axum's body rejection into our error, so an oversized body answers 413 with the
/// same `{"error": …}` shape as everything else.
fn body(state: &ServerState, body: std::result::Result<Bytes, BytesRejection>) -> Result<Bytes> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ServerError::PayloadTooLarge {
                limit: state.max_body_bytes,
            }
        } else {
            ServerError::InvalidInput(format!("cannot read the request body: {rejection}"))
        }
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| ServerError::InvalidInput(format!("malformed JSON request: {e}")))
}

impl ServerError {
    fn with_status(self, status: StatusCode) -> axum::response::Response {
        (
            status,
            axum::Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

#[cfg(all(test, feature = "chat"))]
mod docs_tests;
#[cfg(test)]
pub(crate) mod tests;
