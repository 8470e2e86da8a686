//! Command line: every flag has an environment-variable fallback, so the same binary is
//! configured by arguments locally and by env in a pod.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::backend::BatchConfig;

#[derive(Debug, Parser)]
#[command(
    name = "inference-server",
    version,
    about = "Mooring inference server: Open Inference Protocol over REST and gRPC"
)]
pub struct Cli {
    /// Log format: `json` for clusters, `pretty` for terminals.
    #[arg(long, env = "MOORING_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up; boxing buys nothing
pub enum Command {
    /// Serve models over REST (V2, /api/v1, /metrics) and gRPC (V2).
    Serve(ServeArgs),
    /// Run a model over a CSV or JSONL file of named-feature rows, writing JSONL predictions.
    Batch(BatchArgs),
    /// Check logged production inputs for drift against the reference dataset (the job a
    /// DriftMonitor runs). Exit code 0 whatever the verdict.
    Drift(mooring_drift::job::DriftArgs),
}

/// Where models come from.
#[derive(Debug, Clone, Args)]
pub struct ModelSource {
    /// Model registry: a local directory (e.g. `models`) or an MLflow URL (`http://mlflow:5000`).
    /// Required with `--model`; chat-only `serve --chat` needs none.
    #[arg(long, env = "MOORING_REGISTRY")]
    pub registry: Option<String>,
    /// Where fetched model versions are cached.
    #[arg(
        long,
        env = "MOORING_CACHE_DIR",
        default_value = ".cache/mooring-models"
    )]
    pub cache_dir: PathBuf,
    #[command(flatten)]
    pub credentials: mooring_registry::CredentialArgs,
}

/// Dynamic batching and queue limits.
#[derive(Debug, Clone, Args)]
pub struct BatchingArgs {
    /// Most rows one model call may batch together (1 turns batching off).
    #[arg(long, env = "MOORING_MAX_BATCH_SIZE", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch_size: u32,
    /// How long, in microseconds, a request may wait for others to batch with; 0 batches only
    /// what is already queued.
    #[arg(long, env = "MOORING_MAX_QUEUE_DELAY_US", default_value_t = 0)]
    pub max_queue_delay_us: u64,
    /// Requests that may wait per model; beyond it the server answers 429 / RESOURCE_EXHAUSTED.
    #[arg(long, env = "MOORING_QUEUE_CAPACITY", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub queue_capacity: u32,
    /// Worker threads (ONNX Runtime sessions) per model.
    #[arg(long, env = "MOORING_WORKERS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,
}

impl BatchingArgs {
    pub fn config(&self) -> BatchConfig {
        BatchConfig {
            max_batch_size: self.max_batch_size as usize,
            max_queue_delay: Duration::from_micros(self.max_queue_delay_us),
            queue_capacity: self.queue_capacity as usize,
            workers: self.workers as usize,
            ..BatchConfig::default()
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub source: ModelSource,
    /// Model to serve as `name@alias` or `name@version`; repeat for several. The first is
    /// the default of `/api/v1/classify`. Several versions of one model are all served under
    /// `/v2/models/{m}/versions/{v}`; the first given is the default of requests that name no
    /// version.
    #[arg(
        long = "model",
        env = "MOORING_MODELS",
        value_delimiter = ',',
        required_unless_present = "chat",
        requires = "registry"
    )]
    pub models: Vec<String>,
    /// Address to listen on (0.0.0.0 in containers; 127.0.0.1 for local runs).
    #[arg(long, env = "MOORING_HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// REST port (also /metrics and probes); 0 picks a free one.
    #[arg(long, env = "MOORING_HTTP_PORT", default_value_t = 8080)]
    pub http_port: u16,
    /// gRPC port; 0 picks a free one.
    #[arg(long, env = "MOORING_GRPC_PORT", default_value_t = 8081)]
    pub grpc_port: u16,
    /// Largest accepted request body (REST) or message (gRPC), in bytes.
    #[arg(long, env = "MOORING_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    #[command(flatten)]
    pub batching: BatchingArgs,
    #[command(flatten)]
    pub prediction_log: PredictionLogArgs,
    /// Serve the chat API (OpenAI-compatible `/v1/chat/completions`, `/api/v1/chat`, the
    /// `mooring.chat.v1` gRPC service) beside the models, or alone when no `--model` is given.
    #[arg(long, env = "MOORING_CHAT")]
    pub chat: bool,
    /// The local chat backend's GGUF as a registry model version, `name@alias` or
    /// `name@version` (with `--registry`): resolved, fetched into `--cache-dir` and
    /// digest-checked at start, then served in place of `--chat-gguf`.
    #[cfg(feature = "chat")]
    #[arg(long, env = "MOORING_CHAT_GGUF_MODEL", requires = "registry")]
    pub chat_gguf_model: Option<String>,
    #[cfg(feature = "chat")]
    #[command(flatten, next_help_heading = "Chat (with --chat)")]
    pub chat_args: mooring_chat::ChatArgs,
}

