//! Validate a DriftMonitor's spec and its target (pure): turn what the user wrote into what
//! the controller needs, or name the field to fix. Everything the CRD schema checks is
//! checked again here: a CRD installed without its schema (or an older one) must not make
//! the controller panic or start a Job with nonsense flags.

use std::time::Duration;

use mooring_crds::ModelDeployment;
use mooring_crds::drift_monitor::{
    DriftMonitorSpec, FeatureTests, OnDrift, PromoteSpec, TestMethod, WebhookSpec,
};
use mooring_registry::validate_alias;

use super::schedule::Every;
use crate::controller::validate::{self as md_validate, RegistryTarget};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A spec the user must change; reported as `Ready=False` with [`Error::reason`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("spec.target.modelDeployment must not be empty")]
    EmptyTarget,
    #[error("spec.schedule {schedule:?}: {reason}")]
    InvalidCron { schedule: String, reason: String },
    #[error("spec.timeZone {0:?}: not a known IANA time zone (e.g. Europe/Berlin)")]
    InvalidTimeZone(String),
    #[error("spec.timeZone: only meaningful with spec.schedule")]
    TimeZoneWithoutSchedule,
    #[error("spec: set at most one of schedule or intervalSeconds")]
    ScheduleAndInterval,
    #[error("spec.intervalSeconds {0}: must be at least 60")]
    IntervalTooShort(i32),
    #[error("spec.window.minSamples {min} exceeds spec.window.maxSamples {max}")]
    MinAboveMax { min: i32, max: i32 },
    #[error("spec.window.{field} {value}: must be at least 1")]
    SamplesTooFew { field: &'static str, value: i32 },
    #[error("{field} {value:?}: not a duration like 30s, 10m, 24h or 7d")]
    InvalidDuration { field: &'static str, value: String },
    #[error("spec.action.promote: needed with onDrift: Promote")]
    PromoteMissing,
    #[error("spec.action.promote.{field}: {reason}")]
    InvalidPromoteAlias { field: &'static str, reason: String },
    #[error("spec.action.promote: alias and fromAlias are both {0:?}")]
    PromoteSameAlias(String),
    #[error("spec.action.consecutiveDrifts {0}: must be between 1 and 100")]
    InvalidConsecutiveDrifts(i32),
    #[error("spec.action.webhook.url {0:?}: must start with http:// or https://")]
    InvalidWebhookUrl(String),
    #[error("spec.tests.driftShare {0}: must be above 0 and at most 1")]
    InvalidDriftShare(f64),
    #[error("spec.tests.{field} {value}: {reason}")]
    InvalidThreshold {
        field: String,
        value: f64,
        reason: &'static str,
    },
    #[error(
        "spec.tests.{0}.method: the drift Job applies one method to every feature; set numeric and categorical to the same non-Auto method, or both to Auto"
    )]
    MixedMethods(&'static str),
    #[error("spec.reference: set at most one of artifact or uri")]
    ArtifactAndUri,
    #[error("spec.reference.artifact {0:?}: the drift Job reads reference.csv only")]
    UnsupportedArtifact(String),
    #[error("spec.reference.uri {0:?}: must start with file:///, s3:// or /")]
    InvalidReferenceUri(String),
    #[error("spec.activeDeadlineSeconds {0}: must be at least 10")]
    DeadlineTooShort(i64),
    #[error("spec.backoffLimit {0}: must be between 0 and 10")]
    InvalidBackoffLimit(i32),
    #[error("spec.historyLimits.{field} {value}: must be 0 or more")]
    NegativeHistoryLimit { field: &'static str, value: i32 },
}

impl Error {
    /// The condition reason and metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::EmptyTarget => "InvalidTarget",
            Error::InvalidCron { .. }
            | Error::InvalidTimeZone(_)
            | Error::TimeZoneWithoutSchedule
            | Error::ScheduleAndInterval
            | Error::IntervalTooShort(_) => "InvalidSchedule",
            Error::MinAboveMax { .. } | Error::SamplesTooFew { .. } => "InvalidWindow",
            Error::InvalidDuration { field, .. } if field.starts_with("spec.window") => {
                "InvalidWindow"
            }
            Error::InvalidDuration { .. }
            | Error::PromoteMissing
            | Error::InvalidPromoteAlias { .. }
            | Error::PromoteSameAlias(_)
            | Error::InvalidConsecutiveDrifts(_)
            | Error::InvalidWebhookUrl(_) => "InvalidAction",
            Error::InvalidDriftShare(_)
            | Error::InvalidThreshold { .. }
            | Error::MixedMethods(_) => "InvalidTests",
            Error::ArtifactAndUri
            | Error::UnsupportedArtifact(_)
            | Error::InvalidReferenceUri(_) => "InvalidReference",
            Error::DeadlineTooShort(_)
            | Error::InvalidBackoffLimit(_)
            | Error::NegativeHistoryLimit { .. } => "InvalidJob",
        }
    }
}

