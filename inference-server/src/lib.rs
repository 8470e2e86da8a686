//! Mooring inference server: the Open Inference Protocol (KServe V2) over REST and gRPC, a
//! friendly `/api/v1` for tabular classifiers, and offline `batch` inference, on ONNX Runtime.
//!
//! Wiring other parts in:
//! - [`infer::InferenceObserver`] sees every completed inference (prediction logging):
//!   `ServerState::with_observer`.
//! - [`serve::Extras`] merges an extra axum `Router` and extra tonic services into the two
//!   servers, which share one shutdown signal.
#![forbid(unsafe_code)]

pub mod backend;
pub mod batch_cmd;
pub mod config;
pub mod error;
pub mod grpc;
pub mod http;
pub mod infer;
pub mod metrics;
pub mod predict;
pub mod prediction_log;
pub mod serve;
pub mod serve_extras;
pub mod tensor;
pub mod validate;

#[cfg(test)]
mod prop_tests;

pub use error::{Result, ServerError};
pub use http::app;
pub use infer::{InferenceObserver, InferenceRecord, Protocol, ServerState};

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

/// An error and its causes, each said once: `chat: cache: embedding-model-dir: required …`.
///
/// Some error types put their cause into their own message, others leave it to
/// [`std::error::Error::source`]; printing every link of the chain would repeat the first
/// kind's causes, so a cause already in the message is skipped.
pub fn error_report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut report = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !text.is_empty() && !report.contains(&text) {
            report.push_str(": ");
            report.push_str(&text);
        }
        cause = e.source();
    }
    report
}

#[cfg(test)]
mod error_report_tests {
    use super::error_report;

    #[derive(Debug, thiserror::Error)]
    #[error("embedding-model-dir: required when --cache-semantic is on")]
    struct Leaf;

    /// Puts its cause into its own message (and exposes it as the source).
    #[derive(Debug, thiserror::Error)]
    #[error("cache: {0}")]
    struct Repeats(#[from] Leaf);

    /// Leaves its cause to `source()`.
    #[derive(Debug, thiserror::Error)]
    #[error("chat")]
    struct Terse(#[from] Repeats);

    #[test]
    fn each_cause_is_said_once() {
        let e = Terse(Repeats(Leaf));
        assert_eq!(
            error_report(&e),
            "chat: cache: embedding-model-dir: required when --cache-semantic is on"
        );
        let e = anyhow::Error::from(Repeats(Leaf));
        assert_eq!(
            error_report(e.as_ref()),
            "cache: embedding-model-dir: required when --cache-semantic is on"
        );
    }
}
