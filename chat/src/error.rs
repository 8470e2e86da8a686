//! One error type for chat requests, mapped once to HTTP (OpenAI's error shape) and once
//! to gRPC.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::backend::BackendError;
use crate::memory::MemoryError;

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// Bad input; `param` names the field.
    #[error("{param}: {message}")]
    InvalidRequest { param: String, message: String },
    #[error("session `{0}` not found")]
    SessionNotFound(String),
    #[error("body: larger than the limit of {0} bytes")]
    TooLarge(usize),
    /// The prompt guard refused the prompt in `param`; the analysis goes back to the caller.
    #[error("{param}: the prompt was blocked by the prompt-injection guard")]
    Blocked {
        param: String,
        analysis: serde_json::Value,
    },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

impl ChatError {
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        ChatError::InvalidRequest {
            param: param.into(),
            message: message.into(),
        }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ChatError::InvalidRequest { .. } => "invalid_request",
            ChatError::SessionNotFound(_) => "not_found",
            ChatError::TooLarge(_) => "too_large",
            ChatError::Blocked { .. } => "blocked",
            ChatError::Backend(e) => e.label(),
            ChatError::Memory(_) => "memory",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ChatError::InvalidRequest { .. } | ChatError::Blocked { .. } => StatusCode::BAD_REQUEST,
            ChatError::SessionNotFound(_) => StatusCode::NOT_FOUND,
            ChatError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ChatError::Backend(BackendError::InvalidRequest(_)) => StatusCode::BAD_REQUEST,
            ChatError::Backend(BackendError::Busy(_)) => StatusCode::TOO_MANY_REQUESTS,
            ChatError::Backend(BackendError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            ChatError::Backend(BackendError::Unavailable(_) | BackendError::Protocol(_)) => {
                StatusCode::BAD_GATEWAY
            }
            ChatError::Backend(_) | ChatError::Memory(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// OpenAI's `error.type`.
    fn openai_type(&self) -> &'static str {
        match self.status() {
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => "invalid_request_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            _ => "server_error",
        }
    }

    /// The JSON body: OpenAI's `{"error": {"message", "type", "param", "code"}}`, with the
    /// guard's analysis beside it when the prompt was blocked.
    pub fn body(&self) -> serde_json::Value {
        let param = match self {
            ChatError::InvalidRequest { param, .. } | ChatError::Blocked { param, .. } => {
                json!(param)
            }
            _ => serde_json::Value::Null,
        };
        let mut body = json!({
            "error": {
                "message": self.to_string(),
                "type": self.openai_type(),
                "param": param,
                "code": self.label(),
            }
        });
        if let ChatError::Blocked { analysis, .. } = self {
            body["guard"] = analysis.clone();
        }
        body
    }

    pub fn grpc_status(&self) -> tonic::Status {
        let message = self.to_string();
        match self.status() {
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => {
                tonic::Status::invalid_argument(message)
            }
            StatusCode::NOT_FOUND => tonic::Status::not_found(message),
            StatusCode::TOO_MANY_REQUESTS => tonic::Status::resource_exhausted(message),
            StatusCode::GATEWAY_TIMEOUT => tonic::Status::deadline_exceeded(message),
            _ => tonic::Status::unavailable(message),
        }
    }
}

/// `Retry-After` of a 429 for a busy backend, in seconds.
const BUSY_RETRY_AFTER_SECS: &str = "1";

impl IntoResponse for ChatError {
    fn into_response(self) -> Response {
        if self.status().is_server_error() {
            tracing::warn!(error = %self, "chat request failed");
        }
        let mut response = (self.status(), Json(self.body())).into_response();
        if self.status() == StatusCode::TOO_MANY_REQUESTS {
            // A busy backend frees up within the time of a generation: try again soon.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(BUSY_RETRY_AFTER_SECS),
            );
        }
        response
    }
}

pub type Result<T, E = ChatError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_backend_answers_429_with_retry_after() {
        let response = ChatError::Backend(BackendError::Busy("full".into())).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "1");
    }
}
