//! The HTTP routes of chat mode: OpenAI-compatible `/v1/…` and the friendly `/api/v1/…`.

mod api;
mod openai;

use axum::Router;
use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use crate::auth::{Auth, KeyId};
use crate::error::{ChatError, Result};
use crate::metrics::ChatMetrics;
use crate::shared::Shared;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Header carrying the session id (the body's `session_id` works too).
pub const SESSION_HEADER: &str = "x-session-id";

/// Response header set when the guard (in `flag` mode) found something: the pattern names.
pub const GUARD_HEADER: &str = "x-prompt-guard";

/// Every chat route, behind the API-key and rate-limit layer, whose refusals (401, 429)
/// count in `mooring_chat_requests_total` like every other outcome.
pub fn router(shared: Shared) -> Router {
    let (auth, metrics) = (shared.auth.clone(), shared.engine.metrics.clone());
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
        .layer(axum::middleware::from_fn_with_state(auth, Auth::middleware))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            count_rejections,
        ))
}

/// Counts the requests [`Auth::middleware`] turned away, by endpoint.
async fn count_rejections(
    axum::extract::State(metrics): axum::extract::State<ChatMetrics>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let endpoint = endpoint_label(request.uri().path());
    let response = next.run(request).await;
    if let (Some(endpoint), Some(rejection)) = (
        endpoint,
        response.extensions().get::<crate::auth::Rejection>(),
    ) {
        metrics.outcome(endpoint, rejection.label());
    }
    response
}

/// The caller, as identified by the API-key layer ("anonymous" without keys).
pub struct Caller {
    pub owner: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let key = parts
            .extensions
            .get::<KeyId>()
            .cloned()
            .unwrap_or_else(KeyId::anonymous);
        Ok(Caller {
            owner: key.as_str().to_string(),
        })
    }
}

/// A request body, or why it could not be read (e.g. over [`MAX_BODY_BYTES`]).
pub type Body = std::result::Result<Bytes, axum::extract::rejection::BytesRejection>;

/// Parses a JSON body with an error whose `param` names the offending field: the path of a
/// wrong value (`messages[0].role`), the name of a missing field (`messages`), or `body` when
/// the JSON itself is malformed.
pub fn parse_json<T: DeserializeOwned>(body: Body) -> Result<T> {
    let body = body.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ChatError::TooLarge(MAX_BODY_BYTES)
        } else {
            ChatError::invalid("body", e.body_text())
        }
    })?;
    let mut json = serde_json::Deserializer::from_slice(&body);
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(field, _)| field);
        let param = match (path.as_str(), missing) {
            (".", Some(field)) => field.to_string(),
            (".", None) => "body".to_string(),
            (path, Some(field)) => format!("{path}.{field}"),
            (path, None) => path.to_string(),
        };
        // A syntax error has no field to blame, whatever the path reached so far.
        let param = if inner.is_syntax() || inner.is_eof() {
            "body".to_string()
        } else {
            param
        };
        ChatError::invalid(param, message)
    })
}

/// The `endpoint` label of `mooring_chat_requests_total` for a generation route.
pub const CHAT_COMPLETIONS: &str = "chat_completions";
pub const API_CHAT: &str = "api_chat";
pub const API_GENERATE: &str = "api_generate";
pub const API_GENERATE_SECURE: &str = "api_generate_secure";

/// The `endpoint` label of a request path, for the routes whose outcomes are counted.
pub fn endpoint_label(path: &str) -> Option<&'static str> {
    match path {
        "/v1/chat/completions" => Some(CHAT_COMPLETIONS),
        "/api/v1/chat" => Some(API_CHAT),
        "/api/v1/generate" => Some(API_GENERATE),
        "/api/v1/generate-secure" => Some(API_GENERATE_SECURE),
        _ => None,
    }
}

/// Counts an error that ended a request before the engine took it over (bad body, invalid
/// field, blocked prompt, unknown session): the engine itself counts the outcome of every
/// answer it generates or takes from a cache, errors included, so each request counts once.
fn counted<T>(shared: &Shared, endpoint: &'static str, result: Result<T>) -> Result<T> {
    if let Err(e) = &result {
        shared.engine.metrics.outcome(endpoint, e.label());
    }
    result
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
