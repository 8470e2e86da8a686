//! `inference-server drift`: the drift check a DriftMonitor Job runs.
//!
//! Reads the window of logged predictions, loads the reference dataset, runs the tests,
//! writes the compact result (`--result-file`, e.g. `/dev/termination-log`), the full JSON
//! report and the HTML report. Exit code 0 for any verdict; an error (non-zero exit) only
//! when the check itself could not run, after writing a `Failed` result with the reason.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::Args;
use mooring_drift_report::{ChallengerCheck, DriftReport, DriftVerdict};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use crate::check::{self, CheckConfig, Dataset, TestOverrides};
use crate::log::{ReadQuery, S3Options, SinkUrl, read_records};
use crate::report;
use crate::stats::TestKind;

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
    /// Bearer token for an MLflow registry (the variable the server's pods use too).
    #[arg(long, env = "MOORING_REGISTRY_TOKEN", hide_env_values = true)]
    pub registry_token: Option<String>,
    /// Username for an MLflow registry with basic authentication.
    #[arg(
        long,
        env = "MOORING_REGISTRY_USERNAME",
        requires = "registry_password",
        conflicts_with = "registry_token"
    )]
    pub registry_username: Option<String>,
    /// Password for an MLflow registry with basic authentication.
    #[arg(
        long,
        env = "MOORING_REGISTRY_PASSWORD",
        hide_env_values = true,
        requires = "registry_username"
    )]
    pub registry_password: Option<String>,
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
    fn s3(&self) -> S3Options {
        S3Options {
            endpoint: self.s3_endpoint.clone(),
            ..Default::default()
        }
    }
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
    let config = check_config(args)?;
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
    let reference = load_reference(args).await?;
    let query = ReadQuery {
        model: args.model.clone(),
        version: args.version.clone(),
        since_ms,
        max_samples: args.max_samples,
    };
    let started = std::time::Instant::now();
    let (records, read) = read_records(&args.sink, &query, &args.s3()).await?;
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
    let report_uri = write_reports(args, &sink, &full).await?;
    let challenger = match &args.challenger_alias {
        Some(alias) => Some(challenger_gate(args, alias, &records, &read_stats, &config).await),
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

/// The challenger gate: the window checked against the reference of the version `alias`
/// names. Never an error: a gate that cannot run says `Failed` with the reason, and the
/// operator then skips the promotion.
async fn challenger_gate(
    args: &DriftArgs,
    alias: &str,
    records: &[crate::log::PredictionRecord],
    read: &crate::log::ReadStats,
    config: &CheckConfig,
) -> ChallengerCheck {
    let failed = |version: Option<String>, message: String| ChallengerCheck {
        alias: alias.to_string(),
        version,
        verdict: DriftVerdict::Failed,
        drift_share: 0.0,
        drifted_features: Vec::new(),
        message: Some(message),
    };
    let Some(location) = &args.registry else {
        return failed(None, "--challenger-alias needs --registry".into());
    };
    let registry = match mooring_registry::connect(&registry_config(args, location)) {
        Ok(r) => r,
        Err(e) => return failed(None, format!("registry {location}: {e}")),
    };
    let resolved = match registry
        .resolve(&mooring_registry::ModelRef::alias(&args.model, alias))
        .await
    {
        Ok(v) => v,
        Err(e) => return failed(None, e.to_string()),
    };
    let version = Some(resolved.version.clone());
    let path = match registry.fetch(&resolved, &args.cache_dir).await {
        Ok(fetched) => match fetched.reference_path() {
            Some(p) => p,
            None => {
                return failed(
                    version,
                    format!(
                        "version {} has no {}",
                        resolved.version,
                        mooring_registry::REFERENCE_FILE
                    ),
                );
            }
        },
        Err(e) => return failed(version, e.to_string()),
    };
    let dataset = match tokio::fs::read(&path).await {
        Ok(bytes) => match Dataset::from_csv(&bytes, &path.display().to_string()) {
            Ok(d) => d,
            Err(e) => return failed(version, e.to_string()),
        },
        Err(e) => return failed(version, format!("{}: {e}", path.display())),
    };
    match check::run_check(
        &args.model,
        Some(&resolved.version),
        records,
        read.clone(),
        &dataset,
        config,
    ) {
        Ok(full) => ChallengerCheck {
            alias: alias.to_string(),
            version,
            verdict: match full.verdict {
                check::Verdict::NoDrift => DriftVerdict::NoDrift,
                check::Verdict::Drift => DriftVerdict::Drift,
                check::Verdict::InsufficientData => DriftVerdict::InsufficientData,
            },
            drift_share: full.drift_share,
            drifted_features: full
                .features
                .iter()
                .filter(|f| f.outcome.drifted)
                .map(|f| f.name.clone())
                .take(10)
                .collect(),
            message: full.message,
        },
        Err(e) => failed(version, e.to_string()),
    }
}

/// The registry's configuration with the credentials given.
fn registry_config(args: &DriftArgs, location: &str) -> mooring_registry::RegistryConfig {
    let mut config = mooring_registry::RegistryConfig::new(location);
    config.token = args.registry_token.clone();
    config.username = args.registry_username.clone();
    config.password = args.registry_password.clone();
    config
}

fn check_config(args: &DriftArgs) -> Result<CheckConfig, DriftError> {
    if !(args.drift_share > 0.0 && args.drift_share <= 1.0) {
        return Err(DriftError::InvalidArg {
            flag: "drift-share",
            reason: format!("{} is not in (0, 1]", args.drift_share),
        });
    }
    let mut overrides = TestOverrides::default();
    for spec in &args.tests {
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
    for spec in &args.thresholds {
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
        min_samples: args.min_samples,
        drift_share: args.drift_share,
        overrides,
        prediction_column: args.prediction_column.clone(),
    })
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

async fn load_reference(args: &DriftArgs) -> Result<Dataset, DriftError> {
    let (bytes, name) = match (&args.reference, &args.registry) {
        (Some(uri), _) => (read_uri(uri, &args.s3()).await?, uri.clone()),
        (None, Some(registry)) => {
            let version = args
                .version
                .as_deref()
                .ok_or_else(|| DriftError::InvalidArg {
                    flag: "version",
                    reason: "needed to fetch reference.csv from the registry".into(),
                })?;
            let path = registry_reference(
                &registry_config(args, registry),
                &args.model,
                version,
                &args.cache_dir,
            )
            .await?;
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| DriftError::Reference(format!("{}: {e}", path.display())))?;
            (bytes, path.display().to_string())
        }
        (None, None) => {
            return Err(DriftError::InvalidArg {
                flag: "reference",
                reason: "give --reference or --registry (with --version)".into(),
            });
        }
    };
    Ok(Dataset::from_csv(&bytes, &name)?)
}

async fn registry_reference(
    config: &mooring_registry::RegistryConfig,
    model: &str,
    version: &str,
    cache: &std::path::Path,
) -> Result<PathBuf, DriftError> {
    use mooring_registry::ModelRef;
    let location = &config.location;
    let err =
        |e: mooring_registry::Error| DriftError::Reference(format!("registry {location}: {e}"));
    let registry = mooring_registry::connect(config).map_err(err)?;
    let model_ref: ModelRef =
        format!("{model}@{version}")
            .parse()
            .map_err(|e: mooring_registry::Error| DriftError::InvalidArg {
                flag: "version",
                reason: e.to_string(),
            })?;
    let resolved = registry.resolve(&model_ref).await.map_err(err)?;
    let fetched = registry.fetch(&resolved, cache).await.map_err(err)?;
    fetched.reference_path().ok_or_else(|| {
        DriftError::Reference(format!(
            "{model} version {} in {location} has no {}",
            resolved.version,
            mooring_registry::REFERENCE_FILE
        ))
    })
}

/// Read a local path, `file://` URL or `s3://bucket/key` object.
async fn read_uri(uri: &str, s3: &S3Options) -> Result<Vec<u8>, DriftError> {
    if let Some(rest) = uri.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').ok_or_else(|| DriftError::InvalidArg {
            flag: "reference",
            reason: format!("{uri:?} has no object key"),
        })?;
        let store = SinkUrl::object_store(bucket, s3)?;
        let got = store
            .get(&ObjectPath::from(key))
            .await
            .map_err(|e| DriftError::Reference(format!("{uri}: {e}")))?;
        return Ok(got
            .bytes()
            .await
            .map_err(|e| DriftError::Reference(format!("{uri}: {e}")))?
            .to_vec());
    }
    let path = uri.strip_prefix("file://").unwrap_or(uri);
    tokio::fs::read(path)
        .await
        .map_err(|e| DriftError::Reference(format!("{path}: {e}")))
}