/// The guards against flapping.
#[derive(Clone, Debug, PartialEq)]
pub struct Guards {
    pub consecutive_drifts: u32,
    pub cooldown: Duration,
    pub warmup: Duration,
    pub rollback_window: Duration,
}

/// A valid spec, in the controller's terms.
#[derive(Clone, Debug)]
pub struct ValidMonitor {
    pub target: String,
    pub every: Every,
    pub guards: Guards,
    pub on_drift: OnDrift,
    pub promote: Option<PromoteSpec>,
    pub webhook: Option<WebhookSpec>,
    /// `inference-server drift` flags for the tests and thresholds.
    pub test_args: Vec<String>,
    /// `--reference`, when the reference is a URI rather than the version's artifact.
    pub reference_uri: Option<String>,
    pub keep_succeeded: usize,
    pub keep_failed: usize,
}

/// `30s`, `10m`, `24h`, `7d` (the CRD's pattern `^[0-9]+(s|m|h|d)$`).
pub fn parse_duration(field: &'static str, value: &str) -> Result<Duration> {
    let bad = || Error::InvalidDuration {
        field,
        value: value.into(),
    };
    let unit = value.chars().last().ok_or_else(bad)?;
    let number: u64 = value[..value.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| bad())?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    number
        .checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

/// Validate the whole spec; the first problem found is returned.
pub fn validate(spec: &DriftMonitorSpec) -> Result<ValidMonitor> {
    if spec.target.model_deployment.trim().is_empty() {
        return Err(Error::EmptyTarget);
    }
    let every = match (&spec.schedule, spec.interval_seconds) {
        (Some(_), Some(_)) => return Err(Error::ScheduleAndInterval),
        (Some(cron), None) => Every::cron(cron, spec.time_zone.as_deref())?,
        (None, interval) => {
            if spec.time_zone.is_some() {
                return Err(Error::TimeZoneWithoutSchedule);
            }
            let secs = interval.unwrap_or(3600);
            if secs < 60 {
                return Err(Error::IntervalTooShort(secs));
            }
            Every::Interval(Duration::from_secs(secs as u64))
        }
    };

    let w = &spec.window;
    for (field, value) in [("minSamples", w.min_samples), ("maxSamples", w.max_samples)] {
        if value < 1 {
            return Err(Error::SamplesTooFew { field, value });
        }
    }
    if w.min_samples > w.max_samples {
        return Err(Error::MinAboveMax {
            min: w.min_samples,
            max: w.max_samples,
        });
    }
    if let Some(since) = &w.since {
        parse_duration("spec.window.since", since)?;
    }
    let warmup = parse_duration("spec.window.warmup", &w.warmup)?;

    let a = &spec.action;
    let cooldown = parse_duration("spec.action.cooldown", &a.cooldown)?;
    let rollback_window = parse_duration("spec.action.rollback.window", &a.rollback.window)?;
    if !(1..=100).contains(&a.consecutive_drifts) {
        return Err(Error::InvalidConsecutiveDrifts(a.consecutive_drifts));
    }
    if a.on_drift == OnDrift::Promote {
        let promote = a.promote.as_ref().ok_or(Error::PromoteMissing)?;
        for (field, alias) in [
            ("alias", &promote.alias),
            ("fromAlias", &promote.from_alias),
        ] {
            validate_alias(alias).map_err(|e| Error::InvalidPromoteAlias {
                field,
                reason: e.to_string(),
            })?;
        }
        if promote.alias == promote.from_alias {
            return Err(Error::PromoteSameAlias(promote.alias.clone()));
        }
    }
    if let Some(hook) = &a.webhook
        && !(hook.url.starts_with("http://") || hook.url.starts_with("https://"))
    {
        return Err(Error::InvalidWebhookUrl(hook.url.clone()));
    }

    let test_args = test_args(spec)?;

    let reference_uri = match (&spec.reference.artifact, &spec.reference.uri) {
        (Some(_), Some(_)) => return Err(Error::ArtifactAndUri),
        (Some(a), None) if a != mooring_registry::REFERENCE_FILE => {
            return Err(Error::UnsupportedArtifact(a.clone()));
        }
        (_, Some(uri)) => {
            if !(uri.starts_with("file:///") || uri.starts_with("s3://") || uri.starts_with('/')) {
                return Err(Error::InvalidReferenceUri(uri.clone()));
            }
            Some(uri.clone())
        }
        _ => None,
    };

    if spec.active_deadline_seconds < 10 {
        return Err(Error::DeadlineTooShort(spec.active_deadline_seconds));
    }
    if !(0..=10).contains(&spec.backoff_limit) {
        return Err(Error::InvalidBackoffLimit(spec.backoff_limit));
    }
    let h = &spec.history_limits;
    for (field, value) in [("successful", h.successful), ("failed", h.failed)] {
        if value < 0 {
            return Err(Error::NegativeHistoryLimit { field, value });
        }
    }

    Ok(ValidMonitor {
        target: spec.target.model_deployment.clone(),
        every,
        guards: Guards {
            consecutive_drifts: a.consecutive_drifts as u32,
            cooldown,
            warmup,
            rollback_window,
        },
        on_drift: a.on_drift,
        promote: a.promote.clone(),
        webhook: a.webhook.clone(),
        test_args,
        reference_uri,
        keep_succeeded: h.successful as usize,
        keep_failed: h.failed as usize,
    })
}

/// The `--threshold`, `--test` and `--drift-share` flags of the drift Job.
fn test_args(spec: &DriftMonitorSpec) -> Result<Vec<String>> {
    let t = &spec.tests;
    if !(t.drift_share > 0.0 && t.drift_share <= 1.0) {
        return Err(Error::InvalidDriftShare(t.drift_share));
    }
    let check = |kind: &str, tests: &FeatureTests| -> Result<()> {
        let p = tests.p_value_threshold;
        if !(p > 0.0 && p < 1.0) {
            return Err(Error::InvalidThreshold {
                field: format!("{kind}.pValueThreshold"),
                value: p,
                reason: "must be between 0 and 1",
            });
        }
        for (name, value) in [
            ("distanceThreshold", tests.distance_threshold),
            ("psiThreshold", tests.psi_threshold),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(Error::InvalidThreshold {
                    field: format!("{kind}.{name}"),
                    value,
                    reason: "must be a positive number",
                });
            }
        }
        Ok(())
    };
    check("numeric", &t.numeric)?;
    check("categorical", &t.categorical)?;
    let (n, c) = (&t.numeric, &t.categorical);
    let mut args = vec![
        "--drift-share".to_string(),
        t.drift_share.to_string(),
        "--threshold".into(),
        format!(
            "ks={},wasserstein={},chisquare={},jensenshannon={},psi={}",
            n.p_value_threshold,
            n.distance_threshold,
            c.p_value_threshold,
            c.distance_threshold,
            n.psi_threshold
        ),
    ];
    // The Job's `--test` applies one test to every feature (`*=TEST`); per-kind methods
    // beyond that are the drift engine's own `Auto` choice.
    let every = match (n.method, c.method) {
        (TestMethod::Auto, TestMethod::Auto) => None,
        (TestMethod::Psi, TestMethod::Psi) => Some("psi"),
        (TestMethod::Auto, _) => return Err(Error::MixedMethods("categorical")),
        _ => return Err(Error::MixedMethods("numeric")),
    };
    if let Some(test) = every {
        args.extend(["--test".into(), format!("*={test}")]);
    }
    Ok(args)
}

