//! Prediction logging and drift checks for Mooring.
//!
//! - [`log`]: [`log::PredictionLogger`] writes [`log::PredictionRecord`]s off the request
//!   path to `file:///dir` or `s3://bucket/prefix` (JSON Lines); [`log::read_records`] reads
//!   a window back.
//! - [`stats`]: the per-feature tests, numerically compatible with SciPy and Evidently.
//! - [`check`]: one drift check over logged records and a reference dataset.
//! - [`report`]: the compact result (the operator's `DriftReport`), full JSON and HTML.
//! - [`cli`]: [`cli::DriftArgs`] and [`cli::run`], the `inference-server drift` subcommand.
#![forbid(unsafe_code)]

pub mod check;
pub mod cli;
pub mod log;
pub mod report;
pub mod stats;
