//! Prediction logging and drift checks for Mooring.
//!
//! - [`log`]: [`log::PredictionLogger`] writes [`log::PredictionRecord`]s off the request
//!   path to `file:///dir` or `s3://bucket/prefix` (JSON Lines); [`log::read_records`] reads
//!   a window back, [`log::read_columns`] reads it straight into the check's columns.
//! - [`stats`]: the per-feature tests, numerically compatible with SciPy and Evidently.
//! - [`check`]: one drift check over logged rows ([`log::LogColumns`]) and a reference dataset.
//! - [`report`]: the compact result (the operator's `DriftReport`), full JSON and HTML.
//! - [`job`]: [`job::DriftArgs`] and [`job::run`], the `inference-server drift` subcommand.
//!
//! Wiring into the server (inside the tokio runtime):
//!
//! ```no_run
//! # async fn serve(registry: &prometheus::Registry, names: &[String], row: &[f32]) -> Result<(), Box<dyn std::error::Error>> {
//! use mooring_drift::log::{LoggerOptions, PredictionLogger, PredictionRecord};
//! let opts = LoggerOptions { sample_rate: 1.0, ..Default::default() };
//! let (logger, _writer) = PredictionLogger::start("file:///var/log/mooring", opts).await?;
//! logger.register(registry)?;
//! // Per inferred row, after the response is computed (never blocks, never fails):
//! let mut rec = PredictionRecord::now("iris", "3", "req-1", "rest_v2").with_features(names, row);
//! rec.prediction.class_index = Some(0);
//! rec.prediction.label = Some("setosa".into());
//! logger.log(rec);
//! // At graceful shutdown, after draining requests; bounded, because a stalled sink
//! // would otherwise hold the shutdown up:
//! let _ = tokio::time::timeout(std::time::Duration::from_secs(10), logger.shutdown()).await;
//! # Ok(()) }
//! ```
//!
//! and `Command::Drift(args) => mooring_drift::job::run(args).await` for the Job: exit 0
//! for any verdict, non-zero when `run` returns an error.
#![forbid(unsafe_code)]

pub mod check;
pub mod job;
pub mod log;
pub mod report;
pub mod stats;
pub mod text;
