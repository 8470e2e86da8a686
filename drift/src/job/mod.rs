//! `inference-server drift`: the drift check a DriftMonitor Job runs.
//!
//! Reads the window of logged predictions, loads the reference dataset, runs the tests,
//! writes the compact result (`--result-file`, e.g. `/dev/termination-log`), the full JSON
//! report and the HTML report. Exit code 0 for any verdict; an error (non-zero exit) only
//! when the check itself could not run, after writing a `Failed` result with the reason.
//!
//! - `args`: the flags, and the check configuration they make;
//! - `reference`: the reference dataset, from a path, `file://`, `s3://` or the registry;
//! - `challenger`: the challenger gate, the same window against another version's reference;
//! - `reports`: the full JSON and HTML reports, into a directory or the S3 sink.

mod args;
mod challenger;
mod reference;
mod reports;

pub use args::{DriftArgs, parse_since};

use mooring_drift_report::DriftReport;

use crate::check;
use crate::log::{ReadQuery, SinkUrl, read_columns};
use crate::report;

#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error("invalid --{flag}: {reason}")]
    InvalidArg { flag: &'static str, reason: String },
    #[error("reading the prediction log: {0}")]
    Log(#[from] crate::log::SinkError),
    #[error("reference dataset: {0}")]
    Reference(String),
    #[error(transparent)]
    Check(#[from] check::CheckError),
    #[error("writing {what}: {reason}")]
    Output { what: String, reason: String },
}

/// Run the check; see the module docs for what is written where.
pub async fn run(args: DriftArgs) -> Result<DriftReport, DriftError> {
    match run_inner(&args).await {
        Ok(r) => Ok(r),
        Err(e) => {
            tracing::error!(error = %e, "drift check failed");
            if let Some(path) = &args.result_file {
                let failed = report::failed(&args.model, args.version.as_deref(), &e.to_string());
                let _ = std::fs::write(path, report::compact_json(&failed));
            }
            Err(e)
        }
    }
}

async fn run_inner(args: &DriftArgs) -> Result<DriftReport, DriftError> {
    let config = args.check_config()?;
    let since_ms = args.since.as_deref().map(parse_since).transpose()?;
    if args.max_samples == Some(0) {
        return Err(DriftError::InvalidArg {
            flag: "max-samples",
            reason: "must be at least 1".into(),
        });
    }
    let sink = SinkUrl::parse(&args.sink).map_err(|e| DriftError::InvalidArg {
        flag: "sink",
        reason: e.to_string(),
    })?;
    let reference = reference::load(args).await?;
    let query = ReadQuery {
        model: args.model.clone(),
        version: args.version.clone(),
        since_ms,
        max_samples: args.max_samples,
    };
    let started = std::time::Instant::now();
    let (records, read) = read_columns(&args.sink, &query, &args.s3()).await?;
    tracing::info!(
        records = records.len(),
        files = read.files,
        truncated = read.truncated_lines,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "prediction log read"
    );
    let read_stats = read.clone();
    let full = check::run_check(
        &args.model,
        args.version.as_deref(),
        &records,
        read,
        &reference,
        &config,
    )?;
    let report_uri = reports::write(args, &sink, &full).await?;
    let challenger = match &args.challenger_alias {
        Some(alias) => Some(challenger::gate(args, alias, &records, &read_stats, &config).await),
        None => None,
    };
    let compact = report::compact(&full, Some(report_uri), challenger);
    if let Some(path) = &args.result_file {
        std::fs::write(path, report::compact_json(&compact)).map_err(|e| DriftError::Output {
            what: path.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    tracing::info!(verdict = ?full.verdict, share = full.drift_share, "drift check done");
    Ok(compact)
}