/// Prediction logging, read by drift checks.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Prediction log")]
pub struct PredictionLogArgs {
    /// Log every inference (inputs by feature name, prediction) to `file:///dir` or
    /// `s3://bucket/prefix` (S3 credentials and endpoint from the usual `AWS_*` variables).
    /// Off when unset. Logging never blocks inference: when the sink falls behind, records
    /// are dropped and counted in `mooring_prediction_log_dropped_total`.
    #[arg(long = "prediction-log", env = "MOORING_PREDICTION_LOG")]
    pub prediction_log: Option<String>,
    /// Share of inferences logged, in (0, 1].
    #[arg(
        long = "prediction-log-sample-rate",
        env = "MOORING_PREDICTION_LOG_SAMPLE_RATE",
        default_value_t = 1.0
    )]
    pub prediction_log_sample_rate: f64,
    /// Records that may wait for the writer; beyond it they are dropped and counted.
    #[arg(
        long = "prediction-log-queue",
        env = "MOORING_PREDICTION_LOG_QUEUE",
        default_value_t = 10_000
    )]
    pub prediction_log_queue: usize,
    /// Characters of a text input kept in the log (text models); longer text is cut, on a
    /// character boundary, so one huge message cannot bloat the log.
    #[arg(
        long = "prediction-log-max-text-chars",
        env = "MOORING_PREDICTION_LOG_MAX_TEXT_CHARS",
        default_value_t = 2000
    )]
    pub prediction_log_max_text_chars: usize,
}

#[derive(Debug, Clone, Args)]
pub struct BatchArgs {
    #[command(flatten)]
    pub source: ModelSource,
    /// Model as `name@alias` or `name@version`.
    #[arg(long, env = "MOORING_MODEL", requires = "registry")]
    pub model: String,
    /// Rows to predict: `.csv` with a header of feature names, or `.jsonl` with one object per line.
    #[arg(long, env = "MOORING_BATCH_INPUT")]
    pub input: PathBuf,
    /// Where to write one JSON prediction (or error) per input row.
    #[arg(long, env = "MOORING_BATCH_OUTPUT")]
    pub output: PathBuf,
    /// Rows per model call.
    #[arg(long, env = "MOORING_BATCH_CHUNK", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub chunk_rows: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn registry_basic_auth_needs_both_user_and_password() {
        let base = [
            "inference-server",
            "batch",
            "--registry",
            "http://mlflow:5000",
        ];
        let rest = [
            "--model",
            "m@1",
            "--input",
            "in.csv",
            "--output",
            "out.jsonl",
        ];
        let parse = |auth: &[&str]| {
            let args = base.iter().chain(auth).chain(&rest);
            Cli::try_parse_from(args)
        };
        let err = parse(&["--registry-username", "alice"]).unwrap_err();
        assert!(err.to_string().contains("--registry-password"), "{err}");
        let cli = parse(&["--registry-username", "alice", "--registry-password", "pw"]).unwrap();
        let Command::Batch(args) = cli.command else {
            panic!("batch expected")
        };
        assert_eq!(
            args.source.credentials.registry_username.as_deref(),
            Some("alice")
        );
        assert_eq!(
            args.source.credentials.registry_password.as_deref(),
            Some("pw")
        );
        // One way to authenticate, as the resources allow (the drift Job's flags are the same).
        let err = parse(&[
            "--registry-token",
            "t",
            "--registry-username",
            "alice",
            "--registry-password",
            "pw",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("--registry-token"), "{err}");
    }

    #[test]
    fn serve_flags_parse_with_defaults() {
        let cli = Cli::try_parse_from([
            "inference-server",
            "serve",
            "--registry",
            "models",
            "--model",
            "iris-classifier@production",
            "--model",
            "iris-classifier@2",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("serve expected")
        };
        assert_eq!(
            args.models,
            ["iris-classifier@production", "iris-classifier@2"]
        );
        assert_eq!((args.http_port, args.grpc_port), (8080, 8081));
        assert_eq!(args.batching.config().max_batch_size, 32);
    }

    #[test]
    fn chat_alone_needs_no_registry_but_models_do() {
        let cli = Cli::try_parse_from(["inference-server", "serve", "--chat"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("serve expected")
        };
        assert!(args.models.is_empty() && args.source.registry.is_none());
        let err =
            Cli::try_parse_from(["inference-server", "serve", "--model", "iris@1"]).unwrap_err();
        assert!(err.to_string().contains("--registry"), "{err}");
        let err = Cli::try_parse_from(["inference-server", "serve"]).unwrap_err();
        assert!(err.to_string().contains("--model"), "{err}");
    }

    #[test]
    fn a_zero_batch_size_is_refused() {
        let err = Cli::try_parse_from([
            "inference-server",
            "serve",
            "--registry",
            "m",
            "--model",
            "a@1",
            "--max-batch-size",
            "0",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("--max-batch-size"), "{err}");
    }
}
