//! Mooring inference server: the Open Inference Protocol (KServe V2) over REST and gRPC, a
//! friendly `/api/v1` for tabular classifiers, and offline `batch` inference, on ONNX Runtime.
//!
//! Wiring other parts in:
//! - [`state::InferenceObserver`] sees every completed inference (prediction logging):
//!   `ServerState::with_observer`.
//! - [`serve::Extras`] merges an extra axum `Router` and extra tonic services into the two
//!   servers, which share one shutdown signal.
#![forbid(unsafe_code)]

pub mod backend;
pub mod batch_cmd;
pub mod components;
pub mod config;
pub mod error;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod predict;
pub mod prediction_log;
pub mod serve;
pub mod state;
pub mod tensor;
pub mod validate;

pub use error::{Result, ServerError};
pub use http::app;
pub use state::{InferenceObserver, InferenceRecord, Protocol, ServerState};

/// Sets up `tracing`: JSON lines in clusters, human-readable locally; `RUST_LOG` filters.
pub fn init_logging(format: config::LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        config::LogFormat::Json => builder.json().try_init(),
        config::LogFormat::Pretty => builder.try_init(),
    };
}
