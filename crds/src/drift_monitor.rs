//! `DriftMonitor`: check a ModelDeployment's logged production traffic against a reference
//! dataset, on a schedule, as Jobs.

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{PodOptions, SecretKeyRef};
use crate::drift_report::{DriftReport, DriftVerdict};

/// How many verdicts `status.history` keeps (oldest dropped first).
pub const VERDICT_HISTORY_LIMIT: usize = 20;
/// How many actions `status.actions` keeps (oldest dropped first).
pub const ACTION_HISTORY_LIMIT: usize = 20;
/// The regular expression every duration field matches: a whole number and a unit.
pub const DURATION_PATTERN: &str = r"^[0-9]+(s|m|h|d)$";

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
    printcolumn(
        name = "Version",
        type_ = "string",
        description = "The target's version the last check looked at",
        json_path = ".status.lastRun.version"
    ),
    printcolumn(
        name = "Verdict",
        type_ = "string",
        json_path = ".status.lastRun.outcome"
    ),
    printcolumn(
        name = "Share",
        type_ = "number",
        description = "Share of drifted features in the last report",
        json_path = ".status.lastReport.driftShare"
    ),
    printcolumn(
        name = "Last-Check",
        type_ = "date",
        json_path = ".status.lastRun.completionTime"
    ),
    // A string, not a date: kubectl prints future dates as `<invalid>`.
    printcolumn(
        name = "Next",
        type_ = "string",
        description = "When the next check starts",
        json_path = ".status.nextRunTime"
    ),
    printcolumn(
        name = "Action",
        type_ = "string",
        json_path = ".spec.action.onDrift",
        priority = "1"
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
    /// IANA time zone of `schedule` (e.g. `Europe/Berlin`); UTC when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Seconds between checks, instead of a cron `schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60))]
    pub interval_seconds: Option<i32>,
    /// Start no new check while true (a running one finishes).
    #[serde(default)]
    pub suspend: bool,
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
    /// Extra environment variables of the drift Job's container (e.g. `AWS_REGION`,
    /// `AWS_ENDPOINT_URL` for an S3 sink).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Seconds a check may run before Kubernetes stops it (outcome `Failed`).
    #[serde(default = "default_active_deadline")]
    #[schemars(range(min = 10))]
    pub active_deadline_seconds: i64,
    /// Retries of a failed check pod within one Job.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10))]
    pub backoff_limit: i32,
    /// Scheduling, identity and volumes of the Job's pod (e.g. `serviceAccountName` for
    /// IRSA, a `volumes`/`volumeMounts` pair for the PVC of a `file://` sink).
    #[serde(flatten)]
    pub pod: PodOptions,
}

fn default_active_deadline() -> i64 {
    600
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minSamples <= self.maxSamples").message("window.minSamples must not exceed window.maxSamples"))]
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
    /// No check counts until the target's current version has served this long (e.g.
    /// `10m`); a check during the warm-up is recorded as skipped.
    #[serde(default = "default_warmup")]
    #[schemars(regex(pattern = r"^[0-9]+(s|m|h|d)$"))]
    pub warmup: String,
}

impl Default for WindowSpec {
    fn default() -> Self {
        WindowSpec {
            max_samples: default_max_samples(),
            min_samples: default_min_samples(),
            since: None,
            warmup: default_warmup(),
        }
    }
}

