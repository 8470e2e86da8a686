//! The HTTP routes of chat mode: OpenAI-compatible `/v1/…` and the friendly `/api/v1/…`.

mod api;
mod openai;

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use crate::error::{ChatError, Result};
use crate::service::Shared;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Header carrying the session id (the body's `session_id` works too).
pub const SESSION_HEADER: &str = "x-session-id";

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/models", get(openai::models))
        .route("/api/v1/chat", post(api::chat))
        .route("/api/v1/sessions", get(api::list_sessions))
        .route(
            "/api/v1/sessions/{id}",
            get(api::get_session).delete(api::delete_session),
        )
        .route("/api/v1/generate", post(api::generate))
        .route("/api/v1/generate-secure", post(api::generate_secure))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

/// A request body, or why it could not be read (e.g. over [`MAX_BODY_BYTES`]).
pub type Body = std::result::Result<Bytes, axum::extract::rejection::BytesRejection>;

/// Parses a JSON body with an error that says what is wrong and where (serde names the
/// field, e.g. "missing field `messages`").
pub fn parse_json<T: DeserializeOwned>(body: Body) -> Result<T> {
    let body = body.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ChatError::TooLarge(MAX_BODY_BYTES)
        } else {
            ChatError::invalid("body", e.body_text())
        }
    })?;
    serde_json::from_slice(&body).map_err(|e| ChatError::invalid("body", e.to_string()))
}

/// The session id from the header, else from the body; both must agree when both given.
pub fn session_id(headers: &HeaderMap, body: Option<String>) -> Result<Option<String>> {
    let header = match headers.get(SESSION_HEADER) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ChatError::invalid("X-Session-Id", "must be ASCII"))?
                .to_string(),
        ),
        None => None,
    };
    match (header, body) {
        (Some(h), Some(b)) if h != b => Err(ChatError::invalid(
            "session_id",
            "differs from the X-Session-Id header",
        )),
        (Some(h), _) => Ok(Some(h)),
        (None, b) => Ok(b),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