/// Why the target cannot be checked (yet).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TargetError {
    #[error("ModelDeployment {0:?} does not exist in this namespace")]
    NotFound(String),
    #[error("ModelDeployment {0:?} has no spec.predictionLog: nothing is logged to check")]
    NoPredictionLog(String),
    #[error("ModelDeployment {name:?} has an invalid spec: {reason}")]
    Invalid { name: String, reason: String },
    #[error("ModelDeployment {0:?} serves no version yet")]
    NotServing(String),
}

impl TargetError {
    pub fn reason(&self) -> &'static str {
        match self {
            TargetError::NotFound(_) => "TargetNotFound",
            TargetError::NoPredictionLog(_) => "NoPredictionLog",
            TargetError::Invalid { .. } => "InvalidTarget",
            TargetError::NotServing(_) => "TargetNotServing",
        }
    }
}

/// What a drift Job needs of its target.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub name: String,
    pub model: String,
    pub registry: RegistryTarget,
    pub image: Option<String>,
    pub sink: String,
    /// The PVC a `file://` sink lives on (`spec.predictionLog.volume`): the Job mounts it at
    /// the sink's path, to read the log and write its report beside it.
    pub log_claim: Option<String>,
    /// `status.version`: the version serving.
    pub version: String,
    /// When `version` started serving (its history entry's `readyAt`, else `startedAt`).
    pub serving_since: Option<jiff::Timestamp>,
    /// The version served before `version` (the newest earlier history entry that became
    /// ready), the one a rollback returns to.
    pub previous_version: Option<String>,
}

