//! `DriftMonitor`: check a ModelDeployment's logged production traffic against a reference
//! dataset, on a schedule, as Jobs.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::drift_report::{DriftReport, DriftVerdict};

/// Condition types written to `status.conditions`.
pub mod condition {
    /// The monitor's spec is valid and its target exists.
    pub const READY: &str = "Ready";
    /// The last completed check found dataset drift.
    pub const DRIFT_DETECTED: &str = "DriftDetected";
}

/// Checks a ModelDeployment's logged inputs and predictions against a reference dataset with
/// statistical tests, as Jobs on a schedule, and acts on drift (notify, roll back, promote).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "mooring.dev",
    version = "v1alpha1",
    kind = "DriftMonitor",
    namespaced,
    status = "DriftMonitorStatus",
    shortname = "dm",
    category = "mooring",
    doc = "Checks a ModelDeployment's logged traffic against a reference dataset for drift.",
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.target.modelDeployment"
    ),
    printcolumn(name = "Action", type_ = "string", json_path = ".spec.action.onDrift"),
    printcolumn(
        name = "Last-Outcome",
        type_ = "string",
        json_path = ".status.lastRun.outcome"
    ),
    printcolumn(
        name = "Drift-Share",
        type_ = "number",
        json_path = ".status.lastReport.driftShare"
    ),
    printcolumn(
        name = "Last-Run",
        type_ = "date",
        json_path = ".status.lastRun.completionTime"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!(has(self.schedule) && has(self.intervalSeconds))").message("set at most one of schedule or intervalSeconds"))]
#[serde(rename_all = "camelCase")]
pub struct DriftMonitorSpec {
    /// The ModelDeployment whose traffic is checked.
    pub target: DriftTarget,
    /// Cron schedule of the checks (e.g. `0 * * * *`). Set this or `intervalSeconds`; with
    /// neither, a check runs every hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Seconds between checks, instead of a cron `schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60))]
    pub interval_seconds: Option<i32>,
    /// Which logged samples are checked.
    #[serde(default)]
    pub window: WindowSpec,
    /// The reference dataset.
    #[serde(default)]
    pub reference: ReferenceSpec,
    /// The statistical tests and their thresholds (defaults follow Evidently's).
    #[serde(default)]
    pub tests: DriftTestsSpec,
    /// What to do when drift is found.
    #[serde(default)]
    pub action: DriftActionSpec,
    /// Completed Jobs kept, per outcome.
    #[serde(default)]
    pub history_limits: HistoryLimits,
    /// Image of the drift Job. Defaults to the target's inference-server image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Resources of the drift Job's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// The ModelDeployment a monitor watches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftTarget {
    /// Name of a ModelDeployment in the same namespace; it must have `spec.predictionLog`.
    #[schemars(length(min = 1))]
    pub model_deployment: String,
}

/// The window of logged samples to check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowSpec {
    /// At most this many of the newest samples are checked.
    #[serde(default = "default_max_samples")]
    #[schemars(range(min = 1))]
    pub max_samples: i32,
    /// Fewer samples than this give the verdict `InsufficientData`.
    #[serde(default = "default_min_samples")]
    #[schemars(range(min = 1))]
    pub min_samples: i32,
    /// Only samples logged within this duration before the check (e.g. `24h`, `30m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(s|m|h|d)$"))]
    pub since: Option<String>,
}

impl Default for WindowSpec {
    fn default() -> Self {
        WindowSpec {
            max_samples: default_max_samples(),
            min_samples: default_min_samples(),
            since: None,
        }
    }
}

fn default_max_samples() -> i32 {
    5000
}
fn default_min_samples() -> i32 {
    30
}

/// Where the reference dataset comes from: an artifact of the served model version (the
/// default, `reference.csv`), or a URI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.artifact) && has(self.uri))").message("set at most one of reference.artifact or reference.uri"))]
pub struct ReferenceSpec {
    /// File name among the served version's registry artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// A CSV file: `file:///…` or `s3://…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

impl Default for ReferenceSpec {
    fn default() -> Self {
        ReferenceSpec {
            artifact: Some("reference.csv".to_string()),
            uri: None,
        }
    }
}

/// Tests per feature kind and the dataset-level rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftTestsSpec {
    /// Tests for numeric features.
    #[serde(default)]
    pub numeric: NumericTests,
    /// Tests for categorical features.
    #[serde(default)]
    pub categorical: CategoricalTests,
    /// The dataset drifts when the share of drifted features is at least this.
    #[serde(default = "default_drift_share")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub drift_share: f64,
    /// Also test the distribution of predicted classes.
    #[serde(default = "default_true")]
    pub prediction_drift: bool,
}

impl Default for DriftTestsSpec {
    fn default() -> Self {
        DriftTestsSpec {
            numeric: NumericTests::default(),
            categorical: CategoricalTests::default(),
            drift_share: default_drift_share(),
            prediction_drift: true,
        }
    }
}

fn default_drift_share() -> f64 {
    0.5
}
fn default_true() -> bool {
    true
}