/// Write `report.json` and `report.html`; returns where the HTML is.
async fn write_reports(
    args: &DriftArgs,
    sink: &SinkUrl,
    full: &check::FullReport,
) -> Result<String, DriftError> {
    let stamp = humantime::format_rfc3339_millis(SystemTime::now())
        .to_string()
        .replace(':', "");
    let name = format!(
        "drift-{}-{}-{stamp}",
        safe(&args.model),
        safe(args.version.as_deref().unwrap_or("all"))
    );
    let json = report::full_json(full);
    let html = report::html(full);
    let out_err = |what: String| {
        move |e: std::io::Error| DriftError::Output {
            what: what.clone(),
            reason: e.to_string(),
        }
    };
    let dir = match (&args.report_dir, sink) {
        (Some(d), _) => Some(d.join(&name)),
        (None, SinkUrl::Dir(d)) => Some(d.join("reports").join(&name)),
        (None, SinkUrl::S3 { .. }) => None,
    };
    if let Some(dir) = dir {
        std::fs::create_dir_all(&dir).map_err(out_err(dir.display().to_string()))?;
        std::fs::write(dir.join("report.json"), json)
            .map_err(out_err(dir.join("report.json").display().to_string()))?;
        let html_path = dir.join("report.html");
        std::fs::write(&html_path, html).map_err(out_err(html_path.display().to_string()))?;
        return Ok(format!("file://{}", html_path.display()));
    }
    let SinkUrl::S3 { bucket, prefix } = sink else {
        unreachable!("directories handled above")
    };
    let store = SinkUrl::object_store(bucket, &args.s3())?;
    let base = if prefix.is_empty() {
        format!("reports/{name}")
    } else {
        format!("{prefix}/reports/{name}")
    };
    for (file, body) in [("report.json", json), ("report.html", html)] {
        let key = format!("{base}/{file}");
        store
            .put(
                &ObjectPath::from(key.as_str()),
                bytes::Bytes::from(body).into(),
            )
            .await
            .map_err(|e| DriftError::Output {
                what: format!("s3://{bucket}/{key}"),
                reason: e.to_string(),
            })?;
    }
    Ok(format!("s3://{bucket}/{base}/report.html"))
}

fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
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
        let err = check_config(&cli.drift).unwrap_err().to_string();
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
            check_config(&cli.drift)
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
