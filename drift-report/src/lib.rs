//! The compact result of one drift check: what a drift Job writes to its termination message
//! (as JSON, so it must stay well under the kubelet's 4096-byte limit) and what the operator
//! copies into `DriftMonitor.status.lastReport`. The full report (with histograms) goes to the
//! prediction-log sink instead.

//!
//! Its own crate so that the drift Job (`mooring-drift`) reads and writes the contract
//! without Kubernetes types; `mooring-crds` re-exports it (with JSON schemas, feature
//! `schema`) as `mooring_crds::drift_report`.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// The verdict of one drift check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum DriftVerdict {
    /// The share of drifted features is below `tests.driftShare`.
    NoDrift,
    /// The share of drifted features reached `tests.driftShare`.
    Drift,
    /// Fewer logged samples than `window.minSamples`: no verdict.
    InsufficientData,
    /// The check itself failed (unreadable log or reference, bad data).
    Failed,
}

/// Which statistical test produced a feature's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum DriftTest {
    /// Two-sample Kolmogorov-Smirnov; drift when p-value < threshold.
    KolmogorovSmirnov,
    /// Wasserstein distance normed by the reference's standard deviation; drift when
    /// distance ≥ threshold.
    Wasserstein,
    /// Chi-square test of the category frequencies; drift when p-value < threshold.
    ChiSquare,
    /// Jensen-Shannon distance of the category frequencies; drift when distance ≥ threshold.
    JensenShannon,
    /// Population Stability Index; drift when PSI ≥ threshold.
    Psi,
}

impl DriftTest {
    /// True when the test yields a p-value (drift below the threshold); false for distances
    /// (drift at or above the threshold).
    pub fn is_p_value(self) -> bool {
        matches!(self, DriftTest::KolmogorovSmirnov | DriftTest::ChiSquare)
    }
}

/// The kind of a feature, which decides the tests applied to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum FeatureKind {
    Numeric,
    Categorical,
}

/// The compact result of one drift check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct DriftReport {
    /// The overall verdict.
    pub verdict: DriftVerdict,
    /// Model name.
    pub model: String,
    /// Model version whose logged traffic was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// Logged samples in the window.
    pub samples: u64,
    /// Rows of the reference dataset used.
    pub reference_samples: u64,
    /// Share of features that drifted, from 0 to 1.
    pub drift_share: f64,
    /// The share at or above which the dataset counts as drifted.
    pub drift_share_threshold: f64,
    /// Per-feature results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<FeatureDrift>,
    /// Drift of the predicted class distribution, when predictions were logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<TestResult>,
    /// Why the check failed or had too little data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Where the full report (JSON and HTML) was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_uri: Option<String>,
    /// The challenger gate: the same window checked against the challenger version's own
    /// reference dataset (only with `--challenger-alias`, for `onDrift: Promote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenger: Option<ChallengerCheck>,
}

/// The result of the challenger gate, kept small (the termination message is capped at 4 KB).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ChallengerCheck {
    /// The alias naming the challenger, e.g. `challenger`.
    pub alias: String,
    /// The version it names; empty when the alias could not be resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `NoDrift` lets the promotion go ahead; `Failed` when the challenger or its reference
    /// could not be read.
    pub verdict: DriftVerdict,
    /// Share of features drifting from the challenger's reference.
    pub drift_share: f64,
    /// Names of the features drifting from the challenger's reference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drifted_features: Vec<String>,
    /// Why the gate failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The result of one statistical test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    /// The test applied.
    pub test: DriftTest,
    /// The test statistic, or the distance for distance tests.
    pub statistic: f64,
    /// The p-value, for tests that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// The p-value below which, or the distance at or above which, this counts as drift.
    pub threshold: f64,
    /// Whether it drifted.
    pub drifted: bool,
}

/// The result for one input feature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct FeatureDrift {
    /// Feature name, from the model's signature.
    pub name: String,
    /// Numeric or categorical.
    pub kind: FeatureKind,
    /// The test result.
    #[serde(flatten)]
    pub result: TestResult,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips_in_the_documented_shape() {
        let json = serde_json::json!({
            "verdict": "Drift",
            "model": "iris-classifier",
            "modelVersion": "2",
            "samples": 500,
            "referenceSamples": 150,
            "driftShare": 0.75,
            "driftShareThreshold": 0.5,
            "features": [{
                "name": "petal_length", "kind": "Numeric", "test": "KolmogorovSmirnov",
                "statistic": 0.41, "pValue": 0.0001, "threshold": 0.05, "drifted": true
            }],
            "prediction": {"test": "ChiSquare", "statistic": 12.5, "pValue": 0.002,
                           "threshold": 0.05, "drifted": true}
        });
        let report: DriftReport = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(report.verdict, DriftVerdict::Drift);
        assert_eq!(report.features[0].result.test, DriftTest::KolmogorovSmirnov);
        assert_eq!(serde_json::to_value(&report).unwrap(), json);
    }

    #[test]
    fn unknown_verdict_is_rejected() {
        let err = serde_json::from_value::<DriftVerdict>(serde_json::json!("Maybe")).unwrap_err();
        assert!(err.to_string().contains("Maybe"), "{err}");
    }
}
