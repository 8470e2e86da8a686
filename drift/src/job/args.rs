//! The flags of `inference-server drift`, and the check configuration they make.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::Args;

use super::DriftError;
use crate::check::{CheckConfig, TestOverrides};
use crate::log::S3Options;
use crate::stats::TestKind;

/// Flags of `inference-server drift`.
#[derive(Args, Clone, Debug)]
pub struct DriftArgs {
    /// Prediction log sink to read: `file:///dir` or `s3://bucket/prefix`.
    #[arg(long, env = "MOORING_DRIFT_SINK")]
    pub sink: String,
    /// Model name whose logged predictions are checked.
    #[arg(long, env = "MOORING_DRIFT_MODEL")]
    pub model: String,
    /// Model version to select in the log (all versions when omitted).
    #[arg(long, env = "MOORING_DRIFT_VERSION")]
    pub version: Option<String>,
    /// Window start: a duration back from now (`1h`, `30m`, `7d`) or an RFC 3339 time.
    #[arg(long, env = "MOORING_DRIFT_SINCE")]
    pub since: Option<String>,
    /// Use at most this many of the most recent logged samples.
    #[arg(long, env = "MOORING_DRIFT_MAX_SAMPLES")]
    pub max_samples: Option<usize>,
    /// Fewer current samples than this gives the verdict InsufficientData.
    #[arg(long, env = "MOORING_DRIFT_MIN_SAMPLES", default_value_t = 100)]
    pub min_samples: usize,
    /// Registry (directory or MLflow URL) holding the version's `reference.csv`.
    #[arg(long, env = "MOORING_DRIFT_REGISTRY")]
    pub registry: Option<String>,
    #[command(flatten)]
    pub credentials: mooring_registry::CredentialArgs,
    /// The challenger gate: also check the same window against the reference dataset of
    /// the version this registry alias names (e.g. `challenger`); the result goes into the
    /// report's `challenger`. A promotion needs it to say `NoDrift`.
    #[arg(long, env = "MOORING_DRIFT_CHALLENGER_ALIAS", requires = "registry")]
    pub challenger_alias: Option<String>,
    /// Reference dataset instead of the registry's: a CSV path, `file://…` or `s3://bucket/key`.
    #[arg(long, env = "MOORING_DRIFT_REFERENCE")]
    pub reference: Option<String>,
    /// Directory where registry artifacts are cached.
    #[arg(
        long,
        env = "MOORING_DRIFT_CACHE_DIR",
        default_value = "/tmp/mooring-drift-cache"
    )]
    pub cache_dir: PathBuf,
    /// Per-feature test and optional threshold, `FEATURE=TEST[:THRESHOLD]`; `*` for every
    /// feature. Tests: ks, wasserstein, chisquare, chi2_contingency, jensenshannon, psi.
    #[arg(long = "test", env = "MOORING_DRIFT_TESTS", value_delimiter = ',')]
    pub tests: Vec<String>,
    /// Threshold per test kind, `TEST=VALUE` (defaults: 0.05 for p-values, 0.1 for distances).
    #[arg(
        long = "threshold",
        env = "MOORING_DRIFT_THRESHOLDS",
        value_delimiter = ','
    )]
    pub thresholds: Vec<String>,
    /// Dataset drift when the share of drifted features is at least this.
    #[arg(long, env = "MOORING_DRIFT_SHARE", default_value_t = 0.5)]
    pub drift_share: f64,
    /// Reference column holding the class, for prediction drift (default: the first of
    /// prediction, target, label, class, species).
    #[arg(long, env = "MOORING_DRIFT_PREDICTION_COLUMN")]
    pub prediction_column: Option<String>,
    /// Write the compact JSON result here (a Job uses `/dev/termination-log`).
    #[arg(long, env = "MOORING_DRIFT_RESULT_FILE")]
    pub result_file: Option<PathBuf>,
    /// Write the full JSON and HTML reports here (default: `reports/` in the sink).
    #[arg(long, env = "MOORING_DRIFT_REPORT_DIR")]
    pub report_dir: Option<PathBuf>,
    /// S3-compatible endpoint for `s3://` sinks and references (credentials and region
    /// come from the usual AWS_* variables).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub s3_endpoint: Option<String>,
}