/// Check the target ModelDeployment (pure).
pub fn target(name: &str, md: Option<&ModelDeployment>) -> Result<Target, TargetError> {
    let md = md.ok_or_else(|| TargetError::NotFound(name.into()))?;
    let valid = md_validate::validate(&md.spec).map_err(|e| TargetError::Invalid {
        name: name.into(),
        reason: e.to_string(),
    })?;
    let log = md
        .spec
        .prediction_log
        .as_ref()
        .ok_or_else(|| TargetError::NoPredictionLog(name.into()))?;
    let status = md.status.clone().unwrap_or_default();
    let version = status
        .version
        .clone()
        .ok_or_else(|| TargetError::NotServing(name.into()))?;
    let current = status.history.iter().rposition(|h| h.version == version);
    let serving_since = current.map(|i| {
        let h = &status.history[i];
        h.ready_at.as_ref().unwrap_or(&h.started_at).0
    });
    let previous_version = current.and_then(|i| {
        status.history[..i]
            .iter()
            .rev()
            .find(|h| h.ready_at.is_some() && h.version != version)
            .map(|h| h.version.clone())
    });
    Ok(Target {
        name: name.into(),
        model: valid.target.name().to_string(),
        registry: valid.registry.clone(),
        image: md.spec.image.clone(),
        sink: log.sink.clone(),
        log_claim: log
            .volume
            .as_ref()
            .map(|v| v.persistent_volume_claim.clone()),
        version,
        serving_since,
        previous_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift_monitor::fixtures::{md_yaml, spec};

    const MIN: &str = "target: {modelDeployment: iris}";

    /// The bad-input matrix: every invalid field gives its reason and names the field.
    #[test]
    fn every_invalid_field_names_itself() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "target: {modelDeployment: ' '}",
                "InvalidTarget",
                "spec.target",
            ),
            (
                "{target: {modelDeployment: iris}, schedule: '61 * * * *'}",
                "InvalidSchedule",
                "spec.schedule",
            ),
            (
                "{target: {modelDeployment: iris}, schedule: 'every hour'}",
                "InvalidSchedule",
                "spec.schedule",
            ),
            (
                "{target: {modelDeployment: iris}, schedule: '0 * * * *', timeZone: Mars/Olympus}",
                "InvalidSchedule",
                "spec.timeZone",
            ),
            (
                "{target: {modelDeployment: iris}, intervalSeconds: 600, timeZone: UTC}",
                "InvalidSchedule",
                "spec.timeZone",
            ),
            (
                "{target: {modelDeployment: iris}, schedule: '0 * * * *', intervalSeconds: 600}",
                "InvalidSchedule",
                "intervalSeconds",
            ),
            (
                "{target: {modelDeployment: iris}, intervalSeconds: 5}",
                "InvalidSchedule",
                "spec.intervalSeconds",
            ),
            (
                "{target: {modelDeployment: iris}, window: {minSamples: 500, maxSamples: 100}}",
                "InvalidWindow",
                "spec.window.minSamples",
            ),
            (
                "{target: {modelDeployment: iris}, window: {minSamples: 0}}",
                "InvalidWindow",
                "spec.window.minSamples",
            ),
            (
                "{target: {modelDeployment: iris}, window: {since: yesterday}}",
                "InvalidWindow",
                "spec.window.since",
            ),
            (
                "{target: {modelDeployment: iris}, window: {warmup: 10x}}",
                "InvalidWindow",
                "spec.window.warmup",
            ),
            (
                "{target: {modelDeployment: iris}, action: {onDrift: Promote}}",
                "InvalidAction",
                "spec.action.promote",
            ),
            (
                "{target: {modelDeployment: iris}, action: {onDrift: Promote, promote: {alias: production, fromAlias: 'bad alias'}}}",
                "InvalidAction",
                "spec.action.promote.fromAlias",
            ),
            (
                "{target: {modelDeployment: iris}, action: {onDrift: Promote, promote: {alias: production, fromAlias: production}}}",
                "InvalidAction",
                "spec.action.promote",
            ),
            (
                "{target: {modelDeployment: iris}, action: {cooldown: soon}}",
                "InvalidAction",
                "spec.action.cooldown",
            ),
            (
                "{target: {modelDeployment: iris}, action: {rollback: {window: 1w}}}",
                "InvalidAction",
                "spec.action.rollback.window",
            ),
            (
                "{target: {modelDeployment: iris}, action: {consecutiveDrifts: 0}}",
                "InvalidAction",
                "spec.action.consecutiveDrifts",
            ),
            (
                "{target: {modelDeployment: iris}, action: {webhook: {url: 'ftp://x'}}}",
                "InvalidAction",
                "spec.action.webhook.url",
            ),
            (
                "{target: {modelDeployment: iris}, tests: {driftShare: 0}}",
                "InvalidTests",
                "spec.tests.driftShare",
            ),
            (
                "{target: {modelDeployment: iris}, tests: {numeric: {pValueThreshold: 1.5}}}",
                "InvalidTests",
                "spec.tests.numeric.pValueThreshold",
            ),
            (
                "{target: {modelDeployment: iris}, tests: {categorical: {distanceThreshold: -1}}}",
                "InvalidTests",
                "spec.tests.categorical.distanceThreshold",
            ),
            (
                "{target: {modelDeployment: iris}, tests: {numeric: {method: Psi}}}",
                "InvalidTests",
                "spec.tests.numeric.method",
            ),
            (
                "{target: {modelDeployment: iris}, reference: {artifact: ref.parquet}}",
                "InvalidReference",
                "spec.reference.artifact",
            ),
            (
                "{target: {modelDeployment: iris}, reference: {uri: 'http://x/ref.csv'}}",
                "InvalidReference",
                "spec.reference.uri",
            ),
            (
                "{target: {modelDeployment: iris}, activeDeadlineSeconds: 1}",
                "InvalidJob",
                "spec.activeDeadlineSeconds",
            ),
            (
                "{target: {modelDeployment: iris}, backoffLimit: -1}",
                "InvalidJob",
                "spec.backoffLimit",
            ),
            (
                "{target: {modelDeployment: iris}, historyLimits: {failed: -1}}",
                "InvalidJob",
                "spec.historyLimits.failed",
            ),
        ];
        for (yaml, reason, field) in cases {
            let err = validate(&spec(yaml)).expect_err(yaml);
            assert_eq!(err.reason(), *reason, "{yaml}: {err}");
            assert!(err.to_string().contains(field), "{yaml}: {err}");
        }
    }

    /// Extreme and odd values: an error or a valid spec, never a panic.
    #[test]
    fn odd_values_never_panic() {
        for yaml in [
            "{target: {modelDeployment: iris}, intervalSeconds: -2147483648}",
            "{target: {modelDeployment: iris}, intervalSeconds: 2147483647}",
            "{target: {modelDeployment: iris}, window: {maxSamples: 2147483647, minSamples: 2147483647}}",
            "{target: {modelDeployment: iris}, window: {since: '99999999999999999999999d', warmup: 'é'}}",
            "{target: {modelDeployment: iris}, action: {cooldown: '18446744073709551615d'}}",
            "{target: {modelDeployment: iris}, schedule: '*/0 * * * *'}",
            "{target: {modelDeployment: iris}, schedule: '@reboot'}",
            "{target: {modelDeployment: iris}, schedule: '🕐 * * * *'}",
            "{target: {modelDeployment: iris}, schedule: ''}",
            "{target: {modelDeployment: iris}, schedule: '0 0 31 4 *'}",
            "{target: {modelDeployment: iris}, tests: {driftShare: .nan}}",
            "{target: {modelDeployment: iris}, tests: {numeric: {distanceThreshold: .inf}}}",
            "{target: {modelDeployment: iris}, activeDeadlineSeconds: -9223372036854775808}",
        ] {
            let _ = validate(&spec(yaml));
        }
        let big = validate(&spec(
            "{target: {modelDeployment: iris}, intervalSeconds: 2147483647}",
        ))
        .unwrap();
        let far = big.every.next_after(jiff::Timestamp::MAX);
        assert_eq!(far, None);
    }

    #[test]
    fn defaults_are_valid_and_give_the_documented_guards() {
        let v = validate(&spec(MIN)).unwrap();
        assert_eq!(v.every, Every::Interval(Duration::from_secs(3600)));
        assert_eq!(
            v.guards,
            Guards {
                consecutive_drifts: 1,
                cooldown: Duration::from_secs(3600),
                warmup: Duration::from_secs(600),
                rollback_window: Duration::from_secs(86_400),
            }
        );
        assert_eq!(
            v.test_args,
            [
                "--drift-share",
                "0.5",
                "--threshold",
                "ks=0.05,wasserstein=0.1,chisquare=0.05,jensenshannon=0.1,psi=0.1"
            ]
        );
        assert_eq!((v.keep_succeeded, v.keep_failed), (3, 1));
    }

    #[test]
    fn psi_everywhere_becomes_one_test_flag() {
        let v = validate(&spec(
            "{target: {modelDeployment: iris}, tests: {numeric: {method: Psi}, categorical: {method: Psi}}}",
        ))
        .unwrap();
        assert_eq!(v.test_args[4..], ["--test", "*=psi"]);
    }

    #[test]
    fn durations_parse_in_the_crd_pattern() {
        assert_eq!(parse_duration("f", "90s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("f", "7d").unwrap(),
            Duration::from_secs(604_800)
        );
        for bad in ["", "h", "1.5h", "-1h", "1H", "10", "99999999999999999999d"] {
            assert!(parse_duration("f", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn target_checks_name_what_is_missing() {
        assert_eq!(target("iris", None).unwrap_err().reason(), "TargetNotFound");
        let md = md_yaml(
            "spec:\n  model: {name: iris-classifier, alias: production}\n  registry: {local: {path: /models}}",
        );
        assert_eq!(
            target("iris", Some(&md)).unwrap_err().reason(),
            "NoPredictionLog"
        );
        let md = md_yaml(
            "spec:\n  model: {name: iris-classifier, alias: production}\n  registry: {local: {path: /models}}\n  predictionLog: {sink: 'file:///log', volume: {persistentVolumeClaim: logs}}",
        );
        assert_eq!(
            target("iris", Some(&md)).unwrap_err().reason(),
            "TargetNotServing"
        );
        let md = md_yaml(
            "spec:\n  model: {name: iris-classifier}\n  registry: {local: {path: /models}}\n  predictionLog: {sink: 'file:///log', volume: {persistentVolumeClaim: logs}}",
        );
        let err = target("iris", Some(&md)).unwrap_err();
        assert_eq!(err.reason(), "InvalidTarget");
        assert!(err.to_string().contains("spec.model"), "{err}");
    }

    #[test]
    fn target_knows_when_its_version_started_and_what_served_before() {
        let md = md_yaml(crate::drift_monitor::fixtures::SERVING_MD);
        let t = target("iris", Some(&md)).unwrap();
        assert_eq!(t.version, "3");
        assert_eq!(t.model, "iris-classifier");
        assert_eq!(t.sink, "file:///var/log/mooring");
        // readyAt of version 3, not its startedAt.
        assert_eq!(t.serving_since.unwrap().as_second(), 10_060);
        // Version 2 failed (never ready): the rollback target is 1.
        assert_eq!(t.previous_version.as_deref(), Some("1"));
    }
}
