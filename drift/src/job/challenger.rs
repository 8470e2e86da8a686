//! The challenger gate of a promotion: the same window checked against the reference dataset
//! of the version a registry alias names.

use mooring_drift_report::{ChallengerCheck, DriftVerdict};

use super::DriftArgs;
use crate::check::{self, CheckConfig, Dataset};

/// The challenger gate: the window checked against the reference of the version `alias`
/// names. Never an error: a gate that cannot run says `Failed` with the reason, and the
/// operator then skips the promotion.
pub(super) async fn gate(
    args: &DriftArgs,
    alias: &str,
    records: &crate::log::LogColumns,
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
    let registry = match mooring_registry::connect(&args.registry_config(location)) {
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
