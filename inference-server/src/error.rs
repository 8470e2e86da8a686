//! The one error type of the data plane, mapped once to an HTTP status with a
//! `{"error": "…"}` body and once to a gRPC status code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::tensor::TensorError;

pub type Result<T, E = ServerError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The request is wrong (shape, datatype, names, values, JSON); the message names the field.
    #[error("{0}")]
    InvalidInput(String),
    #[error("model {0:?} is not served here")]
    ModelNotFound(String),
    #[error("model {name:?} has no version {version:?} here (serving versions: {serving})")]
    VersionNotFound {
        name: String,
        version: String,
        serving: String,
    },
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("model {0:?} is overloaded: its request queue is full, retry later")]
    Overloaded(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("model execution failed: {0}")]
    Execution(String),
}

impl From<TensorError> for ServerError {
    fn from(e: TensorError) -> Self {
        ServerError::InvalidInput(e.to_string())
    }
}

impl ServerError {
    /// A short label for the `outcome` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            ServerError::InvalidInput(_) => "invalid_input",
            ServerError::ModelNotFound(_) | ServerError::VersionNotFound { .. } => "not_found",
            ServerError::PayloadTooLarge { .. } => "too_large",
            ServerError::Overloaded(_) => "overloaded",
            ServerError::Unavailable(_) => "unavailable",
            ServerError::Execution(_) => "error",
        }
    }

    pub fn http_status(&self) -> StatusCode {
        match self {
            ServerError::InvalidInput(_) => StatusCode::BAD_REQUEST,
            ServerError::ModelNotFound(_) | ServerError::VersionNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            ServerError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServerError::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
            ServerError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServerError::Execution(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            ServerError::InvalidInput(_) => tonic::Code::InvalidArgument,
            ServerError::ModelNotFound(_) | ServerError::VersionNotFound { .. } => {
                tonic::Code::NotFound
            }
            ServerError::PayloadTooLarge { .. } | ServerError::Overloaded(_) => {
                tonic::Code::ResourceExhausted
            }
            ServerError::Unavailable(_) => tonic::Code::Unavailable,
            ServerError::Execution(_) => tonic::Code::Internal,
        }
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        (
            self.http_status(),
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

impl From<ServerError> for tonic::Status {
    fn from(e: ServerError) -> Self {
        tonic::Status::new(e.grpc_code(), e.to_string())
    }
}