impl DriftArgs {
    pub(super) fn s3(&self) -> S3Options {
        S3Options {
            endpoint: self.s3_endpoint.clone(),
            ..Default::default()
        }
    }

    /// The registry's configuration with the credentials given.
    pub(super) fn registry_config(&self, location: &str) -> mooring_registry::RegistryConfig {
        self.credentials.config(location)
    }

    /// The tests, thresholds and shares the flags ask for.
    pub(super) fn check_config(&self) -> Result<CheckConfig, DriftError> {
        if !(self.drift_share > 0.0 && self.drift_share <= 1.0) {
            return Err(DriftError::InvalidArg {
                flag: "drift-share",
                reason: format!("{} is not in (0, 1]", self.drift_share),
            });
        }
        let mut overrides = TestOverrides::default();
        for spec in &self.tests {
            let bad = |reason: String| DriftError::InvalidArg {
                flag: "test",
                reason: format!("{spec:?}: {reason}"),
            };
            let (feature, rest) = spec
                .split_once('=')
                .ok_or_else(|| bad("expected FEATURE=TEST[:THRESHOLD]".into()))?;
            let (test, threshold) = match rest.split_once(':') {
                Some((t, th)) => (t, Some(parse_threshold(th).map_err(&bad)?)),
                None => (rest, None),
            };
            let test = if test.is_empty() {
                None
            } else {
                Some(test.parse::<TestKind>().map_err(&bad)?)
            };
            overrides
                .per_feature
                .insert(feature.trim().to_string(), (test, threshold));
        }
        for spec in &self.thresholds {
            let bad = |reason: String| DriftError::InvalidArg {
                flag: "threshold",
                reason: format!("{spec:?}: {reason}"),
            };
            let (test, value) = spec
                .split_once('=')
                .ok_or_else(|| bad("expected TEST=VALUE".into()))?;
            overrides.thresholds.insert(
                test.parse::<TestKind>().map_err(&bad)?,
                parse_threshold(value).map_err(&bad)?,
            );
        }
        Ok(CheckConfig {
            min_samples: self.min_samples,
            drift_share: self.drift_share,
            overrides,
            prediction_column: self.prediction_column.clone(),
        })
    }
}

fn parse_threshold(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("threshold {s:?} is not a non-negative number")),
    }
}

/// `1h` / `30m` back from now, or an RFC 3339 timestamp → ms since the epoch.
pub fn parse_since(s: &str) -> Result<i64, DriftError> {
    let at = match humantime::parse_duration(s) {
        Ok(d) => SystemTime::now()
            .checked_sub(d)
            .unwrap_or(SystemTime::UNIX_EPOCH),
        Err(_) => humantime::parse_rfc3339_weak(s).map_err(|_| DriftError::InvalidArg {
            flag: "since",
            reason: format!("{s:?} is neither a duration (1h, 30m) nor an RFC 3339 time"),
        })?,
    };
    Ok(at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        drift: DriftArgs,
    }

    #[test]
    fn since_accepts_rfc3339_with_milliseconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_324_957_546);
        let text = humantime::format_rfc3339_millis(t).to_string();
        assert_eq!(parse_since(&text).unwrap(), 1_795_324_957_546, "{text}");
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_flags_name_themselves() {
        let cli = Cli::parse_from([
            "x",
            "--sink",
            "file:///tmp",
            "--model",
            "m",
            "--test",
            "a=bogus",
            "--drift-share",
            "0.5",
        ]);
        let err = cli.drift.check_config().unwrap_err().to_string();
        assert!(err.contains("--test") && err.contains("bogus"), "{err}");
        let cli = Cli::parse_from([
            "x",
            "--sink",
            "file:///tmp",
            "--model",
            "m",
            "--drift-share",
            "2",
        ]);
        assert!(
            cli.drift
                .check_config()
                .unwrap_err()
                .to_string()
                .contains("--drift-share")
        );
        assert!(
            parse_since("yesterday-ish")
                .unwrap_err()
                .to_string()
                .contains("--since")
        );
        assert!(parse_since("2h").is_ok() && parse_since("2026-01-01T00:00:00Z").is_ok());
    }
}