fn default_warmup() -> String {
    "10m".into()
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
    pub numeric: FeatureTests,
    /// Tests for categorical features.
    #[serde(default)]
    pub categorical: FeatureTests,
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
            numeric: FeatureTests::default(),
            categorical: FeatureTests::default(),
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

/// The tests of one kind of feature (numeric or categorical).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeatureTests {
    /// Which test to apply.
    #[serde(default)]
    pub method: TestMethod,
    /// The p-value test (Kolmogorov-Smirnov, chi-square): drift when the p-value is below this.
    #[serde(default = "default_p_value")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub p_value_threshold: f64,
    /// The distance (normed Wasserstein, Jensen-Shannon): drift at or above this.
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

impl Default for FeatureTests {
    fn default() -> Self {
        FeatureTests {
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
    /// Also ask the target to serve the version it served before the drifted one, when the
    /// drifted version has served for less than `rollback.window`.
    Rollback,
    /// Move the registry alias `promote.alias` to the version behind `promote.fromAlias`,
    /// when the same traffic does not drift from that version's own reference.
    Promote,
}

/// The action on drift.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.onDrift != 'Promote' || has(self.promote)").message("action.onDrift: Promote needs action.promote"))]
pub struct DriftActionSpec {
    /// `Notify`, `Rollback` or `Promote`.
    #[serde(default)]
    pub on_drift: OnDrift,
    /// The aliases `Promote` moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<PromoteSpec>,
    /// Which versions `Rollback` rolls back.
    #[serde(default)]
    pub rollback: RollbackSpec,
    /// Act only after this many drifted checks in a row.
    #[serde(default = "default_consecutive_drifts")]
    #[schemars(range(min = 1, max = 100))]
    pub consecutive_drifts: i32,
    /// No second action within this duration of the last one (e.g. `1h`).
    #[serde(default = "default_cooldown")]
    #[schemars(regex(pattern = r"^[0-9]+(s|m|h|d)$"))]
    pub cooldown: String,
    /// Also POST the compact report to this webhook on drift (whatever `onDrift` is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,
}

impl Default for DriftActionSpec {
    fn default() -> Self {
        DriftActionSpec {
            on_drift: OnDrift::Notify,
            promote: None,
            rollback: RollbackSpec::default(),
            consecutive_drifts: default_consecutive_drifts(),
            cooldown: default_cooldown(),
            webhook: None,
        }
    }
}

fn default_consecutive_drifts() -> i32 {
    1
}
fn default_cooldown() -> String {
    "1h".into()
}

/// Which drifted versions are rolled back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackSpec {
    /// Roll back only a version that has served for less than this (e.g. `24h`): drift in
    /// an older version is in the data, not the model, and is only notified.
    #[serde(default = "default_rollback_window")]
    #[schemars(regex(pattern = r"^[0-9]+(s|m|h|d)$"))]
    pub window: String,
}

impl Default for RollbackSpec {
    fn default() -> Self {
        RollbackSpec {
            window: default_rollback_window(),
        }
    }
}

fn default_rollback_window() -> String {
    "24h".into()
}

/// A webhook receiving the compact report as JSON on drift.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// `https://…` (or `http://…` inside the cluster).
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("action.webhook.url must start with http:// or https://"))]
    pub url: String,
    /// Secret key whose value signs the body: header `X-Mooring-Signature: sha256=<hex
    /// HMAC-SHA256 of the body>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
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
    /// When the next check starts (empty while suspended or invalid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_time: Option<Time>,
    /// The scheduled time the latest Job was started for: runs missed while the operator was
    /// down are counted from here, and run once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// The latest check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<DriftRun>,
    /// The compact report of the latest completed check (with the challenger gate's result
    /// under `challenger`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_report: Option<DriftReport>,
    /// Drifted checks in a row (reset by any other verdict, and by an action).
    #[serde(default)]
    pub consecutive_drifts: i32,
    /// The last verdicts, newest last (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<VerdictRecord>,
    /// Actions taken on drift, newest last (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<DriftActionRecord>,
    /// The last webhook delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_webhook: Option<WebhookDelivery>,
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
    /// The target's version whose traffic is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When it finished; empty while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Its verdict; empty while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<DriftVerdict>,
    /// Why it failed or had too little data, or why it did not count (warm-up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One verdict in `status.history`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerdictRecord {
    /// When the check finished.
    pub time: Time,
    /// The Job.
    pub job_name: String,
    /// The version checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The verdict.
    pub verdict: DriftVerdict,
    /// Share of drifted features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_share: Option<f64>,
    /// False when the check did not count towards the guards (during the warm-up).
    #[serde(default = "default_true")]
    pub counted: bool,
}

/// What became of an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ActionResult {
    /// Done (the alias moved; the Event and condition were set).
    Succeeded,
    /// Asked of the target's controller (a rollback request), not yet acknowledged.
    Requested,
    /// Not done, for the reason in `message` (no version to roll back to, challenger drifts …).
    Skipped,
    /// Tried and failed (e.g. the registry refused the alias move).
    Failed,
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
    /// The Job whose report triggered the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Where the full report is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_uri: Option<String>,
    /// What became of it.
    pub result: ActionResult,
    /// What happened, for people.
    pub message: String,
}

/// The outcome of a webhook delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// When it was attempted.
    pub time: Time,
    /// Whether the webhook answered 2xx.
    pub delivered: bool,
    /// Attempts made.
    pub attempts: i32,
    /// The last error, when it was not delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