/// Which test to apply to a feature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TestMethod {
    /// The p-value test up to `smallSampleMaxRows` reference rows, the distance above (numeric:
    /// Kolmogorov-Smirnov / Wasserstein; categorical: chi-square / Jensen-Shannon).
    #[default]
    Auto,
    /// Always the p-value test.
    PValue,
    /// Always the distance.
    Distance,
    /// Population Stability Index.
    Psi,
}

/// Tests for numeric features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NumericTests {
    /// Which test to apply.
    #[serde(default)]
    pub method: TestMethod,
    /// Kolmogorov-Smirnov: drift when the p-value is below this.
    #[serde(default = "default_p_value")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub p_value_threshold: f64,
    /// Normed Wasserstein distance: drift at or above this.
    #[serde(default = "default_distance")]
    #[schemars(range(min = 0.0))]
    pub distance_threshold: f64,
    /// PSI: drift at or above this.
    #[serde(default = "default_distance")]
    #[schemars(range(min = 0.0))]
    pub psi_threshold: f64,
    /// `Auto` uses the p-value test up to this many reference rows.
    #[serde(default = "default_small_sample")]
    #[schemars(range(min = 1))]
    pub small_sample_max_rows: i32,
}

impl Default for NumericTests {
    fn default() -> Self {
        NumericTests {
            method: TestMethod::Auto,
            p_value_threshold: default_p_value(),
            distance_threshold: default_distance(),
            psi_threshold: default_distance(),
            small_sample_max_rows: default_small_sample(),
        }
    }
}

/// Tests for categorical features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CategoricalTests {
    /// Which test to apply.
    #[serde(default)]
    pub method: TestMethod,
    /// Chi-square: drift when the p-value is below this.
    #[serde(default = "default_p_value")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub p_value_threshold: f64,
    /// Jensen-Shannon distance: drift at or above this.
    #[serde(default = "default_distance")]
    #[schemars(range(min = 0.0))]
    pub distance_threshold: f64,
    /// PSI: drift at or above this.
    #[serde(default = "default_distance")]
    #[schemars(range(min = 0.0))]
    pub psi_threshold: f64,
    /// `Auto` uses the p-value test up to this many reference rows.
    #[serde(default = "default_small_sample")]
    #[schemars(range(min = 1))]
    pub small_sample_max_rows: i32,
}

impl Default for CategoricalTests {
    fn default() -> Self {
        CategoricalTests {
            method: TestMethod::Auto,
            p_value_threshold: default_p_value(),
            distance_threshold: default_distance(),
            psi_threshold: default_distance(),
            small_sample_max_rows: default_small_sample(),
        }
    }
}

fn default_p_value() -> f64 {
    0.05
}
fn default_distance() -> f64 {
    0.1
}
fn default_small_sample() -> i32 {
    1000
}

/// What happens on drift.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OnDrift {
    /// Set `DriftDetected=True`, emit an Event, count it in the metrics.
    #[default]
    Notify,
    /// Also pin the target to its last version that passed a check (`status.rollbackPin`).
    Rollback,
    /// Move the registry alias `promote.alias` to the version behind `promote.fromAlias`.
    Promote,
}

/// The action on drift.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.onDrift != 'Promote' || has(self.promote)").message("action.onDrift: Promote needs action.promote"))]
pub struct DriftActionSpec {
    /// `Notify`, `Rollback` or `Promote`.
    #[serde(default)]
    pub on_drift: OnDrift,
    /// The aliases `Promote` moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<PromoteSpec>,
}

/// Move `alias` to the version `fromAlias` names, e.g. `challenger` → `production`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromoteSpec {
    /// The alias that is moved, e.g. `production`.
    #[schemars(length(min = 1))]
    pub alias: String,
    /// The alias naming the version to promote, e.g. `challenger`.
    #[schemars(length(min = 1))]
    pub from_alias: String,
}

/// How many finished Jobs are kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryLimits {
    /// Jobs that completed (whatever the verdict).
    #[serde(default = "default_successful")]
    #[schemars(range(min = 0))]
    pub successful: i32,
    /// Jobs that failed.
    #[serde(default = "default_failed")]
    #[schemars(range(min = 0))]
    pub failed: i32,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            successful: default_successful(),
            failed: default_failed(),
        }
    }
}

fn default_successful() -> i32 {
    3
}
fn default_failed() -> i32 {
    1
}

/// What the monitor observed and did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftMonitorStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The latest check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<DriftRun>,
    /// The compact report of the latest completed check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_report: Option<DriftReport>,
    /// Actions taken on drift, newest last (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<DriftActionRecord>,
    /// `Ready`, `DriftDetected`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One drift check Job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftRun {
    /// Name of the Job.
    pub job_name: String,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When it finished; empty while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Its verdict; empty while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<DriftVerdict>,
}

/// One action taken on drift.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftActionRecord {
    /// When.
    pub time: Time,
    /// `Notify`, `Rollback` or `Promote`.
    pub action: OnDrift,
    /// The version served before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<String>,
    /// The version served after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_version: Option<String>,
    /// What happened, for people.
    pub message: String,
}
